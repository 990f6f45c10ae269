//go:build cuda

package gpu

import (
	"fmt"
	"math"

	"github.com/tsnemap/tsnemap/embed"
)

// The FFT-accelerated interpolation repulsion in 2-D on the device
// (Linderman, Rachh, Hoskins, Steinerberger & Kluger 2019, "Fast
// interpolation-based t-SNE for improved visualization of single-cell
// RNA-seq data", Nature Methods 16), with cpu/fft.go's definitions: boxes of
// 3×3 nodes at spacing 0.2, Lagrange interpolation, charges [1, x, y, ‖y‖²]
// relative to the centre of the bounding box packed into two complex planes,
// the kernel 1/(1+d²)² convolved by a zero-padded 2-D FFT, and
//
//	rep_i = y_i φ0 − (φ1, φ2)
//	Z     = Σ_i (1+‖y_i‖²) φ0 − 2 y_i·(φ1, φ2) + φ3 − N.
//
// A step (forces) is: fft_bbox and a 2 KB copy to the host (the one
// synchronisation the method needs: the grid's size depends on the extent),
// the geometry (fftplan.go, as the CPU's), the kernel's spectrum when the
// padded size changed (cached on the device), a memset, fft_spread, the
// forward row transforms of the rows that carry charges, per column forward
// transform × spectrum × inverse transform (fft_conv, plus fft_stage
// launches for columns longer than 2048), the inverse row transforms of the
// rows whose potentials are read, fft_gather. About ten launches; the FFT is
// our own (kernels/fft.cu: radix-2 DIF forward, DIT inverse, float64), the
// runtime needs no cuFFT.
//
// Precision: the grid, the FFT and the interpolation are float64 (double2),
// the node charges are summed with float64 atomics; Y and rep are float32
// as everywhere in the optimiser. The Z formula cancels ~3 digits at
// extents of a few hundred, which float32 grids would not leave for the
// 1e-3 the KL needs. The transforms are memory-bound on data-centre GPUs
// (FP64 at half the FP32 rate); on consumer GPUs (FP64 at 1/64) a 2048²
// step costs ~1 ms of arithmetic.
//
// Wide layouts: the CPU's auto leaves the FFT for Barnes-Hut when the grid
// outgrows 8·N nodes; the GPU has only this method, so it keeps the CPU's
// spacing and lets the grid grow to fftMaxGrid(n) (256 nodes a point, at
// least the CPU's 2^25, at most 2^28), then fails the step with the extent
// in the error, as the CPU's FFT does at its cap. Estimated cost of the
// grid per step, read + write traffic: ~0.6 GB at 2048² (a late
// 70,000-point layout, ~0.3 ms on an H100), ~35 GB at 8192² (~12 ms).

// fftAvailable reports whether newFFTRepulsion works in this build.
const fftAvailable = true

// fftRepulsion is the device state: the grid (grown, never shrunk, up to
// fftMaxGrid(n) nodes), the kernel's spectrum for the current padded size,
// the twiddle table for the longest side, and the bounding box partials.
type fftRepulsion struct {
	dev  *device
	n    int
	part buf // fftBBoxBlk × 4 float32: min x, max x, min y, max y per block
	grid buf // [py][2][px] double2
	spec buf // [py][px] float64, bit-reversed order, × 1/(px·py)
	tw   buf // tabN/2 double2
	tabN int // length of the twiddle table now on the device (0: none)

	kpx, kpy int // padded size the spectrum was made for (0: none)
	geom     fftGeom
	// host receives the bounding box partials. It is an allocation of its
	// own: cgo refuses a pointer into a Go object that holds Go pointers
	// (dev), as an array field of this struct would be.
	host []float32
}

// newFFTRepulsion returns the FFT repulsion for n points in 2-D. It runs
// on the device thread. Buffers that depend on the layout's extent are
// allocated by the first forces and grown when the layout spreads.
func newFFTRepulsion(dev *device, n int) (repulsion, error) {
	f := &fftRepulsion{dev: dev, n: n, host: make([]float32, 4*fftBBoxBlk)}
	var err error
	if f.part, err = dev.alloc(4 * 4 * fftBBoxBlk); err != nil {
		return nil, err
	}
	return f, nil
}

