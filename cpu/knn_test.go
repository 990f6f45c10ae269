package cpu

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/embed"
	"github.com/tsnemap/tsnemap/internal/testkit"
)

// clustered returns n points in d dimensions around 10 Gaussian centres, the
// shape of PCA-reduced image features; every dup-th point is an exact copy
// of the point before it.
func clustered(seed uint64, n, d, dup int) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	centres := make([]float64, 10*d)
	for i := range centres {
		centres[i] = r.NormFloat64() * 8
	}
	x := make([]float32, n*d)
	for i := range n {
		if dup > 0 && i > 0 && i%dup == 0 {
			copy(x[i*d:(i+1)*d], x[(i-1)*d:i*d])
			continue
		}
		c := r.IntN(10)
		for t := range d {
			x[i*d+t] = float32(centres[c*d+t] + r.NormFloat64() + 3)
		}
	}
	return x
}

func dist2(x []float32, d, i, j int) float64 {
	var s float64
	for t := range d {
		u := float64(x[i*d+t]) - float64(x[j*d+t])
		s += u * u
	}
	return s
}

type cand struct {
	d float64
	j int
}

// bruteForce sorts every other point by (distance, index).
func bruteForce(x []float32, n, d, i int) []cand {
	all := make([]cand, 0, n-1)
	for j := range n {
		if j != i {
			all = append(all, cand{dist2(x, d, i, j), j})
		}
	}
	slices.SortFunc(all, func(a, b cand) int { return cmp.Or(cmp.Compare(a.d, b.d), cmp.Compare(a.j, b.j)) })
	return all
}

// checkNeighbors compares nb with the brute-force answer. The selection uses
// ‖a‖²+‖b‖²−2a·b in float32, which is within about tol = 8(d+2)·u·(‖a‖²+‖b‖²)
// of the true distance (u = 2⁻²⁴, norms of the centred data): neighbours
// whose distances differ by less than that may be swapped, so the set must
// equal the brute-force set except for candidates within tol of the k-th
// distance. The reported distances are the direct sums, exactly.
func checkNeighbors(t *testing.T, what string, x []float32, n, d, k int, nb *embed.Neighbors) {
	t.Helper()
	if nb.N != n || nb.K != k || len(nb.Index) != n*k || len(nb.Dist2) != n*k {
		t.Fatalf("%s: shape N=%d K=%d len=%d,%d", what, nb.N, nb.K, len(nb.Index), len(nb.Dist2))
	}
	mean := make([]float64, d)
	for i := range n {
		for c := range d {
			mean[c] += float64(x[i*d+c]) / float64(n)
		}
	}
	norm := func(i int) float64 {
		var s float64
		for c := range d {
			u := float64(x[i*d+c]) - mean[c]
			s += u * u
		}
		return s
	}
	maxNorm := 0.0
	for i := range n {
		maxNorm = max(maxNorm, norm(i))
	}
	tol := 8 * float64(d+2) * unitRoundoff * 2 * maxNorm
	for i := range n {
		ref := bruteForce(x, n, d, i)
		idx, dist := nb.Index[i*k:(i+1)*k], nb.Dist2[i*k:(i+1)*k]
		seen := map[int32]bool{}
		for e := range k {
			j := int(idx[e])
			if j == i || j < 0 || j >= n || seen[idx[e]] {
				t.Fatalf("%s: row %d lists %d at rank %d (self, out of range or repeated)", what, i, j, e)
			}
			seen[idx[e]] = true
			if want := float32(dist2(x, d, i, j)); dist[e] != want {
				t.Fatalf("%s: row %d rank %d: Dist2 %v, direct sum %v", what, i, e, dist[e], want)
			}
			if e > 0 && (dist[e] < dist[e-1] || dist[e] == dist[e-1] && idx[e] < idx[e-1]) {
				t.Fatalf("%s: row %d not sorted by (distance, index) at rank %d", what, i, e)
			}
			if math.Abs(float64(dist[e])-ref[e].d) > tol+1e-6*ref[e].d {
				t.Fatalf("%s: row %d rank %d: distance %v, brute force %v (tol %.3g)", what, i, e, dist[e], ref[e].d, tol)
			}
		}
		for e, c := range ref {
			inSet := seen[int32(c.j)]
			switch {
			case e < k && !inSet && c.d < ref[k-1].d-tol:
				t.Fatalf("%s: row %d misses neighbour %d at distance %v (k-th %v)", what, i, c.j, c.d, ref[k-1].d)
			case e >= k && inSet && c.d > ref[k-1].d+tol:
				t.Fatalf("%s: row %d lists %d at distance %v beyond the k-th %v", what, i, c.j, c.d, ref[k-1].d)
			}
		}
	}
}

