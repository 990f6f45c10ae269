package cpu

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"time"

	"github.com/tsnemap/tsnemap/embed"
)

// approxParams are the knobs of the approximate search.
type approxParams struct {
	trees    int // random-projection trees that seed the graph
	leafSize int // most points in a leaf
	// maxCand caps the new candidates of a point in one round, forward and
	// reverse together: the ρ·K sample of Dong et al.; maxOld caps the old.
	maxCand   int
	maxOld    int
	delta     float64 // stop once a round is expected to change fewer than delta·n·k entries
	maxRounds int
	block     int // points whose local joins share one update exchange
	minWorkK  int // smallest list kept during the search

	stats *approxStats // filled in when set, for tests and tuning
	kern  *tileKernels // the micro-kernels; nil means defaultKernels
}

// approxStats describes how a search went.
type approxStats struct {
	trees, seeding, descent time.Duration
	updates                 []int // list entries changed in each round
	// probe, when set, is called after seeding ("seed") and after each
	// round ("round N: …") with the current lists: nbrs(i) returns
	// the neighbours of original row i, in original numbering, unsorted.
	probe func(stage string, nbrs func(i int) []int32)
}

func defaultApproxParams(n, k int) approxParams {
	return approxParams{
		trees: 8,
		// Large leaves, searched exhaustively in tiles of the dense
		// kernel, give a far better start than small ones: on the bench's
		// clusters (250,000 × 50, k = 90) eight trees of 4,096-point
		// leaves reach recall 0.85 before any descent, where leaves of
		// 1,024 reach 0.49 and leaves of 90 scanned pair by pair 0.11.
		// Leaves scale with n (n/64 keeps the same share of a cluster) up
		// to 4,096: at 1,000,000 points eight such trees take 72 CPU s
		// for recall 0.55, and the whole search 258 CPU s for 0.961;
		// leaves of 8,192 seed at 0.73 but the search then takes 292
		// CPU s (0.973), five trees of 8,192 279 CPU s (0.957).
		leafSize: min(max(k+1, 64, n/64), 4096),
		// More new than old candidates, and more than before: from a
		// good seed few rounds are needed, and more candidates lift the
		// level they stall at. Bench clusters, idle 2 cores: 250,000
		// points 64/40 reach recall 0.994 in 50 CPU s (50/30: 0.991 in
		// 51); 1,000,000 points 64/40 0.965 in 395 CPU s, 50/30 0.946
		// in 406, 30/20 0.900 after six rounds.
		maxCand: min(n-1, 64),
		maxOld:  min(n-1, 40),
		// A round changes about as many list entries as it gains in
		// recall (measured at 250,000 points: 0.023·n·k entries changed
		// for +0.021, 0.0082 for +0.0078, 0.0025 for +0.0025), so the
		// search stops once a round gains, or the next is expected to
		// gain, less than about one percent (see nnConverged).
		delta:     0.01,
		maxRounds: 12,
		block:     1 << 13,
		minWorkK:  40,
	}
}

// approxNeighbors finds approximate k nearest neighbours: a forest of
// random-projection trees seeds each point's list, then NN-descent refines
// it. Dong, Moses & Li, "Efficient k-nearest neighbor graph construction for
// generic similarity measures" (WWW 2011): a neighbour of a neighbour is
// likely a neighbour, so each round compares every pair among a point's
// sampled neighbours and reverse neighbours ("local join") and keeps the
// improvements, and only pairs with at least one new member are compared.
//
// Both the leaves and the local joins are searched exhaustively in tiles of
// the dense micro-kernel (‖a‖²+‖b‖²−2a·b on centred data, with masks for
// the pairs that pass either list's bound), the blocking of the exact
// search; so the leaves can be large (a few thousand points) and the seed
// good, which saves the rounds that cost most. The final lists are measured
// again as Σ(a−b)² in float64, as in the exact search.
//
// The result depends only on x, k, seed and the thread count: sampling uses
// a hash of (seed, round, pair) rather than a shared generator, and updates
// found in parallel are applied per owner in chunk order.
func approxNeighbors(ctx context.Context, b *Backend, x []float32, n, d, k int, seed int64) (*embed.Neighbors, error) {
	return approxNeighborsWith(ctx, b, x, n, d, k, seed, defaultApproxParams(n, k))
}

