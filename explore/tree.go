package explore

import (
	"math"
	"slices"
)

// linkage is the single-linkage dendrogram of n points: node i < n is
// point i; node n+k is the k-th merge, of left[k] and right[k] at dist[k].
// Points the spanning edges never joined are merged last at +Inf.
type linkage struct {
	n           int
	left, right []int32
	dist        []float64
	size        []int32 // per node, leaves included
}

// singleLinkage merges along edges sorted by weight (Kruskal's spanning
// tree, union–find with path halving).
func singleLinkage(n int, edges []edge) *linkage {
	t := &linkage{n: n, size: make([]int32, n, 2*n)}
	for i := range t.size {
		t.size[i] = 1
	}
	parent := make([]int32, n) // union–find over points
	node := make([]int32, n)   // dendrogram node of a set's root
	for i := range parent {
		parent[i], node[i] = int32(i), int32(i)
	}
	find := func(x int32) int32 {
		for parent[x] != x {
			parent[x] = parent[parent[x]]
			x = parent[x]
		}
		return x
	}
	merge := func(a, b int32, d float64) {
		ra, rb := find(a), find(b)
		if ra == rb {
			return
		}
		t.left = append(t.left, node[ra])
		t.right = append(t.right, node[rb])
		t.dist = append(t.dist, d)
		t.size = append(t.size, t.size[node[ra]]+t.size[node[rb]])
		parent[rb] = ra
		node[ra] = int32(len(t.size) - 1)
	}
	for _, e := range edges {
		merge(e.a, e.b, e.w)
	}
	for i := 1; i < n; i++ {
		merge(0, int32(i), math.Inf(1))
	}
	return t
}

func (t *linkage) root() int { return len(t.size) - 1 }

// lambda is the density 1/distance at which a merge splits; a merge at
// +Inf (separate islands) splits at 0.
func (t *linkage) lambda(node int) float64 {
	d := t.dist[node-t.n]
	return 1 / math.Max(d, 1e-300)
}

// condensed is one cluster of the condensed tree.
type condensed struct {
	node      int // dendrogram node where the cluster is born
	birth     float64
	stability float64
	children  []int
}

// selectClusters condenses the tree at minSize (a split makes two
// clusters only when both sides have minSize points; otherwise the small
// side falls out of the cluster as noise) and picks the clusters of
// excess of mass: a cluster is kept when it is contrasted (see
// minContrast) and its stability, the sum over its
// points of (λ leaving − λ born), is at least that of the best clusters
// below it. It returns each kept cluster's points, biggest first.
func (t *linkage) selectClusters(minSize int) [][]int {
	minSize = max(minSize, 2)
	cl := []condensed{{node: t.root()}}
	type item struct{ node, cluster int }
	stack := []item{{t.root(), 0}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if it.node < t.n {
			continue
		}
		k := it.node - t.n
		l, r := int(t.left[k]), int(t.right[k])
		sl, sr := int(t.size[l]), int(t.size[r])
		lam := t.lambda(it.node)
		leaving := sl + sr // points that leave the cluster at lam
		switch {
		case sl >= minSize && sr >= minSize:
			for _, side := range []int{l, r} {
				cl[it.cluster].children = append(cl[it.cluster].children, len(cl))
				cl = append(cl, condensed{node: side, birth: lam})
				stack = append(stack, item{side, len(cl) - 1})
			}
		case sl >= minSize:
			leaving = sr
			stack = append(stack, item{l, it.cluster})
		case sr >= minSize:
			leaving = sl
			stack = append(stack, item{r, it.cluster})
		}
		cl[it.cluster].stability += float64(leaving) * (lam - cl[it.cluster].birth)
	}
	return t.excessOfMass(cl)
}

// minContrast is the least mean relative excess density of a hotspot: on
// average its points must stay in it up to a density 1.5 times the one at
// which it split off. Islands of a map score above 2; the clusters that
// excess of mass finds in the fluctuations of uniform background noise
// score about 0.02 (see TestHotspotsFindsKnownClusters).
const minContrast = 0.5

// contrasted tells whether a cluster is denser than where it was born:
// stability / (size · λ born) is the mean over its points of
// λ leaving / λ born − 1. Clusters born at λ = 0 (separate islands) pass.
func (t *linkage) contrasted(c condensed) bool {
	if c.birth == 0 {
		return true
	}
	return c.stability/(float64(t.size[c.node])*c.birth) >= minContrast
}

// excessOfMass picks the clusters bottom-up (a child is always created
// after its parent) and returns the points of the chosen ones. When the
// root wins, the map is one cluster: no hotspots.
func (t *linkage) excessOfMass(cl []condensed) [][]int {
	best := make([]float64, len(cl))
	chosen := make([]bool, len(cl))
	for c := len(cl) - 1; c >= 0; c-- {
		var below float64
		for _, ch := range cl[c].children {
			below += best[ch]
		}
		switch {
		case c > 0 && !t.contrasted(cl[c]):
			best[c] = below
		case len(cl[c].children) == 0 || cl[c].stability >= below:
			best[c], chosen[c] = cl[c].stability, true
		default:
			best[c] = below
		}
	}
	if chosen[0] {
		return nil
	}
	var out [][]int
	stack := slices.Clone(cl[0].children)
	for len(stack) > 0 {
		c := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if chosen[c] {
			out = append(out, t.leaves(cl[c].node))
		} else {
			stack = append(stack, cl[c].children...)
		}
	}
	sortBySize(out)
	return out
}

// leaves lists the points under a dendrogram node.
func (t *linkage) leaves(node int) []int {
	var out []int
	stack := []int{node}
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if v < t.n {
			out = append(out, v)
			continue
		}
		stack = append(stack, int(t.left[v-t.n]), int(t.right[v-t.n]))
	}
	return out
}
