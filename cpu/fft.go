package cpu

import (
	"context"
	"fmt"
	"math"
)

// fftRepulsion is the interpolation-based repulsion of Linderman, Rachh,
// Hoskins, Steinerberger & Kluger 2019 ("Fast interpolation-based t-SNE for
// improved visualization of single-cell RNA-seq data", Nature Methods 16):
// Y is covered by square boxes with p equispaced interpolation nodes a side;
// each point spreads the charges [1, y1, y2, ‖y‖²] onto the nodes of its box
// with Lagrange weights; the kernel 1/(1+d²)² is convolved with the node
// charges by a zero-padded FFT; the potentials are interpolated back with the
// same weights. From the four potentials φ0..φ3 at y_i:
//
//	Σ_j w_ij² (y_i − y_j) = y_i φ0 − (φ1, φ2)
//	Σ_j w_ij = Σ_j w_ij² (1 + ‖y_i‖² − 2 y_i·y_j + ‖y_j‖²)
//	         = (1+‖y_i‖²) φ0 − 2 y_i·(φ1, φ2) + φ3
//
// so Z comes from the same potentials (minus the N self terms w_ii = 1).
//
// Choices for pure Go (no SIMD, two cores):
//   - The node SPACING h is fixed and the number of boxes grows with the
//     extent of Y, with the padded FFT size rounded up to a power of two
//     (our own radix-2 transform, fft_radix2.go). The kernel's transform
//     depends only on the padded size, so it is cached and recomputed only
//     when the grid grows past a power of two.
//   - The kernel is real and even, so its transform is real: the four real
//     charge grids are packed into two complex ones (1 + i·y1, y2 + i·‖y‖²),
//     and the real and imaginary parts of one inverse transform are the two
//     convolutions.
//   - Row transforms of the all-zero padding rows are skipped in the forward
//     pass and row transforms of discarded output rows in the inverse one;
//     each column is transformed, multiplied and transformed back in one go
//     while it is in cache.
//   - Points are bucketed by box row, so every chunk spreads onto its own
//     grid rows: parallel, no atomics, deterministic.
//
// Coordinates are taken relative to the centre of the grid before they are
// used as charges, which keeps the cancellation in the Z formula small.
type fftRepulsion struct {
	b *Backend
	n int
	h float64 // node spacing
	p int     // interpolation nodes per box side

	mx, my int // nodes per side
	px, py int // padded transform sizes
	nbx    int // boxes per row
	x0, y0 float64
	cx, cy float64

	box      []int32   // per point: box index (row·nbx + col)
	wts      []float64 // per point: p x-weights then p y-weights
	order    []int32   // points by box row
	rowStart []int32
	ca, cb   []complex128 // node charges, my×mx
	ta, tb   []complex128 // transforms, transposed: px×py
	kernel   []float64    // real transform of the kernel, transposed px×py
	kpx, kpy int

	rowFFT, colFFT *fftPlan
	bufs           [][]complex128 // one per chunk
	part           []float64
}

// Default FFT parameters of Step, chosen by measured accuracy against cost
// (TestFFTAccuracy logs the table). The error is in the near field, where
// 1/(1+d²)² has curvature O(1): relative L2 error of the repulsive force on
// 2,000 clustered points, compact / spread layout:
//
//	spacing p  error           padded grid (spread)
//	1/3     3  0.9 % / 1.6 %   512²  (FIt-SNE's default)
//	0.25    4  0.2 % / 0.4 %   512²
//	0.2     3  0.2 % / 0.3 %   1024²
//	0.5     3  3.3 % / 5.2 %   256²
//	0.5     5  12 % / 33 %     (boxes wider than ~1 suffer Runge's phenomenon)
//
// At spacing 1/3 the bias is systematic (short-range repulsion too weak) and
// 1000-step runs ended 6 % above the exact method's KL; at 0.2 they end
// within 2 % (TestMethodsAgree), so Step uses 0.2 with p = 3.
const (
	fftStepOrder   = 3
	fftStepSpacing = 0.2
)

func newFFTRepulsion(b *Backend, n int, h float64, p int) *fftRepulsion {
	nc := 4 * max(b.threads, 1)
	f := &fftRepulsion{
		b:     b,
		n:     n,
		h:     h,
		p:     p,
		box:   make([]int32, n),
		wts:   make([]float64, 2*p*n),
		order: make([]int32, n),
		bufs:  make([][]complex128, nc),
		part:  make([]float64, nc),
	}
	return f
}

