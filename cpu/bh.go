package cpu

import (
	"context"
	"math"
)

// bhTree is the Barnes-Hut repulsion (van der Maaten 2014, "Accelerating
// t-SNE using tree-based algorithms", JMLR 15): a quad-tree in 2-D or an
// oct-tree in 3-D over Y, and for each point a walk that replaces every cell
// that is small and far enough (width/distance < θ) by its centre of mass.
//
// The tree is rebuilt every iteration without any per-node allocation: points
// are sorted by their Morton code (a radix sort of fixed-width integer keys),
// so every cell is a contiguous range of the sorted order and the nodes are
// written depth-first into one flat slice. Each node stores the index of the
// node after its subtree, so the walk needs no stack: skip to next when the
// cell is accepted, step to node+1 to open it. Points are walked in Morton
// order too, so consecutive walks touch the same nodes.
type bhTree struct {
	b       *Backend
	n, dims int
	theta   float64
	bits    int // Morton bits per dimension = maximum depth

	keys, keysTmp []uint64
	order, ordTmp []int32   // order[s] = point at sorted position s
	ys            []float32 // Y in sorted order
	nodes         []bhNode
	groups        []int32   // the nodes the walk runs per, in sorted order
	width2        []float64 // squared cell width by depth
	part          []float64

	// portable makes the walk use the pure-Go source kernels even where
	// the assembly ones run, so that tests can check both paths.
	portable bool
}

// bhNode is a cell: points order[lo:hi], their centre of mass and the index
// of the next node after this cell's subtree.
type bhNode struct {
	com   [3]float32
	crit2 float32 // (cell width / θ)²: the cell is far enough beyond √crit2
	lo    int32
	hi    int32
	next  int32
	leaf  bool
}

// bhLeafSize is the largest cell that is not split: opening a small leaf
// costs a few direct evaluations, cheaper than more nodes to walk.
const bhLeafSize = 8

// bhBits2 and bhBits3 are the Morton bits per dimension, so the deepest
// level of the tree, in 2-D and 3-D. A cell of the deepest level is not
// split, however many points it holds, and those points are summed
// directly (O(L²) for L of them). With 16 bits (as before) the deepest
// cells of a layout of extent 400 were 0.006 wide, and the early
// exaggeration pulls the clusters of a large N so tight that such cells
// held up to ~19,000 points: a 250,000-point Barnes-Hut pass took ~0.9 s
// instead of ~0.05 s. 24 bits (48-bit keys in both) reach float32's
// resolution at that extent (2⁻²⁴·400 ≈ 2.4e-5), where only truly
// coincident points share a cell, for at most two more radix passes; 3-D
// keys take 21 bits each (63 bits; it had 10).
const (
	bhBits2 = 24
	bhBits3 = 21
)

// bhGroupSize is the most points walked together (see walkAll): the largest
// cells of at most this many points are the groups. Larger groups share one
// walk among more points but accept fewer cells (the group's box is larger);
// with the SIMD kernel evaluating sources cheaply, the walk is what costs.
// BenchmarkStep/bh/2d, one thread, wall ms at 10,000 / 70,000 points: groups
// of 32 about 10 / 55-90, 64 about 5-7 / 45-65, 128 about 5-8 / 60-66 (noisy
// shared machine).
const bhGroupSize = 8 * bhLanes

func newBHTree(b *Backend, n, dims int, theta float64) *bhTree {
	t := &bhTree{b: b, n: n, dims: dims, theta: theta}
	t.bits = bhBits2
	if dims == 3 {
		t.bits = bhBits3
	}
	t.keys = make([]uint64, n)
	t.keysTmp = make([]uint64, n)
	t.order = make([]int32, n)
	t.ordTmp = make([]int32, n)
	t.ys = make([]float32, n*dims)
	t.nodes = make([]bhNode, 0, 2*n/bhLeafSize+64)
	t.width2 = make([]float64, t.bits+1)
	return t
}

