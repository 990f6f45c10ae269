// Package embed is the t-SNE engine: it turns N feature vectors into N
// points in 2 or 3 dimensions whose neighbourhoods mirror the input's
// (van der Maaten & Hinton 2008, "Visualizing Data using t-SNE"). The
// algorithm lives here; the heavy kernels run on a Backend (package cpu,
// or package gpu on a CUDA device).
package embed

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Stage names a part of a run, with the names of the job API.
type Stage string

const (
	StageReducing            Stage = "reducing"
	StageComputingAffinities Stage = "computing_affinities"
	StageOptimizing          Stage = "optimizing"
)

// Progress reports a run's state to an Observer.
type Progress struct {
	Stage      Stage
	Iteration  int // iterations done (optimizing)
	Iterations int
	// KL is the most recent KL(P‖Q), NaN until the first is computed
	// (every 50 iterations).
	KL float64
	// Coordinates is a copy of the current N×Dims coordinates, set only
	// when a snapshot was due (Observer.SnapshotEvery).
	Coordinates []float32
	Elapsed     time.Duration
}

// Observer receives a run's progress. Progress is called from the run's
// goroutine at every stage change and after every iteration; it must
// return quickly. Coordinates are copied from the backend (a device to
// host transfer on a GPU) at most once per SnapshotEvery; zero means never.
type Observer struct {
	Progress      func(Progress)
	SnapshotEvery time.Duration
	// Neighbors, when set, is called once after the neighbour search with
	// the points it searched (the PCA scores, row-major N×d) and the
	// neighbours found, for benchmarks that measure the search's recall.
	// Its time is not counted in Timings; it must not keep or change x or
	// nb.
	Neighbors func(x []float32, d int, nb *Neighbors)
}

// Timings are the wall-clock durations of a run's stages.
type Timings struct {
	PCA, Neighbors, Affinities, Optimize time.Duration
}

// Result is the output of a run.
type Result struct {
	N, Dims int
	Y       []float32 // N×Dims row-major
	// KL is the final KL(P‖Q); NaN for method pca.
	KL         float64
	Repulsion  Repulsion      // resolved repulsion method (t-SNE)
	Neighbors  NeighborMethod // resolved neighbour search (t-SNE)
	Components int            // PCA components the neighbours were found in
	Timings    Timings
	// Basis is the projection the neighbours were found in and Scores
	// (N×Components) the rows' coordinates in it: with Y, what Add needs
	// to place new rows into this map (see Base).
	Basis  *Basis
	Scores []float32
}

// klEvery is how often KL(P‖Q) is computed, as scikit-learn and openTSNE do.
const klEvery = 50

// Run computes the embedding of data with opts on be. It returns an error
// wrapping ErrInvalidOption, ErrInvalidInput or ErrPerplexityTooLarge (as
// a *FieldError) for bad requests, ctx.Err() when cancelled, and the
// backend's error otherwise. obs may be nil.
func Run(ctx context.Context, be Backend, data Data, opts Options, obs *Observer) (*Result, error) {
	if err := data.Validate(); err != nil {
		return nil, err
	}
	if err := opts.Check(data.N); err != nil {
		return nil, err
	}
	if opts.Metric == MetricCosine {
		var err error
		if data, err = unitView(ctx, data); err != nil {
			return nil, err
		}
	}
	n, dims := data.N, opts.Dimensions
	if opts.Method == MethodPCA && min(data.D, n) < dims {
		return nil, &FieldError{Field: "dimensions", Err: ErrInvalidOption,
			Message: fmt.Sprintf("%d principal components need at least %d columns and rows; the input is %d×%d", dims, dims, n, data.D)}
	}
	start := time.Now()
	report := func(p Progress) {
		if obs != nil && obs.Progress != nil {
			p.Elapsed = time.Since(start)
			obs.Progress(p)
		}
	}
	res := &Result{N: n, Dims: dims, KL: math.NaN()}

	// Reduce.
	report(Progress{Stage: StageReducing, Iterations: opts.Iterations, KL: math.NaN()})
	k := min(opts.PCAComponents, data.D, n-1)
	if opts.Method == MethodPCA {
		k = dims
	}
	t := time.Now()
	pc, err := principalComponents(ctx, be, data, k, opts.Seed)
	if err != nil {
		return nil, err
	}
	res.Timings.PCA = time.Since(t)
	res.Components = pc.K
	res.Basis = &Basis{D: data.D, K: pc.K, Mean: pc.Mean, Axes: pc.Axes, Metric: opts.Metric}
	res.Scores = pc.Scores
	if opts.Method == MethodPCA {
		res.Y = pc.Scores
		return res, nil
	}

	// Affinities.
	report(Progress{Stage: StageComputingAffinities, Iterations: opts.Iterations, KL: math.NaN()})
	t = time.Now()
	nb, err := be.KNearest(ctx, pc.Scores, n, pc.K, opts.NeighborCount(n), opts.Neighbors, opts.Seed)
	if err != nil {
		return nil, fmt.Errorf("nearest neighbours: %w", err)
	}
	res.Neighbors = nb.Method
	res.Timings.Neighbors = time.Since(t)
	if obs != nil && obs.Neighbors != nil {
		obs.Neighbors(pc.Scores, pc.K, nb)
	}
	// From here on the points are numbered in a cache-friendly order
	// (order.go); the result is numbered back.
	perm := localityOrder(pc.Scores, n, pc.K)
	if perm != nil {
		permuteNeighbors(nb, perm, inverseOrder(perm))
	}
	t = time.Now()
	threads := 0
	if th, ok := be.(interface{ Threads() int }); ok {
		threads = th.Threads()
	}
	// The squared distances are replaced by each edge's share of P: the
	// float64 conditional probabilities are never held for all N·K edges
	// on the host's path.
	if ab, ok := be.(AffinityBackend); ok {
		cond, err := ab.Calibrate(ctx, nb, opts.Perplexity)
		if err != nil {
			return nil, fmt.Errorf("affinities: %w", err)
		}
		sharesOf(cond, n, nb.Dist2)
	} else if err = calibrateShares(ctx, nb, opts.Perplexity, threads); err != nil {
		return nil, err
	}
	p, err := symmetrizeShares(ctx, nb, nb.Dist2, threads)
	if err != nil {
		return nil, err
	}
	res.Timings.Affinities = time.Since(t)

	// Optimise.
	t = time.Now()
	y0 := initialCoordinates(pc, n, dims, opts)
	if perm != nil {
		y0 = permuteRows(y0, dims, perm)
	}
	opt, err := be.NewOptimizer(ctx, p, y0, OptimizerConfig{N: n, Dims: dims, Repulsion: opts.Repulsion, Theta: opts.Theta})
	if err != nil {
		return nil, fmt.Errorf("optimizer: %w", err)
	}
	defer opt.Close()
	if err := optimize(ctx, opt, n, dims, opts, obs, report, perm); err != nil {
		return nil, err
	}
	res.Y, err = coordinates(opt, n, dims, perm)
	if err != nil {
		return nil, err
	}
	res.Repulsion = opt.Repulsion()
	if res.KL, err = opt.KL(ctx); err != nil {
		return nil, fmt.Errorf("optimizer: %w", err)
	}
	res.Timings.Optimize = time.Since(t)
	return res, nil
}

