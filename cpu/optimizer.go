package cpu

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/tsnemap/tsnemap/embed"
)

// errClosed is returned by every method of an optimizer after Close.
var errClosed = errors.New("cpu: optimizer is closed")

// repulser computes the repulsive half of the t-SNE gradient: for every point
// i the unnormalised force Σ_j w_ij² (y_i − y_j) into rep (N×dims), and the
// normalisation Z = Σ_{i≠j} w_ij, with w_ij = 1/(1+‖y_i−y_j‖²).
type repulser interface {
	repulse(ctx context.Context, y []float32, rep []float64) (z float64, err error)
}

// optimizer is the CPU t-SNE optimiser state.
//
// Y, the gains and the velocities are stored as float32: they are read every
// iteration and their precision is far beyond what the picture needs. Every
// sum over many terms (forces, Z, KL, the centroid) is accumulated in float64
// so that it does not drift with N.
type optimizer struct {
	b      *Backend
	p      *embed.CSR
	n      int
	dims   int
	method embed.Repulsion
	rep    repulser
	// hybrid is set for auto in 2-D above the exact range: each Step picks
	// FFT interpolation while the layout is compact and Barnes-Hut once the
	// FFT grid it would need is large (see hybridFFTGrid).
	hybrid *hybridRepulsion

	y, yNext []float32 // N×dims; yNext is the double buffer of the update pass
	gains    []float32
	update   []float32
	force    []float64 // repulsion Σ_j w_ij²(y_i−y_j), N×dims
	part     []float64 // per-chunk partial sums, reused

	plogp  float64 // Σ p_ij log p_ij, fixed for the run
	psum   float64 // Σ p_ij (1 up to rounding)
	klZ    zEstimator
	closed bool
}

// zEstimator computes Z = Σ_{i≠j} w_ij for KL.
type zEstimator interface {
	z(ctx context.Context, y []float32) (float64, error)
}

// Crossovers of the automatic repulsion method, from BenchmarkCrossover and
// BenchmarkStep on the shared 2-core development machine (wall ms per Step,
// attraction + repulsion + update, clustered data, ~90 neighbours a point,
// a layout of extent ~15; noisy, ratios are what count):
//
//	N       2-D exact   2-D BH   3-D exact   3-D BH
//	250     0.23        0.27     0.37        0.28
//	500     0.65        0.34     0.81        0.78
//	1000    2.2         0.86     2.9         2.1
//	2000    8.2         2.0      11          5.6
//
// FFT interpolation at the spacing its accuracy needs (0.2, see fft.go)
// costs O(extent²) for its grid and little per point, Barnes-Hut the
// reverse, so FFT wins on compact layouts (the exaggeration phase) and loses
// on spread ones. BenchmarkStep, 2-D, early (extent ~5) / late (extent ~45
// at 10,000, ~85 at 70,000), wall ms, the earlier radix-2 FFT:
//
//	N        BH early  BH late  FFT early  FFT late
//	10,000   13.5      13.2     7.5        24
//	70,000   126       124      41         130
//
// So neither wins a whole run: in 2-D, auto switches per Step between them
// by the size of the grid the FFT would need (hybridRepulsion).
const (
	autoExactMax2D = 300
	autoExactMax3D = 400
)

// autoRepulsion picks the repulsion method for n points in dims dimensions.
func autoRepulsion(n, dims int) embed.Repulsion {
	limit := autoExactMax2D
	if dims == 3 {
		limit = autoExactMax3D
	}
	if n <= limit {
		return embed.RepulsionExact
	}
	return embed.RepulsionBarnesHut
}

// klExactMax is the largest N for which KL computes Z exactly (O(N²), ~N²/2
// kernel evaluations: about 5 ms at N = 3000 on two cores). Above it Z comes
// from a high-accuracy approximation fixed per dimension (see newKLZ).
const klExactMax = 3000

