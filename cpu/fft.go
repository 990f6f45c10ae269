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
// The grid:
//   - The node SPACING is h while the layout is small enough, and the number
//     of boxes grows with its extent. Past maxSide nodes a side the boxes are
//     sized to the layout instead (the spacing grows in steps of 2^(1/8), so
//     the kernel's transform is recomputed only when a step is crossed):
//     memory and work are bounded whatever the layout does. FIt-SNE and
//     openTSNE bound the box width from below (intervals per unit of
//     extent, at least min_num_intervals boxes; Linderman et al. 2019,
//     Poličar, Stražar & Zupan 2024, "openTSNE", JMLR 25); we bound the
//     grid from above, and the spacing stays h wherever the grid allows.
//   - The padded FFT size is the smallest even 2^a·3^b ≥ 2·nodes (our own
//     Stockham radix-4/2/3 transform, fft_plan.go): on average ~1.2×
//     the nodes a side rather than the ~1.45× of the next power of two, so
//     ~0.7× the padded nodes (0.36× for a 258×294-node grid: 576×648
//     instead of 1024²).
//   - The kernel is real and even, so its transform is real and even: only
//     its quarter (px/2+1)×(py/2+1) is computed and kept. The four real
//     charge grids are packed into two complex ones (1 + i·y1, y2 + i·‖y‖²),
//     and the real and imaginary parts of one inverse transform are the two
//     convolutions.
//   - Only the my rows that carry nodes are stored (my × px each grid, not
//     py × px): the column transforms gather a few columns at a time into a
//     per-chunk buffer of length py, zero the padding there, and scatter
//     back only the my rows whose potentials are read. This halves the
//     grids, and the zero padding rows are never transformed.
//   - Points are bucketed by box row, so every chunk spreads onto its own
//     grid rows: parallel, no atomics, deterministic.
//
// Coordinates are taken relative to the centre of the grid before they are
// used as charges, which keeps the cancellation in the Z formula small.
type fftRepulsion struct {
	b       *Backend
	n       int
	h       float64 // finest node spacing
	p       int     // interpolation nodes per box side
	maxSide int     // most nodes per grid side; 0: no bound but fftMaxGrid

	hs       float64 // spacing of the current grid, ≥ h
	mx, my   int     // nodes per side
	px, py   int     // padded transform sizes
	nbx, nby int     // boxes per row and per column
	x0, y0   float64
	cx, cy   float64

	boxRow   []int32   // per point: the row of its box
	lagInv   []float64 // lagrangeInv(p)
	order    []int32   // points by box row
	rowStart []int32
	// ga, gb: my rows of px values: the node charges (zero beyond mx),
	// then their transforms, then the potentials.
	ga, gb   []complex128
	kernel   []float64 // real transform of the kernel, (px/2+1)×(py/2+1), index gx·(py/2+1)+gy
	kpx, kpy int
	khs      float64

	rowFFT, colFFT *fftPlan
	bufs           [][]complex128 // one per chunk
	works          [][]complex128 // one per chunk: the transforms' scratch
	part           []float64
}

// Default FFT parameters of Step, chosen by measured accuracy against cost
// (TestFFTAccuracy checks the table). The error is in the near field, where
// 1/(1+d²)² has curvature O(1): relative L2 error of the repulsive force on
// 2,000 clustered points, compact / spread layout:
//
//	spacing p  error           padded grid (spread)
//	1/3     3  0.9 % / 1.6 %   512²  (FIt-SNE's default)
//	0.25    4  0.2 % / 0.4 %   512²
//	0.2     3  0.2 % / 0.3 %   1024²
//	0.5     3  3.3 % / 5.2 %   256²
//	0.75    3  14 % / 19 %     256²
//	0.5     5  12 % / 33 %     (boxes wider than ~1 suffer Runge's phenomenon)
//
// At spacing 1/3 the bias is systematic (short-range repulsion too weak) and
// 1000-step runs ended 6 % above the exact method's KL; at 0.2 they end
// within 2 % (TestMethodsAgree), so Step uses 0.2 with p = 3.
//
// More nodes per box do not buy a coarser grid: the kernel has poles at
// d = ±i, so polynomial interpolation over boxes wider than ~1 diverges
// (Runge's phenomenon). Same 2,000 points, radius 30, force / Z error:
//
//	spacing p  force   Z        spacing p  force   Z
//	0.2     3  0.32 %  1e-4     0.35    5  2.0 %   3e-3
//	0.25    4  0.38 %  6e-4     0.4     5  4.8 %   9e-3
//	0.3     4  0.72 %  8e-4     0.4     6  12 %    7e-3
//	0.3     5  0.90 %  1.3e-3   0.5     6  76 %    7e-3
//
// So the grid's node count is set by the spacing the near field needs,
// ~(extent/0.2)², whatever p.
const (
	fftStepOrder   = 3
	fftStepSpacing = 0.2
)

