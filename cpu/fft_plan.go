package cpu

import (
	"math"
)

// fftPlan is a complex FFT of one length n = 2^a·3^b: Stockham's
// self-sorting formulation (decimation in frequency; Van Loan 1992,
// "Computational Frameworks for the Fast Fourier Transform", §1.7), with
// radix-4 passes while 4 divides what is left, then radix-2 and radix-3.
// Each pass reads one buffer and writes the other in natural order, so
// there is no bit-reversal permutation, and a radix-4 pass does the work of
// two radix-2 passes in one sweep over memory. Lengths with factors of 3
// let the FFT repulsion pad its grid to the next 2^a·3^b instead of the
// next power of two (1536 rather than 2048 for 1,100 nodes).
//
// A plan holds only read-only tables, so one plan serves every goroutine;
// each call brings its own scratch buffer of length n.
//
// It replaced a radix-2 in-place transform (itself a replacement of
// gonum's FFTPACK port, whose generic accessors were several times
// slower than plain loops).
type fftPlan struct {
	n      int
	stages []fftStage
}

// fftStage is one pass: radix r over sub-transforms of length r·m, at
// stride s (the product of the radices before it). fw and iw hold the
// twiddles e^{∓2πi·p·u/(r·m)} at p·(r−1)+u−1 for p < m, 1 ≤ u < r.
type fftStage struct {
	r, m, s int
	fw, iw  []complex128
}

func newFFTPlan(n int) *fftPlan {
	if !isFFTSize(n) {
		panic("cpu: fft length must be 2^a·3^b")
	}
	p := &fftPlan{n: n}
	rest, s := n, 1
	for rest > 1 {
		r := 3
		switch {
		case rest%4 == 0:
			r = 4
		case rest%2 == 0:
			r = 2
		}
		m := rest / r
		st := fftStage{r: r, m: m, s: s, fw: make([]complex128, m*(r-1)), iw: make([]complex128, m*(r-1))}
		for q := range m {
			for u := 1; u < r; u++ {
				sn, cs := math.Sincos(-2 * math.Pi * float64(q*u) / float64(rest))
				st.fw[q*(r-1)+u-1] = complex(cs, sn)
				st.iw[q*(r-1)+u-1] = complex(cs, -sn)
			}
		}
		p.stages = append(p.stages, st)
		rest, s = m, s*r
	}
	return p
}

// isFFTSize reports whether n ≥ 1 is of the form 2^a·3^b.
func isFFTSize(n int) bool {
	if n < 1 {
		return false
	}
	for n%2 == 0 {
		n /= 2
	}
	for n%3 == 0 {
		n /= 3
	}
	return n == 1
}

// fftSize is the smallest even 2^a·3^b ≥ n: a padded length the plan
// takes whose halves mirror (the kernel's transform is stored as a
// quarter).
func fftSize(n int) int {
	best := 2
	for best < n {
		best *= 2
	}
	for t := 6; t < best; t *= 3 {
		v := t
		for v < n {
			v *= 2
		}
		best = min(best, v)
	}
	return best
}

// forward replaces x by its unnormalised DFT, Σ_t x_t e^{−2πikt/n}; work
// is scratch of at least n values.
func (p *fftPlan) forward(x, work []complex128) { p.transform(x, work, 1, false) }

// inverse replaces x by Σ_k x_k e^{+2πikt/n} (unnormalised).
func (p *fftPlan) inverse(x, work []complex128) { p.transform(x, work, 1, true) }

// transform runs batch transforms at once on x, n rows of batch values
// (transform j is x[j], x[batch+j], …): Stockham's stride starts at batch
// instead of 1, so the innermost loop of every pass runs over the batch
// and the first passes no longer run loops of one. work holds n·batch
// values.
func (p *fftPlan) transform(x, work []complex128, batch int, inv bool) {
	nb := p.n * batch
	src, dst := x[:nb], work[:nb]
	for i := range p.stages {
		st := &p.stages[i]
		tw := st.fw
		if inv {
			tw = st.iw
		}
		s := st.s * batch
		switch st.r {
		case 4:
			radix4(src, dst, tw, st.m, s, inv)
		case 2:
			radix2(src, dst, tw, st.m, s)
		default:
			radix3(src, dst, tw, st.m, s, inv)
		}
		src, dst = dst, src
	}
	if len(p.stages)%2 == 1 {
		copy(x[:nb], src)
	}
}

