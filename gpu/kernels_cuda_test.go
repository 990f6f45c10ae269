//go:build cuda

package gpu

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/cpu"
	"github.com/tsnemap/tsnemap/embed"
	"github.com/tsnemap/tsnemap/internal/synth"
)

// TestProbeNamesDevice: the start-up line names the GPU.
func TestProbeNamesDevice(t *testing.T) {
	g := testBackend(t)
	info := g.Info()
	t.Logf("GPU backend: %s; %v", g.Name(), info)
	if info.Name == "" || info.Major < 7 {
		t.Errorf("device %+v", info)
	}
}

func relErr(got, want []float32) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	return math.Sqrt(num / math.Max(den, 1e-300))
}

// TestPCAProductsMatchCPU: ColumnMeans, MulRight and MulTransLeft on uint8
// pixels (several row blocks) and float32 features agree with the CPU.
func TestPCAProductsMatchCPU(t *testing.T) {
	g := testBackend(t)
	ctx := context.Background()
	c := cpu.New(0)
	// Several row blocks of 8192 rows in both cases.
	n, w := pick(g, 20000, 9000), pick(g, 40, 20)
	pix, _ := synth.Images(n, w, w, 10, 1)
	feat, _ := synth.Clusters(9000, 70, 10, 8, 2)
	for _, x := range []embed.Data{{N: n, D: w * w * 3, U8: pix}, {N: 9000, D: 70, F32: feat}} {
		mc, mg := make([]float64, x.D), make([]float64, x.D)
		if err := c.ColumnMeans(ctx, x, mc); err != nil {
			t.Fatal(err)
		}
		if err := g.ColumnMeans(ctx, x, mg); err != nil {
			t.Fatal(err)
		}
		mean := make([]float32, x.D)
		for i := range mc {
			if math.Abs(mc[i]-mg[i]) > 1e-9*math.Max(1, math.Abs(mc[i])) {
				t.Fatalf("mean[%d]: gpu %v cpu %v", i, mg[i], mc[i])
			}
			mean[i] = float32(mc[i])
		}
		const l = 60
		b := gaussianY(x.D, l, 9)
		rc, rg := make([]float32, x.N*l), make([]float32, x.N*l)
		if err := c.MulRight(ctx, x, mean, b, l, rc); err != nil {
			t.Fatal(err)
		}
		if err := g.MulRight(ctx, x, mean, b, l, rg); err != nil {
			t.Fatal(err)
		}
		if e := relErr(rg, rc); e > 1e-5 {
			t.Errorf("MulRight %d×%d: relative error %.3g", x.N, x.D, e)
		}
		lc, lg := make([]float32, x.D*l), make([]float32, x.D*l)
		if err := c.MulTransLeft(ctx, x, mean, rc, l, lc); err != nil {
			t.Fatal(err)
		}
		if err := g.MulTransLeft(ctx, x, mean, rc, l, lg); err != nil {
			t.Fatal(err)
		}
		if e := relErr(lg, lc); e > 1e-5 {
			t.Errorf("MulTransLeft %d×%d: relative error %.3g", x.N, x.D, e)
		}
	}
}