// fftMaxSide bounds the nodes per grid side of Step's and KL's FFT for n
// points: max(1024, √(2n)), so the padded grid has at most ~8n nodes and
// at least 2048² (two grids of 1024 × 2048 complex values, 67 MB): memory and work
// per iteration stay O(n) whatever the layout does. Within the bound the
// spacing is the one chosen for accuracy (0.2, a layout up to ~205 wide
// at 70,000 points); past it, Z's error grows to ~5e-4 at spacing 1/3
// (TestFFTAccuracy), far below the run-to-run spread of KL.
func fftMaxSide(n int) int {
	return max(1024, int(math.Ceil(math.Sqrt(2*float64(n)))))
}

// fftSpacingStep is the factor by which the spacing grows past maxSide:
// 2^(1/8).
const fftSpacingStep = 1.0905077326652577

// fftColBlock is how many grid columns a column pass transforms at once
// (as one batch, fftPlan.transform): 8 complex values are two cache lines
// of each row, and py rows of them stay in the per-core cache.
const fftColBlock = 8

func newFFTRepulsion(b *Backend, n int, h float64, p, maxSide int) *fftRepulsion {
	if p < 1 || p > fftMaxOrder {
		panic("cpu: fft repulsion: nodes per box side out of range")
	}
	nc := 4 * max(b.threads, 1)
	f := &fftRepulsion{
		b:       b,
		n:       n,
		h:       h,
		p:       p,
		maxSide: maxSide,
		boxRow:  make([]int32, n),
		lagInv:  lagrangeInv(p),
		order:   make([]int32, n),
		bufs:    make([][]complex128, nc),
		works:   make([][]complex128, nc),
		part:    make([]float64, nc),
	}
	return f
}

// fftMaxGrid bounds the padded grid (complex values per transform): a
// diverged embedding must be an error, not an allocation of the whole
// machine.
const fftMaxGrid = 1 << 25

// spacing is the node spacing for a layout of the given extent: h, or
// larger by whole steps of fftSpacingStep until the grid fits maxSide.
func (f *fftRepulsion) spacing(extent float64) float64 {
	hs := f.h
	if f.maxSide <= 0 {
		return hs
	}
	for (int(extent/(hs*float64(f.p)))+1)*f.p > f.maxSide {
		hs *= fftSpacingStep
	}
	return hs
}

// bounds is the bounding box of the n 2-D points y.
func bounds(y []float32, n int) (lox, hix, loy, hiy float64) {
	lox, hix = math.Inf(1), math.Inf(-1)
	loy, hiy = math.Inf(1), math.Inf(-1)
	for i := range n {
		x, v := float64(y[2*i]), float64(y[2*i+1])
		lox, hix = min(lox, x), max(hix, x)
		loy, hiy = min(loy, v), max(hiy, v)
	}
	return lox, hix, loy, hiy
}

// paddedNodes is the size of the padded transform (px·py) that geometry
// would lay over y, spacing bound included; ok is false for a layout
// geometry would reject as not finite.
func (f *fftRepulsion) paddedNodes(y []float32) (nodes int, ok bool) {
	lox, hix, loy, hiy := bounds(y, f.n)
	ex, ey := hix-lox, hiy-loy
	if !(ex < 1e6 && ey < 1e6) {
		return 0, false
	}
	bw := f.spacing(max(ex, ey)) * float64(f.p)
	px := fftSize(2 * (int(ex/bw) + 1) * f.p)
	py := fftSize(2 * (int(ey/bw) + 1) * f.p)
	return px * py, true
}