func newOptimizer(ctx context.Context, b *Backend, p *embed.CSR, y0 []float32, cfg embed.OptimizerConfig) (embed.Optimizer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := validateProblem(p, y0, cfg); err != nil {
		return nil, fmt.Errorf("cpu: new optimizer: %w", err)
	}
	n, dims := cfg.N, cfg.Dims
	o := &optimizer{
		b:      b,
		p:      p,
		n:      n,
		dims:   dims,
		y:      make([]float32, n*dims),
		yNext:  make([]float32, n*dims),
		gains:  make([]float32, n*dims),
		update: make([]float32, n*dims),
		force:  make([]float64, n*dims),
		part:   make([]float64, 4*max(b.threads, 1)*(dims+1)),
	}
	copy(o.y, y0)
	for i := range o.gains {
		o.gains[i] = 1
	}
	o.method = cfg.Repulsion
	if o.method == embed.RepulsionAuto {
		o.method = autoRepulsion(n, dims)
		if dims == 2 && o.method == embed.RepulsionBarnesHut {
			o.hybrid = &hybridRepulsion{
				bh:  newBHTree(b, n, dims, cfg.Theta),
				fft: newFFTRepulsion(b, n, fftStepSpacing, fftStepOrder, fftMaxSide(n)),
			}
			o.method = o.hybrid.pick(y0)
		}
	}
	switch {
	case o.hybrid != nil:
		o.rep = o.hybrid.bh
		if o.method == embed.RepulsionFFT {
			o.rep = o.hybrid.fft
		}
	case o.method == embed.RepulsionExact:
		o.rep = &exactRepulsion{b: b, n: n, dims: dims}
	case o.method == embed.RepulsionBarnesHut:
		o.rep = newBHTree(b, n, dims, cfg.Theta)
	case o.method == embed.RepulsionFFT:
		o.rep = newFFTRepulsion(b, n, fftStepSpacing, fftStepOrder, fftMaxSide(n))
	}
	for _, v := range p.Val {
		if v > 0 {
			o.plogp += float64(v) * math.Log(float64(v))
		}
		o.psum += float64(v)
	}
	stepFFT, _ := o.rep.(*fftRepulsion)
	if o.hybrid != nil {
		stepFFT = o.hybrid.fft
	}
	o.klZ = newKLZ(b, n, dims, stepFFT)
	return o, nil
}

// validateProblem adds this backend's checks (its repulsion methods and
// their parameters) to embed.CheckProblem.
func validateProblem(p *embed.CSR, y0 []float32, cfg embed.OptimizerConfig) error {
	if err := embed.CheckProblem(p, y0, cfg); err != nil {
		return err
	}
	switch cfg.Repulsion {
	case embed.RepulsionExact:
	case embed.RepulsionAuto, embed.RepulsionBarnesHut:
		if !(cfg.Theta >= 0) || math.IsInf(cfg.Theta, 0) {
			return fmt.Errorf("theta must be a finite non-negative number, not %v", cfg.Theta)
		}
	case embed.RepulsionFFT:
		if cfg.Dims != 2 {
			return errors.New("fft repulsion is implemented for 2 dimensions only")
		}
	default:
		return fmt.Errorf("unknown repulsion method %q", cfg.Repulsion)
	}
	return nil
}

// Repulsion implements embed.Optimizer. With auto in 2-D it is the method of
// the latest Step (before the first, of the first).
func (o *optimizer) Repulsion() embed.Repulsion { return o.method }

// hybridRepulsion holds both approximations of the 2-D auto method.
type hybridRepulsion struct {
	bh  *bhTree
	fft *fftRepulsion
}

