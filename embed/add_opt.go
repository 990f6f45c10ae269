package embed

import (
	"context"
	"fmt"
	"math"
	"time"
)

// addProblem is an addition's optimisation: M new points, each with K
// affinities p_{j|i} to base points, against a fixed tree of the base.
type addProblem struct {
	m, k, dims int
	threads    int
	nbr        []int32   // M×K base indices
	p          []float64 // M×K, each row sums to 1
	baseY      []float64 // N×dims
	tree       *fixedTree
}

func newAddProblem(ctx context.Context, base *Base, scores []float32, m int, opts AddOptions) (*addProblem, error) {
	k := max(1, min(base.N, int(math.Floor(3*opts.Perplexity))))
	// With fewer base points than 3·perplexity, the perplexity is lowered
	// to what k neighbours allow (k/3, at least 1): a small base cannot
	// support a wide neighbourhood.
	perp := min(opts.Perplexity, max(1, float64(k)/3))
	nb, err := queryNeighbors(ctx, base.Scores, base.N, scores, m, base.Basis.K, k, opts.Threads)
	if err != nil {
		return nil, err
	}
	pr := &addProblem{m: m, k: k, dims: base.Dims, threads: opts.Threads, nbr: nb.Index, p: make([]float64, m*k)}
	target := math.Log(perp)
	err = parallelRows(ctx, m, opts.Threads, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			if k == 1 {
				pr.p[i] = 1
				continue
			}
			calibrateRow(nb.Dist2[i*k:(i+1)*k], target, pr.p[i*k:(i+1)*k])
		}
	})
	if err != nil {
		return nil, err
	}
	pr.baseY = make([]float64, len(base.Y))
	for i, v := range base.Y {
		pr.baseY[i] = float64(v)
	}
	pr.tree = newFixedTree(pr.baseY, base.N, base.Dims, opts.Theta)
	return pr, nil
}

// initial is each new point at the p-weighted mean of its neighbours'
// coordinates (openTSNE's "weighted" initialisation, with the affinities
// as weights so the closest neighbours count most).
func (pr *addProblem) initial() []float64 {
	y := make([]float64, pr.m*pr.dims)
	for i := range pr.m {
		for a := range pr.k {
			w := pr.p[i*pr.k+a]
			j := int(pr.nbr[i*pr.k+a])
			for c := range pr.dims {
				y[i*pr.dims+c] += w * pr.baseY[j*pr.dims+c]
			}
		}
	}
	return y
}

// gradient writes into g (dims values) the gradient of KL(p_i‖q_i) at y
// (point i's coordinates): 2·Σ_j (p_{j|i} − q_{j|i})·w_ij·(y − y_j), the
// attraction over the neighbours exactly, the repulsion Σ_j q_{j|i} w_ij
// (y − y_j) = F/Z from the tree. It returns Z = Σ_j w_ij.
func (pr *addProblem) gradient(i int, y []float64, g []float64) float64 {
	var f [3]float64
	z := pr.tree.repulse(y, &f)
	for c := range pr.dims {
		g[c] = -f[c] / z
	}
	for a := range pr.k {
		j := int(pr.nbr[i*pr.k+a])
		yj := pr.baseY[j*pr.dims : (j+1)*pr.dims]
		d2 := 0.0
		for c := range pr.dims {
			d := y[c] - yj[c]
			d2 += d * d
		}
		pw := pr.p[i*pr.k+a] / (1 + d2)
		for c := range pr.dims {
			g[c] += pw * (y[c] - yj[c])
		}
	}
	for c := range pr.dims {
		g[c] *= 2
	}
	return z
}

// objective is KL(p_i‖q_i) at y, with Z from the tree.
func (pr *addProblem) objective(i int, y []float64) float64 {
	var f [3]float64
	z := pr.tree.repulse(y, &f)
	kl := 0.0
	for a := range pr.k {
		p := pr.p[i*pr.k+a]
		if p <= 0 {
			continue
		}
		j := int(pr.nbr[i*pr.k+a])
		d2 := 0.0
		for c := range pr.dims {
			d := y[c] - pr.baseY[j*pr.dims+c]
			d2 += d * d
		}
		q := 1 / (1 + d2) / z
		kl += p * math.Log(p/q)
	}
	return kl
}

func (pr *addProblem) meanKL(ctx context.Context, y []float64) float64 {
	part := make([]float64, pr.m)
	if err := parallelRows(ctx, pr.m, pr.threads, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			part[i] = pr.objective(i, y[i*pr.dims:(i+1)*pr.dims])
		}
	}); err != nil {
		return math.NaN()
	}
	s := 0.0
	for _, v := range part {
		s += v
	}
	return s / float64(pr.m)
}

// optimize runs openTSNE's transform schedule: gradient descent with
// momentum and delta-bar-delta gains (as Run's steps), the step taken on
// 2·∇KL_i (openTSNE's 4·Σ(p − q)·w·(y_i − y_j) scale, for which its
// learning rate is set) clipped to MaxGradNorm per point. Base points
// never move and nothing is re-centred.
func (pr *addProblem) optimize(ctx context.Context, opts AddOptions, obs *Observer, start time.Time) ([]float64, error) {
	y := pr.initial()
	upd := make([]float64, len(y))
	gains := make([]float64, len(y))
	for i := range gains {
		gains[i] = 1
	}
	report := func(p Progress) {
		if obs != nil && obs.Progress != nil {
			p.Elapsed = time.Since(start)
			obs.Progress(p)
		}
	}
	report(Progress{Stage: StageOptimizing, Iterations: opts.Iterations, KL: math.NaN()})
	d := pr.dims
	for it := range opts.Iterations {
		err := parallelRows(ctx, pr.m, pr.threads, func(lo, hi int) {
			var g [3]float64
			for i := lo; i < hi; i++ {
				yi := y[i*d : (i+1)*d]
				pr.gradient(i, yi, g[:d])
				step(g[:d], yi, upd[i*d:(i+1)*d], gains[i*d:(i+1)*d], opts)
			}
		})
		if err != nil {
			return nil, err
		}
		report(Progress{Stage: StageOptimizing, Iteration: it + 1, Iterations: opts.Iterations, KL: math.NaN()})
	}
	for i, v := range y {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("addition: coordinate %d of new point %d is %v", i%d, i/d, v)
		}
	}
	return y, nil
}

// step applies one update to one point: g is ∇KL_i, scaled by 2 and
// clipped to MaxGradNorm; the gains rise by 0.2 where the gradient's sign
// differs from the last update's and shrink ×0.8 otherwise (never below
// 0.01), as in Run.
func step(g, y, upd, gains []float64, opts AddOptions) {
	norm := 0.0
	for c := range g {
		g[c] *= 2
		norm += g[c] * g[c]
	}
	if norm = math.Sqrt(norm); norm > opts.MaxGradNorm {
		for c := range g {
			g[c] *= opts.MaxGradNorm / norm
		}
	}
	for c := range g {
		if (g[c] > 0) != (upd[c] > 0) {
			gains[c] += 0.2
		} else {
			gains[c] = max(gains[c]*0.8, 0.01)
		}
		upd[c] = opts.Momentum*upd[c] - opts.LearningRate*gains[c]*g[c]
		y[c] += upd[c]
	}
}
