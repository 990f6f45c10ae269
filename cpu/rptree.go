package cpu

import (
	"context"
	"math/rand/v2"
)

// rpTree is one random-projection tree, kept only as its leaves: the points
// of leaf l are perm[leafStart[l]:leafStart[l+1]], and leafOf[i] is the leaf
// of point i. Dasgupta & Freund, "Random projection trees and low dimensional
// manifolds" (STOC 2008): points that share a leaf are likely near each
// other, so a few trees give every point a cheap first guess at its
// neighbours, which NN-descent then refines.
type rpTree struct {
	perm      []int32
	leafStart []int32
	leafOf    []int32
}

// leaf returns the points sharing a leaf with point i (i included).
func (t *rpTree) leaf(i int32) []int32 {
	l := t.leafOf[i]
	return t.perm[t.leafStart[l]:t.leafStart[l+1]]
}

// buildForest builds the given number of trees in parallel. Tree t draws
// from its own stream (seed, t), so the forest does not depend on which
// goroutine built which tree.
func buildForest(ctx context.Context, b *Backend, x []float32, n, d, trees, leafSize int, seed int64) ([]rpTree, error) {
	forest := make([]rpTree, trees)
	errs := make([]error, trees)
	err := b.parallelFor(ctx, trees, 1, func(_, lo, hi int) {
		for t := lo; t < hi; t++ {
			rng := rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15^uint64(t)))
			forest[t], errs[t] = buildRPTree(ctx, x, n, d, leafSize, rng)
		}
	})
	if err != nil {
		return nil, err
	}
	for _, e := range errs {
		if e != nil {
			return nil, e
		}
	}
	return forest, nil
}

// buildRPTree splits the points recursively on the hyperplane halfway
// between two random points of the node (the variant used by Annoy and
// PyNNDescent, cheaper than projecting onto a random direction and splitting
// at the median) until no node holds more than leafSize points.
func buildRPTree(ctx context.Context, x []float32, n, d, leafSize int, rng *rand.Rand) (rpTree, error) {
	leafSize = max(leafSize, 2)
	t := rpTree{
		perm:      make([]int32, n),
		leafStart: make([]int32, 0, 2*n/leafSize+2),
		leafOf:    make([]int32, n),
	}
	for i := range t.perm {
		t.perm[i] = int32(i)
	}
	normal := make([]float32, d)
	// Depth-first, left child first, so leaves come out in perm order and
	// leafStart is increasing.
	stack := [][2]int{{0, n}}
	for len(stack) > 0 {
		if err := ctx.Err(); err != nil {
			return rpTree{}, err
		}
		r := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		lo, hi := r[0], r[1]
		if hi-lo <= leafSize {
			l := int32(len(t.leafStart))
			t.leafStart = append(t.leafStart, int32(lo))
			for _, p := range t.perm[lo:hi] {
				t.leafOf[p] = l
			}
			continue
		}
		mid := lo + splitNode(x, d, t.perm[lo:hi], normal, rng)
		stack = append(stack, [2]int{mid, hi}, [2]int{lo, mid})
	}
	t.leafStart = append(t.leafStart, int32(n))
	return t, nil
}

// splitNode reorders seg so that the points on the negative side of a random
// hyperplane come first and returns their count, always in [1, len(seg)-1].
func splitNode(x []float32, d int, seg []int32, normal []float32, rng *rand.Rand) int {
	m := len(seg)
	for try := 0; try < 3; try++ {
		i := rng.IntN(m)
		j := rng.IntN(m - 1)
		if j >= i {
			j++
		}
		a := x[int(seg[i])*d : int(seg[i])*d+d]
		c := x[int(seg[j])*d : int(seg[j])*d+d]
		var offset float32
		for k := range normal {
			normal[k] = a[k] - c[k]
			offset += normal[k] * (a[k] + c[k]) / 2
		}
		left := 0
		for s, p := range seg {
			margin := rpDot(normal, x[int(p)*d:int(p)*d+d]) - offset
			// Points on the plane (duplicates of each other, or a
			// degenerate pair) go to a random side so that a block of
			// equal points still splits.
			if margin < 0 || (margin == 0 && rng.IntN(2) == 0) {
				seg[left], seg[s] = seg[s], seg[left]
				left++
			}
		}
		if left > 0 && left < m {
			return left
		}
	}
	// Three hyperplanes in a row left one side empty: the node is
	// (numerically) a single point, so any split is as good as another.
	return m / 2
}

// rpDot is the inner product of two equal-length vectors.
func rpDot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		aa := a[i : i+4 : i+4]
		bb := b[i : i+4 : i+4]
		s0 += aa[0] * bb[0]
		s1 += aa[1] * bb[1]
		s2 += aa[2] * bb[2]
		s3 += aa[3] * bb[3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}
