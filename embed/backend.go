package embed

import (
	"context"
	"errors"
	"fmt"
	"math"
)

// Data is the input of a run: N rows of D values, row-major, held either as
// uint8 (the loader's pixels) or as float32 (features computed elsewhere),
// or as uint8 rows read from a RowSource (pixels spooled to disk). Exactly
// one of U8, F32 and Rows is set. Pixels stay uint8 until PCA reads them in
// blocks, so 100,000 images of 100×100 RGB cost 3 GB, not 12 GB, in
// memory, and only a block of 64 MB from a RowSource.
type Data struct {
	N, D int
	U8   []uint8
	F32  []float32
	Rows RowSource

	// unit says that the pixels (U8 or Rows) are scaled to unit length
	// as they are read (the cosine metric, see unitView): each block
	// reaches the backend as float32 and the whole never exists as such.
	unit bool
}

// streamed reports whether the passes over d go block by block (eachBlock)
// rather than to the backend in one call.
func (d Data) streamed() bool { return d.Rows != nil || d.unit }

// Pixels reports whether the rows are uint8 (in memory or from a
// RowSource).
func (d Data) Pixels() bool { return (d.U8 != nil || d.Rows != nil) && !d.unit }

// Neighbors lists, for each of N points, its K nearest other points in
// ascending order of squared Euclidean distance. Row i occupies
// Index[i*K:(i+1)*K] and Dist2[i*K:(i+1)*K]; a point never lists itself.
type Neighbors struct {
	N, K   int
	Index  []int32
	Dist2  []float32
	Method NeighborMethod // the method used: NeighborsExact or NeighborsApprox
}

// CSR is a sparse N×N matrix in compressed sparse row form. Values are
// float32 to halve memory traffic in the attractive-force loop (the hot loop
// of every iteration); every sum over them is accumulated in float64.
type CSR struct {
	N      int
	RowPtr []int32 // len N+1
	Col    []int32 // len nnz, sorted within each row
	Val    []float32
}

// NNZ is the number of stored entries.
func (m *CSR) NNZ() int { return len(m.Col) }

// OptimizerConfig describes the embedding problem handed to a backend.
type OptimizerConfig struct {
	N, Dims   int
	Repulsion Repulsion // may be RepulsionAuto: the backend then picks
	Theta     float64   // Barnes-Hut opening angle
}

// StepParams are the schedule values of one gradient step.
type StepParams struct {
	Exaggeration float64 // multiplies P in the attractive term
	Momentum     float64
	LearningRate float64
}

// Backend is the set of heavy kernels a run needs. The algorithm (what to
// compute, in which order, with which parameters) lives in this package; a
// backend only decides how each kernel runs: on every CPU core (package cpu)
// or on a CUDA device (package gpu).
type Backend interface {
	// Name describes the backend for logs and jobs, e.g. "cpu (2 threads)".
	Name() string

	// The three PCA products get x with U8 or F32 set, never Rows: a run
	// reads a RowSource in blocks and hands the backend one block at a time.

	// ColumnMeans writes the mean of each of the D columns of x into dst.
	ColumnMeans(ctx context.Context, x Data, dst []float64) error
	// MulRight writes dst (N×l, row-major) = (X − 1·meanᵀ)·B, where B is D×l
	// row-major. X is read in row blocks; it is never converted whole.
	MulRight(ctx context.Context, x Data, mean []float32, b []float32, l int, dst []float32) error
	// MulTransLeft writes dst (D×l, row-major) = (X − 1·meanᵀ)ᵀ·B, where B is
	// N×l row-major.
	MulTransLeft(ctx context.Context, x Data, mean []float32, b []float32, l int, dst []float32) error

	// KNearest finds the k nearest neighbours of each of the n rows of the
	// n×d row-major matrix x. method may be NeighborsAuto, and the backend
	// then picks by n; seed drives any randomness of the approximate method.
	KNearest(ctx context.Context, x []float32, n, d, k int, method NeighborMethod, seed int64) (*Neighbors, error)

	// NewOptimizer uploads P (symmetric, summing to 1) and the initial
	// coordinates y0 (N×Dims) and returns the optimiser state. P, Y, gains
	// and velocities stay with the backend (on the device, for a GPU) across
	// iterations; only Coordinates brings Y back.
	NewOptimizer(ctx context.Context, p *CSR, y0 []float32, cfg OptimizerConfig) (Optimizer, error)
}

