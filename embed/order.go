package embed

// The optimiser's hot loop reads, for every point, the coordinates of its
// ~100 neighbours in P. In the input's order those lie anywhere in Y, and
// past ~100,000 points (Y beyond the per-core cache) most of the reads are
// cache misses. Run therefore renumbers the points once, after the
// neighbour search, so that neighbours sit near each other in memory, and
// numbers the result back at the end: nothing outside Run sees the order.
//
// The order is that of the leaves of a k-d tree over the leading principal
// components (median splits along the component of widest range, leaves of
// at most orderLeaf points): near points in the data are near in every
// projection, and the leading components carry most of the spread, so
// neighbours mostly share a subtree. It costs O(N log N) over orderDims
// columns, a fraction of the neighbour search.

const (
	orderMinN = 20000 // below this Y fits in cache and the order is the input's
	orderDims = 8     // leading components the tree splits on
	orderLeaf = 32
)

// localityOrder returns perm, new number → original, for n points whose
// k-column scores are in s (row-major), or nil when n is below orderMinN.
func localityOrder(s []float32, n, k int) []int32 {
	if n < orderMinN || k < 1 {
		return nil
	}
	perm := make([]int32, n)
	for i := range perm {
		perm[i] = int32(i)
	}
	dims := min(k, orderDims)
	type span struct{ lo, hi int }
	stack := []span{{0, n}}
	for len(stack) > 0 {
		sp := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if sp.hi-sp.lo <= orderLeaf {
			continue
		}
		seg := perm[sp.lo:sp.hi]
		c := widestColumn(s, k, dims, seg)
		mid := len(seg) / 2
		selectNth(seg, mid, func(i int32) float32 { return s[int(i)*k+c] })
		stack = append(stack, span{sp.lo + mid, sp.hi}, span{sp.lo, sp.lo + mid})
	}
	return perm
}

// widestColumn is the column among the first dims whose values over seg
// have the largest range.
func widestColumn(s []float32, k, dims int, seg []int32) int {
	var lo, hi [orderDims]float32
	for c := range dims {
		v := s[int(seg[0])*k+c]
		lo[c], hi[c] = v, v
	}
	for _, i := range seg[1:] {
		row := s[int(i)*k : int(i)*k+dims]
		for c, v := range row {
			lo[c], hi[c] = min(lo[c], v), max(hi[c], v)
		}
	}
	best := 0
	for c := 1; c < dims; c++ {
		if hi[c]-lo[c] > hi[best]-lo[best] {
			best = c
		}
	}
	return best
}

// selectNth reorders seg so that seg[m] has the m-th smallest key, none
// before it a larger key and none after it a smaller one (Hoare's
// quickselect with the median of three as pivot).
func selectNth(seg []int32, m int, key func(int32) float32) {
	lo, hi := 0, len(seg)-1
	for hi > lo {
		mid := lo + (hi-lo)/2
		a, b, c := key(seg[lo]), key(seg[mid]), key(seg[hi])
		pv := max(min(a, b), min(max(a, b), c))
		i, j := lo, hi
		for i <= j {
			for key(seg[i]) < pv {
				i++
			}
			for key(seg[j]) > pv {
				j--
			}
			if i <= j {
				seg[i], seg[j] = seg[j], seg[i]
				i++
				j--
			}
		}
		switch {
		case m <= j:
			hi = j
		case m >= i:
			lo = i
		default:
			return
		}
	}
}

// inverseOrder is perm's inverse, original → new number.
func inverseOrder(perm []int32) []int32 {
	inv := make([]int32, len(perm))
	for p, o := range perm {
		inv[o] = int32(p)
	}
	return inv
}

// permuteNeighbors renumbers nb in place: row p becomes the original row
// perm[p], with every index mapped by inv. Rows move along the cycles of
// perm, so the only extra memory is one row and a bit per point.
func permuteNeighbors(nb *Neighbors, perm, inv []int32) {
	n, k := nb.N, nb.K
	for e, j := range nb.Index {
		nb.Index[e] = inv[j]
	}
	done := make([]uint64, (n+63)/64)
	ti := make([]int32, k)
	td := make([]float32, k)
	for s := range n {
		if done[s/64]&(1<<(s%64)) != 0 {
			continue
		}
		copy(ti, nb.Index[s*k:(s+1)*k])
		copy(td, nb.Dist2[s*k:(s+1)*k])
		j := s
		for {
			done[j/64] |= 1 << (j % 64)
			src := int(perm[j])
			if src == s {
				copy(nb.Index[j*k:(j+1)*k], ti)
				copy(nb.Dist2[j*k:(j+1)*k], td)
				break
			}
			copy(nb.Index[j*k:(j+1)*k], nb.Index[src*k:(src+1)*k])
			copy(nb.Dist2[j*k:(j+1)*k], nb.Dist2[src*k:(src+1)*k])
			j = src
		}
	}
}

// permuteRows returns the rows of y (dims each) in the order perm (row p of
// the result is row perm[p] of y).
func permuteRows(y []float32, dims int, perm []int32) []float32 {
	out := make([]float32, len(y))
	for p, o := range perm {
		copy(out[p*dims:(p+1)*dims], y[int(o)*dims:(int(o)+1)*dims])
	}
	return out
}

// unpermuteRows writes the rows of y, in the order perm, back in the
// original order into dst.
func unpermuteRows(dst, y []float32, dims int, perm []int32) {
	for p, o := range perm {
		copy(dst[int(o)*dims:(int(o)+1)*dims], y[p*dims:(p+1)*dims])
	}
}
