package embed

import (
	"context"
	"math"
)

// fixedTree is a Barnes-Hut tree (a quadtree in 2-D, an octree in 3-D;
// Barnes & Hut 1986, van der Maaten 2014 "Accelerating t-SNE using
// Tree-Based Algorithms") over points that never move: an addition builds
// it once over the base map and asks it, at every step, for the repulsion
// every base point exerts on one new point.
type fixedTree struct {
	dims   int
	theta2 float64
	y      []float64 // N×dims
	idx    []int32   // points, grouped by leaf
	nodes  []ftNode
}

type ftNode struct {
	com    [3]float64
	width2 float64 // squared side of the cell
	count  float64
	lo, hi int32    // the node's points: idx[lo:hi]
	child  [8]int32 // 0: none (the root is never a child)
	leaf   bool
}

// ftLeafSize is the most points a leaf holds; ftMaxDepth stops the split
// of coincident points.
const (
	ftLeafSize = 8
	ftMaxDepth = 48
)

func newFixedTree(y []float64, n, dims int, theta float64) *fixedTree {
	t := &fixedTree{dims: dims, theta2: theta * theta, y: y, idx: make([]int32, n)}
	var lo, hi [3]float64
	for c := range dims {
		lo[c], hi[c] = math.Inf(1), math.Inf(-1)
	}
	for i := range n {
		t.idx[i] = int32(i)
		for c := range dims {
			lo[c] = min(lo[c], y[i*dims+c])
			hi[c] = max(hi[c], y[i*dims+c])
		}
	}
	var center [3]float64
	half := 0.0
	for c := range dims {
		center[c] = (lo[c] + hi[c]) / 2
		half = max(half, (hi[c]-lo[c])/2)
	}
	half = half*(1+1e-9) + 1e-12
	tmp := make([]int32, n)
	t.build(0, int32(n), center, half, 0, tmp)
	return t
}

// build appends the node of idx[lo:hi] in the cell of the given centre and
// half side, then its children, and returns its index.
func (t *fixedTree) build(lo, hi int32, center [3]float64, half float64, depth int, tmp []int32) int32 {
	me := int32(len(t.nodes))
	t.nodes = append(t.nodes, ftNode{lo: lo, hi: hi, width2: 4 * half * half, count: float64(hi - lo)})
	var com [3]float64
	for _, p := range t.idx[lo:hi] {
		for c := range t.dims {
			com[c] += t.y[int(p)*t.dims+c]
		}
	}
	for c := range t.dims {
		com[c] /= float64(hi - lo)
	}
	t.nodes[me].com = com
	if hi-lo <= ftLeafSize || depth >= ftMaxDepth {
		t.nodes[me].leaf = true
		return me
	}
	// Counting sort of the points by octant.
	octant := func(p int32) int {
		o := 0
		for c := range t.dims {
			if t.y[int(p)*t.dims+c] >= center[c] {
				o |= 1 << c
			}
		}
		return o
	}
	var start [9]int32
	for _, p := range t.idx[lo:hi] {
		start[octant(p)+1]++
	}
	for o := range 8 {
		start[o+1] += start[o]
	}
	fill := start
	for _, p := range t.idx[lo:hi] {
		o := octant(p)
		tmp[lo+fill[o]] = p
		fill[o]++
	}
	copy(t.idx[lo:hi], tmp[lo:hi])
	for o := range 1 << t.dims {
		a, b := lo+start[o], lo+start[o+1]
		if a == b {
			continue
		}
		var cc [3]float64
		for c := range t.dims {
			if o&(1<<c) != 0 {
				cc[c] = center[c] + half/2
			} else {
				cc[c] = center[c] - half/2
			}
		}
		child := t.build(a, b, cc, half/2, depth+1, tmp)
		t.nodes[me].child[o] = child
	}
	return me
}

