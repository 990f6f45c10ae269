package gpu

// Host side of the FFT-accelerated interpolation repulsion (Linderman,
// Rachh, Hoskins, Steinerberger & Kluger 2019, "Fast interpolation-based
// t-SNE for improved visualization of single-cell RNA-seq data", Nature
// Methods 16): the grid geometry, the FFT's stage plan and butterfly index
// arithmetic, and a host reference of the whole device pipeline. It has no
// build tag, so its tests run in every build and without a GPU; fft.go (tag
// cuda) launches kernels/fft.cu, whose index arithmetic is this file's,
// line for line.

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
)

// The method's parameters are cpu/fft.go's (fftStepSpacing, fftStepOrder:
// node spacing 0.2 in Y units, 3 Lagrange nodes per box side), so the two
// backends interpolate on the same grid.
const (
	fftSpacing = 0.2
	fftOrder   = 3    // FFT_P in fft.cu
	fftLocal   = 2048 // FFT_LOCAL in fft.cu: the longest transform done in shared memory
	fftBBoxBlk = 128  // blocks of fft_bbox; 256 threads each
)

// Grid caps. The CPU refuses padded grids above 2^25 nodes (cpu/fft.go's
// fftMaxGrid). The GPU has no Barnes-Hut to switch to when a large layout
// spreads wide (the CPU's auto does), so it allows more: 256 nodes a point,
// never fewer than the CPU's 2^25 (so the GPU accepts every grid the CPU
// does) and never more than 2^28 (int32 indices in the kernels; 11 GB of
// device memory). A 70,000-point run ends near 2048² = 60·N nodes
// (cpu/optimizer.go); if the extent grows like √N, a 1,000,000-point run
// ends near 8192² = 67·N, and 256·N = 2^28 = 16384² leaves room for a
// layout up to ~1600 across.
const (
	fftCPUMaxGrid   = 1 << 25
	fftHardMaxGrid  = 1 << 28
	fftGridPerPoint = 256
)

// fftMaxGrid is the largest padded grid (px·py complex nodes) the device
// method builds for n points; fftDeviceBytes is sized by it.
func fftMaxGrid(n int) int {
	return min(max(fftCPUMaxGrid, nextPow2(fftGridPerPoint*max(n, 1))), fftHardMaxGrid)
}

// fftGeom is the grid laid over a bounding box, as cpu/fft.go's geometry
// lays it: boxes of fftOrder nodes at spacing fftSpacing, centred on the
// data; the padded transform sizes are the powers of two ≥ twice the node
// counts (the circulant embedding of the kernel, whose even extension needs
// the zero padding).
type fftGeom struct {
	nbx, nby int     // boxes per row, per column
	mx, my   int     // nodes per side
	px, py   int     // padded transform sizes (powers of two)
	x0, y0   float64 // lower-left corner of the grid
	cx, cy   float64 // centre of the bounding box: the charges' origin
}

// fftGeometry mirrors cpu/fft.go's geometry for the bounding box
// [lox, hix] × [loy, hiy], with the GPU's grid cap for n points.
func fftGeometry(lox, hix, loy, hiy float64, n int) (fftGeom, error) {
	var g fftGeom
	if !(hix-lox < 1e6 && hiy-loy < 1e6) {
		return g, fmt.Errorf("gpu: fft repulsion: embedding extent %g × %g is not finite or too large", hix-lox, hiy-loy)
	}
	h := float64(fftSpacing) // a variable: bw is rounded as the CPU's h·p is
	bw := h * float64(fftOrder)
	g.nbx = int((hix-lox)/bw) + 1
	g.nby = int((hiy-loy)/bw) + 1
	g.mx, g.my = g.nbx*fftOrder, g.nby*fftOrder
	g.x0 = (lox+hix)/2 - float64(g.nbx)*bw/2
	g.y0 = (loy+hiy)/2 - float64(g.nby)*bw/2
	g.cx, g.cy = (lox+hix)/2, (loy+hiy)/2
	g.px, g.py = nextPow2(2*g.mx), nextPow2(2*g.my)
	if g.px*g.py > fftMaxGrid(n) {
		return g, fmt.Errorf("gpu: fft repulsion: embedding extent %g × %g needs a %d×%d grid, more than %d nodes", hix-lox, hiy-loy, g.px, g.py, fftMaxGrid(n))
	}
	return g, nil
}

// nextPow2 is the smallest power of two ≥ n.
func nextPow2(n int) int {
	if n <= 1 {
		return 1
	}
	return 1 << bits.Len(uint(n-1))
}

