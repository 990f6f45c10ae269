package cpu

import (
	"math"
	"math/cmplx"
	"math/rand/v2"
	"testing"
)

func TestFFTPlanMatchesDFT(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 4, 8, 16, 64, 256} {
		x := make([]complex128, n)
		for i := range x {
			x[i] = complex(rng.NormFloat64(), rng.NormFloat64())
		}
		for _, inv := range []bool{false, true} {
			sign := -1.0
			if inv {
				sign = 1
			}
			want := make([]complex128, n)
			for k := range n {
				for j := range n {
					want[k] += x[j] * cmplx.Exp(complex(0, sign*2*math.Pi*float64(j*k)/float64(n)))
				}
			}
			got := append([]complex128(nil), x...)
			p := newFFTPlan(n)
			if inv {
				p.inverse(got)
			} else {
				p.forward(got)
			}
			for k := range n {
				if cmplx.Abs(got[k]-want[k]) > 1e-9*float64(n) {
					t.Fatalf("n %d inverse %v: coefficient %d = %v, DFT %v", n, inv, k, got[k], want[k])
				}
			}
		}
	}
}