func approxNeighborsWith(ctx context.Context, b *Backend, x []float32, n, d, k int, seed int64, prm approxParams) (*embed.Neighbors, error) {
	switch {
	case n < 2 || n >= math.MaxInt32: // indices are int32
		return nil, fmt.Errorf("cpu: approximate neighbours of %d points: %w: need 2 ≤ n < %d", n, embed.ErrInvalidInput, math.MaxInt32)
	case d < 1:
		return nil, fmt.Errorf("cpu: approximate neighbours in %d dimensions: %w", d, embed.ErrInvalidInput)
	case k < 1 || k > n-1:
		return nil, fmt.Errorf("cpu: %d approximate neighbours of %d points: %w: need 1 ≤ k ≤ n−1", k, n, embed.ErrInvalidInput)
	case len(x) != n*d:
		return nil, fmt.Errorf("cpu: approximate neighbours: %w: %d values for %d×%d points", embed.ErrInvalidInput, len(x), n, d)
	}
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("cpu: approximate neighbours: %w: value %v in row %d", embed.ErrInvalidInput, v, i/d)
		}
	}

	// Small k gets stuck in local optima on high-dimensional data (a list of
	// 15 is too short a net to catch the true neighbours' neighbours), so
	// the graph is built with at least minWorkK entries and cut afterwards.
	kw := max(k, min(n-1, prm.minWorkK))
	prm.trees = max(prm.trees, 1) // the first tree also orders the points
	s := &nnDescent{
		b: b, x: x, n: n, d: d, k: kw, prm: prm, kern: defaultKernels(),
		seed: nnMix64(uint64(seed) ^ 0x6a09e667f3bcc909),
		g:    newNNHeap(n, kw),
	}
	if prm.kern != nil {
		s.kern = *prm.kern
	}
	t0 := time.Now()
	forest, err := buildForest(ctx, b, x, n, d, prm.trees, prm.leafSize, seed)
	if err != nil {
		return nil, fmt.Errorf("cpu: approximate neighbours: trees: %w", err)
	}
	// Renumber the points in the order of the first tree's leaves, so that
	// near points sit near in memory: the rows a local join reads, and the
	// lists it updates, then share cache lines and pages.
	order := forest[0].perm // new number → original
	inv := make([]int32, n) // original → new
	for p, o := range order {
		inv[o] = int32(p)
	}
	// The copy is centred, and its squared norms kept, for the local joins'
	// dot-product form ‖a‖²+‖b‖²−2a·b, which loses less to cancellation
	// when the norms are small.
	mu := columnMean(x, n, d)
	s.x = make([]float32, n*d)
	s.norm = make([]float32, n)
	if err := b.parallelFor(ctx, n, 4096, func(_, lo, hi int) {
		for p := lo; p < hi; p++ {
			o := int(order[p])
			row := s.x[p*d : (p+1)*d]
			var sum float64
			for t, v := range x[o*d : (o+1)*d] {
				c := v - mu[t]
				row[t] = c
				sum += float64(c) * float64(c)
			}
			s.norm[p] = float32(sum)
		}
	}); err != nil {
		return nil, fmt.Errorf("cpu: approximate neighbours: %w", err)
	}
	t1 := time.Now()
	if err := s.seedFromForest(ctx, forest, order, inv); err != nil {
		return nil, fmt.Errorf("cpu: approximate neighbours: seeding: %w", err)
	}
	forest = nil
	s.probe("seed", order, inv)
	t2 := time.Now()
	if err := s.descend(ctx, order, inv); err != nil {
		return nil, fmt.Errorf("cpu: approximate neighbours: descent: %w", err)
	}
	if st := prm.stats; st != nil {
		st.trees, st.seeding, st.descent = t1.Sub(t0), t2.Sub(t1), time.Since(t2)
		st.updates = s.updates
	}
	idx, dist, err := s.finish(ctx, order, k)
	if err != nil {
		return nil, fmt.Errorf("cpu: approximate neighbours: %w", err)
	}
	return &embed.Neighbors{N: n, K: k, Index: idx, Dist2: dist, Method: embed.NeighborsApprox}, nil
}

// finish turns the working lists into the result, in the lists' own
// memory: the result would otherwise be a second n·k copy (720 MB at
// 1,000,000 points, k = 90) allocated while the lists are still held.
//
// The lists mix distances of two formulas; each is measured again as
// Σ(a−b)² in float64 (as the exact search's finishRow does), on the
// renumbered copy, where a point's neighbours sit near it in memory (on the
// input they are scattered: twice the time at 250,000 points), and the list
// is sorted by (distance, original index) and cut to k. Row p is written
// back to the first k slots of its own list, then the rows are compacted to
// width k and moved to the input's order.
func (s *nnDescent) finish(ctx context.Context, order []int32, k int) ([]int32, []float32, error) {
	n, kw := s.n, s.k
	if err := s.b.parallelFor(ctx, n, 1024, func(_, lo, hi int) {
		keys := make([]uint64, kw)
		for p := lo; p < hi; p++ {
			xp := s.row(int32(p))
			row := s.g.idx[p*kw : (p+1)*kw]
			for j, q := range row {
				keys[j] = neighborKey(nnSqDist64(xp, s.row(q)), int(order[q]))
			}
			slices.Sort(keys)
			drow := s.g.dist[p*kw : (p+1)*kw]
			for j, key := range keys[:k] {
				drow[j] = math.Float32frombits(uint32(key >> 32))
				row[j] = int32(uint32(key))
			}
		}
	}); err != nil {
		return nil, nil, err
	}
	idx, dist := s.g.idx[:n*k:n*k], s.g.dist[:n*k:n*k]
	if kw > k {
		// Rows move down only (p·k ≤ p·kw), so ascending order is safe.
		for p := 1; p < n; p++ {
			copy(idx[p*k:(p+1)*k], s.g.idx[p*kw:p*kw+k])
			copy(dist[p*k:(p+1)*k], s.g.dist[p*kw:p*kw+k])
		}
	}
	permuteRows(idx, dist, order, k)
	if kw > k {
		// The lists' tail (kw−k of every kw) would stay held with the
		// result; at kw ≤ 2k a copy costs less than keeping it.
		idx, dist = slices.Clone(idx), slices.Clone(dist)
	}
	return idx, dist, nil
}