// The FFT. Radix-2, in place, over power-of-two lengths, batched, with any
// element and batch stride (rows: stride 1; columns: stride = row length).
// The forward transform is decimation in frequency (Gentleman-Sande):
// natural order in, bit-reversed order out, e^{−2πi·jk/n}. The inverse is
// decimation in time (Cooley-Tukey): bit-reversed in, natural out,
// e^{+2πi·jk/n}, unnormalised. A convolution multiplies two spectra
// pointwise, so their common permutation never needs undoing: no
// bit-reversal pass, no scratch buffer (the kernel's spectrum is made by the
// same forward transform, so it is in the same order).
//
// A stage with half-span h pairs the elements i0 = (j/h)·2h + j mod h and
// i0+h for j < n/2, with twiddle e^{∓2πi·k/2h}, k = j mod h: the forward
// stages run h = n/2 … 1, the inverse ones h = 1 … n/2. The stages with
// h < m = min(n, fftLocal) stay inside aligned segments of m elements and
// run in one launch from shared memory (fft_local); longer spans run one
// launch per stage from global memory (fft_stage).
//
// Twiddles come from one table of the largest length in use, tabN:
// tw[t] = e^{−2πi·t/tabN}, t < tabN/2, computed on the host in float64;
// e^{−2πi·k/2h} = tw[k·tabN/2h].

// fftPair is butterfly j of the stage with half-span h (a power of two):
// its element indices i0 < i1 and its twiddle's index in a table of length
// tabN. fft.cu's fftPair is this function.
func fftPair(j, h, tabN int) (i0, i1, t int) {
	k := j & (h - 1)
	i0 = (j-k)<<1 + k
	return i0, i0 + h, k * (tabN / (2 * h))
}

// fftTwiddles is the table e^{−2πi·t/tabN}, t < tabN/2.
func fftTwiddles(tabN int) []complex128 {
	tw := make([]complex128, max(tabN/2, 1))
	for t := range tabN / 2 {
		s, c := math.Sincos(-2 * math.Pi * float64(t) / float64(tabN))
		tw[t] = complex(c, s)
	}
	return tw
}

// fftStagePlan splits the stages of an n-point transform (n a power of two
// ≥ 2): local is the segment length m of the shared-memory stages, global
// the half-spans of the global stages in the order they run (forward:
// before the local ones, descending; inverse: after them, ascending).
func fftStagePlan(n int, inverse bool) (global []int, local int) {
	local = min(n, fftLocal)
	if inverse {
		for h := local; h < n; h <<= 1 {
			global = append(global, h)
		}
		return global, local
	}
	for h := n >> 1; h >= local; h >>= 1 {
		global = append(global, h)
	}
	return global, local
}

// fftButterfly is one butterfly in place: forward (DIF) a, b ← a+b,
// (a−b)·w; inverse (DIT) with the conjugate twiddle, a, b ← a+b·w̄, a−b·w̄.
func fftButterfly(a, b *complex128, w complex128, inverse bool) {
	if !inverse {
		*a, *b = *a+*b, cmul(*a-*b, w)
		return
	}
	t := cmul(*b, complex(real(w), -imag(w)))
	*a, *b = *a+t, *a-t
}

// cmul is the complex product as the kernels form it.
func cmul(a, b complex128) complex128 {
	return complex(real(a)*real(b)-imag(a)*imag(b), real(a)*imag(b)+imag(a)*real(b))
}

// hostFFT runs the device's transform of one sequence x (length a power of
// two) on the host, stage by stage as fftStagePlan orders the launches, with
// a local segment of at most m elements (fftLocal on the device; smaller in
// tests, to exercise the split). If spec is not nil the forward transform,
// multiplication by spec (bit-reversed order, as fft_conv) and inverse
// transform run as one, as fft_conv does for the columns.
func hostFFT(x []complex128, tw []complex128, tabN, m int, inverse bool, spec []float64) {
	n := len(x)
	if n < 2 {
		return
	}
	m = min(m, n)
	globalStage := func(h int, inv bool) {
		for j := range n / 2 {
			i0, i1, t := fftPair(j, h, tabN)
			fftButterfly(&x[i0], &x[i1], tw[t], inv)
		}
	}
	localStages := func(seg []complex128, off int, fwd, inv bool) {
		if fwd {
			for h := m >> 1; h >= 1; h >>= 1 {
				for j := range m / 2 {
					i0, i1, t := fftPair(j, h, tabN)
					fftButterfly(&seg[i0], &seg[i1], tw[t], false)
				}
			}
		}
		if spec != nil {
			for e := range seg {
				seg[e] = complex(real(seg[e])*spec[off+e], imag(seg[e])*spec[off+e])
			}
		}
		if inv {
			for h := 1; h < m; h <<= 1 {
				for j := range m / 2 {
					i0, i1, t := fftPair(j, h, tabN)
					fftButterfly(&seg[i0], &seg[i1], tw[t], true)
				}
			}
		}
	}
	fwd := spec != nil || !inverse
	inv := spec != nil || inverse
	if fwd {
		for h := n >> 1; h >= m; h >>= 1 {
			globalStage(h, false)
		}
	}
	for s := 0; s < n; s += m {
		localStages(x[s:s+m], s, fwd, inv)
	}
	if inv {
		for h := m; h < n; h <<= 1 {
			globalStage(h, true)
		}
	}
}

