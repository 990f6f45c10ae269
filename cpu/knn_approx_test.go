package cpu

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/embed"
	"github.com/tsnemap/tsnemap/internal/synth"
	"github.com/tsnemap/tsnemap/internal/testkit"
)

// approxClusters draws n points in d dimensions from `clusters` Gaussian
// blobs of unit variance whose centres are spread with standard deviation
// spread, the shape of PCA-reduced image features.
func approxClusters(n, d, clusters int, spread float64, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	centres := make([]float64, clusters*d)
	for i := range centres {
		centres[i] = rng.NormFloat64() * spread
	}
	x := make([]float32, n*d)
	for i := range n {
		c := rng.IntN(clusters)
		for j := range d {
			x[i*d+j] = float32(centres[c*d+j] + rng.NormFloat64())
		}
	}
	return x
}

// approxUniform draws n points uniformly from the unit cube: no structure for
// the trees to find, the hard case for neighbour graphs.
func approxUniform(n, d int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 2))
	x := make([]float32, n*d)
	for i := range x {
		x[i] = rng.Float32()
	}
	return x
}

// approxBrute returns the exact k nearest other points of point i,
// ranked by float64 distance and then by index.
func approxBrute(x []float32, n, d, k, i int) []int32 {
	type cand struct {
		d float64
		j int32
	}
	all := make([]cand, 0, n-1)
	xi := x[i*d : i*d+d]
	for j := range n {
		if j == i {
			continue
		}
		var s float64
		for t, v := range x[j*d : j*d+d] {
			e := float64(v) - float64(xi[t])
			s += e * e
		}
		all = append(all, cand{s, int32(j)})
	}
	slices.SortFunc(all, func(a, b cand) int {
		if a.d != b.d {
			if a.d < b.d {
				return -1
			}
			return 1
		}
		return int(a.j - b.j)
	})
	out := make([]int32, k)
	for t := range out {
		out[t] = all[t].j
	}
	return out
}

// approxRecall is the mean fraction of the exact k nearest neighbours that
// nb finds, over `queries` rows spread evenly through the data.
func approxRecall(x []float32, n, d int, nb *embed.Neighbors, queries int) float64 {
	queries = min(queries, n)
	k := nb.K
	found := 0
	for q := range queries {
		i := q * n / queries
		exact := approxBrute(x, n, d, k, i)
		got := nb.Index[i*k : (i+1)*k]
		for _, j := range exact {
			if slices.Contains(got, j) {
				found++
			}
		}
	}
	return float64(found) / float64(queries*k)
}

// checkApproxNeighbors verifies the shape promised by embed.Neighbors: no self,
// no repeats, ascending (distance, index), and distances that are the real
// squared distances.
func checkApproxNeighbors(t *testing.T, x []float32, n, d, k int, nb *embed.Neighbors) {
	t.Helper()
	if nb.N != n || nb.K != k || len(nb.Index) != n*k || len(nb.Dist2) != n*k {
		t.Fatalf("shape N=%d K=%d len(Index)=%d len(Dist2)=%d, want N=%d K=%d", nb.N, nb.K, len(nb.Index), len(nb.Dist2), n, k)
	}
	if nb.Method != embed.NeighborsApprox {
		t.Errorf("Method = %q, want %q", nb.Method, embed.NeighborsApprox)
	}
	seen := make(map[int32]bool, k)
	for i := range n {
		clear(seen)
		row := nb.Index[i*k : (i+1)*k]
		dist := nb.Dist2[i*k : (i+1)*k]
		for t2, j := range row {
			if j < 0 || int(j) >= n {
				t.Fatalf("row %d: index %d out of range", i, j)
			}
			if int(j) == i {
				t.Fatalf("row %d lists itself", i)
			}
			if seen[j] {
				t.Fatalf("row %d lists %d twice", i, j)
			}
			seen[j] = true
			if t2 > 0 && (dist[t2] < dist[t2-1] || (dist[t2] == dist[t2-1] && j < row[t2-1])) {
				t.Fatalf("row %d not ascending at %d: (%v,%d) after (%v,%d)", i, t2, dist[t2], j, dist[t2-1], row[t2-1])
			}
			var s float64
			for c := range d {
				e := float64(x[i*d+c]) - float64(x[int(j)*d+c])
				s += e * e
			}
			if math.Abs(s-float64(dist[t2])) > 1e-4*(1+s) {
				t.Fatalf("row %d: Dist2 to %d = %v, real %v", i, j, dist[t2], s)
			}
		}
	}
}

