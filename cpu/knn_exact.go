package cpu

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sync"

	"github.com/tsnemap/tsnemap/embed"
)

// candidateBytes is the size of the candidate panels one pass over a block's
// queries uses: 200 KB (1,024 candidates at d = 50) stay in L2 while every
// query panel of the block is multiplied by them.
const candidateBytes = 200 << 10

// blockAlign is the granularity of the row blocks: a whole number of query
// panels (mr rows) and of candidate panels (nr rows).
const blockAlign = 48

// localPanels is the number of candidate panels (of nr points) around its own
// position that a query panel meets first: 128 nearby points in k-d order.
const localPanels = 8

// exactNeighbors is a brute-force search over all pairs, organised as a
// matrix product: ‖a−b‖² = ‖a‖² + ‖b‖² − 2a·b, computed tile by tile by the
// micro-kernel on centred data. Each distance is computed once and offered to
// both of its points: the kernel compares it with the query row's and with
// the candidate row's current k-th distance, so nearly every pair costs two
// vector compares and the N×N matrix never exists.
//
// The rows are cut into blocks and the pairs of blocks are visited in the
// rounds of a round-robin tournament (the circle method), so the tasks of a
// round touch disjoint rows and run in parallel without locks.
//
// The rows are packed in k-d tree order (spatialOrder), so a block holds
// nearby points and its pairing with itself, done first, already gives each
// row a threshold close to its final k-th distance: the later rounds then
// pass few candidates.
//
// Each row collects candidates in a buffer of 2k keys (distance, index);
// when it is full a selection keeps the k smallest and the k-th becomes the
// row's threshold. A candidate is dropped only when k kept keys are smaller,
// so every row ends with exactly its k smallest keys whatever order the pairs
// came in: the result does not depend on the thread count, and ties go to
// the lower index. The distance of a pair is bit-identical whichever of its
// points is the query (the same products summed in the same order).
func exactNeighbors(ctx context.Context, b *Backend, kern tileKernels, x []float32, n, d, k int) (*embed.Neighbors, error) {
	// Distances do not change under translation, and the dot-product form
	// loses less to cancellation when the norms are small: centre first.
	mean := make([]float64, d)
	for i := range n {
		for t, v := range x[i*d : i*d+d] {
			mean[t] += float64(v)
		}
	}
	mu := make([]float32, d)
	for t := range mean {
		mu[t] = float32(mean[t] / float64(n))
	}

	perm := spatialOrder(ctx, b.threads, x, n, d)
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	bs := (n + 4*b.threads - 1) / (4 * b.threads)
	bs = max(blockAlign, (bs+blockAlign-1)/blockAlign*blockAlign)
	nblocks := (n + bs - 1) / bs
	s := &exactSearch{
		d: d, k: k, n: n, bs: bs,
		dist:   kern.dist,
		x:      x,
		perm:   perm,
		bp:     make([]float32, nblocks*bs*d),
		ap:     make([]float32, nblocks*bs*d),
		norms:  make([]float32, nblocks*bs),
		thr:    make([]float32, nblocks*bs),
		buf:    make([]uint64, n*2*k),
		count:  make([]int32, n),
		negInf: make([]float32, nr),
	}
	for j := range s.negInf {
		s.negInf[j] = float32(math.Inf(-1))
	}
	// Candidates in panels of nr points, bp[p*d*nr + t*nr + j]; queries in
	// panels of mr points scaled by −2, ap[q*d*mr + t*mr + i], so that the
	// kernel's sum is −2a·b (the scaling by a power of two is exact). Padding
	// rows get norm +Inf and threshold −Inf: they never pass a test.
	err := b.parallelFor(ctx, nblocks*bs/blockAlign, 8, func(_, lo, hi int) {
		for i := lo * blockAlign; i < hi*blockAlign; i++ {
			bp := s.bp[(i/nr)*d*nr+i%nr:]
			ap := s.ap[(i/mr)*d*mr+i%mr:]
			if i >= n {
				s.norms[i] = float32(math.Inf(1))
				s.thr[i] = float32(math.Inf(-1))
				continue
			}
			var sum float64
			row := int(perm[i])
			for t, v := range x[row*d : row*d+d] {
				c := v - mu[t]
				bp[t*nr] = c
				ap[t*mr] = -2 * c
				sum += float64(c) * float64(c)
			}
			s.norms[i] = float32(sum)
			// Not +Inf: the tests are ≤ and an overflowing distance must
			// fail them.
			s.thr[i] = math.MaxFloat32
		}
	})
	if err != nil {
		return nil, err
	}

	// Round 0 pairs every block with itself; rounds 1… are the circle
	// method's: with m teams (nblocks, plus a bye when odd), team m−1 stays
	// and the others rotate.
	m := nblocks + nblocks%2
	rounds := [][][2]int{make([][2]int, 0, nblocks)}
	for i := range nblocks {
		rounds[0] = append(rounds[0], [2]int{i, i})
	}
	for r := range m - 1 {
		var pairs [][2]int
		for i := range m / 2 {
			u, v := (r+i)%(m-1), (r-i+m-1)%(m-1)
			if i == 0 {
				v = m - 1
			}
			if u < nblocks && v < nblocks {
				pairs = append(pairs, [2]int{min(u, v), max(u, v)})
			}
		}
		rounds = append(rounds, pairs)
	}
	for _, pairs := range rounds {
		err := b.parallelFor(ctx, len(pairs), 1, func(_, lo, hi int) {
			for _, pr := range pairs[lo:hi] {
				s.blockPair(ctx, pr[0], pr[1])
			}
		})
		if err != nil {
			return nil, err
		}
	}

	out := &embed.Neighbors{N: n, K: k, Index: make([]int32, n*k), Dist2: make([]float32, n*k)}
	// unfilled[c] is a row of chunk c left with fewer than k neighbours,
	// which only happens when distances overflow float32.
	const grain = 256
	unfilled := make([]int, len(b.chunks(n, grain)))
	err = b.parallelFor(ctx, n, grain, func(c, lo, hi int) {
		unfilled[c] = -1
		for i := lo; i < hi; i++ {
			if (i-lo)%256 == 0 && ctx.Err() != nil {
				return
			}
			rb := s.buf[i*2*k : i*2*k+int(s.count[i])]
			row := int(perm[i])
			if len(rb) < k {
				unfilled[c] = row
				continue
			}
			if len(rb) > k {
				selectSmallest(rb, k)
			}
			finishRow(x, d, row, rb[:k], out.Dist2[row*k:row*k+k], out.Index[row*k:row*k+k])
		}
	})
	if err != nil {
		return nil, err
	}
	for _, row := range unfilled {
		if row >= 0 {
			return nil, fmt.Errorf("cpu: nearest neighbours: %w: distances from row %d overflow float32", embed.ErrInvalidInput, row)
		}
	}
	return out, nil
}