// permuteRows moves row p of idx and dist (rows of k) to row order[p], in
// place, cycle by cycle, with one spare row and a bitmap of rows placed.
func permuteRows(idx []int32, dist []float32, order []int32, k int) {
	n := len(order)
	done := make([]uint64, (n+63)/64)
	carryI, spareI := make([]int32, k), make([]int32, k)
	carryD, spareD := make([]float32, k), make([]float32, k)
	for start := range n {
		if done[start>>6]&(1<<(start&63)) != 0 {
			continue
		}
		copy(carryI, idx[start*k:(start+1)*k])
		copy(carryD, dist[start*k:(start+1)*k])
		for p := start; ; {
			to := int(order[p])
			copy(spareI, idx[to*k:(to+1)*k])
			copy(spareD, dist[to*k:(to+1)*k])
			copy(idx[to*k:(to+1)*k], carryI)
			copy(dist[to*k:(to+1)*k], carryD)
			done[to>>6] |= 1 << (to & 63)
			carryI, spareI = spareI, carryI
			carryD, spareD = spareD, carryD
			p = to
			if p == start {
				break
			}
		}
	}
}

// nnDescent is the state of one approximate search.
type nnDescent struct {
	b       *Backend
	x       []float32 // centred, in search order
	norm    []float32 // ‖x_p‖²
	kern    tileKernels
	n, d, k int
	prm     approxParams
	seed    uint64
	g       *nnHeap
	updates []int // list entries changed in each round
}

func (s *nnDescent) row(i int32) []float32 {
	o := int(i) * s.d
	return s.x[o : o+s.d : o+s.d]
}

// seedFromForest fills each point's list with the nearest of the points that
// share a leaf with it in any tree, then tops up short lists at random. The
// trees are taken one after the other and the leaves of a tree in parallel:
// a leaf's points belong to it alone, so its task writes their lists
// without locks, and each list sees its offers in the same order whatever
// the thread count. Within a leaf the distances come in tiles of the dense
// kernel, as in the local joins, so large leaves cost little.
func (s *nnDescent) seedFromForest(ctx context.Context, forest []rpTree, order, inv []int32) error {
	nc := len(s.b.chunks(s.n, 1))
	scratch := make([]*joinScratch, nc)
	members := make([][]int32, nc)
	for t := range forest {
		if t > 0 {
			if err := s.resignAll(ctx); err != nil {
				return err
			}
		}
		tr := &forest[t]
		leaves := len(tr.leafStart) - 1
		err := s.b.parallelFor(ctx, leaves, 1, func(c, lo, hi int) {
			for l := lo; l < hi; l++ {
				if ctx.Err() != nil {
					return
				}
				pts := members[c][:0]
				for _, o := range tr.perm[tr.leafStart[l]:tr.leafStart[l+1]] {
					pts = append(pts, inv[o])
				}
				members[c] = pts
				if scratch[c] == nil || !scratch[c].fits(len(pts), len(pts)) {
					scratch[c] = newJoinScratch(s.d, len(pts), 0)
				}
				s.leafJoin(pts, scratch[c], t > 0)
			}
		})
		if err != nil {
			return err
		}
	}
	return s.b.parallelFor(ctx, s.n, 1024, func(_, lo, hi int) {
		for p := lo; p < hi; p++ {
			s.g.resign(p)
			s.fillRandom(p)
		}
	})
}

// resignAll rebuilds every point's filter from its list.
func (s *nnDescent) resignAll(ctx context.Context) error {
	return s.b.parallelFor(ctx, s.n, 4096, func(_, lo, hi int) {
		for p := lo; p < hi; p++ {
			s.g.resign(p)
		}
	})
}

// leafJoin offers every pair of pts to both lists, pushing directly: the
// caller owns the lists of pts. Thresholds are refreshed per panel, so the
// masks drop most pairs once the lists are full. dedupe is false for the
// first tree, whose offers cannot repeat an entry (see seedPush).
func (s *nnDescent) leafJoin(pts []int32, sc *joinScratch, dedupe bool) {
	m := len(pts)
	if m < 2 {
		return
	}
	d := s.d
	rowsA := (m + mr - 1) / mr * mr
	rowsB := (m + nr - 1) / nr * nr
	s.packJoin(pts, rowsA, mr, -2, sc.ap, sc.na, sc.thr)
	s.packJoin(pts, rowsB, nr, 1, sc.bp, sc.nb, sc.cthr)
	bound := s.g.bound
	for i0 := 0; i0 < rowsA; i0 += mr {
		a := sc.ap[i0*d : (i0+mr)*d]
		na := (*[mr]float32)(sc.na[i0 : i0+mr])
		thr := (*[mr]float32)(sc.thr[i0 : i0+mr])
		for j0 := (i0 / nr) * nr; j0 < rowsB; j0 += nr {
			for i := range mr {
				if i0+i < m {
					thr[i] = min(bound[pts[i0+i]], math.MaxFloat32)
				}
			}
			cthr := (*[nr]float32)(sc.cthr[j0 : j0+nr])
			for j := range nr {
				if j0+j < m {
					cthr[j] = min(bound[pts[j0+j]], math.MaxFloat32)
				}
			}
			s.kern.dist(d, a, sc.bp[j0*d:(j0+nr)*d], (*[nr]float32)(sc.nb[j0:j0+nr]), na, thr,
				cthr, &sc.out, &sc.masks, &sc.cmask)
			for i := range mr {
				r := i0 + i
				mk, cm := sc.masks[i], sc.cmask[i]
				if mk|cm == 0 || r >= m {
					continue
				}
				if lim := r + 1 - j0; lim >= nr {
					continue
				} else if lim > 0 {
					mk &^= 1<<lim - 1
					cm &^= 1<<lim - 1
				}
				p := pts[r]
				for all := mk | cm; all != 0; all &= all - 1 {
					j := bits.TrailingZeros32(all)
					q := pts[j0+j]
					dd := sc.out[i*nr+j]
					if mk&(1<<j) != 0 {
						s.g.seedPush(int(p), dd, q, dedupe)
					}
					if cm&(1<<j) != 0 {
						s.g.seedPush(int(q), dd, p, dedupe)
					}
				}
			}
		}
	}
}

