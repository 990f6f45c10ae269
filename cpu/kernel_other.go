//go:build !amd64

package cpu

const haveAVX2FMA = false

// gemmTile computes one mr×nr tile; see gemmTileGo.
func gemmTile(k int, a, b []float32, c *[mr * nr]float32) { gemmTileGo(k, a, b, c) }

// distTile computes one mr×nr tile of squared distances; see distTileGo.
func distTile(k int, a, b []float32, nb *[nr]float32, na, thr *[mr]float32, cthr *[nr]float32, out *[mr * nr]float32, masks, cmasks *[mr]uint32) {
	distTileGo(k, a, b, nb, na, thr, cthr, out, masks, cmasks)
}

// bhSources2 evaluates 2-D Barnes-Hut sources on a group; see bhSources2Go.
func bhSources2(g *bhLaneXYZ, m int, src []float32, nself int, acc *bhAcc) {
	bhSources2Go(g, m, src, nself, acc)
}

// bhSources3 evaluates 3-D Barnes-Hut sources on a group; see bhSources3Go.
func bhSources3(g *bhLaneXYZ, m int, src []float32, nself int, acc *bhAcc) {
	bhSources3Go(g, m, src, nself, acc)
}

// attraction2 is Σ val[e]·w_ij·(y_i − y_j) over one row of P in 2-D; see
// attraction2Go.
func attraction2(y []float32, col []int32, val []float32, yi0, yi1 float32) (a0, a1 float64) {
	return attraction2Go(y, col, val, yi0, yi1)
}

// nnContains reports whether q is in list; see nnContainsGo.
func nnContains(list []int32, q int32) bool { return nnContainsGo(list, q) }

// prefetchRows is a hint that only amd64 acts on.
func prefetchRows[T any](table []T, w int, idx []int32) {}