// TestKNearestMatchesCPU: exact neighbours on the device equal the CPU's
// exact search, up to ties and the last bits of the distances.
func TestKNearestMatchesCPU(t *testing.T) {
	g := testBackend(t)
	ctx := context.Background()
	n, d, k := 6000, 50, 90
	x, _ := synth.Clusters(n, d, 10, 8, 4)
	want, err := cpu.New(0).KNearest(ctx, x, n, d, k, embed.NeighborsExact, 1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := g.KNearest(ctx, x, n, d, k, embed.NeighborsAuto, 1)
	if err != nil {
		t.Fatal(err)
	}
	same := 0
	for i := range n * k {
		if got.Index[i] == want.Index[i] {
			same++
		}
		if dd := math.Abs(float64(got.Dist2[i] - want.Dist2[i])); dd > 1e-4*math.Max(1, float64(want.Dist2[i])) {
			t.Fatalf("row %d: distance %v vs cpu %v", i/k, got.Dist2[i], want.Dist2[i])
		}
	}
	if frac := float64(same) / float64(n*k); frac < 0.999 {
		t.Errorf("only %.4f of the neighbour indices equal the CPU's", frac)
	}
	for i := range n {
		for j := 1; j < k; j++ {
			if got.Dist2[i*k+j] < got.Dist2[i*k+j-1] || got.Index[i*k+j] == int32(i) {
				t.Fatalf("row %d is not sorted or lists itself", i)
			}
		}
	}
}

// TestCalibrationMatchesHost: the device's conditional probabilities reach
// log(perplexity) within 1e-5 nats like the host's, and symmetrise to the
// same P.
func TestCalibrationMatchesHost(t *testing.T) {
	g := testBackend(t)
	ctx := context.Background()
	n, d := 5000, 50
	x, _ := synth.Clusters(n, d, 10, 8, 5)
	for _, perp := range []float64{5, 30, 50} {
		k := min(n-1, int(3*perp))
		nb, err := cpu.New(0).KNearest(ctx, x, n, d, k, embed.NeighborsExact, 1)
		if err != nil {
			t.Fatal(err)
		}
		host, _, err := embed.Calibrate(ctx, nb, perp, 0)
		if err != nil {
			t.Fatal(err)
		}
		dev, err := g.Calibrate(ctx, nb, perp)
		if err != nil {
			t.Fatal(err)
		}
		target := math.Log(perp)
		for i := range n {
			h := 0.0
			for _, p := range dev[i*k : (i+1)*k] {
				if p > 0 {
					h -= p * math.Log(p)
				}
			}
			if math.Abs(h-target) > embed.PerplexityTolerance {
				t.Fatalf("perplexity %v row %d: entropy %.8f, target %.8f", perp, i, h, target)
			}
		}
		ph, _ := embed.Symmetrize(ctx, nb, host, 0)
		pd, _ := embed.Symmetrize(ctx, nb, dev, 0)
		if len(ph.Col) != len(pd.Col) {
			t.Fatalf("P has %d entries from the device, %d from the host", len(pd.Col), len(ph.Col))
		}
		for e := range ph.Col {
			if ph.Col[e] != pd.Col[e] || math.Abs(float64(ph.Val[e]-pd.Val[e])) > 1e-4*float64(ph.Val[e])+1e-12 {
				t.Fatalf("P entry %d: device (%d, %g), host (%d, %g)", e, pd.Col[e], pd.Val[e], ph.Col[e], ph.Val[e])
			}
		}
	}
}

// TestKNearestCancels: a cancelled context stops the tiled search within
// a launch.
func TestKNearestCancels(t *testing.T) {
	g := testBackend(t)
	n, d := pick(g, 200000, 50000), 50
	x, _ := synth.Clusters(n, d, 10, 8, 6)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := g.KNearest(ctx, x, n, d, 90, embed.NeighborsExact, 1)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the deadline", err)
	}
	// A launch is sized to the device (knnWork per multiprocessor): ~10 ms
	// on a GPU, a second or so on the emulator's cores.
	if el := time.Since(start); el > time.Duration(pick(g, 2, 10))*time.Second {
		t.Errorf("cancelled search returned after %v", el)
	}
}

// TestFitsRefuses: sizes the device cannot hold or run are ErrDoesNotFit.
func TestFitsRefuses(t *testing.T) {
	g := testBackend(t)
	huge := Problem{N: 1 << 30, D: 30000, U8: true, Components: 50, K: 90, Dims: 2, Repulsion: embed.RepulsionAuto}
	if err := g.Fits(huge); !errors.Is(err, ErrDoesNotFit) {
		t.Errorf("2³⁰ images fit? %v", err)
	}
	if err := g.Fits(Problem{N: 1000, D: maxColumns + 1, U8: true, Components: 50}); !errors.Is(err, ErrDoesNotFit) {
		t.Errorf("%d columns fit? %v", maxColumns+1, err)
	}
	if err := g.Fits(Problem{N: 1000, D: 50, Components: 50, K: 90, Dims: 2, Repulsion: embed.RepulsionAuto}); err != nil {
		t.Errorf("1000×50: %v", err)
	}
}

// TestHoldGivesSameProducts: the PCA passes read a held input from device
// memory and give the same bits as streaming it.
func TestHoldGivesSameProducts(t *testing.T) {
	g := testBackend(t)
	ctx := context.Background()
	pix, _ := synth.Images(12000, 30, 30, 10, 3)
	x := embed.Data{N: 12000, D: 2700, U8: pix}
	mean := make([]float32, x.D)
	for i := range mean {
		mean[i] = 127
	}
	const l = 20
	b := gaussianY(x.D, l, 11)
	streamed, held := make([]float32, x.N*l), make([]float32, x.N*l)
	if err := g.MulRight(ctx, x, mean, b, l, streamed); err != nil {
		t.Fatal(err)
	}
	release, err := g.Hold(ctx, x)
	if err != nil {
		t.Fatalf("hold 32 MB: %v", err)
	}
	if g.heldFor(x) == nil {
		t.Fatal("held input not found")
	}
	if err := g.MulRight(ctx, x, mean, b, l, held); err != nil {
		t.Fatal(err)
	}
	release()
	if g.heldFor(x) != nil {
		t.Fatal("released input still held")
	}
	for i := range streamed {
		if streamed[i] != held[i] {
			t.Fatalf("element %d: held %v, streamed %v", i, held[i], streamed[i])
		}
	}
}
