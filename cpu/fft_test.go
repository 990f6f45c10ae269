package cpu

import (
	"context"
	"testing"

	"github.com/tsnemap/tsnemap/embed"
	"github.com/tsnemap/tsnemap/internal/testkit"
)

// TestFFTAccuracy logs the error of the FFT repulsion (force and Z) against
// the exact one for several node spacings and orders; the defaults of Step
// and KL were picked from this table.
func TestFFTAccuracy(t *testing.T) {
	if testing.Short() || testkit.Race {
		t.Skip("table for choosing parameters")
	}
	b := New(0)
	tp := newTestProblem(2000, 10, 8, 30, 22)
	ex := &exactRepulsion{b: b, n: tp.n, dims: 2}
	for _, radius := range []float64{3, 30} {
		y := spreadY(tp, 2, radius, 23)
		want := make([]float64, 2*tp.n)
		zw, _ := ex.repulse(context.Background(), y, want)
		for _, c := range []struct {
			h float64
			p int
		}{{1.0 / 3, 3}, {0.5, 3}, {0.5, 4}, {0.75, 4}, {0.5, 5}, {0.25, 4}, {0.2, 3}} {
			f := newFFTRepulsion(b, tp.n, c.h, c.p)
			got := make([]float64, 2*tp.n)
			zg, err := f.repulse(context.Background(), y, got)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("radius %g h %.3f p %d: grid %dx%d force error %.2g, Z error %.2g", radius, c.h, c.p, f.px, f.py, testkit.RelL2(got, want), (zg-zw)/zw)
		}
	}
	_ = embed.RepulsionFFT
}
