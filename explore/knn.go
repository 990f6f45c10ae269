package explore

import (
	"math"
	"sort"
)

// pointGrid is a uniform bucket grid over 2-D points for k-nearest-neighbour
// queries: about four points a cell, searched ring by ring outwards until no
// nearer point can lie in the next ring. Maps are 2-D, so a grid is simpler
// than a k-d tree and as fast for the densities t-SNE produces.
type pointGrid struct {
	xy         []float64 // 2 per point
	minX, minY float64
	cell       float64
	nx, ny     int
	start      []int32 // cell c holds idx[start[c]:start[c+1]]
	idx        []int32
}

func newPointGrid(xy []float64) *pointGrid {
	n := len(xy) / 2
	g := &pointGrid{xy: xy}
	minX, minY, maxX, maxY := bounds(xy)
	g.minX, g.minY = minX, minY
	w, h := math.Max(maxX-minX, 1e-12), math.Max(maxY-minY, 1e-12)
	g.cell = math.Sqrt(w * h * 4 / float64(max(n, 1)))
	if g.cell <= 0 || math.IsNaN(g.cell) {
		g.cell = 1
	}
	g.nx = min(int(w/g.cell)+1, 1<<12)
	g.ny = min(int(h/g.cell)+1, 1<<12)
	g.cell = math.Max(w/float64(g.nx), h/float64(g.ny)) * (1 + 1e-9)
	counts := make([]int32, g.nx*g.ny+1)
	cells := make([]int32, n)
	for i := range n {
		c := g.cellOf(xy[2*i], xy[2*i+1])
		cells[i] = int32(c)
		counts[c+1]++
	}
	for c := 1; c < len(counts); c++ {
		counts[c] += counts[c-1]
	}
	g.start = counts
	g.idx = make([]int32, n)
	fill := make([]int32, g.nx*g.ny)
	for i := range n {
		c := cells[i]
		g.idx[g.start[c]+fill[c]] = int32(i)
		fill[c]++
	}
	return g
}

func bounds(xy []float64) (minX, minY, maxX, maxY float64) {
	minX, minY, maxX, maxY = math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
	for i := 0; i+1 < len(xy); i += 2 {
		minX, maxX = math.Min(minX, xy[i]), math.Max(maxX, xy[i])
		minY, maxY = math.Min(minY, xy[i+1]), math.Max(maxY, xy[i+1])
	}
	if minX > maxX {
		return 0, 0, 0, 0
	}
	return
}

func (g *pointGrid) cellXY(x, y float64) (int, int) {
	cx := min(max(int((x-g.minX)/g.cell), 0), g.nx-1)
	cy := min(max(int((y-g.minY)/g.cell), 0), g.ny-1)
	return cx, cy
}

func (g *pointGrid) cellOf(x, y float64) int {
	cx, cy := g.cellXY(x, y)
	return cy*g.nx + cx
}

// neighbour is a point and its squared distance to a query.
type neighbour struct {
	i  int32
	d2 float64
}

// knn returns the k nearest points to point q (q itself excluded), nearest
// first, in buf's storage.
func (g *pointGrid) knn(q, k int, buf []neighbour) []neighbour {
	buf = buf[:0]
	x, y := g.xy[2*q], g.xy[2*q+1]
	cx, cy := g.cellXY(x, y)
	worst := math.Inf(1)
	for r := 0; ; r++ {
		// Every point outside rings 0..r-1 is at least (r-1)·cell away
		// along one axis from the query's cell edge.
		if len(buf) == k {
			gap := float64(r-1) * g.cell
			if gap > 0 && gap*gap > worst {
				break
			}
		}
		if r > g.nx && r > g.ny {
			break
		}
		for yy := cy - r; yy <= cy+r; yy++ {
			if yy < 0 || yy >= g.ny {
				continue
			}
			step := 1
			if yy != cy-r && yy != cy+r {
				step = 2 * r
			}
			for xx := cx - r; xx <= cx+r; xx += max(step, 1) {
				if xx < 0 || xx >= g.nx {
					continue
				}
				c := yy*g.nx + xx
				for _, j := range g.idx[g.start[c]:g.start[c+1]] {
					if int(j) == q {
						continue
					}
					dx, dy := g.xy[2*j]-x, g.xy[2*j+1]-y
					d2 := dx*dx + dy*dy
					if len(buf) < k {
						buf = append(buf, neighbour{j, d2})
						if len(buf) == k {
							sortNeighbours(buf)
							worst = buf[k-1].d2
						}
					} else if d2 < worst {
						buf = insertNeighbour(buf, neighbour{j, d2})
						worst = buf[k-1].d2
					}
				}
			}
		}
	}
	if len(buf) < k {
		sortNeighbours(buf)
	}
	return buf
}

func sortNeighbours(b []neighbour) {
	sort.Slice(b, func(i, j int) bool { return b[i].d2 < b[j].d2 || b[i].d2 == b[j].d2 && b[i].i < b[j].i })
}

// insertNeighbour puts nb in its place in the sorted full buffer b,
// dropping the last.
func insertNeighbour(b []neighbour, nb neighbour) []neighbour {
	k := len(b) - 1
	for k > 0 && b[k-1].d2 > nb.d2 {
		b[k] = b[k-1]
		k--
	}
	b[k] = nb
	return b
}
