package explore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
)

// Cell is a point's place in a grid layout: column X from the left, row Y
// from the bottom (the map's y grows upwards too).
type Cell struct{ X, Y int }

// exactGridMax is the most points assigned in one exact linear assignment;
// bigger maps are split (see Grid). An exact assignment of a whole
// clustered map costs about n³ (2,000 points: 10 s on the shared 2-core
// machine), parts of 256 keep nearly all of its quality
// (TestGridSplitKeepsQuality) at 1 s for 10,000 points.
const exactGridMax = 256

// Grid lays the points of a 2-D map out on a grid, one point a cell, so
// that neighbours stay neighbours. The grid has about the map's aspect
// ratio and at least as many cells as points; each point gets a distinct
// cell.
//
// The points, scaled to the grid, are assigned to cells minimising the sum
// of squared distances: a linear assignment problem, solved exactly by
// shortest augmenting paths with dual potentials (Jonker & Volgenant, "A
// shortest augmenting path algorithm for dense and sparse linear
// assignment problems", Computing 38, 1987), the method PixPlot-style
// layouts use. An exact assignment of the whole map grows as n³, so a
// map of more than 256 points is first cut in halves along the longer
// side of its grid, recursively, each half taking the share of points its
// cells hold, sorted along that side; each part is then assigned exactly
// within its rectangle (its points rescaled to it), the parts on every
// core. The cuts only fix which side of a line a point goes, which the
// exact assignment mostly respects anyway: the fraction of 10 nearest
// neighbours kept is within 0.03 of the exact assignment's
// (TestGridSplitKeepsQuality), against about k/n for a random one.
func Grid(ctx context.Context, xy []float64) ([]Cell, error) {
	return grid(ctx, xy, exactGridMax)
}

// grid is Grid with exact assignments of at most exactMax points.
func grid(ctx context.Context, xy []float64, exactMax int) ([]Cell, error) {
	n := len(xy) / 2
	for i, v := range xy {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("grid: coordinate %d of point %d is %v", i%2, i/2, v)
		}
	}
	cells := make([]Cell, n)
	if n == 0 {
		return cells, nil
	}
	minX, minY, maxX, maxY := bounds(xy)
	aspect := math.Max(maxX-minX, 1e-9) / math.Max(maxY-minY, 1e-9)
	aspect = min(max(aspect, 0.25), 4)
	cols := max(1, int(math.Ceil(math.Sqrt(float64(n)*aspect))))
	rows := (n + cols - 1) / cols
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	parts := split(xy, idx, region{0, 0, cols, rows}, exactMax, nil)
	if err := assignParts(ctx, xy, parts, cells); err != nil {
		return nil, err
	}
	return cells, nil
}

// region is a rectangle of grid cells.
type region struct{ x0, y0, w, h int }

// part is a set of points and the rectangle of cells they get.
type part struct {
	idx []int
	r   region
}

// split cuts a region recursively until each part has at most exactMax
// points: the longer side in two, each half taking points in proportion
// to its cells (within what it holds), the points sorted along that side.
func split(xy []float64, idx []int, r region, exactMax int, parts []part) []part {
	if len(idx) <= exactMax {
		return append(parts, part{idx, r})
	}
	axis, a, b := 0, r, r
	if r.w >= r.h {
		a.w = r.w / 2
		b.x0, b.w = r.x0+a.w, r.w-a.w
	} else {
		axis = 1
		a.h = r.h / 2
		b.y0, b.h = r.y0+a.h, r.h-a.h
	}
	n := len(idx)
	na := int(math.Round(float64(n) * float64(a.w*a.h) / float64(r.w*r.h)))
	na = min(max(na, n-b.w*b.h), a.w*a.h)
	slices.SortFunc(idx, func(i, j int) int {
		return cmpFloat(xy[2*i+axis], xy[2*j+axis])
	})
	parts = split(xy, idx[:na], a, exactMax, parts)
	return split(xy, idx[na:], b, exactMax, parts)
}

// assignParts solves the parts' assignments on every core.
func assignParts(ctx context.Context, xy []float64, parts []part, out []Cell) error {
	var next atomic.Int64
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(parts)) {
		wg.Go(func() {
			for {
				k := int(next.Add(1)) - 1
				if k >= len(parts) {
					return
				}
				errs[k] = assignExact(ctx, xy, parts[k].idx, parts[k].r, out)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