// probe hands the current lists to prm.stats.probe, if set.
func (s *nnDescent) probe(stage string, order, inv []int32) {
	if s.prm.stats == nil || s.prm.stats.probe == nil {
		return
	}
	s.prm.stats.probe(stage, func(i int) []int32 {
		p := int(inv[i])
		row := s.g.idx[p*s.k : p*s.k+int(s.g.size[p])]
		out := make([]int32, len(row))
		for j, q := range row {
			out[j] = order[q]
		}
		return out
	})
}

// fillRandom tops up a list that the leaves left short with random points.
func (s *nnDescent) fillRandom(p int) {
	xp := s.row(int32(p))
	h := s.seed ^ uint64(p)*0xbf58476d1ce4e5b9
	for try := 0; int(s.g.size[p]) < s.k && try < 4*s.k; try++ {
		h = nnMix64(h)
		q := int32(h % uint64(s.n))
		if int(q) != p && !nnContains(s.g.idx[p*s.k:p*s.k+int(s.g.size[p])], q) {
			s.g.push(p, nnSqDist(xp, s.row(q)), q, true)
		}
	}
	// Only when k is close to n do random draws keep missing; then walk.
	for q := int32(0); int(s.g.size[p]) < s.k; q++ {
		if int(q) != p && !nnContains(s.g.idx[p*s.k:p*s.k+int(s.g.size[p])], q) {
			s.g.push(p, nnSqDist(xp, s.row(q)), q, true)
		}
	}
}

// nnUpdate proposes other as a neighbour of target at squared distance d.
type nnUpdate struct {
	target, other int32
	d             float32
}

// descend runs NN-descent rounds until few lists change.
func (s *nnDescent) descend(ctx context.Context, order, inv []int32) error {
	n := s.n
	newC := newCandHeap(n, max(s.prm.maxCand, 1))
	oldC := newCandHeap(n, max(s.prm.maxOld, 1))

	// Owners: point i belongs to part i>>shift, a power-of-two split into
	// about 4·threads parts, so applying updates needs no locks.
	shift := uint(0)
	for (n-1)>>shift >= 4*s.b.threads {
		shift++
	}
	parts := (n-1)>>shift + 1
	block := max(s.prm.block, 1)
	const grain = 64
	nc := len(s.b.chunks(min(block, n), grain))
	buckets := make([][][]nnUpdate, nc)
	scratch := make([]*joinScratch, nc)
	for c := range buckets {
		buckets[c] = make([][]nnUpdate, parts)
		scratch[c] = newJoinScratch(s.d, s.prm.maxCand, s.prm.maxOld)
	}
	changed := make([]int, parts)

	for round := 0; round < s.prm.maxRounds; round++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.sample(ctx, round, newC, oldC); err != nil {
			return err
		}
		clear(changed)
		for b0 := 0; b0 < n; b0 += block {
			b1 := min(b0+block, n)
			// Local joins of the block: read-only on the graph, updates
			// sorted by owner into per-chunk buckets.
			err := s.b.parallelFor(ctx, b1-b0, grain, func(c, lo, hi int) {
				bk := buckets[c]
				for i := range bk {
					bk[i] = bk[i][:0]
				}
				for v := b0 + lo; v < b0+hi; v++ {
					if (v-b0-lo)%16 == 0 && ctx.Err() != nil {
						return
					}
					if v+1 < b0+hi {
						s.prefetchJoin(newC.row(v+1), oldC.row(v+1))
					}
					s.localJoin(newC.row(v), oldC.row(v), bk, shift, scratch[c])
				}
			})
			if err != nil {
				return err
			}
			// Apply: each part takes its updates from every chunk in
			// chunk order, so the outcome does not depend on scheduling.
			err = s.b.parallelFor(ctx, parts, 1, func(_, lo, hi int) {
				var ahead [applyAhead]int32
				for part := lo; part < hi; part++ {
					for c := range buckets {
						ups := buckets[c][part]
						for j, u := range ups {
							if j%4096 == 0 && ctx.Err() != nil {
								return
							}
							if j%applyAhead == 0 && j+applyAhead < len(ups) {
								s.prefetchTargets(ups[j+applyAhead:min(j+2*applyAhead, len(ups))], ahead[:0])
							}
							if s.g.push(int(u.target), u.d, u.other, true) {
								changed[part]++
							}
						}
					}
				}
			})
			if err != nil {
				return err
			}
		}
		total := 0
		for _, c := range changed {
			total += c
		}
		s.updates = append(s.updates, total)
		s.probe(fmt.Sprintf("round %d: %d updates (%.4f·n·k)", round+1, total, float64(total)/(float64(n)*float64(s.k))), order, inv)
		if nnConverged(s.updates, s.prm.delta*float64(n)*float64(s.k)) {
			break
		}
	}
	return nil
}