// repulse returns Z = Σ_j w_j and adds F = Σ_j w_j²·(y − y_j) into f, with
// w_j = 1/(1 + ‖y − y_j‖²) over every point of the tree; a cell whose side
// is below θ times its distance counts as its points at their centre of
// mass. θ = 0 sums every point exactly.
func (t *fixedTree) repulse(y []float64, f *[3]float64) float64 {
	var stack [ftMaxDepth*8 + 8]int32
	sp := 1 // stack[0] = root (0)
	z := 0.0
	d := t.dims
	for sp > 0 {
		sp--
		nd := &t.nodes[stack[sp]]
		var dx [3]float64
		d2 := 0.0
		for c := range d {
			dx[c] = y[c] - nd.com[c]
			d2 += dx[c] * dx[c]
		}
		if !nd.leaf && nd.width2 < t.theta2*d2 {
			w := 1 / (1 + d2)
			z += nd.count * w
			ww := nd.count * w * w
			for c := range d {
				f[c] += ww * dx[c]
			}
			continue
		}
		if nd.leaf {
			for _, p := range t.idx[nd.lo:nd.hi] {
				pd := t.y[int(p)*d : int(p)*d+d]
				e2 := 0.0
				for c := range d {
					e := y[c] - pd[c]
					dx[c] = e
					e2 += e * e
				}
				w := 1 / (1 + e2)
				z += w
				for c := range d {
					f[c] += w * w * dx[c]
				}
			}
			continue
		}
		for _, ch := range nd.child {
			if ch != 0 {
				stack[sp] = ch
				sp++
			}
		}
	}
	return z
}

// queryNeighbors finds, for each of the m rows of q (m×d), its k nearest
// rows of base (n×d) by squared Euclidean distance, ascending, by a
// blocked exhaustive search split over the threads.
func queryNeighbors(ctx context.Context, base []float32, n int, q []float32, m, d, k, threads int) (*Neighbors, error) {
	nb := &Neighbors{N: m, K: k, Index: make([]int32, m*k), Dist2: make([]float32, m*k), Method: NeighborsExact}
	const qBlock, bBlock = 8, 1024
	blocks := (m + qBlock - 1) / qBlock
	err := parallelRows(ctx, blocks, threads, func(blo, bhi int) {
		for b := blo; b < bhi && ctx.Err() == nil; b++ {
			lo, hi := b*qBlock, min(m, (b+1)*qBlock)
			for i := lo; i < hi; i++ {
				for a := range k {
					nb.Dist2[i*k+a] = float32(math.Inf(1))
					nb.Index[i*k+a] = -1
				}
			}
			for j0 := 0; j0 < n; j0 += bBlock {
				j1 := min(n, j0+bBlock)
				for i := lo; i < hi; i++ {
					qi := q[i*d : (i+1)*d]
					dist, idx := nb.Dist2[i*k:(i+1)*k], nb.Index[i*k:(i+1)*k]
					for j := j0; j < j1; j++ {
						if v := dist2(qi, base[j*d:(j+1)*d]); v < dist[k-1] {
							insertNeighbor(dist, idx, v, int32(j))
						}
					}
				}
			}
		}
	})
	return nb, err
}

// dist2 is ‖a − b‖², in four partial sums.
func dist2(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		d0, d1, d2, d3 := a[i]-b[i], a[i+1]-b[i+1], a[i+2]-b[i+2], a[i+3]-b[i+3]
		s0 += d0 * d0
		s1 += d1 * d1
		s2 += d2 * d2
		s3 += d3 * d3
	}
	for ; i < len(a); i++ {
		e := a[i] - b[i]
		s0 += e * e
	}
	return (s0 + s1) + (s2 + s3)
}

// insertNeighbor puts (v, j) into the ascending list, dropping its last.
func insertNeighbor(dist []float32, idx []int32, v float32, j int32) {
	a := len(dist) - 1
	for a > 0 && dist[a-1] > v {
		dist[a], idx[a] = dist[a-1], idx[a-1]
		a--
	}
	dist[a], idx[a] = v, j
}
