package embed

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// Basis projects rows onto a run's principal components: (x − Mean)·Axes,
// after scaling each row to unit length when Metric is cosine (as Run
// does before its PCA).
type Basis struct {
	D, K   int
	Mean   []float32 // D
	Axes   []float32 // D×K row-major
	Metric Metric
}

// Base is a finished map that new rows can be added to without moving it:
// its basis, its N rows' scores in that basis and their coordinates.
type Base struct {
	Method Method
	Basis  Basis
	N      int
	Dims   int
	Scores []float32 // N×Basis.K
	Y      []float32 // N×Dims
}

// AddOptions are the parameters of an addition. Start from
// DefaultAddOptions.
type AddOptions struct {
	Perplexity   float64
	Iterations   int
	LearningRate float64
	Momentum     float64
	MaxGradNorm  float64 // each point's step gradient is clipped to this length
	Theta        float64 // Barnes-Hut opening angle over the base points; 0 is exact
	Threads      int     // ≤ 0: GOMAXPROCS
}

// DefaultAddOptions are the published defaults of openTSNE's
// TSNEEmbedding.transform (Poličar, Stražar & Zupan, "openTSNE: A Modular
// Python Library for t-SNE Dimensionality Reduction and Embedding",
// Journal of Statistical Software 109(3), 2024; bioRxiv 731877, 2019,
// §"Embedding new samples"): perplexity 5 — each new point is placed on
// its own against a fixed map, and a low perplexity attaches it to its
// closest neighbourhood instead of averaging over a wide one, which would
// pull points between clusters —, no early exaggeration, 250 iterations
// at momentum 0.8, learning rate 0.1 and each point's gradient clipped to
// length 0.25 (openTSNE's max_grad_norm), so no new point jumps across
// the map in one step.
func DefaultAddOptions() AddOptions {
	return AddOptions{Perplexity: 5, Iterations: 250, LearningRate: 0.1, Momentum: 0.8, MaxGradNorm: 0.25, Theta: 0.5}
}

// AddResult holds the coordinates of the new rows.
type AddResult struct {
	M, Dims int
	Y       []float32 // M×Dims row-major
	// Scores are the new rows in the base's basis (M×K), so that an
	// addition can itself be a base (a chain).
	Scores []float32
	// KL is the mean over the new points of KL(p_i‖q_i); NaN for PCA.
	KL      float64
	Elapsed time.Duration
}

// Check validates a base.
func (b *Base) Check() error {
	bad := func(format string, args ...any) error {
		return &FieldError{Field: "base", Err: ErrInvalidInput, Message: fmt.Sprintf(format, args...)}
	}
	switch {
	case b == nil:
		return bad("is missing")
	case b.Method != MethodTSNE && b.Method != MethodPCA:
		return bad("method %q is not tsne or pca", b.Method)
	case b.Dims != 2 && b.Dims != 3:
		return bad("has %d dimensions, want 2 or 3", b.Dims)
	case b.N < 1 || len(b.Y) != b.N*b.Dims || len(b.Scores) != b.N*b.Basis.K:
		return bad("has %d rows but %d coordinates and %d scores", b.N, len(b.Y), len(b.Scores))
	case b.Basis.D < 1 || b.Basis.K < 1 || len(b.Basis.Mean) != b.Basis.D || len(b.Basis.Axes) != b.Basis.D*b.Basis.K:
		return bad("basis is %d×%d with %d means and %d axis values", b.Basis.D, b.Basis.K, len(b.Basis.Mean), len(b.Basis.Axes))
	case b.Method == MethodPCA && b.Basis.K != b.Dims:
		return bad("a pca map's basis has %d components, want its %d dimensions", b.Basis.K, b.Dims)
	}
	return nil
}

func (o AddOptions) validate() error {
	var errs []error
	if !(o.Perplexity > 0) || math.IsInf(o.Perplexity, 0) {
		errs = append(errs, optErr("perplexity", "must be a finite number > 0, not %v", o.Perplexity))
	}
	if o.Iterations < 0 || o.Iterations > 100000 {
		errs = append(errs, optErr("iterations", "must be between 0 and 100000, not %d", o.Iterations))
	}
	if !(o.LearningRate > 0) || math.IsInf(o.LearningRate, 0) {
		errs = append(errs, optErr("learning_rate", "must be a finite number > 0, not %v", o.LearningRate))
	}
	if !(o.Momentum >= 0 && o.Momentum < 1) {
		errs = append(errs, optErr("momentum", "must be in [0, 1), not %v", o.Momentum))
	}
	if !(o.MaxGradNorm > 0) {
		errs = append(errs, optErr("max_grad_norm", "must be > 0, not %v", o.MaxGradNorm))
	}
	if !(o.Theta >= 0) || o.Theta > 1.5 {
		errs = append(errs, optErr("theta", "must be between 0 and 1.5, not %v", o.Theta))
	}
	return errors.Join(errs...)
}

// Add places the M rows of data into base's map without moving any base
// point: the transform of openTSNE (Poličar, Stražar & Zupan 2019/2024).
// Each new row is projected with the base's basis; its ⌊3·perplexity⌋
// nearest base points in that space give its affinities p_{j|i} (the
// base's points only: new points neither attract nor repel each other, so
// each is placed as if it were added alone, whatever else arrives with
// it); it starts at the p-weighted mean of those neighbours' coordinates
// and descends on KL(p_i‖q_i) with q_{j|i} = w_ij / Σ_l w_il over all base
// points l (openTSNE's point-wise normalisation for new data), the
// repulsion summed by Barnes-Hut over a tree of the fixed base points.
// A pca base places rows by the projection alone. base is only read.
func Add(ctx context.Context, be Backend, base *Base, data Data, opts AddOptions, obs *Observer) (*AddResult, error) {
	start := time.Now()
	if err := base.Check(); err != nil {
		return nil, err
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	scores, err := project(ctx, be, &base.Basis, data)
	if err != nil {
		return nil, err
	}
	m, dims := data.N, base.Dims
	res := &AddResult{M: m, Dims: dims, Scores: scores, KL: math.NaN()}
	if base.Method == MethodPCA {
		res.Y = append([]float32(nil), scores...)
		res.Elapsed = time.Since(start)
		return res, nil
	}
	prob, err := newAddProblem(ctx, base, scores, m, opts)
	if err != nil {
		return nil, err
	}
	y, err := prob.optimize(ctx, opts, obs, start)
	if err != nil {
		return nil, err
	}
	res.Y = make([]float32, len(y))
	for i, v := range y {
		res.Y[i] = float32(v)
	}
	res.KL = prob.meanKL(ctx, y)
	res.Elapsed = time.Since(start)
	return res, ctx.Err()
}

// project returns data's rows in the basis (M×K), unit-scaled first for
// the cosine metric.
func project(ctx context.Context, be Backend, b *Basis, data Data) ([]float32, error) {
	if err := data.Validate(); err != nil {
		return nil, err
	}
	if data.D != b.D {
		return nil, &FieldError{Field: "columns", Err: ErrInvalidInput,
			Message: fmt.Sprintf("the new rows have %d values each; the base's have %d", data.D, b.D)}
	}
	if b.Metric == MetricCosine {
		var err error
		if data, err = unitView(ctx, data); err != nil {
			return nil, err
		}
	}
	out := make([]float32, data.N*b.K)
	ps := passes{be: be, block: blockRowsOf(data)}
	if err := ps.mulRight(ctx, data, b.Mean, b.Axes, b.K, out); err != nil {
		return nil, fmt.Errorf("project new rows: %w", err)
	}
	return out, nil
}
