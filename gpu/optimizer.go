//go:build cuda

package gpu

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/tsnemap/tsnemap/embed"
)

// repulsion computes the repulsive half of the t-SNE gradient on the
// device. It is the extension point for the large-N methods: exactRepulsion
// (below, all pairs) and the FFT-accelerated interpolation (fft.go).
//
// Contract of forces, for N points in dims (2 or 3) dimensions:
//   - y is Y on the device, N×dims float32 row-major; it must not be
//     modified.
//   - rep receives, for every i, Σ_{j≠i} w_ij² (y_i − y_j) with
//     w_ij = 1/(1+‖y_i−y_j‖²): N×dims float32, unnormalised (the update
//     divides by Z).
//   - z is one float64 on the device, zeroed by the caller; forces adds
//     Z = Σ_{i≠j} w_ij to it (atomicAdd is fine).
//   - forces runs on the device thread (the optimiser calls it inside
//     device.do) and only enqueues work on the context's stream; it may
//     keep its own device buffers, allocated at construction and freed by
//     release. It must not synchronise unless it needs a value on the host
//     (the FFT method's bounding box, say).
type repulsion interface {
	forces(y, rep, z devPtr) error
	// method names the method for Optimizer.Repulsion.
	method() embed.Repulsion
	// release frees the method's device buffers (on the device thread).
	release()
}

// Size limits of the device methods.
const (
	// exactAutoMax2D: in 2-D, auto uses the exact method up to this N and
	// the FFT interpolation above it (when the build has it, see fft.go).
	exactAutoMax2D = 20_000
	// exactMax is the largest N the exact O(N²) method accepts, in 2-D
	// and 3-D: 2.25·10¹⁰ pairs a step, ~20 ms on an H100-class GPU, ~20 s
	// for 1000 steps. Above it a 3-D problem does not fit the GPU (Fits
	// says so; auto sends it to the CPU's Barnes-Hut), and a 2-D one needs
	// the FFT method.
	exactMax = 150_000
	// klExactMax: KL computes Z with the exact kernel (forces off) up to
	// this N, whatever the step's method, so KL is comparable across
	// methods and with the CPU's; above it Z comes from a repulsion pass of
	// the run's own method on the current Y.
	klExactMax = exactMax
)

// errNoFFT is wrapped when a 2-D problem needs the FFT repulsion and this
// build does not have it.
var errNoFFT = errors.New("the FFT-interpolation repulsion is not in this build")

// resolveRepulsion picks the method for n points in dims dimensions, or
// says why the device cannot run the request. Fits and NewOptimizer both
// use it, so a problem Fits accepts is one NewOptimizer can run.
func resolveRepulsion(req embed.Repulsion, n, dims int) (embed.Repulsion, error) {
	switch req {
	case embed.RepulsionAuto:
		if dims == 3 {
			if n <= exactMax {
				return embed.RepulsionExact, nil
			}
			return "", fmt.Errorf("%w: 3-D repulsion on the GPU is exact only, up to %d points, not %d", ErrDoesNotFit, exactMax, n)
		}
		if n <= exactAutoMax2D || (!fftAvailable && n <= exactMax) {
			return embed.RepulsionExact, nil
		}
		if fftAvailable {
			return embed.RepulsionFFT, nil
		}
		return "", fmt.Errorf("%w: %d points in 2-D need the FFT repulsion: %w", ErrDoesNotFit, n, errNoFFT)
	case embed.RepulsionExact:
		if n <= exactMax {
			return embed.RepulsionExact, nil
		}
		return "", fmt.Errorf("%w: exact repulsion on the GPU is limited to %d points, not %d", ErrDoesNotFit, exactMax, n)
	case embed.RepulsionFFT:
		if dims != 2 {
			return "", fmt.Errorf("%w: fft repulsion is 2-D only", ErrDoesNotFit)
		}
		if !fftAvailable {
			return "", fmt.Errorf("%w: %w", ErrDoesNotFit, errNoFFT)
		}
		return embed.RepulsionFFT, nil
	case embed.RepulsionBarnesHut:
		return "", fmt.Errorf("%w: the GPU backend has no Barnes-Hut repulsion (use auto, exact or fft)", ErrDoesNotFit)
	}
	return "", fmt.Errorf("unknown repulsion method %q", req)
}