func TestApproxNeighborsRecall(t *testing.T) {
	cases := []struct {
		name    string
		n, d, k int
		x       func(n, d int) []float32
		long    bool // skipped under -short and the race detector
	}{
		{"clusters-20000", 20000, 50, 90, func(n, d int) []float32 { return approxClusters(n, d, 10, 3, 7) }, true},
		{"uniform-5000", 5000, 50, 90, func(n, d int) []float32 { return approxUniform(n, d, 9) }, true},
		{"clusters-2000", 2000, 50, 90, func(n, d int) []float32 { return approxClusters(n, d, 10, 3, 8) }, false},
		{"uniform-2000", 2000, 50, 90, func(n, d int) []float32 { return approxUniform(n, d, 9) }, false},
		{"uniform-2000-k15", 2000, 50, 15, func(n, d int) []float32 { return approxUniform(n, d, 10) }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.long && (testing.Short() || testkit.Race) {
				t.Skip("long; runs without -short and -race")
			}
			x := c.x(c.n, c.d)
			b := New(2)
			nb, err := approxNeighbors(context.Background(), b, x, c.n, c.d, c.k, 1)
			if err != nil {
				t.Fatal(err)
			}
			checkApproxNeighbors(t, x, c.n, c.d, c.k, nb)
			r := approxRecall(x, c.n, c.d, nb, 300)
			t.Logf("recall %.4f", r)
			if r < 0.95 {
				t.Errorf("recall %.4f, want ≥ 0.95", r)
			}
		})
	}
}

func TestApproxNeighborsDeterministic(t *testing.T) {
	n, d, k := 3000, 50, 30
	if testing.Short() || testkit.Race {
		n = 1000
	}
	x := approxClusters(n, d, 10, 3, 11)
	ctx := context.Background()
	// Updates are applied per owner in point order whatever the chunking,
	// so the graph does not even depend on the thread count.
	var first *embed.Neighbors
	for _, threads := range []int{1, 2, 3} {
		b := New(threads)
		a1, err := approxNeighbors(ctx, b, x, n, d, k, 42)
		if err != nil {
			t.Fatal(err)
		}
		a2, err := approxNeighbors(ctx, b, x, n, d, k, 42)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a1.Index, a2.Index) || !slices.Equal(a1.Dist2, a2.Dist2) {
			t.Errorf("threads=%d: two runs with seed 42 differ", threads)
		}
		if first == nil {
			first = a1
		} else if !slices.Equal(a1.Index, first.Index) || !slices.Equal(a1.Dist2, first.Dist2) {
			t.Errorf("threads=%d: differs from threads=1", threads)
		}
	}
	b := New(2)
	for _, seed := range []int64{1, 2, 3} {
		nb, err := approxNeighbors(ctx, b, x, n, d, k, seed)
		if err != nil {
			t.Fatal(err)
		}
		if r := approxRecall(x, n, d, nb, 200); r < 0.95 {
			t.Errorf("seed %d: recall %.4f, want ≥ 0.95", seed, r)
		}
	}
}

func TestApproxNeighborsSeedMatters(t *testing.T) {
	// On uniform data with a tiny forest and a single round the result is
	// far from exact, so two seeds must give two different graphs.
	n, d, k := 2000, 20, 10
	x := approxUniform(n, d, 12)
	prm := defaultApproxParams(n, k)
	prm.trees, prm.maxRounds = 1, 1
	b := New(2)
	a, err := approxNeighborsWith(context.Background(), b, x, n, d, k, 1, prm)
	if err != nil {
		t.Fatal(err)
	}
	c, err := approxNeighborsWith(context.Background(), b, x, n, d, k, 2, prm)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(a.Index, c.Index) {
		t.Error("seeds 1 and 2 gave the same graph")
	}
}