// nnConverged reports whether the descent should stop after the rounds
// that changed updates[r] entries: once the last round changed at most
// limit, or once the next is expected to. The changes shrink by a roughly
// steady factor from round to round (bench clusters, 1,000,000 points:
// 0.364, 0.172, 0.030, 0.0054·n·k; 250,000: 0.134, 0.033, 0.0026), so the
// next round's is predicted as the last times the last ratio. At 1,000,000
// points that skips a fourth round that cost 26 of 315 CPU s for recall
// +0.005 (0.961 → 0.965).
func nnConverged(updates []int, limit float64) bool {
	r := len(updates)
	if r == 0 {
		return false
	}
	last := float64(updates[r-1])
	if last <= limit {
		return true
	}
	if r < 2 || updates[r-2] == 0 {
		return false
	}
	return last*last/float64(updates[r-2]) <= limit
}

// joinScratch is one chunk's buffers for the tiled local join.
type joinScratch struct {
	ap, bp       []float32 // new candidates as query panels (×−2), all as candidate panels
	na, nb       []float32 // squared norms, +Inf on padding
	thr, cthr    []float32 // list bounds, −Inf on padding
	pts          []int32   // new then old candidates
	out          [mr * nr]float32
	masks, cmask [mr]uint32
}

// fits reports whether the buffers hold a join of m1 query rows against m
// candidates.
func (sc *joinScratch) fits(m1, m int) bool {
	return (m1+mr-1)/mr*mr <= len(sc.na) && (m+nr-1)/nr*nr <= len(sc.nb)
}

func newJoinScratch(d, maxNew, maxOld int) *joinScratch {
	rowsA := (max(maxNew, 1) + mr - 1) / mr * mr
	rowsB := (max(maxNew, 1) + max(maxOld, 1) + nr - 1) / nr * nr
	return &joinScratch{
		ap: make([]float32, rowsA*d), bp: make([]float32, rowsB*d),
		na: make([]float32, rowsA), thr: make([]float32, rowsA),
		nb: make([]float32, rowsB), cthr: make([]float32, rowsB),
		pts: make([]int32, 0, rowsB),
	}
}

// localJoin compares every pair of new candidates and every new candidate
// with every old one, and proposes each pair that would improve either list.
// The distances come in tiles of the dense micro-kernel (the new candidates
// against all), on the centred data as ‖a‖²+‖b‖²−2a·b, and the kernel's
// masks flag the few pairs that pass the bound of either list; tiles wholly
// below the diagonal of the new×new block are skipped.
func (s *nnDescent) localJoin(nw, old []int32, bk [][]nnUpdate, shift uint, sc *joinScratch) {
	m1 := len(nw)
	if m1 == 0 {
		return
	}
	sc.pts = append(append(sc.pts[:0], nw...), old...)
	m := len(sc.pts)
	d := s.d
	rowsA := (m1 + mr - 1) / mr * mr
	rowsB := (m + nr - 1) / nr * nr
	s.packJoin(sc.pts[:m1], rowsA, mr, -2, sc.ap, sc.na, sc.thr)
	s.packJoin(sc.pts, rowsB, nr, 1, sc.bp, sc.nb, sc.cthr)
	for i0 := 0; i0 < rowsA; i0 += mr {
		a := sc.ap[i0*d : (i0+mr)*d]
		na := (*[mr]float32)(sc.na[i0 : i0+mr])
		thr := (*[mr]float32)(sc.thr[i0 : i0+mr])
		for j0 := (i0 / nr) * nr; j0 < rowsB; j0 += nr {
			s.kern.dist(d, a, sc.bp[j0*d:(j0+nr)*d], (*[nr]float32)(sc.nb[j0:j0+nr]), na, thr,
				(*[nr]float32)(sc.cthr[j0:j0+nr]), &sc.out, &sc.masks, &sc.cmask)
			for i := range mr {
				mk, cm := sc.masks[i], sc.cmask[i]
				r := i0 + i
				if mk|cm == 0 || r >= m1 {
					continue
				}
				if j0 < m1 {
					// New×new: only columns after the row, once per pair.
					lim := r + 1 - j0
					if lim >= nr {
						continue
					}
					if lim > 0 {
						mk &^= 1<<lim - 1
						cm &^= 1<<lim - 1
					}
				}
				p := sc.pts[r]
				for all := mk | cm; all != 0; all &= all - 1 {
					j := bits.TrailingZeros32(all)
					q := sc.pts[j0+j]
					if q == p {
						continue
					}
					dd := sc.out[i*nr+j]
					if mk&(1<<j) != 0 && !s.g.has(p, q) {
						o := p >> shift
						bk[o] = append(bk[o], nnUpdate{p, q, dd})
					}
					if cm&(1<<j) != 0 && !s.g.has(q, p) {
						o := q >> shift
						bk[o] = append(bk[o], nnUpdate{q, p, dd})
					}
				}
			}
		}
	}
}