// fftDeviceBytes is the device memory the FFT method needs for n points,
// beyond the optimiser's own buffers (for Fits): the grid at its cap for n
// (fftMaxGrid: two complex planes of 16-byte nodes and an 8-byte spectrum
// per node of one plane), the twiddle table for the longest side the cap
// allows (sides are ≥ 8, so ≤ cap/8 long: cap/16 entries of 16 bytes) and
// the bounding box partials: 1.4 GB up to 131,072 points (the CPU's 2^25
// node cap), then ~10.7 KB a point up to the hard cap of 2^28 nodes, 11 GB,
// reached at 1,000,000 points. The buffers are allocated as the layout
// grows, so a run uses what its extent needs (a 70,000-point run ~170 MB).
func fftDeviceBytes(n int) int64 {
	g := int64(fftMaxGrid(n))
	return g*(2*16+8) + g/16*16 + 4*4*fftBBoxBlk
}

func (f *fftRepulsion) method() embed.Repulsion { return embed.RepulsionFFT }

func (f *fftRepulsion) release() {
	for _, b := range []*buf{&f.part, &f.grid, &f.spec, &f.tw} {
		f.dev.free(b)
	}
	f.tabN, f.kpx, f.kpy = 0, 0, 0
}

// forces implements repulsion.
func (f *fftRepulsion) forces(y, rep, z devPtr) error {
	g, err := f.boundingGeometry(y)
	if err != nil {
		return err
	}
	f.geom = g
	if err := f.prepare(); err != nil {
		return err
	}
	px, py := g.px, g.py
	if err := f.dev.dr.memsetD8(f.grid.p, 0, int64(2*px*py)*16); err != nil {
		return err
	}
	invh := g.invh()
	if err := f.dev.launch1D(kFFTSpread, f.n, 256, y, f.n, g.x0, g.y0, g.cx, g.cy, invh,
		g.nbx, g.nby, px, f.grid); err != nil {
		return err
	}
	if err := f.convolve(); err != nil {
		return err
	}
	return f.dev.launch1D(kFFTGather, f.n, 256, y, f.n, g.x0, g.y0, g.cx, g.cy, invh,
		g.nbx, g.nby, px, f.grid, rep, z)
}

// boundingGeometry reduces Y's bounding box on the device, brings the
// blocks' 2 KB to the host (waiting for the stream: the one sync of a step)
// and lays the grid over it.
func (f *fftRepulsion) boundingGeometry(y devPtr) (fftGeom, error) {
	if err := f.dev.launch(kFFTBBox, [3]int{fftBBoxBlk, 1, 1}, [3]int{256, 1, 1}, 0, y, f.n, f.part); err != nil {
		return fftGeom{}, err
	}
	if err := download(f.dev, f.host, f.part); err != nil {
		return fftGeom{}, err
	}
	lox, hix := math.Inf(1), math.Inf(-1)
	loy, hiy := math.Inf(1), math.Inf(-1)
	for b := range fftBBoxBlk {
		// min and max keep NaNs, so a diverged Y fails the geometry's check.
		lox, hix = min(lox, float64(f.host[4*b])), max(hix, float64(f.host[4*b+1]))
		loy, hiy = min(loy, float64(f.host[4*b+2])), max(hiy, float64(f.host[4*b+3]))
	}
	return fftGeometry(lox, hix, loy, hiy, f.n)
}

// prepare grows the buffers for the current geometry, uploads the twiddle
// table when the longest side changed and remakes the kernel's spectrum
// when the padded size changed.
func (f *fftRepulsion) prepare() error {
	px, py := f.geom.px, f.geom.py
	nodes := int64(px) * int64(py)
	if err := f.grow(&f.grid, nodes*2*16); err != nil {
		return err
	}
	if err := f.grow(&f.spec, nodes*8); err != nil {
		return err
	}
	if err := f.twiddles(max(px, py)); err != nil {
		return err
	}
	if f.kpx == px && f.kpy == py {
		return nil
	}
	f.kpx, f.kpy = 0, 0
	// The kernel on the grid (both planes), forward transforms of all rows
	// and columns, the real part of plane 0 scaled into spec.
	h := float64(fftSpacing)
	if err := f.dev.launch1D(kFFTKernelGrid, px*py, 256, f.grid, px, py, h); err != nil {
		return err
	}
	if err := f.transform(f.grid.p, px, 2*py, 1, px, false); err != nil {
		return err
	}
	if err := f.transform(f.grid.p, py, 2*px, 2*px, 1, false); err != nil {
		return err
	}
	if err := f.dev.launch1D(kFFTKernelSpectrum, px*py, 256, f.grid, px, py, 1/float64(px*py), f.spec); err != nil {
		return err
	}
	f.kpx, f.kpy = px, py
	return nil
}

