//go:build cuda

package gpu

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/tsnemap/tsnemap/embed"
)

// testBackend opens the GPU, or skips the test with Probe's reason.
func testBackend(t testing.TB) *Backend {
	t.Helper()
	info, err := Probe()
	if err != nil {
		t.Skipf("no GPU: %v", err)
	}
	b, err := New(context.Background())
	if err != nil {
		t.Fatalf("probe found %v but New failed: %v", info, err)
	}
	t.Cleanup(func() { b.Close() })
	return b
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
