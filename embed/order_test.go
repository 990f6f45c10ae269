package embed

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// localityOrder is a permutation, and it keeps neighbours near: on
// clustered scores the mean distance in the new order between a point and
// its true nearest neighbour is far below the ~n/3 of a random order.
func TestLocalityOrder(t *testing.T) {
	for _, c := range []struct{ n, k int }{{orderMinN - 1, 5}, {orderMinN, 1}, {orderMinN + 7, 3}, {50000, 12}} {
		r := rand.New(rand.NewPCG(1, uint64(c.n)))
		s := make([]float32, c.n*c.k)
		for i := range c.n {
			for j := range c.k {
				s[i*c.k+j] = float32(float64(i%20)*3 + r.NormFloat64())
			}
		}
		perm := localityOrder(s, c.n, c.k)
		if c.n < orderMinN {
			if perm != nil {
				t.Errorf("n %d: order %v…, want none below %d", c.n, perm[:3], orderMinN)
			}
			continue
		}
		seen := make([]bool, c.n)
		for _, o := range perm {
			if o < 0 || int(o) >= c.n || seen[o] {
				t.Fatalf("n %d: not a permutation (%d)", c.n, o)
			}
			seen[o] = true
		}
		if c.k < 3 {
			continue
		}
		// Points 20 apart share a cluster; a point's cluster-mates
		// should mostly sit within a cluster's span (n/20) of it.
		inv := inverseOrder(perm)
		far := 0
		for i := 0; i+20 < c.n; i += 97 {
			d := int(inv[i]) - int(inv[i+20])
			if d < 0 {
				d = -d
			}
			if d > c.n/20 {
				far++
			}
		}
		if far > c.n/97/10 {
			t.Errorf("n %d: %d of %d cluster-mate pairs more than a cluster apart", c.n, far, c.n/97)
		}
	}
}

// permuteNeighbors moves rows and renumbers indices exactly as a copy
// would.
func TestPermuteNeighbors(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 3))
	const n, k = 1000, 7
	nb := &Neighbors{N: n, K: k, Index: make([]int32, n*k), Dist2: make([]float32, n*k)}
	for e := range nb.Index {
		nb.Index[e] = int32(r.IntN(n))
		nb.Dist2[e] = r.Float32()
	}
	perm := make([]int32, n)
	for i := range perm {
		perm[i] = int32(i)
	}
	r.Shuffle(n, func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
	inv := inverseOrder(perm)
	want := &Neighbors{N: n, K: k, Index: make([]int32, n*k), Dist2: make([]float32, n*k)}
	for p, o := range perm {
		for j := range k {
			want.Index[p*k+j] = inv[nb.Index[int(o)*k+j]]
			want.Dist2[p*k+j] = nb.Dist2[int(o)*k+j]
		}
	}
	permuteNeighbors(nb, perm, inv)
	if !slices.Equal(nb.Index, want.Index) || !slices.Equal(nb.Dist2, want.Dist2) {
		t.Fatal("permuted neighbours differ from a copy")
	}
	y := make([]float32, 2*n)
	for i := range y {
		y[i] = float32(i)
	}
	back := make([]float32, 2*n)
	unpermuteRows(back, permuteRows(y, 2, perm), 2, perm)
	if !slices.Equal(back, y) {
		t.Fatal("rows permuted and back differ")
	}
}

// selectNth places the m-th smallest key at m with smaller keys before and
// larger after, on keys with many ties too.
func TestSelectNth(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 5))
	for _, c := range []struct{ n, levels int }{{1, 1}, {2, 2}, {10, 3}, {1000, 1000000}, {1000, 4}, {999, 1}} {
		keys := make([]float32, c.n)
		for i := range keys {
			keys[i] = float32(r.IntN(c.levels))
		}
		sorted := slices.Clone(keys)
		slices.Sort(sorted)
		for _, m := range []int{0, c.n / 2, c.n - 1} {
			seg := make([]int32, c.n)
			for i := range seg {
				seg[i] = int32(i)
			}
			key := func(i int32) float32 { return keys[i] }
			selectNth(seg, m, key)
			if key(seg[m]) != sorted[m] {
				t.Fatalf("n %d m %d: key %v, want %v", c.n, m, key(seg[m]), sorted[m])
			}
			for i := range seg {
				if i < m && key(seg[i]) > key(seg[m]) || i > m && key(seg[i]) < key(seg[m]) {
					t.Fatalf("n %d m %d: key %v at %d on the wrong side of %v", c.n, m, key(seg[i]), i, key(seg[m]))
				}
			}
		}
	}
}