// geometry lays the grid over y and resizes the buffers when it grew.
func (f *fftRepulsion) geometry(y []float32) error {
	lox, hix, loy, hiy := bounds(y, f.n)
	if !(hix-lox < 1e6 && hiy-loy < 1e6) {
		return fmt.Errorf("cpu: fft repulsion: embedding extent %g × %g is not finite or too large", hix-lox, hiy-loy)
	}
	f.hs = f.spacing(max(hix-lox, hiy-loy))
	bw := f.hs * float64(f.p)
	f.nbx = int((hix-lox)/bw) + 1
	f.nby = int((hiy-loy)/bw) + 1
	f.mx, f.my = f.nbx*f.p, f.nby*f.p
	// Centre the boxes on the data.
	f.x0 = (lox+hix)/2 - float64(f.nbx)*bw/2
	f.y0 = (loy+hiy)/2 - float64(f.nby)*bw/2
	f.cx, f.cy = (lox+hix)/2, (loy+hiy)/2
	f.px, f.py = fftSize(2*f.mx), fftSize(2*f.my)
	if f.px*f.py > fftMaxGrid {
		return fmt.Errorf("cpu: fft repulsion: embedding extent %g × %g needs a %d×%d grid", hix-lox, hiy-loy, f.px, f.py)
	}
	f.ga, f.gb = growComplex(f.ga, f.my*f.px), growComplex(f.gb, f.my*f.px)
	if cap(f.rowStart) < f.nby+1 {
		f.rowStart = make([]int32, f.nby+1)
	}
	f.rowStart = f.rowStart[:f.nby+1]
	if f.rowFFT == nil || f.rowFFT.n != f.px {
		f.rowFFT = newFFTPlan(f.px)
	}
	if f.colFFT == nil || f.colFFT.n != f.py {
		f.colFFT = newFFTPlan(f.py)
	}
	for c := range f.bufs {
		f.bufs[c] = growComplex(f.bufs[c], max(f.px, fftColBlock*f.py))
		f.works[c] = growComplex(f.works[c], max(f.px, fftColBlock*f.py))
	}
	return nil
}

// growComplex returns s resized to n, reallocated only when it must grow
// (the old array is dropped first, so it can be collected before the new
// one is made) with a quarter of headroom.
func growComplex(s []complex128, n int) []complex128 {
	if cap(s) < n {
		// A layout that expands grows its grid a little at a time:
		// a quarter of headroom spares most reallocations (each leaves
		// the old array as garbage until the next collection).
		s = nil
		s = make([]complex128, n, n+n/4)
	}
	return s[:n]
}

// kernelTransform caches the real transform of the kernel on the padded
// grid: the quarter gx ≤ px/2, gy ≤ py/2 (the rest mirrors it).
func (f *fftRepulsion) kernelTransform(ctx context.Context) error {
	if f.kpx == f.px && f.kpy == f.py && f.khs == f.hs {
		return nil
	}
	px, py := f.px, f.py
	hx, hy := px/2+1, py/2+1
	if cap(f.kernel) < hx*hy {
		f.kernel = nil
		f.kernel = make([]float64, hx*hy)
	}
	k := f.kernel[:hx*hy]
	f.kernel = k
	h2 := f.hs * f.hs
	// Rows: the kernel is even in dx, so each row's transform is real
	// (and even: gx ≤ px/2 is kept).
	err := f.b.parallelFor(ctx, hy, 8, func(c, lo, hi int) {
		buf := f.bufs[c][:px]
		for gy := lo; gy < hi; gy++ {
			dy := float64(gy)
			for gx := range px {
				dx := float64(min(gx, px-gx))
				w := 1 / (1 + (dx*dx+dy*dy)*h2)
				buf[gx] = complex(w*w, 0)
			}
			f.rowFFT.forward(buf, f.works[c])
			for gx := range hx {
				k[gx*hy+gy] = real(buf[gx])
			}
		}
	})
	if err != nil {
		return err
	}
	// Columns: even in gy as well, so extend by mirroring and transform.
	err = f.b.parallelFor(ctx, hx, 8, func(c, lo, hi int) {
		buf := f.bufs[c][:py]
		for gx := lo; gx < hi; gx++ {
			col := k[gx*hy : (gx+1)*hy]
			for gy := range py {
				buf[gy] = complex(col[min(gy, py-gy)], 0)
			}
			f.colFFT.forward(buf, f.works[c])
			for gy := range hy {
				col[gy] = real(buf[gy])
			}
		}
	})
	if err != nil {
		return err
	}
	f.kpx, f.kpy, f.khs = px, py, f.hs
	return nil
}