// fftMaxGrid bounds the padded grid (complex values per transform, 16 bytes
// each, two of them): a diverged embedding must be an error, not an
// allocation of the whole machine.
const fftMaxGrid = 1 << 25

// geometry lays the grid over y and resizes the buffers when it grew.
func (f *fftRepulsion) geometry(y []float32) error {
	lox, hix := math.Inf(1), math.Inf(-1)
	loy, hiy := math.Inf(1), math.Inf(-1)
	for i := range f.n {
		x, v := float64(y[2*i]), float64(y[2*i+1])
		lox, hix = min(lox, x), max(hix, x)
		loy, hiy = min(loy, v), max(hiy, v)
	}
	bw := f.h * float64(f.p)
	f.nbx = int((hix-lox)/bw) + 1
	nby := int((hiy-loy)/bw) + 1
	f.mx, f.my = f.nbx*f.p, nby*f.p
	// Centre the boxes on the data.
	f.x0 = (lox+hix)/2 - float64(f.nbx)*bw/2
	f.y0 = (loy+hiy)/2 - float64(nby)*bw/2
	f.cx, f.cy = (lox+hix)/2, (loy+hiy)/2
	if !(hix-lox < 1e6 && hiy-loy < 1e6) {
		return fmt.Errorf("cpu: fft repulsion: embedding extent %g × %g is not finite or too large", hix-lox, hiy-loy)
	}
	f.px, f.py = nextPow2(2*f.mx), nextPow2(2*f.my)
	if f.px*f.py > fftMaxGrid {
		return fmt.Errorf("cpu: fft repulsion: embedding extent %g × %g needs a %d×%d grid", hix-lox, hiy-loy, f.px, f.py)
	}
	if cap(f.ca) < f.mx*f.my {
		f.ca = make([]complex128, f.mx*f.my)
		f.cb = make([]complex128, f.mx*f.my)
	}
	f.ca, f.cb = f.ca[:f.mx*f.my], f.cb[:f.mx*f.my]
	if cap(f.ta) < f.px*f.py {
		f.ta = make([]complex128, f.px*f.py)
		f.tb = make([]complex128, f.px*f.py)
	}
	f.ta, f.tb = f.ta[:f.px*f.py], f.tb[:f.px*f.py]
	if cap(f.rowStart) < nby+1 {
		f.rowStart = make([]int32, nby+1)
	}
	f.rowStart = f.rowStart[:nby+1]
	if f.rowFFT == nil || f.rowFFT.n != f.px {
		f.rowFFT = newFFTPlan(f.px)
	}
	if f.colFFT == nil || f.colFFT.n != f.py {
		f.colFFT = newFFTPlan(f.py)
	}
	for c := range f.bufs {
		if cap(f.bufs[c]) < max(f.px, f.py) {
			f.bufs[c] = make([]complex128, max(f.px, f.py))
		}
	}
	return nil
}

// kernelTransform caches the real transform of the kernel on the padded
// grid, transposed (index gx·py + gy).
func (f *fftRepulsion) kernelTransform(ctx context.Context) error {
	if f.kpx == f.px && f.kpy == f.py {
		return nil
	}
	px, py := f.px, f.py
	t := f.ta // scratch; overwritten by the charges afterwards
	for gx := range px {
		dx := float64(gx)
		if gx > px/2 {
			dx = float64(gx - px)
		}
		for gy := range py {
			dy := float64(gy)
			if gy > py/2 {
				dy = float64(gy - py)
			}
			d2 := (dx*dx + dy*dy) * f.h * f.h
			w := 1 / (1 + d2)
			t[gx*py+gy] = complex(w*w, 0)
		}
	}
	err := f.b.parallelFor(ctx, px, 8, func(c, lo, hi int) {
		for gx := lo; gx < hi; gx++ {
			col := t[gx*py : (gx+1)*py]
			f.colFFT.forward(col)
		}
	})
	if err != nil {
		return err
	}
	if cap(f.kernel) < px*py {
		f.kernel = make([]float64, px*py)
	}
	f.kernel = f.kernel[:px*py]
	err = f.b.parallelFor(ctx, py, 8, func(c, lo, hi int) {
		buf := f.bufs[c][:px]
		for gy := lo; gy < hi; gy++ {
			for gx := range px {
				buf[gx] = t[gx*py+gy]
			}
			f.rowFFT.forward(buf)
			for gx := range px {
				f.kernel[gx*py+gy] = real(buf[gx])
			}
		}
	})
	if err != nil {
		return err
	}
	f.kpx, f.kpy = px, py
	return nil
}