// exactSearch is the shared state of one exact search. During a round each
// row's buffer, count and threshold belong to the one task whose blocks
// contain it.
type exactSearch struct {
	d, k, n, bs int
	dist        func(k int, a, b []float32, nb *[nr]float32, na, thr *[mr]float32, cthr *[nr]float32, out *[mr * nr]float32, masks, cmasks *[mr]uint32)
	x           []float32
	perm        []int32   // packed position → row of x; keys hold rows of x
	bp, ap      []float32 // packed candidates and queries
	norms, thr  []float32 // per row, padded to whole blocks
	buf         []uint64  // per row, 2k keys
	count       []int32
	negInf      []float32 // nr × −Inf: the column thresholds of a diagonal pair
}

// blockPair offers the distances between the rows of blocks bi ≤ bj to both
// points of each pair (to the query rows only when bi == bj).
func (s *exactSearch) blockPair(ctx context.Context, bi, bj int) {
	d, bs := s.d, s.bs
	q0, q1 := bi*bs/mr, (bi+1)*bs/mr
	p0, p1 := bj*bs/nr, (bj+1)*bs/nr
	var na, thr [mr]float32
	var tile [mr * nr]float32
	var masks, cmasks [mr]uint32
	panelsPerBlock := max(1, candidateBytes/(d*nr*4))
	// window is the candidate panels nearest query panel q in packed (k-d
	// tree) order. On the diagonal they are visited first, so each row gets
	// a tight threshold before it meets the rest of its block.
	window := func(q int) (int, int) {
		c := q * mr / nr
		return max(p0, c-localPanels/2), min(p1, c+localPanels/2)
	}
	if bi == bj {
		for q := q0; q < q1; q++ {
			if (q-q0)%64 == 0 && ctx.Err() != nil {
				return
			}
			na = [mr]float32(s.norms[q*mr : q*mr+mr])
			aq := s.ap[q*d*mr : (q+1)*d*mr]
			w0, w1 := window(q)
			for p := w0; p < w1; p++ {
				thr = [mr]float32(s.thr[q*mr : q*mr+mr])
				s.dist(d, aq, s.bp[p*d*nr:(p+1)*d*nr], (*[nr]float32)(s.norms[p*nr:p*nr+nr]), &na, &thr, (*[nr]float32)(s.negInf), &tile, &masks, &cmasks)
				for ii, m := range masks {
					i := q*mr + ii
					for ; m != 0; m &= m - 1 {
						j := bits.TrailingZeros32(m)
						if c := p*nr + j; c != i {
							s.offer(i, tile[ii*nr+j], int(s.perm[c]))
						}
					}
				}
			}
			for i := q * mr; i < q*mr+mr; i++ {
				s.tighten(i)
			}
		}
	}
	for pb := p0; pb < p1; pb += panelsPerBlock {
		pe := min(p1, pb+panelsPerBlock)
		for q := q0; q < q1; q++ {
			if (q-q0)%16 == 0 && ctx.Err() != nil {
				return
			}
			na = [mr]float32(s.norms[q*mr : q*mr+mr])
			aq := s.ap[q*d*mr : (q+1)*d*mr]
			w0, w1 := window(q)
			for p := pb; p < pe; p++ {
				if bi == bj && p >= w0 && p < w1 {
					continue // done above
				}
				thr = [mr]float32(s.thr[q*mr : q*mr+mr])
				cthr := s.thr[p*nr : p*nr+nr]
				if bi == bj {
					cthr = s.negInf
				}
				s.dist(d, aq, s.bp[p*d*nr:(p+1)*d*nr], (*[nr]float32)(s.norms[p*nr:p*nr+nr]), &na, &thr, (*[nr]float32)(cthr), &tile, &masks, &cmasks)
				for ii, m := range masks {
					i := q*mr + ii
					for ; m != 0; m &= m - 1 {
						j := bits.TrailingZeros32(m)
						if c := p*nr + j; c != i {
							s.offer(i, tile[ii*nr+j], int(s.perm[c]))
						}
					}
				}
				for ii, m := range cmasks {
					i := q*mr + ii
					for ; m != 0; m &= m - 1 {
						j := bits.TrailingZeros32(m)
						s.offer(p*nr+j, tile[ii*nr+j], int(s.perm[i]))
					}
				}
			}
		}
	}
}

