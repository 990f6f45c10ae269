package explore

import (
	"context"
	"math"
)

// assignExact assigns the points idx to distinct cells of r, minimising the
// sum of squared distances between each point, scaled from the points'
// bounding box onto r, and its cell's centre.
func assignExact(ctx context.Context, xy []float64, idx []int, r region, out []Cell) error {
	n, m := len(idx), r.w*r.h
	if n == 0 {
		return nil
	}
	px, py := make([]float64, n), make([]float64, n)
	sub := make([]float64, 0, 2*n)
	for _, i := range idx {
		sub = append(sub, xy[2*i], xy[2*i+1])
	}
	minX, minY, maxX, maxY := bounds(sub)
	sx, sy := float64(r.w)/math.Max(maxX-minX, 1e-12), float64(r.h)/math.Max(maxY-minY, 1e-12)
	for k := range n {
		// Points span the region's cell centres, edge to edge.
		px[k] = (sub[2*k]-minX)*sx*float64(r.w-1)/float64(r.w) + 0.5
		py[k] = (sub[2*k+1]-minY)*sy*float64(r.h-1)/float64(r.h) + 0.5
	}
	cost := func(row, col int) float64 {
		dx, dy := px[row]-(float64(col%r.w)+0.5), py[row]-(float64(col/r.w)+0.5)
		return dx*dx + dy*dy
	}
	colOf, err := lap(ctx, n, m, cost)
	if err != nil {
		return err
	}
	for k, i := range idx {
		out[i] = Cell{r.x0 + colOf[k]%r.w, r.y0 + colOf[k]/r.w}
	}
	return nil
}

// lap solves the rectangular linear assignment problem of n rows to m ≥ n
// columns: each row gets a distinct column, the total cost least. It is
// the shortest augmenting path method of Jonker & Volgenant (1987): rows
// are added one at a time, each by Dijkstra's search over the reduced
// costs c(i,j) − v(j) − u(i), where u(i) = c(i, col(i)) − v(col(i)) is
// implicit, and the column potentials v are updated after each search so
// the reduced costs stay ≥ 0. Costs come from a function, so memory stays
// O(m). It returns each row's column.
func lap(ctx context.Context, n, m int, cost func(row, col int) float64) ([]int, error) {
	v := make([]float64, m)
	rowOf := make([]int, m) // column's row, -1 free
	colOf := make([]int, n)
	for j := range rowOf {
		rowOf[j] = -1
	}
	d := make([]float64, m) // tentative shortest path lengths
	pred := make([]int, m)  // row from which a column was reached
	done := make([]bool, m) // column's distance is final
	var scanned []int       // columns made final this search
	for free := range n {
		if free%64 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		next, best := -1, math.Inf(1)
		for j := range m {
			d[j] = cost(free, j) - v[j]
			pred[j], done[j] = free, false
			if d[j] < best {
				next, best = j, d[j]
			}
		}
		scanned = scanned[:0]
		var sink int
		for {
			j1, dist := next, best
			done[j1] = true
			scanned = append(scanned, j1)
			i := rowOf[j1]
			if i < 0 {
				sink = j1
				break
			}
			// Relax the columns through j1's row, finding the next nearest.
			base := dist - cost(i, j1) + v[j1]
			next, best = -1, math.Inf(1)
			for j := range m {
				if done[j] {
					continue
				}
				if nd := base + cost(i, j) - v[j]; nd < d[j] {
					d[j], pred[j] = nd, i
				}
				if d[j] < best {
					next, best = j, d[j]
				}
			}
		}
		last := d[sink]
		for _, j := range scanned {
			v[j] += d[j] - last
		}
		for j := sink; ; {
			i := pred[j]
			rowOf[j] = i
			prev := colOf[i]
			colOf[i] = j
			if i == free {
				break
			}
			j = prev
		}
	}
	return colOf, nil
}