// exactRepulsion is the all-pairs method (repulse_exact_{2,3}d in
// tsne.cu): shared-memory tiles of 256 points, O(N²) work, O(N) memory.
type exactRepulsion struct {
	dev     *device
	n, dims int
}

func (e *exactRepulsion) forces(y, rep, z devPtr) error {
	return launchExact(e.dev, e.n, e.dims, 1, y, rep, z)
}

func (e *exactRepulsion) method() embed.Repulsion { return embed.RepulsionExact }
func (e *exactRepulsion) release()                {}

func launchExact(dev *device, n, dims, forces int, y, rep, z devPtr) error {
	k := kRepulseExact2D
	if dims == 3 {
		k = kRepulseExact3D
	}
	return dev.launch1D(k, n, repBlock, y, n, forces, rep, z)
}

// optimizer is the device-resident t-SNE state: Y (double-buffered), the
// gains, the velocities, the repulsive forces and P in CSR, all on the
// device; only Coordinates and KL bring anything back.
type optimizer struct {
	dev     *device
	n, dims int
	method  embed.Repulsion
	rep     repulsion

	rowptr, col, val  buf
	y, ynext          buf
	gains, upd, force buf
	scratch           buf // float64 [0]: Z, [1..3]: centroid, [4]: KL sum

	plogp, psum float64
	closed      bool
}