// tighten lowers row r's threshold to its current k-th distance as soon as
// it has k candidates, rather than when its buffer fills.
func (s *exactSearch) tighten(r int) {
	k := s.k
	if r >= s.n || int(s.count[r]) < k {
		return
	}
	rb := s.buf[r*2*k : r*2*k+int(s.count[r])]
	selectSmallest(rb, k)
	s.count[r] = int32(k)
	s.thr[r] = math.Float32frombits(uint32(rb[k-1] >> 32))
}

// offer adds row c of x at selection distance v to the buffer of packed row
// r if it can still be among the k nearest.
func (s *exactSearch) offer(r int, v float32, c int) {
	// The dot-product form can dip below zero for (near-)duplicates; they
	// are at distance 0. The threshold may have dropped since the tile's test.
	v = max(v, 0)
	if !(v <= s.thr[r]) {
		return
	}
	k := s.k
	rb := s.buf[r*2*k : (r+1)*2*k]
	rb[s.count[r]] = neighborKey(v, c)
	s.count[r]++
	if int(s.count[r]) == len(rb) {
		selectSmallest(rb, k)
		s.count[r] = int32(k)
		s.thr[r] = math.Float32frombits(uint32(rb[k-1] >> 32))
	}
}

// neighborKey orders candidates by (distance, index) as one integer: the
// bits of a non-negative float32 order like the number.
func neighborKey(v float32, j int) uint64 {
	return uint64(math.Float32bits(v))<<32 | uint64(uint32(j))
}

