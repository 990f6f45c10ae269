// Package explore computes what the page needs to explore a finished map:
// hotspots (density-based clusters of the 2-D map) and a grid layout (the
// points assigned to the cells of a grid, neighbours kept together).
package explore

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
)

// Hotspot is one cluster of the map.
type Hotspot struct {
	// ID is the cluster's number, 1-based, biggest first; the result's
	// cluster column holds it for each member.
	ID   int
	Size int
	// X, Y is the members' mean; Radius the distance from it within which
	// nine in ten members lie (what the page zooms to).
	X, Y, Radius float64
	// Nearest are the members closest to the centre, closest first, as
	// indices into the points given to Hotspots.
	Nearest []int
}

// HotspotOptions tune Hotspots; the zero value picks sizes from n.
type HotspotOptions struct {
	// MinClusterSize is the fewest points a hotspot has (HDBSCAN's m_clSize).
	// 0: max(10, n/100), so a map has at most about a hundred.
	MinClusterSize int
	// MinSamples is the neighbour whose distance measures the density at a
	// point (HDBSCAN's m_pts, the core distance). 0: 10.
	MinSamples int
	// Nearest is how many members nearest the centre to list. 0: 6.
	Nearest int
}

// neighbourEdges is how many nearest neighbours of each point give the
// candidate edges of the minimum spanning tree (see Hotspots).
const neighbourEdges = 24

// Hotspots finds the clusters of a 2-D map with HDBSCAN (Campello, Moulavi
// & Sander, "Density-based clustering based on hierarchical density
// estimates", PAKDD 2013): the single-linkage tree of the mutual
// reachability distance max(core(a), core(b), |a−b|), condensed at
// MinClusterSize, and the clusters of excess of mass chosen from it.
// HDBSCAN suits t-SNE maps because their islands differ in density and
// size, so no single DBSCAN eps separates them all.
//
// xy holds two coordinates a point. labels[i] is the ID of point i's
// hotspot, 0 for noise. The root (the whole map) may win the excess of
// mass; then the map has no hotspot (uniform noise ends this way), which
// is Campello et al.'s choice when the root is allowed as a cluster. A
// cluster must also be denser than where it split off (minContrast), which
// keeps the fluctuations of background noise from being hotspots.
//
// The spanning tree is taken over the edges to each point's 24 nearest
// neighbours (exact for everything but the links between far-apart
// islands, which are then joined at infinite distance: such islands are
// separate clusters either way), so 100,000 points take about a second.
func Hotspots(ctx context.Context, xy []float64, o HotspotOptions) (labels []int, spots []Hotspot, err error) {
	n := len(xy) / 2
	labels = make([]int, n)
	o = o.withDefaults(n)
	if n < 2*o.MinClusterSize {
		return labels, nil, nil
	}
	for i, v := range xy {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, nil, fmt.Errorf("hotspots: coordinate %d of point %d is %v", i%2, i/2, v)
		}
	}
	g := newPointGrid(xy)
	k := max(neighbourEdges, o.MinSamples)
	nbrs, core, err := neighbours(ctx, g, n, k, o.MinSamples)
	if err != nil {
		return nil, nil, err
	}
	tree := singleLinkage(n, mutualReachabilityEdges(nbrs, core, k))
	members := tree.selectClusters(o.MinClusterSize)
	spots = describe(xy, members, o.Nearest)
	for _, s := range spots {
		for _, i := range members[s.ID-1] {
			labels[i] = s.ID
		}
	}
	return labels, spots, nil
}

func (o HotspotOptions) withDefaults(n int) HotspotOptions {
	if o.MinClusterSize <= 0 {
		o.MinClusterSize = max(10, n/100)
	}
	if o.MinSamples <= 0 {
		o.MinSamples = 10
	}
	if o.Nearest <= 0 {
		o.Nearest = 6
	}
	return o
}

// neighbours finds each point's k nearest neighbours (k·n entries, -1
// where a map has fewer points) and its core distance, the distance to its
// minSamples-th neighbour, on every core.
func neighbours(ctx context.Context, g *pointGrid, n, k, minSamples int) ([]neighbour, []float64, error) {
	nbrs := make([]neighbour, n*k)
	core := make([]float64, n)
	const chunk = 2048
	var next atomic.Int64
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			var buf []neighbour
			for {
				lo := int(next.Add(chunk)) - chunk
				if lo >= n || ctx.Err() != nil {
					return
				}
				for i := lo; i < min(lo+chunk, n); i++ {
					buf = g.knn(i, k, buf)
					row := nbrs[i*k : (i+1)*k]
					for j := range row {
						row[j] = neighbour{i: -1}
					}
					copy(row, buf)
					if m := min(minSamples, len(buf)); m > 0 {
						core[i] = math.Sqrt(buf[m-1].d2)
					}
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	return nbrs, core, nil
}

type edge struct {
	a, b int32
	w    float64
}

func mutualReachabilityEdges(nbrs []neighbour, core []float64, k int) []edge {
	edges := make([]edge, 0, len(nbrs))
	for i := range core {
		for _, nb := range nbrs[i*k : (i+1)*k] {
			// An edge found from both ends is kept once, from the lower.
			if nb.i < 0 || int(nb.i) < i && isNeighbour(nbrs[int(nb.i)*k:(int(nb.i)+1)*k], int32(i)) {
				continue
			}
			w := math.Max(math.Sqrt(nb.d2), math.Max(core[i], core[nb.i]))
			edges = append(edges, edge{int32(i), nb.i, w})
		}
	}
	// Mutual reachability ties often (many edges weigh a core distance):
	// ties go by the points' numbers, so the tree never depends on the
	// sort's handling of equal keys.
	slices.SortFunc(edges, func(x, y edge) int {
		if c := cmpFloat(x.w, y.w); c != 0 {
			return c
		}
		if x.a != y.a {
			return int(x.a - y.a)
		}
		return int(x.b - y.b)
	})
	return edges
}

func isNeighbour(row []neighbour, i int32) bool {
	for _, nb := range row {
		if nb.i == i {
			return true
		}
	}
	return false
}

func describe(xy []float64, members [][]int, nearest int) []Hotspot {
	spots := make([]Hotspot, len(members))
	for c, m := range members {
		var sx, sy float64
		for _, i := range m {
			sx, sy = sx+xy[2*i], sy+xy[2*i+1]
		}
		s := Hotspot{ID: c + 1, Size: len(m), X: sx / float64(len(m)), Y: sy / float64(len(m))}
		d := make([]neighbour, len(m))
		for k, i := range m {
			dx, dy := xy[2*i]-s.X, xy[2*i+1]-s.Y
			d[k] = neighbour{int32(i), dx*dx + dy*dy}
		}
		sortNeighbours(d)
		for _, nb := range d[:min(nearest, len(d))] {
			s.Nearest = append(s.Nearest, int(nb.i))
		}
		s.Radius = math.Sqrt(d[min(len(d)-1, len(d)*9/10)].d2)
		spots[c] = s
	}
	return spots
}

// sortBySize orders clusters biggest first (ties by first member), so IDs
// do not depend on the order the tree was walked.
func sortBySize(members [][]int) {
	for _, m := range members {
		sort.Ints(m)
	}
	slices.SortFunc(members, func(a, b []int) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return a[0] - b[0]
	})
}