// prefetchJoin asks for what the local join of the candidates nw and old
// will read at random: their rows, norms, bounds, filters and lists. Issued one
// point ahead, it overlaps the cache misses that otherwise come one row at a
// time while the join packs its panels.
func (s *nnDescent) prefetchJoin(nw, old []int32) {
	for _, c := range [2][]int32{nw, old} {
		prefetchRows(s.x, s.d, c)
		prefetchRows(s.g.sig, 1, c)
		prefetchRows(s.norm, 1, c)
		prefetchRows(s.g.bound, 1, c)
		prefetchRows(s.g.idx, s.k, c)
	}
}

// packJoin packs the rows of pts into panels of w rows (dst[panel·d·w +
// t·w + i] = scale·x[t]), with their norms and list bounds, and pads to
// rows with zeros, +Inf norms and −Inf bounds so that padding never passes.
func (s *nnDescent) packJoin(pts []int32, rows, w int, scale float32, dst, norm, thr []float32) {
	d := s.d
	for i, p := range pts {
		panel := dst[(i/w)*d*w+i%w:]
		for t, v := range s.row(p) {
			panel[t*w] = scale * v
		}
		norm[i] = s.norm[p]
		// Not +Inf: the kernel's tests are ≤ and an overflowing distance
		// must fail them.
		thr[i] = min(s.g.bound[p], math.MaxFloat32)
	}
	for i := len(pts); i < rows; i++ {
		panel := dst[(i/w)*d*w+i%w:]
		for t := range d {
			panel[t*w] = 0
		}
		norm[i] = float32(math.Inf(1))
		thr[i] = float32(math.Inf(-1))
	}
}

// sample draws this round's candidates: for each edge v→u of the graph, u
// joins v's list and v joins u's (the reverse neighbour), new or old after
// the edge's flag, keeping per list the maxCand of lowest random priority.
// The priority hashes (seed, round, pair), so the lists are a function of
// the graph alone, whichever thread inserts first. New edges that were
// sampled are then flagged old, as in Dong et al.
func (s *nnDescent) sample(ctx context.Context, round int, newC, oldC *candHeap) error {
	n, k := s.n, s.k
	rs := nnMix64(s.seed + uint64(round)*0x9e3779b97f4a7c15)
	newC.reset(rs)
	oldC.reset(rs)
	parts := s.b.threads
	err := s.b.parallelFor(ctx, parts, 1, func(_, plo, phi int) {
		lo, hi := plo*n/parts, phi*n/parts
		ahead := [2][]int32{make([]int32, 0, k), make([]int32, 0, k)}
		for v := 0; v < n; v++ {
			if v%4096 == 0 && ctx.Err() != nil {
				return
			}
			if w := v + sampleAhead; w < n {
				s.prefetchSample(w, lo, hi, newC, oldC, &ahead)
			}
			own := v >= lo && v < hi
			base := v * k
			for j := 0; j < k; j++ {
				u := s.g.idx[base+j]
				if !own && (int(u) < lo || int(u) >= hi) {
					continue
				}
				h := oldC
				if s.g.fresh[base+j] {
					h = newC
				}
				if own {
					h.push(v, u)
				}
				if int(u) >= lo && int(u) < hi {
					h.push(int(u), int32(v))
				}
			}
		}
	})
	if err != nil {
		return err
	}
	return s.b.parallelFor(ctx, n, 1024, func(_, lo, hi int) {
		for v := lo; v < hi; v++ {
			s.g.resign(v)
			base := v * k
			nw := newC.row(v)
			for j := 0; j < k; j++ {
				if !s.g.fresh[base+j] {
					continue
				}
				u := s.g.idx[base+j]
				for _, w := range nw {
					if w == u {
						s.g.fresh[base+j] = false
						break
					}
				}
			}
		}
	})
}

// applyAhead is how many updates ahead the apply step prefetches, in
// batches of as many.
const applyAhead = 16

// prefetchTargets asks for the lists that the updates ups will be offered
// to: their filters, sizes and the entries a push reads and sifts.
func (s *nnDescent) prefetchTargets(ups []nnUpdate, buf []int32) {
	if len(ups) == 0 {
		return
	}
	for _, u := range ups {
		buf = append(buf, u.target)
	}
	prefetchRows(s.g.sig, 1, buf)
	prefetchRows(s.g.size, 1, buf)
	prefetchRows(s.g.idx, s.k, buf)
	prefetchRows(s.g.dist, s.k, buf)
}

// sampleAhead is how many points ahead sample prefetches: a point's
// reverse edges push into lists scattered over the part, one cache miss
// after another unless they were asked for early.
const sampleAhead = 2

// prefetchSample asks for the candidate lists that the edges of point w
// whose far end lies in [lo, hi) will push into: their entries, sizes and
// roots, in the heap (new or old) each edge's flag selects.
func (s *nnDescent) prefetchSample(w, lo, hi int, newC, oldC *candHeap, ahead *[2][]int32) {
	base := w * s.k
	ahead[0], ahead[1] = ahead[0][:0], ahead[1][:0]
	for j, u := range s.g.idx[base : base+s.k] {
		if int(u) >= lo && int(u) < hi {
			f := 1
			if s.g.fresh[base+j] {
				f = 0
			}
			ahead[f] = append(ahead[f], u)
		}
	}
	for f, h := range [2]*candHeap{newC, oldC} {
		prefetchRows(h.idx, h.c, ahead[f])
		prefetchRows(h.size, 1, ahead[f])
		prefetchRows(h.root, 1, ahead[f])
	}
}