// lagrange writes the p Lagrange basis polynomials through the nodes
// k + 0.5 (k < p) evaluated at u into w.
func lagrange(u float64, w []float64) {
	p := len(w)
	for k := range p {
		num, den := 1.0, 1.0
		for l := range p {
			if l != k {
				num *= u - float64(l) - 0.5
				den *= float64(k - l)
			}
		}
		w[k] = num / den
	}
}

func (f *fftRepulsion) repulse(ctx context.Context, y []float32, rep []float64) (float64, error) {
	if err := f.geometry(y); err != nil {
		return 0, err
	}
	if err := f.kernelTransform(ctx); err != nil {
		return 0, err
	}
	p, n := f.p, f.n
	nby := len(f.rowStart) - 1

	// Boxes and interpolation weights.
	err := f.b.parallelFor(ctx, n, 1024, func(_, lo, hi int) {
		invh := 1 / f.h
		for i := lo; i < hi; i++ {
			ux := (float64(y[2*i]) - f.x0) * invh
			uy := (float64(y[2*i+1]) - f.y0) * invh
			bx := min(int(ux)/p, f.nbx-1)
			by := min(int(uy)/p, nby-1)
			f.box[i] = int32(by*f.nbx + bx)
			w := f.wts[2*p*i : 2*p*(i+1)]
			lagrange(ux-float64(bx*p), w[:p])
			lagrange(uy-float64(by*p), w[p:])
		}
	})
	if err != nil {
		return 0, err
	}
	// Bucket the points by box row (counting sort, stable).
	rs := f.rowStart
	clear(rs)
	for _, bi := range f.box {
		rs[int(bi)/f.nbx+1]++
	}
	for r := 1; r <= nby; r++ {
		rs[r] += rs[r-1]
	}
	for i, bi := range f.box {
		r := int(bi) / f.nbx
		f.order[rs[r]] = int32(i)
		rs[r]++
	}
	for r := nby; r > 0; r-- {
		rs[r] = rs[r-1]
	}
	rs[0] = 0

	// Spread the charges; a chunk of box rows owns its p grid rows each.
	mx := f.mx
	err = f.b.parallelFor(ctx, nby, 1, func(_, lo, hi int) {
		clear(f.ca[lo*p*mx : hi*p*mx])
		clear(f.cb[lo*p*mx : hi*p*mx])
		for _, i := range f.order[rs[lo]:rs[hi]] {
			x := float64(y[2*i]) - f.cx
			v := float64(y[2*i+1]) - f.cy
			qa := complex(1, x)
			qb := complex(v, x*x+v*v)
			bi := int(f.box[i])
			bx, by := bi%f.nbx, bi/f.nbx
			w := f.wts[2*p*int(i) : 2*p*(int(i)+1)]
			for a := range p {
				row := (by*p+a)*mx + bx*p
				wy := w[p+a]
				for c := range p {
					s := complex(wy*w[c], 0)
					f.ca[row+c] += s * qa
					f.cb[row+c] += s * qb
				}
			}
		}
	})
	if err != nil {
		return 0, err
	}
	if err := f.convolve(ctx); err != nil {
		return 0, err
	}

	// Interpolate the potentials back and form forces and Z.
	err = f.b.parallelFor(ctx, n, 1024, func(c, lo, hi int) {
		z := 0.0
		for i := lo; i < hi; i++ {
			bi := int(f.box[i])
			bx, by := bi%f.nbx, bi/f.nbx
			w := f.wts[2*p*i : 2*p*(i+1)]
			var pa, pb complex128
			for a := range p {
				row := (by*p+a)*mx + bx*p
				var ra, rb complex128
				for c := range p {
					s := complex(w[c], 0)
					ra += s * f.ca[row+c]
					rb += s * f.cb[row+c]
				}
				s := complex(w[p+a], 0)
				pa += s * ra
				pb += s * rb
			}
			phi0, phi1, phi2, phi3 := real(pa), imag(pa), real(pb), imag(pb)
			x := float64(y[2*i]) - f.cx
			v := float64(y[2*i+1]) - f.cy
			if rep != nil {
				rep[2*i] = x*phi0 - phi1
				rep[2*i+1] = v*phi0 - phi2
			}
			z += (1+x*x+v*v)*phi0 - 2*(x*phi1+v*phi2) + phi3
		}
		f.part[c] = z
	})
	if err != nil {
		return 0, err
	}
	z := 0.0
	for _, s := range f.part[:len(f.b.chunks(n, 1024))] {
		z += s
	}
	return z - float64(n), nil
}