func TestApproxNeighborsSmall(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ n, d, k int }{{5, 3, 4}, {2, 1, 1}, {5, 50, 2}, {37, 4, 36}, {300, 5, 299}} {
		t.Run(fmt.Sprintf("n%d-d%d-k%d", tc.n, tc.d, tc.k), func(t *testing.T) {
			x := approxUniform(tc.n, tc.d, uint64(tc.n))
			nb, err := approxNeighbors(ctx, New(2), x, tc.n, tc.d, tc.k, 3)
			if err != nil {
				t.Fatal(err)
			}
			checkApproxNeighbors(t, x, tc.n, tc.d, tc.k, nb)
			for i := range tc.n {
				want := approxBrute(x, tc.n, tc.d, tc.k, i)
				got := nb.Index[i*tc.k : (i+1)*tc.k]
				if !slices.Equal(got, want) {
					t.Fatalf("row %d = %v, want %v", i, got, want)
				}
			}
		})
	}
}

func TestApproxNeighborsDuplicates(t *testing.T) {
	// Every point appears four times: duplicates are neighbours at
	// distance 0, and a point still never lists itself.
	base, d, k := 500, 8, 12
	u := approxUniform(base, d, 13)
	n := 4 * base
	x := make([]float32, 0, n*d)
	for range 4 {
		x = append(x, u...)
	}
	nb, err := approxNeighbors(context.Background(), New(2), x, n, d, k, 5)
	if err != nil {
		t.Fatal(err)
	}
	checkApproxNeighbors(t, x, n, d, k, nb)
	for i := range n {
		for t2 := range 3 {
			if nb.Dist2[i*k+t2] != 0 {
				t.Fatalf("row %d: neighbour %d at %v, want its three copies at 0", i, t2, nb.Dist2[i*k+t2])
			}
		}
	}
	// All points equal: every list is the k lowest other indices.
	n, k = 100, 7
	same := make([]float32, n*d)
	nb, err = approxNeighbors(context.Background(), New(2), same, n, d, k, 5)
	if err != nil {
		t.Fatal(err)
	}
	checkApproxNeighbors(t, same, n, d, k, nb)
}

func TestApproxNeighborsBadArguments(t *testing.T) {
	ctx := context.Background()
	b := New(2)
	x := approxUniform(10, 3, 1)
	nan := slices.Clone(x)
	nan[7] = float32(math.NaN())
	for _, tc := range []struct {
		name    string
		x       []float32
		n, d, k int
	}{
		{"k0", x, 10, 3, 0},
		{"k=n", x, 10, 3, 10},
		{"k<0", x, 10, 3, -1},
		{"n1", x[:3], 1, 3, 1},
		{"n0", nil, 0, 3, 1},
		{"d0", nil, 10, 0, 1},
		{"short", x[:29], 10, 3, 2},
		{"long", append(slices.Clone(x), 1), 10, 3, 2},
		{"nan", nan, 10, 3, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nb, err := approxNeighbors(ctx, b, tc.x, tc.n, tc.d, tc.k, 1)
			if !errors.Is(err, embed.ErrInvalidInput) {
				t.Fatalf("err = %v, want ErrInvalidInput", err)
			}
			if nb != nil {
				t.Fatal("result with an error")
			}
		})
	}
}

func TestApproxNeighborsCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	x := approxUniform(1000, 10, 1)
	if _, err := approxNeighbors(ctx, New(2), x, 1000, 10, 5, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled before the start: err = %v", err)
	}

	n, d, k := 60000, 50, 90
	switch {
	case testkit.Race:
		n = 5000
	case testing.Short():
		n = 20000
	}
	x = approxClusters(n, d, 10, 3, 2)
	// Cancel early in the search and well into it: after this many checks
	// of the context (the search checks it every few dozen points).
	for _, after := range []int64{2, 50} {
		parent, cancel := context.WithCancel(context.Background())
		ctx := testkit.WatchContext(parent)
		done := make(chan error, 1)
		go func() {
			_, err := approxNeighbors(ctx, New(2), x, n, d, k, 1)
			done <- err
		}()
		testkit.Eventually(t, 30*time.Second, func() (bool, string) {
			return ctx.Polls() >= after, fmt.Sprintf("%d checks of the context", ctx.Polls())
		}, "the search under way")
		cancel()
		start := time.Now()
		var err error
		select {
		case err = <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("no return 30 s after cancel")
		}
		// Latency is logged, not asserted: shared CI machines are too
		// noisy for a timing bound in a unit test.
		t.Logf("cancel after %d checks: returned %v later", after, time.Since(start))
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancel after %d checks: err = %v, want context.Canceled", after, err)
		}
	}
}

