package explore

// NeighboursKept is the mean fraction of each point's k nearest neighbours
// in the map that are also among its k nearest in the grid layout (ties in
// the grid broken by index): 1 when the layout keeps every neighbourhood,
// about k/n for a random one.
func NeighboursKept(xy []float64, cells []Cell, k int) float64 {
	n := len(cells)
	if n <= k {
		return 1
	}
	gxy := make([]float64, 2*n)
	for i, c := range cells {
		gxy[2*i], gxy[2*i+1] = float64(c.X), float64(c.Y)
	}
	mg, gg := newPointGrid(xy), newPointGrid(gxy)
	var a, b []neighbour
	in := make(map[int32]bool, k)
	var kept int
	for i := range n {
		a, b = mg.knn(i, k, a), gg.knn(i, k, b)
		clear(in)
		for _, nb := range b {
			in[nb.i] = true
		}
		for _, nb := range a {
			if in[nb.i] {
				kept++
			}
		}
	}
	return float64(kept) / float64(n*k)
}