// convolve replaces the node charges ca, cb by their potentials.
func (f *fftRepulsion) convolve(ctx context.Context) error {
	mx, my, px, py := f.mx, f.my, f.px, f.py
	norm := complex(1/float64(px*py), 0)
	// Forward row transforms of the my charge rows (the padding rows are
	// zero and stay zero), written transposed.
	err := f.b.parallelFor(ctx, 2*my, 4, func(c, lo, hi int) {
		buf := f.bufs[c][:px]
		for r := lo; r < hi; r++ {
			src, dst := f.ca, f.ta
			gy := r
			if r >= my {
				src, dst, gy = f.cb, f.tb, r-my
			}
			copy(buf, src[gy*mx:(gy+1)*mx])
			clear(buf[mx:])
			f.rowFFT.forward(buf)
			for gx, v := range buf {
				dst[gx*py+gy] = v
			}
		}
	})
	if err != nil {
		return err
	}
	// Each column: zero its padding, transform, multiply by the kernel's
	// transform, transform back.
	err = f.b.parallelFor(ctx, 2*px, 4, func(c, lo, hi int) {
		for r := lo; r < hi; r++ {
			t, gx := f.ta, r
			if r >= px {
				t, gx = f.tb, r-px
			}
			col := t[gx*py : (gx+1)*py]
			clear(col[my:])
			f.colFFT.forward(col)
			k := f.kernel[gx*py : (gx+1)*py]
			for gy := range col {
				col[gy] *= complex(k[gy], 0)
			}
			f.colFFT.inverse(col)
		}
	})
	if err != nil {
		return err
	}
	// Inverse row transforms of the my rows whose nodes carry points.
	return f.b.parallelFor(ctx, 2*my, 4, func(c, lo, hi int) {
		buf := f.bufs[c][:px]
		for r := lo; r < hi; r++ {
			src, dst := f.ta, f.ca
			gy := r
			if r >= my {
				src, dst, gy = f.tb, f.cb, r-my
			}
			for gx := range buf {
				buf[gx] = src[gx*py+gy]
			}
			f.rowFFT.inverse(buf)
			out := dst[gy*mx : (gy+1)*mx]
			for gx := range out {
				out[gx] = buf[gx] * norm
			}
		}
	})
}

// fftZ estimates Z for KL with a finer FFT grid of its own.
type fftZ struct {
	f *fftRepulsion
}

func (e *fftZ) z(ctx context.Context, y []float32) (float64, error) {
	return e.f.repulse(ctx, y, nil)
}

// KL's Z above klExactMax: in 2-D the FFT interpolation with spacing 0.2 and
// p = 3, in 3-D Barnes-Hut with θ = 0.2 (both fixed, whatever the method of
// Step). Measured by TestKLApproximateZ and TestFFTAccuracy on compact and
// spread layouts: relative error of Z ≤ 1e-4 in 2-D (KL within 1e-4
// absolute) and KL within 3e-4 absolute, 5e-5 relative, in 3-D. The stated
// and tested accuracy is 1e-4 relative on KL.
const (
	fftKLOrder   = 3
	fftKLSpacing = 0.2
	bhKLTheta    = 0.2
)

func newKLZ(b *Backend, n, dims int) zEstimator {
	switch {
	case n <= klExactMax:
		return &exactZ{b: b, n: n, dims: dims}
	case dims == 2:
		return &fftZ{f: newFFTRepulsion(b, n, fftKLSpacing, fftKLOrder)}
	default:
		return &bhZ{t: newBHTree(b, n, dims, bhKLTheta)}
	}
}