// build sorts the points by Morton code and writes the tree.
func (t *bhTree) build(ctx context.Context, y []float32) error {
	n, dims := t.n, t.dims
	var lo, hi [3]float64
	for d := range dims {
		lo[d], hi[d] = math.Inf(1), math.Inf(-1)
	}
	for i := range n {
		for d := range dims {
			v := float64(y[i*dims+d])
			lo[d] = min(lo[d], v)
			hi[d] = max(hi[d], v)
		}
	}
	side := 0.0
	for d := range dims {
		side = max(side, hi[d]-lo[d])
	}
	side = max(side*(1+1e-9), 1e-12)
	cells := float64(uint64(1) << t.bits)
	scale := cells / side
	for l := range t.width2 {
		w := side / float64(uint64(1)<<l)
		t.width2[l] = w * w
	}
	err := t.b.parallelFor(ctx, n, 4096, func(_, a, b int) {
		for i := a; i < b; i++ {
			var key uint64
			for d := range dims {
				q := uint64(min((float64(y[i*dims+d])-lo[d])*scale, cells-1))
				key |= spreadBits(q, dims) << (dims - 1 - d)
			}
			t.keys[i] = key
			t.order[i] = int32(i)
		}
	})
	if err != nil {
		return err
	}
	t.radixSort()
	for s, i := range t.order {
		for d := range dims {
			t.ys[s*dims+d] = y[int(i)*dims+d]
		}
	}
	t.nodes = t.nodes[:0]
	t.groups = t.groups[:0]
	t.buildNode(0, int32(n), 0, false)
	return ctx.Err()
}

// spreadBits puts bit k of v (the low 32 bits in 2-D, 21 in 3-D) at bit
// k·dims of the result.
func spreadBits(v uint64, dims int) uint64 {
	if dims == 2 {
		x := v & 0xffffffff
		x = (x | x<<16) & 0x0000ffff0000ffff
		x = (x | x<<8) & 0x00ff00ff00ff00ff
		x = (x | x<<4) & 0x0f0f0f0f0f0f0f0f
		x = (x | x<<2) & 0x3333333333333333
		x = (x | x<<1) & 0x5555555555555555
		return x
	}
	x := v & 0x1fffff
	x = (x | x<<32) & 0x001f00000000ffff
	x = (x | x<<16) & 0x001f0000ff0000ff
	x = (x | x<<8) & 0x100f00f00f00f00f
	x = (x | x<<4) & 0x10c30c30c30c30c3
	x = (x | x<<2) & 0x1249249249249249
	return x
}

// radixSort sorts order by keys, stably, in 8-bit passes over the bytes in
// which the keys differ (one pass over the keys finds them).
func (t *bhTree) radixSort() {
	keys, kt := t.keys, t.keysTmp
	ord, ot := t.order, t.ordTmp
	var differ uint64
	for _, k := range keys {
		differ |= k ^ keys[0]
	}
	for shift := 0; shift < 64; shift += 8 {
		if (differ>>shift)&0xff == 0 {
			continue // every key has the same byte here
		}
		var count [257]int
		for _, k := range keys {
			count[(k>>shift)&0xff+1]++
		}
		for i := 1; i < 257; i++ {
			count[i] += count[i-1]
		}
		for s, k := range keys {
			b := (k >> shift) & 0xff
			d := count[b]
			count[b]++
			kt[d] = k
			ot[d] = ord[s]
		}
		keys, kt = kt, keys
		ord, ot = ot, ord
	}
	// After an odd number of effective passes the data sits in the scratch
	// buffers; copy them back so the fields always hold the result.
	if &ord[0] != &t.order[0] {
		copy(t.order, ord)
		copy(t.keys, keys)
	}
}