// A pass maps, for p < m and q < s, the r inputs a_t = x[q + s·(p + t·m)]
// to y[q + s·(r·p + u)] = w^{p·u} Σ_t a_t ω_r^{t·u}, with w = e^{∓2πi/(r·m)}
// and ω_r = e^{∓2πi/r}.

func radix4(x, y, tw []complex128, m, s int, inv bool) {
	for p := range m {
		w1, w2, w3 := complex(1, 0), complex(1, 0), complex(1, 0)
		if p > 0 {
			w1, w2, w3 = tw[3*p], tw[3*p+1], tw[3*p+2]
		}
		x0 := x[s*p : s*p+s]
		x1 := x[s*(p+m) : s*(p+m)+s]
		x2 := x[s*(p+2*m) : s*(p+2*m)+s]
		x3 := x[s*(p+3*m) : s*(p+3*m)+s]
		y0 := y[s*4*p : s*4*p+s]
		y1 := y[s*(4*p+1) : s*(4*p+1)+s]
		y2 := y[s*(4*p+2) : s*(4*p+2)+s]
		y3 := y[s*(4*p+3) : s*(4*p+3)+s]
		for q := range x0 {
			a0, a1, a2, a3 := x0[q], x1[q], x2[q], x3[q]
			t0, t1 := a0+a2, a0-a2
			t2, t3 := a1+a3, a1-a3
			// ∓i·t3
			if inv {
				t3 = complex(-imag(t3), real(t3))
			} else {
				t3 = complex(imag(t3), -real(t3))
			}
			y0[q] = t0 + t2
			if p == 0 {
				y1[q], y2[q], y3[q] = t1+t3, t0-t2, t1-t3
				continue
			}
			y1[q] = (t1 + t3) * w1
			y2[q] = (t0 - t2) * w2
			y3[q] = (t1 - t3) * w3
		}
	}
}

func radix2(x, y, tw []complex128, m, s int) {
	for p := range m {
		w := complex(1, 0)
		if p > 0 {
			w = tw[p]
		}
		x0 := x[s*p : s*p+s]
		x1 := x[s*(p+m) : s*(p+m)+s]
		y0 := y[s*2*p : s*2*p+s]
		y1 := y[s*(2*p+1) : s*(2*p+1)+s]
		for q := range x0 {
			a0, a1 := x0[q], x1[q]
			y0[q] = a0 + a1
			y1[q] = (a0 - a1) * w
		}
	}
}

// sin(π/3): ω_3 = −1/2 ∓ i·sin(π/3).
const sinPi3 = 0.86602540378443864676

func radix3(x, y, tw []complex128, m, s int, inv bool) {
	c := -sinPi3
	if inv {
		c = sinPi3
	}
	for p := range m {
		w1, w2 := complex(1, 0), complex(1, 0)
		if p > 0 {
			w1, w2 = tw[2*p], tw[2*p+1]
		}
		x0 := x[s*p : s*p+s]
		x1 := x[s*(p+m) : s*(p+m)+s]
		x2 := x[s*(p+2*m) : s*(p+2*m)+s]
		y0 := y[s*3*p : s*3*p+s]
		y1 := y[s*(3*p+1) : s*(3*p+1)+s]
		y2 := y[s*(3*p+2) : s*(3*p+2)+s]
		for q := range x0 {
			a0, a1, a2 := x0[q], x1[q], x2[q]
			t1 := a1 + a2
			t2 := a0 - complex(0.5*real(t1), 0.5*imag(t1))
			d := a1 - a2
			// i·c·(a1 − a2)
			t3 := complex(-c*imag(d), c*real(d))
			y0[q] = a0 + t1
			y1[q] = (t2 + t3) * w1
			y2[q] = (t2 - t3) * w2
		}
	}
}