func TestExactNeighborsAgainstBruteForce(t *testing.T) {
	ctx := context.Background()
	cases := []struct{ n, d, k, dup int }{
		{2, 1, 1, 0}, {3, 2, 2, 2}, {7, 3, 6, 3}, {17, 1, 5, 4}, {17, 50, 16, 0},
		{100, 50, 30, 5}, {333, 67, 90, 7}, {500, 5, 1, 0}, {97, 2, 96, 3},
		{300, 1000, 12, 9}, // wide rows: several candidate blocks per pair of row blocks
	}
	for ci, c := range cases {
		x := clustered(uint64(ci), c.n, c.d, c.dup)
		nb, err := New(2).KNearest(ctx, x, c.n, c.d, c.k, embed.NeighborsExact, 1)
		if err != nil {
			t.Fatal(err)
		}
		if nb.Method != embed.NeighborsExact {
			t.Errorf("Method = %q", nb.Method)
		}
		checkNeighbors(t, fmt.Sprintf("n=%d d=%d k=%d", c.n, c.d, c.k), x, c.n, c.d, c.k, nb)
		// the same search on the portable kernels, and with other blocks
		nb, err = exactNeighbors(ctx, New(1), portableKernels(), x, c.n, c.d, c.k)
		if err != nil {
			t.Fatal(err)
		}
		checkNeighbors(t, fmt.Sprintf("portable n=%d d=%d k=%d", c.n, c.d, c.k), x, c.n, c.d, c.k, nb)
	}
}

// Duplicates are legal and are each other's nearest neighbours, at distance
// exactly 0, ordered by index.
func TestExactNeighborsDuplicates(t *testing.T) {
	const n, d, k = 60, 9, 4
	x := clustered(42, n, d, 0)
	for i := 1; i < n; i += 3 { // rows i and i+1 repeat row i−1
		copy(x[i*d:(i+1)*d], x[(i-1)*d:i*d])
		if i+1 < n {
			copy(x[(i+1)*d:(i+2)*d], x[(i-1)*d:i*d])
		}
	}
	nb, err := New(2).KNearest(context.Background(), x, n, d, k, embed.NeighborsAuto, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		g := i / 3 * 3
		var want []int32
		for j := g; j < min(g+3, n); j++ {
			if j != i {
				want = append(want, int32(j))
			}
		}
		got := nb.Index[i*k : i*k+len(want)]
		if !slices.Equal(got, want) || nb.Dist2[i*k] != 0 || nb.Dist2[i*k+1] != 0 {
			t.Fatalf("row %d: neighbours %v at %v, want the duplicates %v at 0", i, nb.Index[i*k:i*k+k], nb.Dist2[i*k:i*k+k], want)
		}
	}
	checkNeighbors(t, "duplicates", x, n, d, k, nb)
}

func TestExactNeighborsDeterministic(t *testing.T) {
	const n, d, k = 3001, 50, 30
	x := clustered(5, n, d, 11)
	var first *embed.Neighbors
	for _, threads := range []int{2, 2, 1, 3} {
		nb, err := New(threads).KNearest(context.Background(), x, n, d, k, embed.NeighborsExact, 0)
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = nb
			continue
		}
		// Each row sees the same candidates in the same order with the same
		// arithmetic whatever the chunking, so the output is bit-identical.
		if !slices.Equal(nb.Index, first.Index) || !slices.Equal(nb.Dist2, first.Dist2) {
			t.Fatalf("%d threads: result differs from the first run", threads)
		}
	}
}

func TestKNearestAuto(t *testing.T) {
	x := clustered(1, 50, 4, 0)
	nb, err := New(1).KNearest(context.Background(), x, 50, 4, 5, embed.NeighborsAuto, 0)
	if err != nil {
		t.Fatal(err)
	}
	if nb.Method != embed.NeighborsExact {
		t.Errorf("auto for n=50 used %q, want exact", nb.Method)
	}
	// The approximate search belongs to another file; whatever it returns,
	// a success must be labelled as approximate.
	if nb, err := New(1).KNearest(context.Background(), x, 50, 4, 5, embed.NeighborsApprox, 0); err == nil && nb.Method != embed.NeighborsApprox {
		t.Errorf("approximate search reported %q", nb.Method)
	}
}

