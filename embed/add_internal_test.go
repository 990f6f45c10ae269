package embed

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
)

// randomAddProblem is an addition of m random points to a random base of
// n points, with exact repulsion when theta is 0.
func randomAddProblem(t *testing.T, n, m, dims int, theta float64, seed uint64) (*addProblem, []float64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	const k = 5
	base := &Base{Method: MethodTSNE, N: n, Dims: dims, Y: make([]float32, n*dims), Scores: make([]float32, n*k),
		Basis: Basis{D: k, K: k, Mean: make([]float32, k), Axes: make([]float32, k*k), Metric: MetricEuclidean}}
	for i := range base.Y {
		base.Y[i] = float32(rng.NormFloat64() * 5)
	}
	for i := range base.Scores {
		base.Scores[i] = float32(rng.NormFloat64())
	}
	scores := make([]float32, m*k)
	for i := range scores {
		scores[i] = float32(rng.NormFloat64())
	}
	opts := DefaultAddOptions()
	opts.Theta = theta
	pr, err := newAddProblem(context.Background(), base, scores, m, opts)
	if err != nil {
		t.Fatal(err)
	}
	y := pr.initial()
	for i := range y {
		y[i] += rng.NormFloat64() // away from the neighbours' mean
	}
	return pr, y
}

// The gradient of each new point's KL(p_i‖q_i), exact repulsion, agrees
// with central finite differences of the objective.
func TestAddGradientFiniteDifferences(t *testing.T) {
	for _, dims := range []int{2, 3} {
		pr, y := randomAddProblem(t, 300, 20, dims, 0, uint64(dims))
		const h = 1e-5
		for i := range pr.m {
			yi := append([]float64(nil), y[i*dims:(i+1)*dims]...)
			g := make([]float64, dims)
			pr.gradient(i, yi, g)
			for c := range dims {
				up := append([]float64(nil), yi...)
				dn := append([]float64(nil), yi...)
				up[c] += h
				dn[c] -= h
				fd := (pr.objective(i, up) - pr.objective(i, dn)) / (2 * h)
				if math.Abs(fd-g[c]) > 1e-6+1e-4*math.Abs(fd) {
					t.Errorf("dims %d point %d coordinate %d: gradient %.8g, finite differences %.8g", dims, i, c, g[c], fd)
				}
			}
		}
	}
}

// Barnes-Hut over the fixed base (θ = 0.5) stays within the few per cent
// of the exact sums that θ = 0.5 gives a moving tree.
func TestFixedTreeAgreesWithExact(t *testing.T) {
	for _, dims := range []int{2, 3} {
		exact, y := randomAddProblem(t, 3000, 50, dims, 0, 7)
		bh := &addProblem{}
		*bh = *exact
		bh.tree = newFixedTree(exact.baseY, 3000, dims, 0.5)
		// Z point by point; the forces over all points (one near the
		// middle of the base has a force near zero, whose relative error
		// means nothing).
		worstZ, num, den := 0.0, 0.0, 0.0
		for i := range exact.m {
			yi := y[i*dims : (i+1)*dims]
			var fe, fb [3]float64
			ze, zb := exact.tree.repulse(yi, &fe), bh.tree.repulse(yi, &fb)
			worstZ = max(worstZ, math.Abs(zb-ze)/ze)
			for c := range dims {
				num += (fb[c] - fe[c]) * (fb[c] - fe[c])
				den += fe[c] * fe[c]
			}
		}
		if worstZ > 0.02 || math.Sqrt(num/den) > 0.05 {
			t.Errorf("dims %d: Barnes-Hut Z differs from exact by up to %.3g, forces by %.3g (relative)", dims, worstZ, math.Sqrt(num/den))
		}
	}
}