// Optimizer is one t-SNE optimisation in progress on a backend.
type Optimizer interface {
	// Repulsion names the repulsion method of the latest step (never
	// RepulsionAuto; an auto backend may change method as Y spreads).
	Repulsion() Repulsion
	// Step performs one gradient-descent step on KL(P‖Q) with P multiplied
	// by params.Exaggeration: gradient 4·Σ_j (e·p_ij − q_ij)·w_ij·(y_i − y_j)
	// with w_ij = 1/(1+‖y_i−y_j‖²), delta-bar-delta gains (+0.2 when the
	// gradient's sign differs from the last update's, ×0.8 otherwise, never
	// below 0.01), update = momentum·update − rate·gain·gradient, y += update,
	// then Y is re-centred on the origin.
	Step(ctx context.Context, params StepParams) error
	// KL returns KL(P‖Q) of the current coordinates (P unexaggerated). It is
	// computed the same way whatever the repulsion method, so runs with
	// different methods are comparable.
	KL(ctx context.Context) (float64, error)
	// Coordinates copies Y (N×Dims, row-major) into dst.
	Coordinates(dst []float32) error
	// Close releases the backend's memory.
	Close() error
}

// AffinityBackend is implemented by a Backend that runs the perplexity
// calibration itself (package gpu, on the device). Run checks for it with
// a type assertion; without it (package cpu) calibration runs on the host.
// Calibrate returns the conditional probabilities p_{j|i}, N×K row-major
// in the order of nb, each row's entropy within PerplexityTolerance of
// log(perplexity) by the same safeguarded Newton search as the host's;
// Run symmetrises them on the host (O(N·K)), so P is built the same way
// whatever the backend.
type AffinityBackend interface {
	Calibrate(ctx context.Context, nb *Neighbors, perplexity float64) (cond []float64, err error)
}

// DataHolder is implemented by a Backend that can keep the input in its own
// memory for the PCA passes (package gpu: one upload to the device instead
// of one per pass, six in all). principalComponents calls Hold before the
// passes, with the Data they then read, and the returned release after
// them; while held the data must not change. An error means only "not
// held": the passes then stream x as usual.
type DataHolder interface {
	Hold(ctx context.Context, x Data) (release func(), err error)
}

// CheckProblem checks what every backend's kernels index by — dims, N, the
// CSR structure of P and its values, and y0 — so that bad input is an error
// and never a panic or a device fault. Backends add their own checks (the
// repulsion methods they have) on top.
func CheckProblem(p *CSR, y0 []float32, cfg OptimizerConfig) error {
	if cfg.Dims != 2 && cfg.Dims != 3 {
		return fmt.Errorf("dims must be 2 or 3, not %d", cfg.Dims)
	}
	if cfg.N < 2 {
		return fmt.Errorf("need at least 2 points, not %d", cfg.N)
	}
	if p == nil {
		return errors.New("P is nil")
	}
	if p.N != cfg.N {
		return fmt.Errorf("P is %d×%d but N is %d", p.N, p.N, cfg.N)
	}
	if len(y0) != cfg.N*cfg.Dims {
		return fmt.Errorf("y0 has %d values, want N·dims = %d", len(y0), cfg.N*cfg.Dims)
	}
	for i, v := range y0 {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("y0[%d] is %v", i, v)
		}
	}
	if len(p.RowPtr) != p.N+1 || p.RowPtr[0] != 0 {
		return fmt.Errorf("P row pointers: %d of them, want N+1 = %d starting at 0", len(p.RowPtr), p.N+1)
	}
	nnz := int(p.RowPtr[p.N])
	if len(p.Col) != nnz || len(p.Val) != nnz {
		return fmt.Errorf("P has %d columns and %d values, row pointers say %d", len(p.Col), len(p.Val), nnz)
	}
	for i := range p.N {
		if p.RowPtr[i+1] < p.RowPtr[i] {
			return fmt.Errorf("P row pointers decrease at row %d", i)
		}
	}
	for e, c := range p.Col {
		if c < 0 || int(c) >= p.N {
			return fmt.Errorf("P column index %d at entry %d is out of range", c, e)
		}
		if v := float64(p.Val[e]); !(v >= 0) || math.IsInf(v, 0) {
			return fmt.Errorf("P value %v at entry %d is not a finite non-negative number", v, e)
		}
	}
	return nil
}
