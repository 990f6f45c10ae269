package explore

import (
	"context"
	"fmt"

	"github.com/tsnemap/tsnemap/jobs"
)

// Annotate adds to a finished 2-D map's result the hotspot of each row and
// the hotspots, and, when grid is set, each row's grid cell. Rows without
// coordinates (failed images) get neither. A 3-D map is left as it is.
func Annotate(ctx context.Context, res *jobs.Result, grid bool) error {
	if res.Dimensions != 2 {
		return nil
	}
	var rows []int
	var xy []float64
	for i, r := range res.Rows {
		if len(r.Coords) >= 2 {
			rows = append(rows, i)
			xy = append(xy, float64(r.Coords[0]), float64(r.Coords[1]))
		}
	}
	labels, spots, err := Hotspots(ctx, xy, HotspotOptions{})
	if err != nil {
		return fmt.Errorf("hotspots: %w", err)
	}
	for k, row := range rows {
		res.Rows[row].Cluster = labels[k]
	}
	res.Clustered = true
	res.Hotspots = make([]jobs.Hotspot, 0, len(spots))
	for _, s := range spots {
		h := jobs.Hotspot{ID: s.ID, Size: s.Size, X: s.X, Y: s.Y, Radius: s.Radius, Rows: make([]int, len(s.Nearest))}
		for j, k := range s.Nearest {
			h.Rows[j] = rows[k]
		}
		res.Hotspots = append(res.Hotspots, h)
	}
	if !grid {
		return nil
	}
	cells, err := Grid(ctx, xy)
	if err != nil {
		return fmt.Errorf("grid layout: %w", err)
	}
	for k, row := range rows {
		res.Rows[row].Grid = []int{cells[k].X, cells[k].Y}
	}
	res.Gridded = true
	return nil
}
