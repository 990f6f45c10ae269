package synth

import (
	"runtime"
	"slices"
	"sync"
)

// KNNRecall is the recall of a k-nearest-neighbour graph (idx: N×k
// neighbour indices, row-major, of the N×d points x) against the exact
// neighbours found by brute force, for about `queries` query points spread
// evenly over the rows: the fraction of the true k nearest (by squared
// Euclidean distance, ties broken by index) that idx lists. Costs
// queries·N·d operations, on every core.
func KNNRecall(x []float32, d int, idx []int32, k, queries int) float64 {
	n := len(x) / d
	if n < 2 || k < 1 || queries < 1 {
		return 0
	}
	step := max(1, n/queries)
	var qs []int
	for i := 0; i < n; i += step {
		qs = append(qs, i)
	}
	hits := make([]int, len(qs))
	threads := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for w := range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := w; t < len(qs); t += threads {
				hits[t] = recallHits(x, d, idx, k, qs[t])
			}
		}()
	}
	wg.Wait()
	total := 0
	for _, h := range hits {
		total += h
	}
	return float64(total) / float64(len(qs)*k)
}

// recallHits counts how many of query i's exact k nearest idx lists.
func recallHits(x []float32, d int, idx []int32, k, i int) int {
	n := len(x) / d
	type cand struct {
		d float32
		j int32
	}
	less := func(a, b cand) bool { return a.d < b.d || (a.d == b.d && a.j < b.j) }
	best := make([]cand, 0, k+1)
	xi := x[i*d : (i+1)*d]
	for j := range n {
		if j == i {
			continue
		}
		xj := x[j*d : (j+1)*d]
		var s float32
		for c, v := range xi {
			e := v - xj[c]
			s += e * e
		}
		c := cand{s, int32(j)}
		if len(best) == k && !less(c, best[k-1]) {
			continue
		}
		pos, _ := slices.BinarySearchFunc(best, c, func(a, t cand) int {
			if less(a, t) {
				return -1
			}
			return 1
		})
		best = slices.Insert(best, pos, c)
		if len(best) > k {
			best = best[:k]
		}
	}
	got := idx[i*k : (i+1)*k]
	h := 0
	for _, b := range best {
		if slices.Contains(got, b.j) {
			h++
		}
	}
	return h
}
