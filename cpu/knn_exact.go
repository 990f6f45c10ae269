package cpu

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"slices"

	"github.com/tsnemap/tsnemap/embed"
)

// panelsPerBlock is the number of nr-point candidate panels one pass over a
// chunk's queries uses: 1,024 candidates at d = 50 are 200 KB, which stay in
// L2 while every query panel of the chunk is multiplied by them.
const panelsPerBlock = 64

// exactNeighbors is a brute-force search over all pairs, organised as a
// matrix product: ‖a−b‖² = ‖a‖² + ‖b‖² − 2a·b, computed tile by tile by the
// micro-kernel, which also compares each value with its row's current k-th
// distance. Each row keeps its k best in a max-heap in its slice of the
// output, so the N×N matrix never exists and nearly every candidate costs one
// vector compare.
//
// Candidates reach each row in ascending index order whatever the thread
// count, and a candidate only replaces the heap's top when strictly closer,
// so ties go to the lower index and the result is deterministic.
func exactNeighbors(ctx context.Context, b *Backend, x []float32, n, d, k int) (*embed.Neighbors, error) {
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

	// Candidates packed in panels of nr points, bp[p*d*nr + t*nr + j]; the
	// padding points get norm +Inf so their distance never passes a test.
	np := (n + nr - 1) / nr
	bp := make([]float32, np*d*nr)
	norms := make([]float32, np*nr)
	err := b.parallelFor(ctx, np, 16, func(_, lo, hi int) {
		for p := lo; p < hi; p++ {
			pan := bp[p*d*nr : (p+1)*d*nr]
			for j := range nr {
				i := p*nr + j
				if i >= n {
					norms[i] = float32(math.Inf(1))
					continue
				}
				var s float64
				for t, v := range x[i*d : i*d+d] {
					c := v - mu[t]
					pan[t*nr+j] = c
					s += float64(c) * float64(c)
				}
				norms[i] = float32(s)
			}
		}
	})
	if err != nil {
		return nil, err
	}

	out := &embed.Neighbors{N: n, K: k, Index: make([]int32, n*k), Dist2: make([]float32, n*k)}
	const grain = 8 * mr
	// unfilled[c] is a row of chunk c left with fewer than k neighbours,
	// which only happens when distances overflow float32.
	unfilled := make([]int, len(b.chunks(n, grain)))
	err = b.parallelFor(ctx, n, grain, func(c, lo, hi int) {
		unfilled[c] = searchRows(ctx, x, bp, norms, d, k, lo, hi, out)
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

// searchRows finds the neighbours of rows [lo, hi) and writes them, sorted,
// into out. It returns a row left with fewer than k neighbours, or −1. It
// returns early, leaving out incomplete, when ctx is done.
//
// Each row collects candidates that beat its threshold in a buffer of 2k
// keys; when the buffer is full a selection keeps the k best and the k-th
// becomes the new threshold. An insertion thus costs a store instead of a
// heap sift, and a row is compacted only about log₂(n/k) times, because the
// threshold after each compaction is already the k-th best of everything seen.
func searchRows(ctx context.Context, x, bp, norms []float32, d, k, lo, hi int, out *embed.Neighbors) int {
	np := len(norms) / nr
	rows := hi - lo
	nq := (rows + mr - 1) / mr
	// Query panels hold −2·(x − mean), so the kernel's sum is −2a·b; the
	// scaling by a power of two is exact.
	ap := make([]float32, nq*d*mr)
	for r := range rows {
		i := lo + r
		q, ii := r/mr, r%mr
		src := bp[(i/nr)*d*nr+i%nr:]
		dst := ap[q*d*mr+ii:]
		for t := range d {
			dst[t*mr] = -2 * src[t*nr]
		}
	}
	capacity := 2 * k
	buf := make([]uint64, rows*capacity)
	count := make([]int, rows)
	inf := float32(math.Inf(1))
	rowThr := make([]float32, rows)
	for r := range rowThr {
		rowThr[r] = inf
	}
	var na, thr [mr]float32
	var tile [mr * nr]float32
	var masks [mr]uint32
	for pb := 0; pb < np; pb += panelsPerBlock {
		pe := min(np, pb+panelsPerBlock)
		for q := range nq {
			if q%16 == 0 && ctx.Err() != nil {
				return -1
			}
			for ii := range mr {
				if r := q*mr + ii; r < rows {
					na[ii], thr[ii] = norms[lo+r], rowThr[r]
				} else {
					na[ii], thr[ii] = 0, -inf
				}
			}
			aq := ap[q*d*mr : (q+1)*d*mr]
			for p := pb; p < pe; p++ {
				distTile(d, aq, bp[p*d*nr:(p+1)*d*nr], (*[nr]float32)(norms[p*nr:p*nr+nr]), &na, &thr, &tile, &masks)
				for ii, m := range masks {
					if m == 0 {
						continue
					}
					r := q*mr + ii
					i := lo + r
					rb := buf[r*capacity : (r+1)*capacity]
					for ; m != 0; m &= m - 1 {
						j := bits.TrailingZeros32(m)
						c := p*nr + j
						// The dot-product form can dip below zero for
						// (near-)duplicates; they are at distance 0. The
						// threshold may have dropped since the tile's test.
						v := max(tile[ii*nr+j], 0)
						if c == i || !(v < thr[ii]) {
							continue
						}
						rb[count[r]] = neighborKey(v, c)
						count[r]++
						if count[r] == capacity {
							selectSmallest(rb, k)
							count[r] = k
							thr[ii] = math.Float32frombits(uint32(rb[k-1] >> 32))
							rowThr[r] = thr[ii]
						}
					}
				}
			}
		}
	}
	short := -1
	for r := range rows {
		if r%256 == 0 && ctx.Err() != nil {
			return -1
		}
		i := lo + r
		if count[r] < k {
			short = i
			continue
		}
		rb := buf[r*capacity : r*capacity+count[r]]
		if len(rb) > k {
			selectSmallest(rb, k)
		}
		finishRow(x, d, i, rb[:k], out.Dist2[i*k:i*k+k], out.Index[i*k:i*k+k])
	}
	return short
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