// hybridFFTGrid: auto uses the FFT interpolation while its padded grid (at
// the spacing of fftStepSpacing) has at most hybridFFTGrid·N nodes, else
// Barnes-Hut. The FFT costs O(grid), its grid grows with the square of the
// layout's extent at fixed spacing, and Barnes-Hut costs O(N log N).
// Measured with BenchmarkRepulsionGrid (one pass, θ = 0.5 against spacing
// 0.2, p = 3; ten Gaussian blobs of radius r), CPU ms per pass (user+sys,
// both threads; the shared machine was at load 15–23, so wall times were
// 2–5× these and CPU times themselves varied by up to ~1.5× between runs:
// ranges over 2–4 runs). "before": power-of-two grids, the radix-2
// transform, weights stored per point; "after": 2^a·3^b grids, the
// Stockham transform, weights recomputed without divisions:
//
//	N          r    nodes/N before→after   BH       FFT before   FFT after
//	70,000     3    0.23 → 0.13            23       13–14        10
//	70,000     10   3.7 → 1.3              25–29    33           11–12
//	70,000     20   15 → 5.3               22–26    84           27–43
//	70,000     30   15 → 12                23–26    104          58–82
//	250,000    3    0.066 → 0.041          87–111   59–93        23–28
//	250,000    20   4.2 → 1.5              86–120   172–198      53–74
//	250,000    30   4.2 → 3.4              88–90    196–228      83–124
//	250,000    40   17 → 6.0               90–99    469–523      152–155
//	250,000    60   17 → 13                88–108   617–641      366–470
//	1,000,000  3    0.016 → 0.010          427–540  241–265      84–118
//	1,000,000  20   1.0 → 0.50             410–439  445–500      242–298
//	1,000,000  30   1.0 → 1.0              418–608  494–609      292–373
//	1,000,000  40   4.2 → 1.9              419–529  800–914      361–400
//	1,000,000  60   4.2 → 4.0              419–446  1005–1134    674–804
//
// The FFT now wins up to ~3 padded nodes per point at every N (by 2–4× at
// 0.1–1.5, ~1.2–1.5× at 1–2 at 1,000,000 points), is about even with
// Barnes-Hut at 3.4 (250,000) and loses beyond (1.2–1.3× at 5.3, 2.5× at
// 12, 4× at 13): the switch moved from 2 to 3 nodes per point. Spread
// layouts stay with Barnes-Hut, because the spacing cannot grow with the
// extent without losing the near field's accuracy (fft.go): 3 padded nodes
// per point at 70,000 points is ~230 nodes a side, a spacing of ~0.37 at
// the synthetic clusters' final extent (~85) and ~1.3 at Fashion-MNIST's
// (~300): force errors of ~2 % to over 50 %, against Barnes-Hut's
// 0.5–0.9 % (FIt-SNE's fixed spacing of 1/3 has 1.6 %).
const hybridFFTGrid = 3

func (h *hybridRepulsion) pick(y []float32) embed.Repulsion {
	lox, hix := float32(math.Inf(1)), float32(math.Inf(-1))
	loy, hiy := lox, hix
	for i := 0; i+1 < len(y); i += 2 {
		lox, hix = min(lox, y[i]), max(hix, y[i])
		loy, hiy = min(loy, y[i+1]), max(hiy, y[i+1])
	}
	f := h.fft
	bw := f.h * float64(f.p)
	ex, ey := float64(hix-lox), float64(hiy-loy)
	if !(ex < 1e6 && ey < 1e6) {
		return embed.RepulsionBarnesHut
	}
	px := fftSize(2 * (int(ex/bw) + 1) * f.p)
	py := fftSize(2 * (int(ey/bw) + 1) * f.p)
	if px*py <= hybridFFTGrid*f.n {
		return embed.RepulsionFFT
	}
	return embed.RepulsionBarnesHut
}