// finishRow replaces the selection distances of the k keys with Σ(a−b)²
// computed directly (the dot-product form loses precision when points are
// close compared with their norms), sorts by (distance, index) and writes
// the row.
func finishRow(x []float32, d, i int, keys []uint64, dist []float32, idx []int32) {
	a := x[i*d : i*d+d]
	for e, key := range keys {
		j := int(uint32(key))
		bj := x[j*d : j*d+d]
		var s0, s1 float64
		t := 0
		for ; t+1 < d; t += 2 {
			u := float64(a[t]) - float64(bj[t])
			w := float64(a[t+1]) - float64(bj[t+1])
			s0 += u * u
			s1 += w * w
		}
		if t < d {
			u := float64(a[t]) - float64(bj[t])
			s0 += u * u
		}
		keys[e] = neighborKey(float32(s0+s1), j)
	}
	slices.Sort(keys)
	for e, key := range keys {
		dist[e] = math.Float32frombits(uint32(key >> 32))
		idx[e] = int32(uint32(key))
	}
}

// selectSmallest reorders s so that s[:k] holds its k smallest values and
// s[k-1] is the largest of them (Hoare's quickselect, median-of-three pivots;
// no randomness, so the result is deterministic).
func selectSmallest(s []uint64, k int) {
	lo, hi := 0, len(s)-1
	for hi > lo {
		if hi-lo < 16 {
			// insertion sort of the short range puts the k-th in place
			for e := lo + 1; e <= hi; e++ {
				v := s[e]
				f := e
				for ; f > lo && s[f-1] > v; f-- {
					s[f] = s[f-1]
				}
				s[f] = v
			}
			return
		}
		mid := lo + (hi-lo)/2
		if s[mid] < s[lo] {
			s[mid], s[lo] = s[lo], s[mid]
		}
		if s[hi] < s[lo] {
			s[hi], s[lo] = s[lo], s[hi]
		}
		if s[hi] < s[mid] {
			s[hi], s[mid] = s[mid], s[hi]
		}
		pivot := s[mid]
		i, j := lo, hi
		for i <= j {
			for s[i] < pivot {
				i++
			}
			for s[j] > pivot {
				j--
			}
			if i <= j {
				s[i], s[j] = s[j], s[i]
				i++
				j--
			}
		}
		// now s[lo..j] ≤ pivot ≤ s[i..hi], and j < i
		switch {
		case k-1 <= j:
			hi = j
		case k-1 >= i:
			lo = i
		default:
			return
		}
	}
}

// spatialOrder returns the rows of x in the leaf order of a k-d tree
// (Bentley 1975): each node is split at the median of its widest coordinate,
// down to leaves of at most 64 points, so consecutive rows are close in space.
// The widest coordinate is judged on at most 512 of a node's rows, enough to
// pick a good split. Ties are broken by row index, so the order is
// deterministic; the top levels run in parallel on disjoint ranges.
func spatialOrder(ctx context.Context, threads int, x []float32, n, d int) []int32 {
	perm := make([]int32, n)
	for i := range perm {
		perm[i] = int32(i)
	}
	keys := make([]uint64, n)
	var split func(lo, hi, par int)
	split = func(lo, hi, par int) {
		if hi-lo <= 64 || ctx.Err() != nil {
			return
		}
		step := max(1, (hi-lo)/512)
		r0 := int(perm[lo])
		low := slices.Clone(x[r0*d : r0*d+d])
		high := slices.Clone(low)
		for e := lo + step; e < hi; e += step {
			r := int(perm[e])
			for t, v := range x[r*d : r*d+d] {
				low[t] = min(low[t], v)
				high[t] = max(high[t], v)
			}
		}
		best := 0
		for t := range d {
			if high[t]-low[t] > high[best]-low[best] {
				best = t
			}
		}
		ks := keys[lo:hi]
		for e, r := range perm[lo:hi] {
			ks[e] = uint64(orderedBits(x[int(r)*d+best]))<<32 | uint64(r)
		}
		mid := (lo + hi) / 2
		selectSmallest(ks, mid-lo)
		for e, key := range ks {
			perm[lo+e] = int32(uint32(key))
		}
		if par > 1 {
			var wg sync.WaitGroup
			wg.Go(func() { split(lo, mid, par/2) })
			split(mid, hi, par-par/2)
			wg.Wait()
			return
		}
		split(lo, mid, 1)
		split(mid, hi, 1)
	}
	split(0, n, threads)
	return perm
}

// orderedBits maps a float32 to a uint32 in the same order.
func orderedBits(v float32) uint32 {
	b := math.Float32bits(v)
	if b>>31 == 1 {
		return ^b
	}
	return b | 1<<31
}