// bitReverse is i with its log2(n) low bits reversed.
func bitReverse(i, n int) int {
	if n < 2 {
		return 0
	}
	return int(bits.Reverse64(uint64(i)) >> (64 - bits.Len(uint(n-1))))
}

// lagrange3 writes the fftOrder Lagrange basis polynomials through the
// nodes k + 0.5 evaluated at u into w (cpu/fft.go's lagrange; fft.cu's
// lagrange).
func lagrange3(u float64, w *[fftOrder]float64) {
	for k := range fftOrder {
		num, den := 1.0, 1.0
		for l := range fftOrder {
			if l != k {
				num *= u - float64(l) - 0.5
				den *= float64(k - l)
			}
		}
		w[k] = num / den
	}
}

// invh is 1/h as cpu/fft.go rounds it (a float64 division at run time).
func (g *fftGeom) invh() float64 {
	h := float64(fftSpacing)
	return 1 / h
}

// locate is a point's box and interpolation weights (fft.cu's locate).
func (g *fftGeom) locate(x, y float32, wx, wy *[fftOrder]float64) (bx, by int) {
	invh := g.invh()
	ux := (float64(x) - g.x0) * invh
	uy := (float64(y) - g.y0) * invh
	bx = max(min(int(ux)/fftOrder, g.nbx-1), 0)
	by = max(min(int(uy)/fftOrder, g.nby-1), 0)
	lagrange3(ux-float64(bx*fftOrder), wx)
	lagrange3(uy-float64(by*fftOrder), wy)
	return bx, by
}

// hostFFTRepulsion runs the device pipeline on the host, in the device's
// data layout and order of operations (a reference for tests, O(grid log
// grid)): bounding box, geometry, spread of the charges [1, x, y, ‖y‖²]
// (relative to the box's centre) packed into two complex planes, forward
// row transforms of the charged rows, per column forward transform ×
// kernel spectrum × inverse transform, inverse row transforms, gather. It
// returns rep (N×2, unnormalised) and Z = Σ_{i≠j} w_ij, as forces does.
func hostFFTRepulsion(y []float32, n int) (rep []float64, z float64, g fftGeom, err error) {
	if len(y) != 2*n || n < 1 {
		return nil, 0, g, errors.New("gpu: host fft: y is not N×2")
	}
	lox, hix := math.Inf(1), math.Inf(-1)
	loy, hiy := math.Inf(1), math.Inf(-1)
	for i := range n {
		lox, hix = min(lox, float64(y[2*i])), max(hix, float64(y[2*i]))
		loy, hiy = min(loy, float64(y[2*i+1])), max(hiy, float64(y[2*i+1]))
	}
	if g, err = fftGeometry(lox, hix, loy, hiy, n); err != nil {
		return nil, 0, g, err
	}
	px, py := g.px, g.py
	tabN := max(px, py)
	tw := fftTwiddles(tabN)
	spec := hostKernelSpectrum(g, tw, tabN)

	// grid[(gy·2 + plane)·px + gx]: plane 0 = 1 + i·x, plane 1 = y + i·‖y‖².
	grid := make([]complex128, 2*px*py)
	var wx, wy [fftOrder]float64
	for i := range n {
		bx, by := g.locate(y[2*i], y[2*i+1], &wx, &wy)
		x := float64(y[2*i]) - g.cx
		v := float64(y[2*i+1]) - g.cy
		for a := range fftOrder {
			row := by*fftOrder + a
			for c := range fftOrder {
				s := wy[a] * wx[c]
				k := row*2*px + bx*fftOrder + c
				grid[k] += complex(s, s*x)
				grid[k+px] += complex(s*v, s*(x*x+v*v))
			}
		}
	}
	hostConvolve(grid, g, tw, tabN, spec)

	rep = make([]float64, 2*n)
	for i := range n {
		bx, by := g.locate(y[2*i], y[2*i+1], &wx, &wy)
		var pa, pb complex128
		for a := range fftOrder {
			row := by*fftOrder + a
			var ra, rb complex128
			for c := range fftOrder {
				k := row*2*px + bx*fftOrder + c
				ra += complex(wx[c]*real(grid[k]), wx[c]*imag(grid[k]))
				rb += complex(wx[c]*real(grid[k+px]), wx[c]*imag(grid[k+px]))
			}
			pa += complex(wy[a]*real(ra), wy[a]*imag(ra))
			pb += complex(wy[a]*real(rb), wy[a]*imag(rb))
		}
		phi0, phi1, phi2, phi3 := real(pa), imag(pa), real(pb), imag(pb)
		x := float64(y[2*i]) - g.cx
		v := float64(y[2*i+1]) - g.cy
		rep[2*i] = x*phi0 - phi1
		rep[2*i+1] = v*phi0 - phi2
		z += (1+x*x+v*v)*phi0 - 2*(x*phi1+v*phi2) + phi3 - 1
	}
	return rep, z, g, nil
}

