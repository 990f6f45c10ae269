package cpu

import (
	"context"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/internal/synth"
)

// TestApproxNeighborsDriver times the approximate search alone on the
// synthetic case of `tsnemap bench` (synth.Clusters, 10 clusters, sep 8,
// d = 50, k = 90) and logs the recall after each phase on a sample of
// queries. It is a tuning tool, not a check: it runs only when
// TSNEMAP_KNN_DRIVER is set to the number of points, e.g.
//
//	TSNEMAP_KNN_DRIVER=1000000 go test ./cpu -run ApproxNeighborsDriver -v -timeout 1h
//
// TSNEMAP_KNN_QUERIES sets the sample (default 1,000); TSNEMAP_KNN_TREES,
// _LEAF, _NEW, _OLD, _ROUNDS and _DELTA override the search's parameters.
func TestApproxNeighborsDriver(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv("TSNEMAP_KNN_DRIVER"))
	if err != nil || n < 2 {
		t.Skip("set TSNEMAP_KNN_DRIVER to a number of points to run")
	}
	queries := 1000
	if q, err := strconv.Atoi(os.Getenv("TSNEMAP_KNN_QUERIES")); err == nil && q > 0 {
		queries = q
	}
	const d, k = 50, 90
	x, _ := synth.Clusters(n, d, 10, 8, 1)
	t0 := time.Now()
	truth := driverTruth(x, n, d, k, queries)
	t.Logf("exact neighbours of %d queries: %.1fs", len(truth), time.Since(t0).Seconds())

	start, cpu0 := time.Now(), driverCPU()
	prm := defaultApproxParams(n, k)
	for name, v := range map[string]*int{
		"TREES": &prm.trees, "LEAF": &prm.leafSize, "NEW": &prm.maxCand, "OLD": &prm.maxOld, "ROUNDS": &prm.maxRounds,
	} {
		if e, err := strconv.Atoi(os.Getenv("TSNEMAP_KNN_" + name)); err == nil {
			*v = e
		}
	}
	if e, err := strconv.ParseFloat(os.Getenv("TSNEMAP_KNN_DELTA"), 64); err == nil {
		prm.delta = e
	}
	t.Logf("params: trees %d, leaf %d, new %d, old %d, rounds ≤ %d, delta %g",
		prm.trees, prm.leafSize, prm.maxCand, prm.maxOld, prm.maxRounds, prm.delta)
	prm.stats = &approxStats{probe: func(stage string, nbrs func(i int) []int32) {
		// The probe's own time is small (queries × k lookups).
		t.Logf("%s: recall %.4f at %.1fs wall, %.1f CPU s", stage, driverRecall(truth, nbrs),
			time.Since(start).Seconds(), driverCPU()-cpu0)
	}}
	nb, err := approxNeighborsWith(context.Background(), New(runtime.GOMAXPROCS(0)), x, n, d, k, 1, prm)
	if err != nil {
		t.Fatal(err)
	}
	wall, cpuS := time.Since(start).Seconds(), driverCPU()-cpu0
	st := prm.stats
	final := driverRecall(truth, func(i int) []int32 { return nb.Index[i*k : i*k+k] })
	t.Logf("n=%d k=%d: recall %.4f, %.1fs wall, %.1f CPU s (trees %.1fs, seeding %.1fs, descent %.1fs, updates %v)",
		n, k, final, wall, cpuS, st.trees.Seconds(), st.seeding.Seconds(), st.descent.Seconds(), st.updates)
}

// driverTruth is the exact k nearest of `queries` rows spread over x, by
// brute force on every core.
func driverTruth(x []float32, n, d, k, queries int) map[int][]int32 {
	step := max(1, n/queries)
	var qs []int
	for i := 0; i < n; i += step {
		qs = append(qs, i)
	}
	res := make([][]int32, len(qs))
	var wg sync.WaitGroup
	th := runtime.GOMAXPROCS(0)
	for w := range th {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for q := w; q < len(qs); q += th {
				res[q] = driverBrute(x, n, d, k, qs[q])
			}
		}()
	}
	wg.Wait()
	truth := make(map[int][]int32, len(qs))
	for q, i := range qs {
		truth[i] = res[q]
	}
	return truth
}

// driverBrute is the exact k nearest other rows of row i, by float32
// distance then index (the sample is large, so no float64 sort of all n).
func driverBrute(x []float32, n, d, k, i int) []int32 {
	keys := make([]uint64, 0, n-1)
	xi := x[i*d : i*d+d]
	for j := range n {
		if j != i {
			keys = append(keys, neighborKey(nnSqDist(xi, x[j*d:j*d+d]), j))
		}
	}
	selectSmallest(keys, k)
	out := make([]int32, k)
	for t, key := range keys[:k] {
		out[t] = int32(uint32(key))
	}
	return out
}

func driverRecall(truth map[int][]int32, nbrs func(i int) []int32) float64 {
	hit, all := 0, 0
	for i, want := range truth {
		got := nbrs(i)
		for _, j := range want {
			if slices.Contains(got, j) {
				hit++
			}
		}
		all += len(want)
	}
	return float64(hit) / float64(all)
}

func driverCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return math.NaN()
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