func BenchmarkKNNApprox(b *testing.B) {
	for _, n := range []int{70000, 200000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			d, k := 50, 90
			x := approxClusters(n, d, 10, 3, 21)
			be := New(0)
			var nb *embed.Neighbors
			runs := 0
			for b.Loop() {
				runs++
				var err error
				nb, err = approxNeighbors(context.Background(), be, x, n, d, k, 1)
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*float64(runs)/b.Elapsed().Seconds(), "points/s")
			b.StopTimer()
			b.ReportMetric(approxRecall(x, n, d, nb, 200), "recall")
		})
	}
}

// With one tree whose single leaf holds every point and no descent, the
// seeding compares all pairs, so the approximate search must return the
// exact neighbours: a check of the tiled leaf join (diagonal tiles, masks,
// padding) on both kernels, against the exact search.
func TestApproxNeighborsOneLeafIsExact(t *testing.T) {
	kernels := []struct {
		name string
		kern tileKernels
	}{{"default", defaultKernels()}, {"portable", portableKernels()}}
	cases := []struct{ n, d, k int }{{97, 7, 5}, {300, 50, 90}, {451, 13, 40}}
	for _, kc := range kernels {
		for _, c := range cases {
			t.Run(fmt.Sprintf("%s/n%d-d%d-k%d", kc.name, c.n, c.d, c.k), func(t *testing.T) {
				x := approxUniform(c.n, c.d, uint64(c.n))
				b := New(2)
				prm := defaultApproxParams(c.n, c.k)
				prm.trees, prm.leafSize, prm.maxRounds, prm.minWorkK = 1, c.n, 0, 0
				prm.kern = &kc.kern
				got, err := approxNeighborsWith(context.Background(), b, x, c.n, c.d, c.k, 3, prm)
				if err != nil {
					t.Fatal(err)
				}
				checkApproxNeighbors(t, x, c.n, c.d, c.k, got)
				want, err := exactNeighbors(context.Background(), b, kc.kern, x, c.n, c.d, c.k)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got.Index, want.Index) {
					t.Errorf("neighbours differ from the exact search's")
				}
			})
		}
	}
}

// On the shape of `tsnemap bench`'s synthetic case (synth.Clusters: ten
// unit Gaussians in 50 dimensions, k = 90, which is hard for trees since
// each cluster fills all 50 dimensions) the search must keep recall ≥ 0.95
// at a moderate size, on one and two threads with the same result.
func TestApproxNeighborsRecallBenchClusters(t *testing.T) {
	if testing.Short() || testkit.Race {
		t.Skip("long; runs without -short and -race")
	}
	n, d, k := 30000, 50, 90
	x, _ := synth.Clusters(n, d, 10, 8, 1)
	var first *embed.Neighbors
	for _, threads := range []int{2, 1} {
		nb, err := approxNeighbors(context.Background(), New(threads), x, n, d, k, 1)
		if err != nil {
			t.Fatal(err)
		}
		if first != nil {
			if !slices.Equal(nb.Index, first.Index) || !slices.Equal(nb.Dist2, first.Dist2) {
				t.Errorf("threads=%d differs from threads=2", threads)
			}
			continue
		}
		first = nb
		checkApproxNeighbors(t, x, n, d, k, nb)
		r := approxRecall(x, n, d, nb, 200)
		t.Logf("recall %.4f", r)
		if r < 0.95 {
			t.Errorf("recall %.4f, want ≥ 0.95", r)
		}
	}
}

