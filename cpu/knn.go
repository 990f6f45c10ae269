package cpu

import (
	"context"
	"fmt"
	"math"
	"runtime"

	"github.com/tsnemap/tsnemap/embed"
)

// ExactNeighborsMaxN is the largest n for which NeighborsAuto picks the exact
// search. The exact search costs n²·d multiply-adds: 70,000 points in 50
// dimensions take a few seconds on two cores with AVX2, 100,000 twice that;
// past this size the near-linear approximate search is worth its small loss
// of recall.
const ExactNeighborsMaxN = 100_000

func kNearest(ctx context.Context, b *Backend, x []float32, n, d, k int, method embed.NeighborMethod, seed int64) (*embed.Neighbors, error) {
	if err := checkNeighborArgs(x, n, d, k); err != nil {
		return nil, fmt.Errorf("cpu: nearest neighbours: %w", err)
	}
	use := method
	switch method {
	case embed.NeighborsAuto:
		use = embed.NeighborsExact
		if n > ExactNeighborsMaxN {
			use = embed.NeighborsApprox
		}
	case embed.NeighborsExact, embed.NeighborsApprox:
	default:
		return nil, fmt.Errorf("cpu: nearest neighbours: %w: unknown method %q", embed.ErrInvalidOption, method)
	}
	var nb *embed.Neighbors
	var err error
	if use == embed.NeighborsExact {
		nb, err = exactNeighbors(ctx, b, defaultKernels(), x, n, d, k)
	} else {
		nb, err = approxNeighbors(ctx, b, x, n, d, k, seed)
		// The search's working tables (the renumbered copy of x, the
		// candidate lists, filters and flags: ~0.8 GB at 1,000,000
		// points) are garbage now, but the collector last set its goal
		// while they were live, at twice the heap: without a collection
		// here the next stages grew the heap to that goal, 3.4 GB, and
		// a whole 1M run peaked at 3.6 GB. A collection of a heap of
		// flat slices takes milliseconds.
		runtime.GC()
	}
	if err != nil {
		return nil, err
	}
	if nb == nil {
		return nil, fmt.Errorf("cpu: nearest neighbours: %s search returned no result", use)
	}
	nb.Method = use
	return nb, nil
}

func checkNeighborArgs(x []float32, n, d, k int) error {
	switch {
	case n < 2 || n > math.MaxInt32:
		return fmt.Errorf("%w: n = %d, want 2 ≤ n ≤ %d", embed.ErrInvalidInput, n, math.MaxInt32)
	case d < 1:
		return fmt.Errorf("%w: d = %d, want ≥ 1", embed.ErrInvalidInput, d)
	case k < 1 || k > n-1:
		return fmt.Errorf("%w: k = %d, want 1 ≤ k ≤ n−1 = %d", embed.ErrInvalidInput, k, n-1)
	case len(x) != n*d:
		return fmt.Errorf("%w: x has %d values, want n×d = %d×%d", embed.ErrInvalidInput, len(x), n, d)
	}
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("%w: row %d column %d is %v", embed.ErrInvalidInput, i/d, i%d, v)
		}
	}
	return nil
}