// optimize runs the gradient descent schedule of van der Maaten & Hinton
// (2008) as scikit-learn and openTSNE use it: exaggerated P and momentum
// 0.5 for the first ExaggerationIterations, then P and momentum 0.8.
// coordinates reads the optimiser's Y, numbered back to the input's order
// when the optimiser works in the order perm (nil: the input's).
func coordinates(opt Optimizer, n, dims int, perm []int32) ([]float32, error) {
	y := make([]float32, n*dims)
	if err := opt.Coordinates(y); err != nil {
		return nil, fmt.Errorf("optimizer: %w", err)
	}
	if perm == nil {
		return y, nil
	}
	out := make([]float32, n*dims)
	unpermuteRows(out, y, dims, perm)
	return out, nil
}

func optimize(ctx context.Context, opt Optimizer, n, dims int, opts Options, obs *Observer, report func(Progress), perm []int32) error {
	rate := opts.EffectiveLearningRate(n)
	kl := math.NaN()
	var lastSnap time.Time
	for it := range opts.Iterations {
		if err := ctx.Err(); err != nil {
			return err
		}
		params := StepParams{Exaggeration: 1, Momentum: 0.8, LearningRate: rate}
		if it < opts.ExaggerationIterations {
			params.Exaggeration, params.Momentum = opts.EarlyExaggeration, 0.5
		}
		if err := opt.Step(ctx, params); err != nil {
			return fmt.Errorf("optimizer: iteration %d: %w", it+1, err)
		}
		done := it + 1
		if done%klEvery == 0 && done < opts.Iterations {
			v, err := opt.KL(ctx)
			if err != nil {
				return fmt.Errorf("optimizer: KL at iteration %d: %w", done, err)
			}
			kl = v
		}
		p := Progress{Stage: StageOptimizing, Iteration: done, Iterations: opts.Iterations, KL: kl}
		if obs != nil && obs.SnapshotEvery > 0 && time.Since(lastSnap) >= obs.SnapshotEvery {
			c, err := coordinates(opt, n, dims, perm)
			if err != nil {
				return err
			}
			p.Coordinates = c
			lastSnap = time.Now()
		}
		report(p)
	}
	return nil
}

// initStd is the standard deviation of the first initial coordinate:
// small enough that early exaggeration starts from a compact layout
// (Kobak & Berens 2019, "The art of using t-SNE for single-cell
// transcriptomics").
const initStd = 1e-4

// initialCoordinates is the PCA initialisation (the leading principal
// components, scaled so the first has standard deviation 1e-4; Kobak &
// Berens 2019) or a seeded Gaussian with that standard deviation. Missing
// components (fewer input columns than dimensions) are Gaussian too.
func initialCoordinates(pc *PCA, n, dims int, opts Options) []float32 {
	y := make([]float32, n*dims)
	rng := rand.New(rand.NewPCG(uint64(opts.Seed), 0x243f6a8885a308d3))
	for i := range y {
		y[i] = float32(rng.NormFloat64() * initStd)
	}
	if opts.Init != InitPCA {
		return y
	}
	use := min(dims, pc.K)
	mean, sq := 0.0, 0.0
	for i := range n {
		v := float64(pc.Scores[i*pc.K])
		mean += v
		sq += v * v
	}
	mean /= float64(n)
	std := math.Sqrt(max(sq/float64(n)-mean*mean, 0))
	if !(std > 0) {
		return y // the data do not vary: nothing to initialise from
	}
	scale := initStd / std
	for i := range n {
		for c := range use {
			y[i*dims+c] = float32(float64(pc.Scores[i*pc.K+c]) * scale)
		}
	}
	return y
}