// permuteRows moves rows in place, cycle by cycle; it must equal the plain
// copy into a second array, for the identity, single cycles, fixed points
// and random permutations.
func TestPermuteRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	cases := []struct {
		name  string
		order []int32
		k     int
	}{
		{"one row", []int32{0}, 3},
		{"identity", []int32{0, 1, 2, 3, 4}, 2},
		{"one cycle", []int32{1, 2, 3, 4, 0}, 4},
		{"swap and fixed", []int32{1, 0, 2, 4, 3}, 1},
		{"random 1000", func() []int32 {
			p := make([]int32, 1000)
			for i, v := range rng.Perm(len(p)) {
				p[i] = int32(v)
			}
			return p
		}(), 7},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n, k := len(c.order), c.k
			idx := make([]int32, n*k)
			dist := make([]float32, n*k)
			for i := range idx {
				idx[i] = int32(i)
				dist[i] = float32(i) / 2
			}
			wantI := make([]int32, n*k)
			wantD := make([]float32, n*k)
			for p, o := range c.order {
				copy(wantI[int(o)*k:int(o+1)*k], idx[p*k:(p+1)*k])
				copy(wantD[int(o)*k:int(o+1)*k], dist[p*k:(p+1)*k])
			}
			permuteRows(idx, dist, c.order, k)
			if !slices.Equal(idx, wantI) || !slices.Equal(dist, wantD) {
				t.Errorf("rows differ from the out-of-place copy")
			}
		})
	}
}

// The candidate lists recompute priorities rather than store them; a list
// must still hold the c distinct entries of lowest (priority, index) among
// all offered, whatever the order and repetition of the offers.
func TestCandHeapKeepsLowestPriorities(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, c := range []struct{ c, offers, span int }{{1, 50, 40}, {8, 5, 100}, {16, 400, 300}, {64, 2000, 500}} {
		t.Run(fmt.Sprintf("c%d-offers%d", c.c, c.offers), func(t *testing.T) {
			const v = 3
			h := newCandHeap(5, c.c)
			h.reset(rng.Uint64())
			seen := map[int32]bool{}
			for range c.offers {
				u := int32(rng.IntN(c.span))
				if u == v {
					continue
				}
				h.push(v, u)
				seen[u] = true
			}
			var want []int32
			for u := range seen {
				want = append(want, u)
			}
			slices.SortFunc(want, func(a, b int32) int {
				if candLess(candPri(h.rs, v, a), a, candPri(h.rs, v, b), b) {
					return -1
				}
				return 1
			})
			want = want[:min(len(want), c.c)]
			got := slices.Clone(h.row(v))
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("kept %v, want %v", got, want)
			}
			if len(h.row(4)) != 0 {
				t.Errorf("another point's list is not empty")
			}
		})
	}
}

// nnContains (AVX2 where present) must agree with the plain scan for every
// length around the 16-entry steps and every position of the match.
func TestNNContains(t *testing.T) {
	for n := 0; n <= 100; n++ {
		list := make([]int32, n)
		for i := range list {
			list[i] = int32(3*i + 1)
		}
		for q := int32(-1); q <= int32(3*n+2); q++ {
			if got, want := nnContains(list, q), nnContainsGo(list, q); got != want {
				t.Fatalf("n=%d q=%d: nnContains %v, plain scan %v", n, q, got, want)
			}
		}
	}
}

// The descent stops after a round that changed at most the limit, or once
// the next round, predicted from the last ratio of changes, would.
func TestNNConverged(t *testing.T) {
	cases := []struct {
		name    string
		updates []int
		limit   float64
		want    bool
	}{
		{"no round yet", nil, 10, false},
		{"first round above", []int{1000}, 10, false},
		{"first round below", []int{8}, 10, true},
		{"at the limit", []int{1000, 10}, 10, true},
		{"shrinking slowly", []int{1000, 500}, 10, false},
		// 1,000,000-point bench clusters, limit 0.01·n·k = 900,000.
		{"1M after round 2", []int{32737960, 15515796}, 900000, false},
		{"1M after round 3", []int{32737960, 15515796, 2656790}, 900000, true},
		{"growing", []int{100, 200}, 10, false},
		{"previous zero", []int{0, 50}, 10, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := nnConverged(c.updates, c.limit); got != c.want {
				t.Errorf("nnConverged(%v, %g) = %v, want %v", c.updates, c.limit, got, c.want)
			}
		})
	}
}