// Step implements embed.Optimizer.
func (o *optimizer) Step(ctx context.Context, params embed.StepParams) error {
	if o.closed {
		return errClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if o.hybrid != nil {
		o.method = o.hybrid.pick(o.y)
		o.rep = o.hybrid.bh
		if o.method == embed.RepulsionFFT {
			o.rep = o.hybrid.fft
		}
	}
	z, err := o.rep.repulse(ctx, o.y, o.force)
	if err != nil {
		return err
	}
	if !(z > 0) {
		return fmt.Errorf("cpu: step: normalisation Z = %v", z)
	}
	if err := o.updatePass(ctx, params, z); err != nil {
		return err
	}
	o.y, o.yNext = o.yNext, o.y
	return o.recentre(ctx, o.y)
}

// updatePass computes the attractive forces row by row over P, combines them
// with the repulsion into the gradient and writes the moved points into
// yNext. Attraction is fused here so P is streamed once per iteration and the
// attractive force never needs an N-sized buffer; reading y while writing
// yNext keeps every row's forces those of the same Y.
func (o *optimizer) updatePass(ctx context.Context, params embed.StepParams, z float64) error {
	dims := o.dims
	y, yn := o.y, o.yNext
	rp, col, val := o.p.RowPtr, o.p.Col, o.p.Val
	ex := params.Exaggeration
	mom := float32(params.Momentum)
	lr := float32(params.LearningRate)
	invZ := 1 / z
	force := o.force
	gains, upd := o.gains, o.update
	return o.b.parallelFor(ctx, o.n, 256, func(_, lo, hi int) {
		var g [3]float64
		for i := lo; i < hi; i++ {
			a := attraction(y, rp, col, val, dims, i)
			for c := range dims {
				k := i*dims + c
				g[c] = 4 * (ex*a[c] - force[k]*invZ)
				gr := float32(g[c])
				gain := gains[k]
				// sign(grad) ≠ sign(update), with sign(0) = 0 as in
				// van der Maaten's implementation.
				if sign32(gr) != sign32(upd[k]) {
					gain += 0.2
				} else {
					gain *= 0.8
				}
				gain = max(gain, 0.01)
				gains[k] = gain
				u := mom*upd[k] - lr*gain*gr
				upd[k] = u
				yn[k] = y[k] + u
			}
		}
	})
}

// attraction is Σ_j p_ij w_ij (y_i − y_j) over row i of P.
func attraction(y []float32, rp, col []int32, val []float32, dims, i int) (a [3]float64) {
	if dims == 2 {
		e, end := rp[i], rp[i+1]
		a[0], a[1] = attraction2(y, col[e:end], val[e:end], y[2*i], y[2*i+1])
		return a
	}
	yi0, yi1, yi2 := y[3*i], y[3*i+1], y[3*i+2]
	var a0, a1, a2 float64
	for e := rp[i]; e < rp[i+1]; e++ {
		j := col[e]
		d0 := yi0 - y[3*j]
		d1 := yi1 - y[3*j+1]
		d2 := yi2 - y[3*j+2]
		pw := val[e] / (1 + d0*d0 + d1*d1 + d2*d2)
		a0 += float64(pw * d0)
		a1 += float64(pw * d1)
		a2 += float64(pw * d2)
	}
	a[0], a[1], a[2] = a0, a1, a2
	return a
}

// attraction2Go is Σ val[e]·w_ij·(y_i − y_j) over one row of P in 2-D, j =
// col[e]. Each term is computed in float32 (a float32 division is about
// twice as fast as a float64 one and this is the hot loop of every
// iteration); the row sums are float64.
func attraction2Go(y []float32, col []int32, val []float32, yi0, yi1 float32) (a0, a1 float64) {
	val = val[:len(col)]
	e := 0
	for ; e+1 < len(col); e += 2 {
		j, k := col[e], col[e+1]
		d0 := yi0 - y[2*j]
		d1 := yi1 - y[2*j+1]
		c0 := yi0 - y[2*k]
		c1 := yi1 - y[2*k+1]
		pw := val[e] / (1 + d0*d0 + d1*d1)
		qw := val[e+1] / (1 + c0*c0 + c1*c1)
		a0 += float64(pw*d0) + float64(qw*c0)
		a1 += float64(pw*d1) + float64(qw*c1)
	}
	if e < len(col) {
		j := col[e]
		d0 := yi0 - y[2*j]
		d1 := yi1 - y[2*j+1]
		pw := val[e] / (1 + d0*d0 + d1*d1)
		a0 += float64(pw * d0)
		a1 += float64(pw * d1)
	}
	return a0, a1
}

// gradient writes the full gradient of the current Y with exaggeration ex
// into dst (N×dims), by the optimiser's repulsion method. Step fuses the same
// computation with the update; this is the form the tests check.
func (o *optimizer) gradient(ctx context.Context, ex float64, dst []float64) error {
	z, err := o.rep.repulse(ctx, o.y, o.force)
	if err != nil {
		return err
	}
	rp, col, val := o.p.RowPtr, o.p.Col, o.p.Val
	return o.b.parallelFor(ctx, o.n, 256, func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			a := attraction(o.y, rp, col, val, o.dims, i)
			for c := range o.dims {
				k := i*o.dims + c
				dst[k] = 4 * (ex*a[c] - o.force[k]/z)
			}
		}
	})
}