// buildNode writes the cell of sorted points [lo, hi) at depth and its
// subtree, and returns its node index. grouped says that an ancestor is a
// group already.
func (t *bhTree) buildNode(lo, hi int32, depth int, grouped bool) int32 {
	idx := int32(len(t.nodes))
	crit2 := float32(math.Inf(1)) // θ = 0: never accept a cell
	if t.theta > 0 {
		crit2 = float32(t.width2[depth] / (t.theta * t.theta))
	}
	t.nodes = append(t.nodes, bhNode{lo: lo, hi: hi, crit2: crit2})
	dims := t.dims
	var com [3]float64
	leaf := hi-lo <= bhLeafSize || depth == t.bits
	if !grouped && (hi-lo <= bhGroupSize || leaf) {
		t.groups = append(t.groups, idx)
		grouped = true
	}
	if leaf {
		for s := lo; s < hi; s++ {
			for d := range dims {
				com[d] += float64(t.ys[int(s)*dims+d])
			}
		}
		t.nodes[idx].leaf = true
	} else {
		shift := uint(dims * (t.bits - 1 - depth))
		mask := uint64(1)<<dims - 1
		for a := lo; a < hi; {
			child := (t.keys[a] >> shift) & mask
			b := a + 1
			// Children are contiguous; find this one's end by galloping.
			step := int32(1)
			for b < hi && (t.keys[b]>>shift)&mask == child {
				b = min(b+step, hi)
				step *= 2
			}
			// Back off to the exact boundary by binary search in (a, b].
			l, r := a+1, b
			for l < r {
				m := (l + r) / 2
				if (t.keys[m]>>shift)&mask == child {
					l = m + 1
				} else {
					r = m
				}
			}
			b = l
			c := t.buildNode(a, b, depth+1, grouped)
			cnt := float64(b - a)
			for d := range dims {
				com[d] += float64(t.nodes[c].com[d]) * cnt
			}
			a = b
		}
	}
	inv := 1 / float64(hi-lo)
	for d := range dims {
		t.nodes[idx].com[d] = float32(com[d] * inv)
	}
	t.nodes[idx].next = int32(len(t.nodes))
	return idx
}

func (t *bhTree) repulse(ctx context.Context, y []float32, rep []float64) (float64, error) {
	if err := t.build(ctx, y); err != nil {
		return 0, err
	}
	return t.walkAll(ctx, rep)
}

// walkAll computes the forces (rep may be nil to compute Z alone) and Z on
// the built tree.
//
// The walk is done per group, the largest cells of at most bhGroupSize
// points, for all of their points at once: a cell is accepted for the whole
// group when it is far enough from the group's bounding box (so from every
// point in it). This is never less accurate than walking point by point, and
// it amortises the walk's branches over the group and leaves a list of
// sources that a branch-free SIMD kernel evaluates on every point.
func (t *bhTree) walkAll(ctx context.Context, rep []float64) (float64, error) {
	ng := len(t.groups)
	cs := t.b.chunks(ng, 4)
	if cap(t.part) < len(cs) {
		t.part = make([]float64, len(cs))
	}
	part := t.part[:len(cs)]
	dims := t.dims
	err := t.b.parallelFor(ctx, ng, 4, func(c, lo, hi int) {
		z := 0.0
		var sc bhScratch
		sc.portable = t.portable
		for l := lo; l < hi; l++ {
			if l&15 == 0 && ctx.Err() != nil {
				return
			}
			grp := &t.nodes[t.groups[l]]
			// A leaf at the deepest level may hold more than bhGroupSize
			// (coincident) points: walk it in groups of at most that many.
			for g0 := int(grp.lo); g0 < int(grp.hi); g0 += bhGroupSize {
				g1 := min(g0+bhGroupSize, int(grp.hi))
				if dims == 2 {
					z += t.walkGroup2(g0, g1, &sc)
				} else {
					z += t.walkGroup3(g0, g1, &sc)
				}
				if rep != nil {
					for s := g0; s < g1; s++ {
						i := int(t.order[s])
						a := s - g0
						for d := range dims {
							rep[i*dims+d] = sc.acc[a/bhLanes][d+1][a%bhLanes]
						}
					}
				}
			}
		}
		part[c] = z
	})
	if err != nil {
		return 0, err
	}
	z := 0.0
	for _, p := range part {
		z += p
	}
	return z, nil
}