func TestKNearestBadArguments(t *testing.T) {
	ctx := context.Background()
	b := New(2)
	x := clustered(1, 10, 3, 0)
	nan := slices.Clone(x)
	nan[7] = float32(math.NaN())
	inf := slices.Clone(x)
	inf[0] = float32(math.Inf(-1))
	cases := []struct {
		name       string
		x          []float32
		n, d, k    int
		method     embed.NeighborMethod
		wantOption bool
	}{
		{"k=0", x, 10, 3, 0, embed.NeighborsExact, false},
		{"k=n", x, 10, 3, 10, embed.NeighborsExact, false},
		{"k<0", x, 10, 3, -1, embed.NeighborsAuto, false},
		{"n=1", x[:3], 1, 3, 1, embed.NeighborsExact, false},
		{"d=0", nil, 10, 0, 3, embed.NeighborsExact, false},
		{"short x", x[:29], 10, 3, 3, embed.NeighborsExact, false},
		{"long x", x, 9, 3, 3, embed.NeighborsExact, false},
		{"NaN", nan, 10, 3, 3, embed.NeighborsExact, false},
		{"Inf", inf, 10, 3, 3, embed.NeighborsApprox, false},
		{"method", x, 10, 3, 3, "kd-tree", true},
	}
	for _, c := range cases {
		_, err := b.KNearest(ctx, c.x, c.n, c.d, c.k, c.method, 0)
		want := embed.ErrInvalidInput
		if c.wantOption {
			want = embed.ErrInvalidOption
		}
		if !errors.Is(err, want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, want)
		}
	}
	// Distances that overflow float32 leave rows unfilled: an error, not a
	// short or garbage answer.
	big := []float32{-3e19, 3e19, 0, 1}
	if _, err := b.KNearest(ctx, big, 4, 1, 3, embed.NeighborsExact, 0); !errors.Is(err, embed.ErrInvalidInput) {
		t.Errorf("overflow: err = %v", err)
	}
}

func TestExactNeighborsCancel(t *testing.T) {
	// Large enough that the search takes well over a second, even on a fast
	// machine, so it is still running when the cancel comes.
	n, d, k := 60000, 50, 90
	if testing.Short() {
		n = 40000
	}
	x := clustered(3, n, d, 0)
	parent, cancel := context.WithCancel(context.Background())
	ctx := testkit.WatchContext(parent)
	done := make(chan error, 1)
	go func() {
		_, err := New(2).KNearest(ctx, x, n, d, k, embed.NeighborsExact, 0)
		done <- err
	}()
	// Cancel once the search checks its context within the work (the
	// first check is on entry).
	testkit.Eventually(t, 30*time.Second, func() (bool, string) {
		return ctx.Polls() >= 2, fmt.Sprintf("%d checks of the context", ctx.Polls())
	}, "the search under way")
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second): // a sanity bound, not a speed test
		t.Fatal("search still running 30 s after cancel")
	}
}

func BenchmarkKNNExact(b *testing.B) {
	const d, k = 50, 90
	for _, n := range []int{2000, 10000, 70000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			if n > 10000 && testing.Short() {
				b.Skip("70k points under -short")
			}
			x := clustered(7, n, d, 0)
			be := New(0)
			for b.Loop() {
				if _, err := be.KNearest(context.Background(), x, n, d, k, embed.NeighborsExact, 0); err != nil {
					b.Fatal(err)
				}
			}
			sec := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(float64(n)/sec, "points/s")
			// The brute-force count 2n²d, though each pair is computed once:
			// comparable across versions and with other searches.
			b.ReportMetric(2*float64(n)*float64(n)*d/sec/1e9, "nominal-GFLOP/s")
		})
	}
}

func TestSelectSmallest(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	for trial := range 2000 {
		n := 1 + r.IntN(300)
		k := 1 + r.IntN(n)
		s := make([]uint64, n)
		for i := range s {
			s[i] = uint64(r.IntN(50))<<32 | uint64(i) // many equal distances
			if trial%3 == 0 {
				s[i] = uint64(n - i) // reversed
			}
		}
		sorted := slices.Sorted(slices.Values(s))
		selectSmallest(s, k)
		got := slices.Sorted(slices.Values(s[:k]))
		if !slices.Equal(got, sorted[:k]) || s[k-1] != sorted[k-1] {
			t.Fatalf("n=%d k=%d: s[:k] is not the k smallest with the k-th last", n, k)
		}
	}
}

func TestSpatialOrderIsPermutation(t *testing.T) {
	for _, n := range []int{1, 2, 64, 65, 1000} {
		x := clustered(uint64(n), n, 3, 5)
		perm := spatialOrder(context.Background(), 3, x, n, 3)
		seen := make([]bool, n)
		for _, r := range perm {
			if r < 0 || int(r) >= n || seen[r] {
				t.Fatalf("n=%d: %d repeated or out of range", n, r)
			}
			seen[r] = true
		}
	}
	vals := []float32{float32(math.Inf(-1)), -3e38, -2, -1e-40, 0, 1e-40, 0.5, 2, 3e38, float32(math.Inf(1))}
	for i := 1; i < len(vals); i++ {
		if orderedBits(vals[i-1]) >= orderedBits(vals[i]) {
			t.Errorf("orderedBits(%v) ≥ orderedBits(%v)", vals[i-1], vals[i])
		}
	}
}