// NewOptimizer implements embed.Backend.
func (b *Backend) NewOptimizer(ctx context.Context, p *embed.CSR, y0 []float32, cfg embed.OptimizerConfig) (embed.Optimizer, error) {
	dev, derr := b.device()
	if derr != nil {
		return nil, derr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := embed.CheckProblem(p, y0, cfg); err != nil {
		return nil, fmt.Errorf("gpu: new optimizer: %w", err)
	}
	method, err := resolveRepulsion(cfg.Repulsion, cfg.N, cfg.Dims)
	if err != nil {
		return nil, fmt.Errorf("gpu: new optimizer: %w", err)
	}
	n, dims := cfg.N, cfg.Dims
	o := &optimizer{dev: dev, n: n, dims: dims, method: method}
	for _, v := range p.Val {
		if v > 0 {
			o.plogp += float64(v) * math.Log(float64(v))
		}
		o.psum += float64(v)
	}
	nnz := int64(len(p.Col))
	vec := int64(n) * int64(dims) * 4
	ones := make([]float32, n*dims)
	for i := range ones {
		ones[i] = 1
	}
	err = dev.do(func() (err error) {
		allocs := []struct {
			b     *buf
			bytes int64
		}{
			{&o.rowptr, int64(n+1) * 4}, {&o.col, nnz * 4}, {&o.val, nnz * 4},
			{&o.y, vec}, {&o.ynext, vec}, {&o.gains, vec}, {&o.upd, vec}, {&o.force, vec},
			{&o.scratch, 8 * 8},
		}
		for _, a := range allocs {
			if *a.b, err = dev.alloc(a.bytes); err != nil {
				return err
			}
		}
		for _, e := range []error{
			upload(dev, o.rowptr, p.RowPtr), upload(dev, o.col, p.Col), upload(dev, o.val, p.Val),
			upload(dev, o.y, y0), upload(dev, o.gains, ones), dev.zero(o.upd), dev.zero(o.force),
		} {
			if e != nil {
				return e
			}
		}
		switch method {
		case embed.RepulsionExact:
			o.rep = &exactRepulsion{dev: dev, n: n, dims: dims}
		case embed.RepulsionFFT:
			o.rep, err = newFFTRepulsion(dev, n)
		}
		return err
	})
	if err != nil {
		o.Close()
		return nil, fmt.Errorf("gpu: new optimizer: %w", err)
	}
	return o, nil
}

var errClosed = errors.New("gpu: optimizer is closed")

// Repulsion implements embed.Optimizer.
func (o *optimizer) Repulsion() embed.Repulsion { return o.method }

// Step implements embed.Optimizer: repulsion (forces and Z), the fused
// attraction + gradient + gains/momentum update into ynext with its
// centroid, the swap, and the re-centring: a memset and three or more
// launches, no transfer.
func (o *optimizer) Step(ctx context.Context, params embed.StepParams) error {
	if o.closed {
		return errClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return o.dev.do(func() error {
		if err := o.dev.zero(o.scratch); err != nil {
			return err
		}
		z := o.scratch.at(0)
		centroid := o.scratch.at(8)
		if err := o.rep.forces(o.y.p, o.force.p, z); err != nil {
			return err
		}
		k := kUpdate2D
		if o.dims == 3 {
			k = kUpdate3D
		}
		if err := o.dev.launch1D(k, o.n, 256, o.y, o.rowptr, o.col, o.val, o.force, z, o.n,
			float32(params.Exaggeration), float32(params.Momentum), float32(params.LearningRate),
			o.gains, o.upd, o.ynext, centroid); err != nil {
			return err
		}
		o.y, o.ynext = o.ynext, o.y
		if err := o.dev.launch1D(kRecentre, o.n*o.dims, 256, o.y, centroid, o.n, o.dims); err != nil {
			return err
		}
		// Wait for the step: a cancelled run then stops within one
		// iteration (launches are asynchronous, and without this the host
		// could queue hundreds of steps ahead), and a device fault is
		// reported by the step that caused it. It costs a few µs a step.
		return o.dev.dr.synchronize()
	})
}

// KL implements embed.Optimizer: KL(P‖Q) = Σ p log p − Σ p log w + log Z,
// with Σ p log p from the host's P, Σ p log(1+d²) summed on the device in
// float64, and Z exact up to klExactMax points (see there).
func (o *optimizer) KL(ctx context.Context) (float64, error) {
	if o.closed {
		return 0, errClosed
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var out [5]float64
	err := o.dev.do(func() error {
		if err := o.dev.zero(o.scratch); err != nil {
			return err
		}
		z := o.scratch.at(0)
		if o.n <= klExactMax {
			if err := launchExact(o.dev, o.n, o.dims, 0, o.y.p, o.force.p, z); err != nil {
				return err
			}
		} else if err := o.rep.forces(o.y.p, o.force.p, z); err != nil {
			return err
		}
		if err := o.dev.launch1D(kKLTerms, o.n, 256, o.y, o.rowptr, o.col, o.val, o.n, o.dims, o.scratch.at(32)); err != nil {
			return err
		}
		return download(o.dev, out[:], o.scratch)
	})
	if err != nil {
		return 0, err
	}
	if !(out[0] > 0) {
		return 0, fmt.Errorf("gpu: KL: normalisation Z = %v", out[0])
	}
	return o.plogp + out[4] + o.psum*math.Log(out[0]), nil
}

// Coordinates implements embed.Optimizer.
func (o *optimizer) Coordinates(dst []float32) error {
	if o.closed {
		return errClosed
	}
	if len(dst) != o.n*o.dims {
		return fmt.Errorf("gpu: coordinates: dst has %d values, want %d", len(dst), o.n*o.dims)
	}
	return o.dev.do(func() error { return download(o.dev, dst, o.y) })
}

// Close implements embed.Optimizer.
func (o *optimizer) Close() error {
	if o.closed {
		return nil
	}
	o.closed = true
	return o.dev.do(func() error {
		if o.rep != nil {
			o.rep.release()
		}
		for _, b := range []*buf{&o.rowptr, &o.col, &o.val, &o.y, &o.ynext, &o.gains, &o.upd, &o.force, &o.scratch} {
			o.dev.free(b)
		}
		return nil
	})
}