func sign32(v float32) int {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}

// recentre moves the centroid of y to the origin. The centroid is summed per
// chunk in float64 and combined in chunk order, so it is deterministic.
func (o *optimizer) recentre(ctx context.Context, y []float32) error {
	dims := o.dims
	cs := o.b.chunks(o.n, 1024)
	part := o.part[:len(cs)*dims]
	err := o.b.parallelFor(ctx, o.n, 1024, func(c, lo, hi int) {
		var s [3]float64
		for i := lo; i < hi; i++ {
			for d := range dims {
				s[d] += float64(y[i*dims+d])
			}
		}
		copy(part[c*dims:(c+1)*dims], s[:dims])
	})
	if err != nil {
		return err
	}
	var mean [3]float32
	for d := range dims {
		s := 0.0
		for c := range cs {
			s += part[c*dims+d]
		}
		mean[d] = float32(s / float64(o.n))
	}
	return o.b.parallelFor(ctx, o.n, 1024, func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			for d := range dims {
				y[i*dims+d] -= mean[d]
			}
		}
	})
}

// KL implements embed.Optimizer:
// KL(P‖Q) = Σ p_ij log p_ij − Σ p_ij log w_ij + log Z.
func (o *optimizer) KL(ctx context.Context) (float64, error) {
	if o.closed {
		return 0, errClosed
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	z, err := o.klZ.z(ctx, o.y)
	if err != nil {
		return 0, err
	}
	dims := o.dims
	y := o.y
	rp, col, val := o.p.RowPtr, o.p.Col, o.p.Val
	cs := o.b.chunks(o.n, 256)
	part := o.part[:len(cs)]
	err = o.b.parallelFor(ctx, o.n, 256, func(c, lo, hi int) {
		s := 0.0
		for i := lo; i < hi; i++ {
			for e := rp[i]; e < rp[i+1]; e++ {
				if val[e] <= 0 {
					continue
				}
				j := int(col[e])
				d2 := 0.0
				for d := range dims {
					t := float64(y[i*dims+d] - y[j*dims+d])
					d2 += t * t
				}
				// log w = −log(1+d²). math.Log (assembly on amd64)
				// of 1+d² rather than math.Log1p(d²): Log1p was 4 %
				// of a whole 70,000-point run's CPU, and 1+d² loses
				// only what lies below 1e-16 absolute in the log.
				s += float64(val[e]) * math.Log(1+d2)
			}
		}
		part[c] = s
	})
	if err != nil {
		return 0, err
	}
	sumPLogInvW := 0.0
	for _, s := range part {
		sumPLogInvW += s
	}
	return o.plogp + sumPLogInvW + o.psum*math.Log(z), nil
}

// Coordinates implements embed.Optimizer.
func (o *optimizer) Coordinates(dst []float32) error {
	if o.closed {
		return errClosed
	}
	if len(dst) != len(o.y) {
		return fmt.Errorf("cpu: coordinates: dst has %d values, want %d", len(dst), len(o.y))
	}
	copy(dst, o.y)
	return nil
}

// Close implements embed.Optimizer.
func (o *optimizer) Close() error {
	o.closed = true
	o.y, o.yNext, o.gains, o.update, o.force = nil, nil, nil, nil, nil
	o.rep, o.klZ, o.hybrid = nil, nil, nil
	return nil
}
