package cpu

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"testing"

	"github.com/tsnemap/tsnemap/embed"
	"github.com/tsnemap/tsnemap/internal/testkit"
)

func mustOptimizer(t testing.TB, b *Backend, p *embed.CSR, y0 []float32, dims int, method embed.Repulsion) *optimizer {
	t.Helper()
	o, err := newOptimizer(context.Background(), b, p, y0, embed.OptimizerConfig{N: p.N, Dims: dims, Repulsion: method, Theta: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	return o.(*optimizer)
}

// The reference gradient must be the derivative of the reference KL.
func TestExactGradientIsDerivativeOfKL(t *testing.T) {
	for _, dims := range []int{2, 3} {
		tp := newTestProblem(60, 5, 3, 15, 1)
		y := toFloat64(spreadY(tp, dims, 3, 2))
		grad, _ := embed.ExactGradient(tp.p, y, dims, 1)
		fd := make([]float64, len(y))
		const h = 1e-5
		for k := range y {
			orig := y[k]
			y[k] = orig + h
			up := embed.ExactKL(tp.p, y, dims)
			y[k] = orig - h
			down := embed.ExactKL(tp.p, y, dims)
			y[k] = orig
			fd[k] = (up - down) / (2 * h)
		}
		if e := testkit.RelL2(grad, fd); e > 1e-4 {
			t.Errorf("dims %d: gradient vs finite differences: relative error %.3g", dims, e)
		}
	}
}

func TestExactGradientMatchesReference(t *testing.T) {
	b := New(0)
	for _, dims := range []int{2, 3} {
		tp := newTestProblem(300, 8, 4, 30, 3)
		y0 := spreadY(tp, dims, 8, 4)
		o := mustOptimizer(t, b, tp.p, y0, dims, embed.RepulsionExact)
		got := make([]float64, len(y0))
		if err := o.gradient(context.Background(), 4, got); err != nil {
			t.Fatal(err)
		}
		want, _ := embed.ExactGradient(tp.p, toFloat64(y0), dims, 4)
		if e := testkit.RelL2(got, want); e > 1e-5 {
			t.Errorf("dims %d: exact gradient vs reference: relative error %.3g", dims, e)
		}
	}
}

// Approximate gradients against the float64 reference on 2,000 clustered
// points, as the relative L2 error of the whole gradient vector. Barnes-Hut
// with θ = 0.5 replaces each far cell by its centre of mass, an error second
// order in width/distance per cell; measured 0.5–0.9 % here, as in van der
// Maaten's implementation. The FFT interpolation (p = 3 nodes per box,
// spacing 1/3, FIt-SNE's defaults) measured 0.9 % on a compact and 1.6 % on
// a spread layout: the near field (d < 1) of 1/(1+d²)² is what quadratic
// interpolation misses. Both are tested at 3 %: loose enough for other data,
// tight enough that a wrong cell, weight or kernel (errors of 10 % and more)
// fails.
func TestApproximateGradients(t *testing.T) {
	b := New(0)
	n := 2000
	if testing.Short() || testkit.Race {
		n = 800
	}
	tp := newTestProblem(n, 10, 8, 90, 5)
	cases := []struct {
		dims   int
		method embed.Repulsion
		radius float64
		tol    float64
	}{
		{2, embed.RepulsionBarnesHut, 30, 3e-2},
		{2, embed.RepulsionBarnesHut, 3, 3e-2},
		{3, embed.RepulsionBarnesHut, 30, 3e-2},
		{3, embed.RepulsionBarnesHut, 3, 3e-2},
		{2, embed.RepulsionFFT, 30, 3e-2},
		{2, embed.RepulsionFFT, 3, 3e-2},
	}
	for _, c := range cases {
		if testkit.Race && c.radius > 10 {
			continue
		}
		t.Run(fmt.Sprintf("%s/%dd/r%g", c.method, c.dims, c.radius), func(t *testing.T) {
			y0 := spreadY(tp, c.dims, c.radius, 6)
			o := mustOptimizer(t, b, tp.p, y0, c.dims, c.method)
			got := make([]float64, len(y0))
			if err := o.gradient(context.Background(), 1, got); err != nil {
				t.Fatal(err)
			}
			want, _ := embed.ExactGradient(tp.p, toFloat64(y0), c.dims, 1)
			e := testkit.RelL2(got, want)
			t.Logf("relative L2 error %.3g", e)
			if e > c.tol {
				t.Errorf("relative L2 error %.3g > %g", e, c.tol)
			}
		})
	}
}

func TestKLMatchesReference(t *testing.T) {
	b := New(0)
	for _, dims := range []int{2, 3} {
		tp := newTestProblem(400, 8, 4, 30, 8)
		y0 := spreadY(tp, dims, 10, 9)
		o := mustOptimizer(t, b, tp.p, y0, dims, embed.RepulsionBarnesHut)
		got, err := o.KL(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		want := embed.ExactKL(tp.p, toFloat64(y0), dims)
		if e := math.Abs(got-want) / want; e > 1e-4 {
			t.Errorf("dims %d: KL %v, reference %v (relative error %.3g)", dims, got, want, e)
		}
	}
}

// Above klExactMax, KL's Z is approximated; its stated accuracy is 1e-4
// relative on Z, i.e. ≤ 1e-4 absolute on KL.
func TestKLApproximateZ(t *testing.T) {
	if testing.Short() || testkit.Race {
		t.Skip("O(N²) reference at N > klExactMax")
	}
	b := New(0)
	n := klExactMax + 500
	tp := newTestProblem(n, 10, 8, 30, 10)
	for _, dims := range []int{2, 3} {
		for _, radius := range []float64{2, 40} {
			y0 := spreadY(tp, dims, radius, 11)
			o := mustOptimizer(t, b, tp.p, y0, dims, embed.RepulsionAuto)
			got, err := o.KL(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			want := embed.ExactKL(tp.p, toFloat64(y0), dims)
			t.Logf("dims %d radius %g: KL %.6f reference %.6f, error %.2g", dims, radius, got, want, got-want)
			if math.Abs(got-want) > 1e-4*max(1, want) {
				t.Errorf("dims %d radius %g: KL %v, reference %v", dims, radius, got, want)
			}
		}
	}
}

func run(t testing.TB, o *optimizer, steps int) {
	t.Helper()
	for it := range steps {
		if err := o.Step(context.Background(), schedule(o.n, it)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestKLDecreases(t *testing.T) {
	b := New(0)
	n := 500
	if testkit.Race {
		n = 150
	}
	tp := newTestProblem(n, 10, 5, 30, 12)
	for _, c := range []struct {
		dims   int
		method embed.Repulsion
	}{{2, embed.RepulsionExact}, {2, embed.RepulsionBarnesHut}, {2, embed.RepulsionFFT}, {3, embed.RepulsionBarnesHut}, {2, embed.RepulsionAuto}} {
		if testkit.Race && c.method == embed.RepulsionFFT {
			continue // its grid grows with the layout, not N: minutes under -race
		}
		o := mustOptimizer(t, b, tp.p, initialY(tp.n, c.dims, 13), c.dims, c.method)
		kl0, _ := o.KL(context.Background())
		run(t, o, 250)
		kl1, _ := o.KL(context.Background())
		for it := 250; it < 400; it++ {
			if err := o.Step(context.Background(), schedule(o.n, it)); err != nil {
				t.Fatal(err)
			}
		}
		kl2, err := o.KL(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		y := make([]float32, tp.n*c.dims)
		o.Coordinates(y)
		ref := embed.ExactKL(tp.p, toFloat64(y), c.dims)
		t.Logf("%s %dd: KL %.4f → %.4f → %.4f (reference %.4f)", c.method, c.dims, kl0, kl1, kl2, ref)
		if !(kl1 < kl0 && kl2 < kl1) {
			t.Errorf("%s %dd: KL did not decrease: %v, %v, %v", c.method, c.dims, kl0, kl1, kl2)
		}
		if math.Abs(kl2-ref) > 1e-4*ref {
			t.Errorf("%s %dd: KL %v, reference %v", c.method, c.dims, kl2, ref)
		}
		// Recentred every step.
		var mean [3]float64
		for i := range tp.n {
			for d := range c.dims {
				mean[d] += float64(y[i*c.dims+d]) / float64(tp.n)
			}
		}
		for d := range c.dims {
			if math.Abs(mean[d]) > 1e-3 {
				t.Errorf("%s %dd: centroid %v after Step", c.method, c.dims, mean)
			}
		}
	}
}

// Runs with the three repulsion methods from the same start reach KLs within
// 3% of each other. It takes minutes on two cores (1000 exact O(N²) steps and
// 1000 FFT steps on a fine grid), so it runs only with TSNEMAP_LONG_TESTS=1.
func TestMethodsAgree(t *testing.T) {
	if testing.Short() || testkit.Race || os.Getenv("TSNEMAP_LONG_TESTS") == "" {
		t.Skip("three runs of 1000 steps at N = 2000; set TSNEMAP_LONG_TESTS=1")
	}
	b := New(0)
	tp := newTestProblem(2000, 10, 8, 90, 14)
	y0 := initialY(tp.n, 2, 15)
	kl := map[embed.Repulsion]float64{}
	for _, m := range []embed.Repulsion{embed.RepulsionExact, embed.RepulsionBarnesHut, embed.RepulsionFFT, embed.RepulsionAuto} {
		o := mustOptimizer(t, b, tp.p, y0, 2, m)
		run(t, o, 1000)
		v, err := o.KL(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		kl[m] = v
	}
	t.Logf("KL after 1000 steps: %v", kl)
	for a, ka := range kl {
		for c, kc := range kl {
			if math.Abs(ka-kc) > 0.03*min(ka, kc) {
				t.Errorf("KL %s %v vs %s %v: more than 3%% apart", a, ka, c, kc)
			}
		}
	}
}

func TestDeterministic(t *testing.T) {
	b := New(2)
	tp := newTestProblem(700, 6, 4, 30, 16)
	for _, c := range []struct {
		dims   int
		method embed.Repulsion
	}{{2, embed.RepulsionExact}, {2, embed.RepulsionBarnesHut}, {2, embed.RepulsionFFT}, {3, embed.RepulsionBarnesHut}, {3, embed.RepulsionExact}} {
		var out [2][]float32
		var kls [2]float64
		for r := range 2 {
			o := mustOptimizer(t, b, tp.p, initialY(tp.n, c.dims, 17), c.dims, c.method)
			run(t, o, 30)
			out[r] = make([]float32, tp.n*c.dims)
			if err := o.Coordinates(out[r]); err != nil {
				t.Fatal(err)
			}
			kls[r], _ = o.KL(context.Background())
		}
		for i := range out[0] {
			if math.Float32bits(out[0][i]) != math.Float32bits(out[1][i]) {
				t.Fatalf("%s %dd: coordinate %d differs between identical runs: %v vs %v", c.method, c.dims, i, out[0][i], out[1][i])
			}
		}
		if kls[0] != kls[1] {
			t.Errorf("%s %dd: KL differs between identical runs", c.method, c.dims)
		}
	}
}

func TestCancel(t *testing.T) {
	b := New(0)
	tp := newTestProblem(300, 6, 3, 30, 18)
	for _, m := range []embed.Repulsion{embed.RepulsionExact, embed.RepulsionBarnesHut, embed.RepulsionFFT} {
		o := mustOptimizer(t, b, tp.p, initialY(tp.n, 2, 19), 2, m)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := o.Step(ctx, schedule(tp.n, 0)); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: Step with cancelled context: %v", m, err)
		}
		if _, err := o.KL(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: KL with cancelled context: %v", m, err)
		}
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
		if err := o.Step(context.Background(), schedule(tp.n, 0)); err == nil {
			t.Errorf("%s: Step after Close succeeded", m)
		}
	}
}

func TestBadInputs(t *testing.T) {
	b := New(0)
	tp := newTestProblem(50, 4, 2, 10, 20)
	y := initialY(50, 2, 21)
	nan := append([]float32(nil), y...)
	nan[7] = float32(math.NaN())
	badCol := *tp.p
	badCol.Col = append([]int32(nil), tp.p.Col...)
	badCol.Col[3] = 50
	shortPtr := *tp.p
	shortPtr.RowPtr = tp.p.RowPtr[:10]
	cfg := embed.OptimizerConfig{N: 50, Dims: 2, Repulsion: embed.RepulsionExact, Theta: 0.5}
	cases := []struct {
		name string
		p    *embed.CSR
		y    []float32
		cfg  embed.OptimizerConfig
	}{
		{"dims 4", tp.p, y, embed.OptimizerConfig{N: 50, Dims: 4, Repulsion: embed.RepulsionExact}},
		{"short y", tp.p, y[:99], cfg},
		{"N mismatch", tp.p, y[:98], embed.OptimizerConfig{N: 49, Dims: 2, Repulsion: embed.RepulsionExact}},
		{"NaN y", tp.p, nan, cfg},
		{"nil P", nil, y, cfg},
		{"column out of range", &badCol, y, cfg},
		{"short row pointers", &shortPtr, y, cfg},
		{"fft in 3-D", tp.p, initialY(50, 3, 1), embed.OptimizerConfig{N: 50, Dims: 3, Repulsion: embed.RepulsionFFT}},
		{"unknown method", tp.p, y, embed.OptimizerConfig{N: 50, Dims: 2, Repulsion: "magic"}},
		{"negative theta", tp.p, y, embed.OptimizerConfig{N: 50, Dims: 2, Repulsion: embed.RepulsionBarnesHut, Theta: -1}},
	}
	for _, c := range cases {
		if _, err := newOptimizer(context.Background(), b, c.p, c.y, c.cfg); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
	if _, err := newOptimizer(context.Background(), b, tp.p, y, cfg); err != nil {
		t.Errorf("valid input: %v", err)
	}
}

// Auto in 2-D switches between FFT (compact layouts) and Barnes-Hut
// (spread ones) and always names the method it used.
func TestAutoHybrid(t *testing.T) {
	b := New(0)
	tp := newTestProblem(1000, 6, 4, 30, 24)
	for _, c := range []struct {
		name string
		y0   []float32
		want embed.Repulsion
	}{
		{"initial", initialY(tp.n, 2, 25), embed.RepulsionFFT},
		{"spread", spreadY(tp, 2, 60, 25), embed.RepulsionBarnesHut},
	} {
		o := mustOptimizer(t, b, tp.p, c.y0, 2, embed.RepulsionAuto)
		if err := o.Step(context.Background(), schedule(tp.n, 300)); err != nil {
			t.Fatal(err)
		}
		if got := o.Repulsion(); got != c.want {
			t.Errorf("%s layout: auto used %s, want %s", c.name, got, c.want)
		}
	}
}

func TestAutoNeverAuto(t *testing.T) {
	for _, dims := range []int{2, 3} {
		for _, n := range []int{10, 1000, 5000, 100000} {
			if m := autoRepulsion(n, dims); m == embed.RepulsionAuto || (dims == 3 && m == embed.RepulsionFFT) {
				t.Errorf("auto(%d, %d) = %s", n, dims, m)
			}
		}
	}
}
