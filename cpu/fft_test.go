package cpu

import (
	"context"
	"math"
	"testing"

	"github.com/tsnemap/tsnemap/internal/testkit"
)

// TestFFTAccuracy holds the FFT repulsion (force and Z) to the errors
// measured against the exact sums on 2,000 clustered points, compact and
// spread: the table in fft.go that the defaults of Step and KL were picked
// from, with headroom of about 1.5×. The bounded cases check that a layout
// wider than maxSide nodes at spacing h gets a grid of at most maxSide
// nodes a side, at a spacing grown to fit, and the accuracy that spacing
// has.
func TestFFTAccuracy(t *testing.T) {
	if testkit.Race {
		t.Skip("2,000-point exact reference; too slow under the race detector")
	}
	b := New(0)
	tp := newTestProblem(2000, 10, 8, 30, 22)
	ex := &exactRepulsion{b: b, n: tp.n, dims: 2}
	cases := []struct {
		radius  float64
		h       float64
		p       int
		maxSide int
		force   float64 // bound on the relative L2 error of the force
		z       float64 // bound on the relative error of Z
	}{
		{3, fftStepSpacing, fftStepOrder, 0, 0.003, 5e-5},
		{30, fftStepSpacing, fftStepOrder, 0, 0.005, 2e-4},
		{100, fftStepSpacing, fftStepOrder, 0, 0.005, 2e-4},
		{3, 1.0 / 3, 3, 0, 0.015, 2e-5},
		{30, 1.0 / 3, 3, 0, 0.025, 1.2e-3},
		{30, 0.5, 3, 0, 0.08, 1.2e-3},
		// Bounded: radius 100 spans ~200, 1000 nodes at 0.2; 512 allowed.
		{100, fftStepSpacing, fftStepOrder, 512, 0.03, 1.2e-3},
		// Bounded but fits: the spacing stays h.
		{3, fftStepSpacing, fftStepOrder, 512, 0.003, 5e-5},
	}
	wants := map[float64][]float64{}
	zws := map[float64]float64{}
	for _, c := range cases {
		y := spreadY(tp, 2, c.radius, 23)
		want, ok := wants[c.radius]
		if !ok {
			want = make([]float64, 2*tp.n)
			zw, err := ex.repulse(context.Background(), y, want)
			if err != nil {
				t.Fatal(err)
			}
			wants[c.radius], zws[c.radius] = want, zw
		}
		f := newFFTRepulsion(b, tp.n, c.h, c.p, c.maxSide)
		got := make([]float64, 2*tp.n)
		zg, err := f.repulse(context.Background(), y, got)
		if err != nil {
			t.Fatal(err)
		}
		fe, ze := testkit.RelL2(got, want), (zg-zws[c.radius])/zws[c.radius]
		t.Logf("radius %g h %.3f p %d maxSide %d: spacing %.3f, %d×%d nodes, grid %d×%d, force error %.2g, Z error %.2g",
			c.radius, c.h, c.p, c.maxSide, f.hs, f.mx, f.my, f.px, f.py, fe, ze)
		if !(fe <= c.force) || !(math.Abs(ze) <= c.z) {
			t.Errorf("radius %g h %.3f p %d maxSide %d: force error %.2g (want ≤ %g), Z error %.2g (want ≤ %g)",
				c.radius, c.h, c.p, c.maxSide, fe, c.force, ze, c.z)
		}
		switch {
		case c.maxSide > 0 && max(f.mx, f.my) > c.maxSide:
			t.Errorf("maxSide %d: grid of %d×%d nodes", c.maxSide, f.mx, f.my)
		case c.maxSide > 0 && c.radius > 50 && !(f.hs > c.h):
			t.Errorf("maxSide %d, radius %g: spacing %g did not grow", c.maxSide, c.radius, f.hs)
		case c.radius < 10 && f.hs != c.h:
			t.Errorf("radius %g: spacing %g, want %g (the grid fits)", c.radius, f.hs, c.h)
		}
	}
}

// KL's Z in 2-D takes the FFT on compact layouts and Barnes-Hut at θ = 0.2
// on spread ones (klZ2). Measured relative errors of Z: FFT 9e-5 and 4e-5,
// Barnes-Hut 3.2e-4 and 1.3e-4 (so KL within 3.2e-4 absolute, 8e-5
// relative: KL's stated 1e-4 relative, checked by TestKLApproximateZ).
func TestKLZ2(t *testing.T) {
	if testkit.Race {
		t.Skip("3,500-point exact reference; too slow under the race detector")
	}
	b := New(0)
	tp := newTestProblem(klExactMax+500, 10, 8, 30, 10)
	ex := &exactZ{b: b, n: tp.n, dims: 2}
	cases := []struct {
		radius float64
		fft    bool    // the FFT's grid is within klFFTGrid·N nodes
		bound  float64 // on the relative error of Z
	}{{2, true, 1.5e-4}, {5, true, 1.5e-4}, {40, false, 5e-4}, {150, false, 5e-4}}
	for _, c := range cases {
		y := spreadY(tp, 2, c.radius, 11)
		want, err := ex.z(context.Background(), y)
		if err != nil {
			t.Fatal(err)
		}
		e := newKLZ(b, tp.n, 2, nil).(*klZ2)
		got, err := e.z(context.Background(), y)
		if err != nil {
			t.Fatal(err)
		}
		rel := (got - want) / want
		t.Logf("radius %g: Z %.6g exact %.6g, error %.2g, barnes-hut %v", c.radius, got, want, rel, e.bh != nil)
		if !(math.Abs(rel) <= c.bound) {
			t.Errorf("radius %g: Z relative error %.2g, want ≤ %g", c.radius, rel, c.bound)
		}
		if (e.bh == nil) != c.fft {
			t.Errorf("radius %g: barnes-hut used %v, want %v", c.radius, e.bh != nil, !c.fft)
		}
	}
}
