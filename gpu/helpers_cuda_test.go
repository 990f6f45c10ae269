//go:build cuda

package gpu

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/tsnemap/tsnemap/embed"
	"github.com/tsnemap/tsnemap/internal/cudaemu"
)

const cudaBuild = true

// TestMain runs the suite on a real GPU when the driver offers one, else
// on the emulated driver (gpu/testdata/cudaemu), which it builds: so every
// test runs, nothing is skipped for want of a device. TSNEMAP_LIBCUDA set
// by the caller is kept (a given library, real or emulated).
func TestMain(m *testing.M) {
	if os.Getenv(LibraryEnv) == "" {
		if _, err := Probe(context.Background()); err != nil {
			lib, berr := cudaemu.Build()
			if berr != nil {
				fmt.Fprintf(os.Stderr, "no GPU (%v), and the emulated driver does not build: %v\n", err, berr)
				os.Exit(1)
			}
			os.Setenv(LibraryEnv, lib)
		}
	}
	os.Exit(m.Run())
}

// testBackend opens the device (a GPU or the emulated driver, TestMain).
func testBackend(t testing.TB) *Backend {
	t.Helper()
	b, err := New(context.Background())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// emulated reports whether b runs on the emulated driver; tests that
// scale with N choose sizes it finishes in seconds.
func emulated(b *Backend) bool { return strings.HasPrefix(b.Info().Name, "tsnemap CUDA emulator") }

// pick is onGPU on a GPU and onEmulator on the emulated driver.
func pick(b *Backend, onGPU, onEmulator int) int {
	if emulated(b) {
		return onEmulator
	}
	return onGPU
}

func gaussianY(n, dims int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	y := make([]float32, n*dims)
	for i := range y {
		y[i] = float32(rng.NormFloat64() * 1e-4)
	}
	return y
}

// schedule runs iterations steps of Run's schedule (exaggeration 12 and
// momentum 0.5 for the first 250, then 1 and 0.8; learning rate auto) on
// be and returns Y and the final KL.
func schedule(t testing.TB, be embed.Backend, p *embed.CSR, y0 []float32, dims, iterations int, rep embed.Repulsion) ([]float32, float64, embed.Repulsion) {
	t.Helper()
	ctx := context.Background()
	n := p.N
	opts := embed.DefaultOptions()
	opt, err := be.NewOptimizer(ctx, p, y0, embed.OptimizerConfig{N: n, Dims: dims, Repulsion: rep, Theta: opts.Theta})
	if err != nil {
		t.Fatalf("%s: %v", be.Name(), err)
	}
	defer opt.Close()
	rate := opts.EffectiveLearningRate(n)
	for it := range iterations {
		params := embed.StepParams{Exaggeration: 1, Momentum: 0.8, LearningRate: rate}
		if it < opts.ExaggerationIterations {
			params.Exaggeration, params.Momentum = opts.EarlyExaggeration, 0.5
		}
		if err := opt.Step(ctx, params); err != nil {
			t.Fatalf("%s: step %d: %v", be.Name(), it+1, err)
		}
	}
	y := make([]float32, n*dims)
	if err := opt.Coordinates(y); err != nil {
		t.Fatal(err)
	}
	kl, err := opt.KL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return y, kl, opt.Repulsion()
}

func maxAbsDiff(a, b []float32) (diff, scale float64) {
	for i := range a {
		diff = math.Max(diff, math.Abs(float64(a[i])-float64(b[i])))
		scale = math.Max(scale, math.Abs(float64(a[i])))
	}
	return diff, scale
}