// lagrange writes the p Lagrange basis polynomials through the nodes
// k + 0.5 (k < p) evaluated at u into w; inv[k] is 1/Π_{l≠k}(k − l)
// (lagrangeInv), so there is no division per point.
func lagrange(u float64, w, inv []float64) {
	p := len(w)
	if p == 3 {
		d0, d1, d2 := u-0.5, u-1.5, u-2.5
		w[0], w[1], w[2] = d1*d2*inv[0], d0*d2*inv[1], d0*d1*inv[2]
		return
	}
	for k := range p {
		num := inv[k]
		for l := range p {
			if l != k {
				num *= u - float64(l) - 0.5
			}
		}
		w[k] = num
	}
}

// lagrangeInv is the inverse denominators of the p Lagrange basis
// polynomials on the nodes k + 0.5.
func lagrangeInv(p int) []float64 {
	inv := make([]float64, p)
	for k := range p {
		den := 1.0
		for l := range p {
			if l != k {
				den *= float64(k - l)
			}
		}
		inv[k] = 1 / den
	}
	return inv
}

func (f *fftRepulsion) repulse(ctx context.Context, y []float32, rep []float64) (float64, error) {
	if err := f.geometry(y); err != nil {
		return 0, err
	}
	if err := f.kernelTransform(ctx); err != nil {
		return 0, err
	}
	if err := f.assign(ctx, y); err != nil {
		return 0, err
	}
	if err := f.spread(ctx, y); err != nil {
		return 0, err
	}
	if err := f.convolve(ctx); err != nil {
		return 0, err
	}
	return f.interpolate(ctx, y, rep)
}

// fftMaxOrder is the most interpolation nodes per box side (the weights
// of a point live on the stack).
const fftMaxOrder = 8

// weights finds the box of point i and writes its p x-weights then p
// y-weights into w. Spreading and interpolation recompute them rather than
// store 2p values per point: a few multiplications cost less than reading
// them back from memory (48 MB at 1,000,000 points, read twice per pass).
func (f *fftRepulsion) weights(y []float32, i int, w []float64) (bx, by int) {
	p := f.p
	invh := 1 / f.hs
	ux := (float64(y[2*i]) - f.x0) * invh
	uy := (float64(y[2*i+1]) - f.y0) * invh
	bx = min(int(ux)/p, f.nbx-1)
	by = min(int(uy)/p, f.nby-1)
	lagrange(ux-float64(bx*p), w[:p], f.lagInv)
	lagrange(uy-float64(by*p), w[p:2*p], f.lagInv)
	return bx, by
}

// assign buckets the points by box row (counting sort, stable).
func (f *fftRepulsion) assign(ctx context.Context, y []float32) error {
	p, nby := f.p, f.nby
	err := f.b.parallelFor(ctx, f.n, 1024, func(_, lo, hi int) {
		invh := 1 / f.hs
		for i := lo; i < hi; i++ {
			uy := (float64(y[2*i+1]) - f.y0) * invh
			f.boxRow[i] = int32(min(int(uy)/p, nby-1))
		}
	})
	if err != nil {
		return err
	}
	rs := f.rowStart
	clear(rs)
	for _, r := range f.boxRow {
		rs[r+1]++
	}
	for r := 1; r <= nby; r++ {
		rs[r] += rs[r-1]
	}
	for i, r := range f.boxRow {
		f.order[rs[r]] = int32(i)
		rs[r]++
	}
	for r := nby; r > 0; r-- {
		rs[r] = rs[r-1]
	}
	rs[0] = 0
	return nil
}