// hostKernelSpectrum is the spectrum of the kernel 1/(1+d²)² on the padded
// grid (even extension), scaled by 1/(px·py) and in the transform's
// bit-reversed order, index gy'·px + gx' (fft_kernel_grid, the forward
// transforms, fft_kernel_spectrum).
func hostKernelSpectrum(g fftGeom, tw []complex128, tabN int) []float64 {
	px, py := g.px, g.py
	grid := make([]complex128, 2*px*py)
	for gy := range py {
		for gx := range px {
			grid[gy*2*px+gx] = complex(fftKernelValue(gx, gy, px, py), 0)
			grid[(gy*2+1)*px+gx] = grid[gy*2*px+gx]
		}
	}
	hostRows(grid, px, 2*py, tw, tabN, false)
	hostColumns(grid, px, py, tw, tabN, false, nil)
	spec := make([]float64, px*py)
	scale := 1 / float64(px*py)
	for gy := range py {
		for gx := range px {
			spec[gy*px+gx] = real(grid[gy*2*px+gx]) * scale
		}
	}
	return spec
}

// fftKernelValue is the kernel 1/(1+d²)² between nodes (gx, gy) apart on
// the circulant grid (cpu/fft.go's kernelTransform; fft_kernel_grid).
func fftKernelValue(gx, gy, px, py int) float64 {
	dx, dy := float64(gx), float64(gy)
	if gx > px/2 {
		dx = float64(gx - px)
	}
	if gy > py/2 {
		dy = float64(gy - py)
	}
	d2 := (dx*dx + dy*dy) * fftSpacing * fftSpacing
	w := 1 / (1 + d2)
	return w * w
}

// hostConvolve replaces the charges in grid by their potentials, as
// fftRepulsion.convolve launches it.
func hostConvolve(grid []complex128, g fftGeom, tw []complex128, tabN int, spec []float64) {
	hostRows(grid, g.px, 2*g.my, tw, tabN, false)
	hostColumns(grid, g.px, g.py, tw, tabN, false, spec)
	hostRows(grid, g.px, 2*g.my, tw, tabN, true)
}

// hostRows transforms the first rows rows (length px, stride 1).
func hostRows(grid []complex128, px, rows int, tw []complex128, tabN int, inverse bool) {
	for r := range rows {
		hostFFT(grid[r*px:(r+1)*px], tw, tabN, fftLocal, inverse, nil)
	}
}

// hostColumns transforms the 2·px columns (length py, stride 2·px); with
// spec, forward × spectrum × inverse.
func hostColumns(grid []complex128, px, py int, tw []complex128, tabN int, inverse bool, spec []float64) {
	col := make([]complex128, py)
	colSpec := make([]float64, py)
	for c := range 2 * px {
		for e := range py {
			col[e] = grid[e*2*px+c]
		}
		var s []float64
		if spec != nil {
			for e := range py {
				colSpec[e] = spec[e*px+c%px]
			}
			s = colSpec
		}
		hostFFT(col, tw, tabN, fftLocal, inverse, s)
		for e := range py {
			grid[e*2*px+c] = col[e]
		}
	}
}