// twiddles puts the table e^{−2πi·t/tabN}, t < tabN/2 (fftTwiddles,
// float64 on the host) on the device, unless it is there.
func (f *fftRepulsion) twiddles(tabN int) error {
	if tabN == f.tabN {
		return nil
	}
	tw := fftTwiddles(tabN)
	if err := f.grow(&f.tw, int64(len(tw))*16); err != nil {
		return err
	}
	flat := make([]float64, 2*len(tw))
	for i, w := range tw {
		flat[2*i], flat[2*i+1] = real(w), imag(w)
	}
	if err := upload(f.dev, f.tw, flat); err != nil {
		return err
	}
	f.tabN = tabN
	return nil
}

// grow makes b at least bytes long (its contents are lost when it grows,
// so the spectrum and the twiddle table, whichever b held, must be made
// again: the cached sizes are cleared before the allocation, which may
// fail and leave b empty).
func (f *fftRepulsion) grow(b *buf, bytes int64) error {
	if b.p != 0 && b.bytes >= bytes {
		return nil
	}
	switch b {
	case &f.grid, &f.spec:
		f.kpx, f.kpy = 0, 0
	case &f.tw:
		f.tabN = 0
	}
	f.dev.free(b)
	nb, err := f.dev.alloc(bytes)
	if err != nil {
		return fmt.Errorf("gpu: fft repulsion: %w", err)
	}
	*b = nb
	return nil
}

// convolve replaces the charges on the grid by their potentials: forward
// transforms of the 2·my rows that carry charges (the others are zero),
// the columns' forward transform × spectrum × inverse transform, inverse
// transforms of the 2·my rows whose nodes are read (cpu/fft.go skips the
// same rows).
func (f *fftRepulsion) convolve() error {
	g := f.geom
	px := g.px
	if err := f.transform(f.grid.p, px, 2*g.my, 1, px, false); err != nil {
		return err
	}
	if err := f.convColumns(); err != nil {
		return err
	}
	return f.transform(f.grid.p, px, 2*g.my, 1, px, true)
}

// transform launches batch forward (DIF: bit-reversed out) or inverse
// (DIT: bit-reversed in) transforms of length n, element stride es, batch
// stride bs, in place: fftStagePlan's global stages around one
// shared-memory launch.
func (f *fftRepulsion) transform(x devPtr, n, batch, es, bs int, inverse bool) error {
	if n < 2 || batch < 1 {
		return nil
	}
	if int64(batch)*int64(n) > math.MaxInt32 {
		return fmt.Errorf("gpu: fft: %d transforms of %d points overflow the kernels' indices", batch, n)
	}
	global, m := fftStagePlan(n, inverse)
	inv := 0
	if inverse {
		inv = 1
	}
	stage := func(h int) error {
		return f.dev.launch1D(kFFTStage, batch*n/2, 256, x, f.tw, f.tabN, n, h, batch, es, bs, inv)
	}
	if !inverse {
		for _, h := range global {
			if err := stage(h); err != nil {
				return err
			}
		}
	}
	if err := f.dev.launch(kFFTLocal, [3]int{batch * (n / m), 1, 1}, [3]int{min(256, m/2), 1, 1}, 0,
		x, f.tw, f.tabN, n, m, batch, es, bs, inv); err != nil {
		return err
	}
	if inverse {
		for _, h := range global {
			if err := stage(h); err != nil {
				return err
			}
		}
	}
	return nil
}

// convColumns: the 2·px columns (length py, stride 2px): forward global
// stages, fft_conv (forward shared-memory stages × spectrum × inverse
// ones), inverse global stages.
func (f *fftRepulsion) convColumns() error {
	px, py := f.geom.px, f.geom.py
	x, batch, es, bs := f.grid.p, 2*px, 2*px, 1
	fwd, m := fftStagePlan(py, false)
	inv, _ := fftStagePlan(py, true)
	for _, h := range fwd {
		if err := f.dev.launch1D(kFFTStage, batch*py/2, 256, x, f.tw, f.tabN, py, h, batch, es, bs, 0); err != nil {
			return err
		}
	}
	if err := f.dev.launch(kFFTConv, [3]int{batch * (py / m), 1, 1}, [3]int{min(256, m/2), 1, 1}, 0,
		x, f.tw, f.tabN, py, m, batch, es, bs, f.spec, px); err != nil {
		return err
	}
	for _, h := range inv {
		if err := f.dev.launch1D(kFFTStage, batch*py/2, 256, x, f.tw, f.tabN, py, h, batch, es, bs, 1); err != nil {
			return err
		}
	}
	return nil
}