// spread puts the charges on the grid; a chunk of box rows owns its p grid
// rows each, padding columns included (they are cleared here). A point's
// charges at a node are its weight s times (1 + i·x, y + i·‖y‖²), written
// out in real arithmetic.
func (f *fftRepulsion) spread(ctx context.Context, y []float32) error {
	p, px, rs := f.p, f.px, f.rowStart
	return f.b.parallelFor(ctx, f.nby, 1, func(_, lo, hi int) {
		clear(f.ga[lo*p*px : hi*p*px])
		clear(f.gb[lo*p*px : hi*p*px])
		var wbuf [2 * fftMaxOrder]float64
		for _, i := range f.order[rs[lo]:rs[hi]] {
			bx, by := f.weights(y, int(i), wbuf[:])
			x := float64(y[2*i]) - f.cx
			v := float64(y[2*i+1]) - f.cy
			r2 := x*x + v*v
			wx := wbuf[:p]
			for a, wy := range wbuf[p : 2*p] {
				row := (by*p+a)*px + bx*p
				ra, rb := f.ga[row:row+p], f.gb[row:row+p]
				for c, wc := range wx {
					s := wy * wc
					ra[c] += complex(s, s*x)
					rb[c] += complex(s*v, s*r2)
				}
			}
		}
	})
}

