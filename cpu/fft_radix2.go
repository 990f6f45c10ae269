package cpu

import (
	"math"
	"math/bits"
)

// fftPlan is an in-place radix-2 complex FFT of one power-of-two length. It
// holds only read-only tables, so one plan serves every goroutine. It
// replaced gonum's FFTPACK port in the FFT repulsion: that one's generic
// array accessors made a 512-point transform several times slower than this
// plain loop, which mattered more than the extra zero padding that
// power-of-two lengths cost.
type fftPlan struct {
	n   int
	tw  []complex128 // e^{−2πik/n}, k < n/2
	rev []int32      // bit-reversal permutation
}

func newFFTPlan(n int) *fftPlan {
	if n < 1 || n&(n-1) != 0 {
		panic("cpu: fft length must be a power of two")
	}
	p := &fftPlan{n: n, tw: make([]complex128, n/2), rev: make([]int32, n)}
	for k := range p.tw {
		s, c := math.Sincos(-2 * math.Pi * float64(k) / float64(n))
		p.tw[k] = complex(c, s)
	}
	shift := 64 - bits.Len(uint(n-1))
	for i := range p.rev {
		if n > 1 {
			p.rev[i] = int32(bits.Reverse64(uint64(i)) >> shift)
		}
	}
	return p
}

// forward replaces x by its unnormalised DFT, Σ_t x_t e^{−2πikt/n}.
func (p *fftPlan) forward(x []complex128) { p.transform(x, false) }

// inverse replaces x by Σ_k x_k e^{+2πikt/n} (unnormalised).
func (p *fftPlan) inverse(x []complex128) { p.transform(x, true) }

func (p *fftPlan) transform(x []complex128, inv bool) {
	n := p.n
	x = x[:n]
	for i, r := range p.rev {
		if int(r) > i {
			x[i], x[r] = x[r], x[i]
		}
	}
	// First two stages as radix-4 butterflies without multiplications.
	if n >= 4 {
		for s := 0; s < n; s += 4 {
			a, b, c, d := x[s], x[s+1], x[s+2], x[s+3]
			a, b = a+b, a-b
			c, d = c+d, c-d
			// d·(−i) forward, d·(+i) inverse
			if inv {
				d = complex(-imag(d), real(d))
			} else {
				d = complex(imag(d), -real(d))
			}
			x[s], x[s+2] = a+c, a-c
			x[s+1], x[s+3] = b+d, b-d
		}
	} else if n == 2 {
		x[0], x[1] = x[0]+x[1], x[0]-x[1]
		return
	} else {
		return
	}
	for size := 8; size <= n; size <<= 1 {
		half := size >> 1
		step := n / size
		for s := 0; s < n; s += size {
			lo := x[s : s+half]
			hi := x[s+half : s+size]
			for k := range lo {
				w := p.tw[k*step]
				if inv {
					w = complex(real(w), -imag(w))
				}
				h := hi[k]
				t := complex(real(h)*real(w)-imag(h)*imag(w), real(h)*imag(w)+imag(h)*real(w))
				hi[k] = lo[k] - t
				lo[k] += t
			}
		}
	}
}

// nextPow2 is the smallest power of two ≥ n.
func nextPow2(n int) int {
	if n <= 1 {
		return 1
	}
	return 1 << bits.Len(uint(n-1))
}