// nnHeap holds each point's current k nearest as a max-heap on (distance,
// index), so the worst entry is at the root and ties break by index.
type nnHeap struct {
	n, k  int
	idx   []int32
	dist  []float32
	fresh []bool // not yet taken part in a local join
	size  []int32
	// sig holds, per point, a 512-bit filter of the indices ever pushed
	// since its last rebuild: a clear bit proves absence, sparing most of
	// the duplicate scans of push. Evictions leave stale bits, so it is
	// rebuilt every round.
	sig   []nnSig
	bound []float32 // distance of the worst entry, +Inf while a list is short
}

func newNNHeap(n, k int) *nnHeap {
	bound := make([]float32, n)
	for i := range bound {
		bound[i] = float32(math.Inf(1))
	}
	return &nnHeap{
		n: n, k: k,
		idx:   make([]int32, n*k),
		dist:  make([]float32, n*k),
		fresh: make([]bool, n*k),
		size:  make([]int32, n),
		bound: bound,
		sig:   make([]nnSig, n),
	}
}

func nnWorse(d1 float32, i1 int32, d2 float32, i2 int32) bool {
	return d1 > d2 || (d1 == d2 && i1 > i2)
}

// accepts reports whether (d, q) beats the worst entry of p's list, without
// checking whether q is already there.
func (h *nnHeap) accepts(p int, d float32, q int32) bool {
	if int(h.size[p]) < h.k {
		return int(q) != p
	}
	r := p * h.k
	return nnWorse(h.dist[r], h.idx[r], d, q)
}

// has reports whether q is in p's list. A pair close enough to improve a
// list is usually found by many of the points it shares as neighbours, so
// the local joins drop the pairs already listed before queueing them: the
// exchange then carries mostly real improvements.
func (h *nnHeap) has(p, q int32) bool {
	w, bit := nnSigBit(q)
	if h.sig[p][w]&bit == 0 {
		return false
	}
	base := int(p) * h.k
	return nnContains(h.idx[base:base+int(h.size[p])], q)
}

// push offers q to p's list and reports whether the list changed.
func (h *nnHeap) push(p int, d float32, q int32, fresh bool) bool {
	if int(q) == p || !h.accepts(p, d, q) {
		return false
	}
	w, bit := nnSigBit(q)
	if h.sig[p][w]&bit != 0 && nnContains(h.idx[p*h.k:p*h.k+int(h.size[p])], q) {
		return false
	}
	h.sig[p][w] |= bit
	h.insert(p, d, q, fresh)
	return true
}

// seedPush offers q to p's list during the seeding, where one tree's leaves
// offer each pair once: only entries from earlier trees can repeat it, so
// the first tree (dedupe false) skips the duplicate scan, and later ones
// test against the filter the caller rebuilt before the tree, which the
// tree's own insertions leave unpolluted.
func (h *nnHeap) seedPush(p int, d float32, q int32, dedupe bool) {
	if int(q) == p || !h.accepts(p, d, q) {
		return
	}
	if dedupe {
		w, bit := nnSigBit(q)
		if h.sig[p][w]&bit != 0 && nnContains(h.idx[p*h.k:p*h.k+int(h.size[p])], q) {
			return
		}
	}
	h.insert(p, d, q, true)
}

// insert puts (d, q) into p's list, which accepts it and lacks q: in a
// free slot while the list is short, else in place of the worst entry.
func (h *nnHeap) insert(p int, d float32, q int32, fresh bool) {
	base := p * h.k
	s := int(h.size[p])
	idx := h.idx[base : base+h.k]
	dist := h.dist[base : base+h.k]
	fr := h.fresh[base : base+h.k]
	var i int
	if s < h.k {
		// Sift up from the new last slot.
		i = s
		h.size[p]++
		for i > 0 {
			parent := (i - 1) / 2
			if !nnWorse(d, q, dist[parent], idx[parent]) {
				break
			}
			idx[i], dist[i], fr[i] = idx[parent], dist[parent], fr[parent]
			i = parent
		}
	} else {
		// Replace the root and sift down.
		i = 0
		for {
			l := 2*i + 1
			if l >= s {
				break
			}
			if r := l + 1; r < s && nnWorse(dist[r], idx[r], dist[l], idx[l]) {
				l = r
			}
			if !nnWorse(dist[l], idx[l], d, q) {
				break
			}
			idx[i], dist[i], fr[i] = idx[l], dist[l], fr[l]
			i = l
		}
	}
	idx[i], dist[i], fr[i] = q, d, fresh
	if h.size[p] == int32(h.k) {
		h.bound[p] = dist[0]
	}
}

// nnSig is a 512-bit filter, one cache line per point: with a list of 90
// and the insertions of a round, 256 bits gave false positives on about a
// third of the lookups, each a scan of the whole list.
type nnSig [8]uint64

func nnSigBit(q int32) (word int, bit uint64) {
	b := uint32(q) * 0x9e3779b1 >> 23 // Fibonacci hashing to 9 bits
	return int(b >> 6), 1 << (b & 63)
}

// resign rebuilds p's filter from its current list.
func (h *nnHeap) resign(p int) {
	var sg nnSig
	for _, q := range h.idx[p*h.k : p*h.k+int(h.size[p])] {
		w, bit := nnSigBit(q)
		sg[w] |= bit
	}
	h.sig[p] = sg
}

