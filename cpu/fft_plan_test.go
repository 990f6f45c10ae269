package cpu

import (
	"math"
	"math/cmplx"
	"math/rand/v2"
	"testing"
)

func TestFFTPlanMatchesDFT(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 3, 4, 6, 8, 9, 12, 16, 18, 27, 48, 64, 96, 144, 256, 384, 486} {
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
			work := make([]complex128, n)
			p := newFFTPlan(n)
			if inv {
				p.inverse(got, work)
			} else {
				p.forward(got, work)
			}
			for k := range n {
				if cmplx.Abs(got[k]-want[k]) > 1e-9*float64(n) {
					t.Fatalf("n %d inverse %v: coefficient %d = %v, DFT %v", n, inv, k, got[k], want[k])
				}
			}
		}
	}
}

// fftSize must be the smallest even 2^a·3^b at or above n.
func TestFFTSize(t *testing.T) {
	for _, c := range []struct{ n, want int }{
		{1, 2}, {2, 2}, {3, 4}, {5, 6}, {7, 8}, {10, 12}, {13, 16}, {17, 18}, {19, 24},
		{25, 32}, {33, 36}, {37, 48}, {49, 54}, {55, 64}, {1100, 1152}, {2049, 2304},
	} {
		if got := fftSize(c.n); got != c.want {
			t.Errorf("fftSize(%d) = %d, want %d", c.n, got, c.want)
		}
	}
	for n := 1; n < 5000; n++ {
		s := fftSize(n)
		if s < n || s%2 != 0 || !isFFTSize(s) {
			t.Fatalf("fftSize(%d) = %d", n, s)
		}
		for v := n; v < s; v++ {
			if v%2 == 0 && isFFTSize(v) {
				t.Fatalf("fftSize(%d) = %d, but %d is smaller", n, s, v)
			}
		}
	}
}

// A batched transform must equal the transforms of its columns one by one.
func TestFFTPlanBatch(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{4, 6, 24, 96} {
		for _, batch := range []int{1, 3, 8} {
			p := newFFTPlan(n)
			x := make([]complex128, n*batch)
			for i := range x {
				x[i] = complex(rng.NormFloat64(), rng.NormFloat64())
			}
			for _, inv := range []bool{false, true} {
				got := append([]complex128(nil), x...)
				p.transform(got, make([]complex128, n*batch), batch, inv)
				col := make([]complex128, n)
				for j := range batch {
					for k := range n {
						col[k] = x[k*batch+j]
					}
					p.transform(col, make([]complex128, n), 1, inv)
					for k := range n {
						if cmplx.Abs(got[k*batch+j]-col[k]) > 1e-12*float64(n) {
							t.Fatalf("n %d batch %d inverse %v: transform %d coefficient %d = %v, alone %v", n, batch, inv, j, k, got[k*batch+j], col[k])
						}
					}
				}
			}
		}
	}
}