// walkGroup2 computes the forces on the points at sorted positions [g0, g1)
// into sc.acc and returns their share of Z, in 2-D.
//
// The walk only decides which sources act on the group: it lists the
// accepted cells (centre of mass, count) and the points of the opened leaves
// in sc, and the arithmetic runs over that list in bhSources2 with one SIMD
// lane per point of the group. The list starts with the group's own points,
// whose self-interaction the kernel masks out; cells inside the group are
// skipped for that reason.
func (t *bhTree) walkGroup2(g0, g1 int, sc *bhScratch) float64 {
	nodes, ys := t.nodes, t.ys
	m := g1 - g0
	gy := ys[2*g0 : 2*g1]
	bx0, by0 := float32(math.Inf(1)), float32(math.Inf(1))
	bx1, by1 := float32(math.Inf(-1)), float32(math.Inf(-1))
	for k := range m {
		bx0, bx1 = min(bx0, gy[2*k]), max(bx1, gy[2*k])
		by0, by1 = min(by0, gy[2*k+1]), max(by1, gy[2*k+1])
	}
	sc.start(gy, 2, m)
	lo32, hi32 := int32(g0), int32(g1)
	for k := int32(0); k < int32(len(nodes)); {
		nd := &nodes[k]
		if nd.lo <= lo32 && hi32 <= nd.hi {
			// An ancestor of the group, or the leaf that holds it.
			if nd.leaf {
				// The rest of the leaf (the group may be part of an oversized
				// leaf at the deepest level); the group itself is already
				// listed.
				for j := nd.lo; j < lo32; j++ {
					sc.push2(ys[2*j], ys[2*j+1], 1)
				}
				for j := hi32; j < nd.hi; j++ {
					sc.push2(ys[2*j], ys[2*j+1], 1)
				}
				k = nd.next
			} else {
				k++
			}
			continue
		}
		if lo32 <= nd.lo && nd.hi <= hi32 {
			k = nd.next // inside the group: already listed
			continue
		}
		cx, cy := nd.com[0], nd.com[1]
		dx := max(bx0-cx, cx-bx1, 0)
		dy := max(by0-cy, cy-by1, 0)
		if nd.crit2 < dx*dx+dy*dy {
			sc.push2(cx, cy, float32(nd.hi-nd.lo))
			k = nd.next
			continue
		}
		if nd.leaf {
			for j := nd.lo; j < nd.hi; j++ {
				sc.push2(ys[2*j], ys[2*j+1], 1)
			}
			k = nd.next
			continue
		}
		k++
	}
	sc.flush2()
	return sc.z()
}

// walkGroup3 is walkGroup2 in 3-D.
func (t *bhTree) walkGroup3(g0, g1 int, sc *bhScratch) float64 {
	nodes, ys := t.nodes, t.ys
	m := g1 - g0
	gy := ys[3*g0 : 3*g1]
	var b0, b1 [3]float32
	for d := range 3 {
		b0[d], b1[d] = float32(math.Inf(1)), float32(math.Inf(-1))
	}
	for k := range m {
		for d := range 3 {
			b0[d], b1[d] = min(b0[d], gy[3*k+d]), max(b1[d], gy[3*k+d])
		}
	}
	sc.start(gy, 3, m)
	lo32, hi32 := int32(g0), int32(g1)
	for k := int32(0); k < int32(len(nodes)); {
		nd := &nodes[k]
		if nd.lo <= lo32 && hi32 <= nd.hi {
			if nd.leaf {
				for j := nd.lo; j < lo32; j++ {
					sc.push3(ys[3*j], ys[3*j+1], ys[3*j+2], 1)
				}
				for j := hi32; j < nd.hi; j++ {
					sc.push3(ys[3*j], ys[3*j+1], ys[3*j+2], 1)
				}
				k = nd.next
			} else {
				k++
			}
			continue
		}
		if lo32 <= nd.lo && nd.hi <= hi32 {
			k = nd.next
			continue
		}
		c0, c1, c2 := nd.com[0], nd.com[1], nd.com[2]
		d0 := max(b0[0]-c0, c0-b1[0], 0)
		d1 := max(b0[1]-c1, c1-b1[1], 0)
		d2 := max(b0[2]-c2, c2-b1[2], 0)
		if nd.crit2 < d0*d0+d1*d1+d2*d2 {
			sc.push3(c0, c1, c2, float32(nd.hi-nd.lo))
			k = nd.next
			continue
		}
		if nd.leaf {
			for j := nd.lo; j < nd.hi; j++ {
				sc.push3(ys[3*j], ys[3*j+1], ys[3*j+2], 1)
			}
			k = nd.next
			continue
		}
		k++
	}
	sc.flush3()
	return sc.z()
}

// bhZ estimates Z for KL with a small opening angle on its own tree.
type bhZ struct {
	t *bhTree
}

func (e *bhZ) z(ctx context.Context, y []float32) (float64, error) {
	if err := e.t.build(ctx, y); err != nil {
		return 0, err
	}
	return e.t.walkAll(ctx, nil)
}