// candHeap holds up to c candidates per point as a max-heap on (priority,
// index), keeping the c of lowest priority. The priority of a pair is a
// hash of (round seed, pair), recomputed when compared rather than stored:
// at 1,000,000 points with 64 + 40 candidates a stored copy took 416 MB.
type candHeap struct {
	c    int
	rs   uint64 // this round's seed of the priorities
	idx  []int32
	size []int32
	root []uint32 // priority of the root of each full list
}

func newCandHeap(n, c int) *candHeap {
	return &candHeap{c: c, idx: make([]int32, n*c), size: make([]int32, n), root: make([]uint32, n)}
}

// reset empties every list and sets the round seed of the priorities.
func (h *candHeap) reset(rs uint64) {
	h.rs = rs
	clear(h.size)
}

func (h *candHeap) row(v int) []int32 {
	return h.idx[v*h.c : v*h.c+int(h.size[v])]
}

// candPri is the sampling priority of the unordered pair {v, u} under round
// seed rs: the same from both ends, so forward and reverse copies agree.
func candPri(rs uint64, v, u int32) uint32 {
	a, c := uint64(uint32(v)), uint64(uint32(u))
	if a > c {
		a, c = c, a
	}
	return uint32(nnMix64(rs^(a<<32|c)) >> 32)
}

// candLess orders heap entries by (priority, index).
func candLess(p1 uint32, i1 int32, p2 uint32, i2 int32) bool {
	return p1 < p2 || (p1 == p2 && i1 < i2)
}

func (h *candHeap) push(v int, u int32) {
	base := v * h.c
	s := int(h.size[v])
	idx := h.idx[base : base+h.c]
	v32 := int32(v)
	pr := candPri(h.rs, v32, u)
	if s == h.c && !candLess(pr, u, h.root[v], idx[0]) {
		return
	}
	// An edge seen from both ends has the same priority; keep one copy.
	if nnContains(idx[:s], u) {
		return
	}
	var i int
	if s < h.c {
		i = s
		h.size[v]++
		for i > 0 {
			parent := (i - 1) / 2
			if candLess(candPri(h.rs, v32, idx[parent]), idx[parent], pr, u) {
				idx[i] = idx[parent]
				i = parent
				continue
			}
			break
		}
	} else {
		for {
			l := 2*i + 1
			if l >= s {
				break
			}
			pl := candPri(h.rs, v32, idx[l])
			if r := l + 1; r < s {
				if pri := candPri(h.rs, v32, idx[r]); candLess(pl, idx[l], pri, idx[r]) {
					l, pl = r, pri
				}
			}
			if candLess(pl, idx[l], pr, u) {
				break
			}
			idx[i] = idx[l]
			i = l
		}
	}
	idx[i] = u
	if int(h.size[v]) == h.c {
		// Most offers to a full list are refused at the root; keeping
		// its priority spares them a hash.
		h.root[v] = candPri(h.rs, v32, idx[0])
	}
}

// columnMean is the mean of the rows of x (n×d), summed in float64.
func columnMean(x []float32, n, d int) []float32 {
	sum := make([]float64, d)
	for i := range n {
		for t, v := range x[i*d : i*d+d] {
			sum[t] += float64(v)
		}
	}
	mu := make([]float32, d)
	for t := range sum {
		mu[t] = float32(sum[t] / float64(n))
	}
	return mu
}

// nnMix64 is the finaliser of Steele, Lea & Flood's SplitMix64, used as a
// stateless hash so random choices need no shared generator.
func nnMix64(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// nnSqDist is the squared Euclidean distance between equal-length vectors.
// Four accumulators break the dependency chain of one running sum; the sum
// is symmetric in its arguments bit for bit, so d(p,q) == d(q,p).
func nnSqDist(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+8 <= len(a); i += 8 {
		aa := a[i : i+8 : i+8]
		bb := b[i : i+8 : i+8]
		d0, d1, d2, d3 := aa[0]-bb[0], aa[1]-bb[1], aa[2]-bb[2], aa[3]-bb[3]
		d4, d5, d6, d7 := aa[4]-bb[4], aa[5]-bb[5], aa[6]-bb[6], aa[7]-bb[7]
		s0 += d0*d0 + d4*d4
		s1 += d1*d1 + d5*d5
		s2 += d2*d2 + d6*d6
		s3 += d3*d3 + d7*d7
	}
	for ; i < len(a); i++ {
		e := a[i] - b[i]
		s0 += e * e
	}
	return (s0 + s1) + (s2 + s3)
}

// nnSqDist64 is the squared distance summed in float64, rounded once.
func nnSqDist64(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1 float64
	i := 0
	for ; i+1 < len(a); i += 2 {
		u := float64(a[i]) - float64(b[i])
		w := float64(a[i+1]) - float64(b[i+1])
		s0 += u * u
		s1 += w * w
	}
	if i < len(a) {
		u := float64(a[i]) - float64(b[i])
		s0 += u * u
	}
	return float32(s0 + s1)
}

// nnContainsGo reports whether q is in list; nnContains is the same, in
// AVX2 where the machine has it (the scans of a 90-entry list were about a
// sixth of the search's time at 250,000 points).
func nnContainsGo(list []int32, q int32) bool {
	for _, v := range list {
		if v == q {
			return true
		}
	}
	return false
}