// interpolate reads the potentials back at the points and forms the forces
// (into rep, unless nil) and Z.
func (f *fftRepulsion) interpolate(ctx context.Context, y []float32, rep []float64) (float64, error) {
	p, px := f.p, f.px
	err := f.b.parallelFor(ctx, f.n, 1024, func(c, lo, hi int) {
		z := 0.0
		var wbuf [2 * fftMaxOrder]float64
		for i := lo; i < hi; i++ {
			bx, by := f.weights(y, i, wbuf[:])
			wx := wbuf[:p]
			var phi0, phi1, phi2, phi3 float64
			for a, wy := range wbuf[p : 2*p] {
				row := (by*p+a)*px + bx*p
				ga, gb := f.ga[row:row+p], f.gb[row:row+p]
				var r0, r1, r2, r3 float64
				for c, wc := range wx {
					r0 += wc * real(ga[c])
					r1 += wc * imag(ga[c])
					r2 += wc * real(gb[c])
					r3 += wc * imag(gb[c])
				}
				phi0 += wy * r0
				phi1 += wy * r1
				phi2 += wy * r2
				phi3 += wy * r3
			}
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
	for _, s := range f.part[:len(f.b.chunks(f.n, 1024))] {
		z += s
	}
	return z - float64(f.n), nil
}

// convolve replaces the node charges in ga, gb by their potentials.
func (f *fftRepulsion) convolve(ctx context.Context) error {
	my, px := f.my, f.px
	// Forward row transforms of the my charge rows, in place (the padding
	// rows are zero and are never stored).
	err := f.b.parallelFor(ctx, 2*my, 4, func(c, lo, hi int) {
		for r := lo; r < hi; r++ {
			g, gy := f.ga, r
			if r >= my {
				g, gy = f.gb, r-my
			}
			f.rowFFT.forward(g[gy*px:(gy+1)*px], f.works[c])
		}
	})
	if err != nil {
		return err
	}
	nblk := (px + fftColBlock - 1) / fftColBlock
	err = f.b.parallelFor(ctx, 2*nblk, 1, func(c, lo, hi int) {
		for t := lo; t < hi; t++ {
			g, blk := f.ga, t
			if t >= nblk {
				g, blk = f.gb, t-nblk
			}
			f.convolveColumns(g, blk*fftColBlock, f.bufs[c], f.works[c])
		}
	})
	if err != nil {
		return err
	}
	// Inverse row transforms.
	return f.b.parallelFor(ctx, 2*my, 4, func(c, lo, hi int) {
		for r := lo; r < hi; r++ {
			g, gy := f.ga, r
			if r >= my {
				g, gy = f.gb, r-my
			}
			f.rowFFT.inverse(g[gy*px:(gy+1)*px], f.works[c])
		}
	})
}

// convolveColumns copies up to fftColBlock columns of g from g0 on into
// buf as py rows of w values (zero-padded from row my), transforms them
// together, multiplies them by the kernel's transform (and the 1/(px·py)
// of the inverse), transforms back and copies the my rows back into g.
func (f *fftRepulsion) convolveColumns(g []complex128, g0 int, buf, work []complex128) {
	my, px, py := f.my, f.px, f.py
	hy := py/2 + 1
	w := min(fftColBlock, px-g0)
	buf = buf[:py*w]
	for gy := range my {
		copy(buf[gy*w:(gy+1)*w], g[gy*px+g0:gy*px+g0+w])
	}
	clear(buf[my*w:])
	f.colFFT.transform(buf, work, w, false)
	norm := 1 / float64(px*py)
	var ks [fftColBlock][]float64
	for j := range w {
		gx := g0 + j
		kx := min(gx, px-gx)
		ks[j] = f.kernel[kx*hy : (kx+1)*hy]
	}
	for gy := range py {
		ky := min(gy, py-gy)
		row := buf[gy*w : (gy+1)*w]
		for j := range row {
			kv := ks[j][ky] * norm
			row[j] = complex(real(row[j])*kv, imag(row[j])*kv)
		}
	}
	f.colFFT.transform(buf, work, w, true)
	for gy := range my {
		copy(g[gy*px+g0:gy*px+g0+w], buf[gy*w:(gy+1)*w])
	}
}

// klZ2 estimates Z for KL in 2-D above klExactMax: the FFT interpolation
// (spacing fftKLSpacing, p = fftKLOrder; Step's own object when it has
// one) while its padded grid has at most klFFTGrid·N nodes, Barnes-Hut at
// θ = bhKLTheta on a tree of its own (made on first use) beyond.
type klZ2 struct {
	b   *Backend
	n   int
	fft *fftRepulsion
	bh  *bhTree
}

// klFFTGrid: KL's Z comes from the FFT while its padded grid has at most
// klFFTGrid·N nodes. One Z, CPU ms (BenchmarkRepulsionGrid's blobs,
// shared machine at load ~17; FFT at spacing 0.2 against Barnes-Hut at
// θ = 0.2):
//
//	N        nodes/N  FFT   BH θ=0.2
//	70,000   1.3      17    70
//	70,000   5.3      30    65
//	70,000   57       336   72–88   (extent ~300, Fashion-MNIST's; grid at its bound)
//	250,000  1.5      60    287
//	250,000  6.0      149   320
//	250,000  13       385   331
//
// Both meet KL's accuracy (TestKLApproximateZ); the FFT, bounded at
// fftMaxSide nodes a side, had cost a spread 70,000-point run ~20 × 0.3
// CPU s in KL alone.
const klFFTGrid = 10

func (e *klZ2) z(ctx context.Context, y []float32) (float64, error) {
	if nodes, ok := e.fft.paddedNodes(y); ok && nodes <= klFFTGrid*e.n {
		return e.fft.repulse(ctx, y, nil)
	}
	if e.bh == nil {
		e.bh = newBHTree(e.b, e.n, 2, bhKLTheta)
	}
	if err := e.bh.build(ctx, y); err != nil {
		return 0, err
	}
	return e.bh.walkAll(ctx, nil)
}

// KL's Z above klExactMax: in 2-D the FFT interpolation with spacing 0.2 and
// p = 3 on compact layouts and Barnes-Hut with θ = 0.2 on spread ones
// (klZ2), in 3-D Barnes-Hut with θ = 0.2 (whatever the method of Step).
// Measured by TestKLApproximateZ and TestFFTAccuracy on compact and
// spread layouts: relative error of Z ≤ 1e-4 in 2-D by the FFT (KL within
// 1e-4 absolute) and KL within 3e-4 absolute, 5e-5 relative, by
// Barnes-Hut. The stated and tested accuracy is 1e-4 relative on KL.
const (
	fftKLOrder   = 3
	fftKLSpacing = 0.2
	bhKLTheta    = 0.2
)

// newKLZ picks KL's estimator of Z. step is the FFT repulsion of Step when
// it has one (nil otherwise): with the same spacing and order as KL's it is
// the same computation, so KL shares it, grids and per-point buffers
// included, instead of holding a second set.
func newKLZ(b *Backend, n, dims int, step *fftRepulsion) zEstimator {
	switch {
	case n <= klExactMax:
		return &exactZ{b: b, n: n, dims: dims}
	case dims == 2 && step != nil && step.h == fftKLSpacing && step.p == fftKLOrder && step.maxSide == fftMaxSide(n):
		return &klZ2{b: b, n: n, fft: step}
	case dims == 2:
		return &klZ2{b: b, n: n, fft: newFFTRepulsion(b, n, fftKLSpacing, fftKLOrder, fftMaxSide(n))}
	default:
		return &bhZ{t: newBHTree(b, n, dims, bhKLTheta)}
	}
}
