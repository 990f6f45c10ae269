//go:build amd64

package cpu

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// haveAVX2FMA selects the assembly kernels; it is set once at start-up from
// CPUID and never changed.
var haveAVX2FMA = cpu.X86.HasAVX2 && cpu.X86.HasFMA

//go:noescape
func gemmTileAVX2(k int, a, b *float32, c *[mr * nr]float32)

//go:noescape
func distTileAVX2(k int, a, b *float32, nb *[nr]float32, na, thr *[mr]float32, cthr *[nr]float32, out *[mr * nr]float32, masks, cmasks *[mr]uint32)

// gemmTile computes one mr×nr tile; see gemmTileGo.
func gemmTile(k int, a, b []float32, c *[mr * nr]float32) {
	if !haveAVX2FMA || k <= 0 {
		gemmTileGo(k, a, b, c)
		return
	}
	// The slicing checks the bounds the assembly relies on.
	gemmTileAVX2(k, &a[:k*mr][0], &b[:k*nr][0], c)
}

// distTile computes one mr×nr tile of squared distances; see distTileGo.
func distTile(k int, a, b []float32, nb *[nr]float32, na, thr *[mr]float32, cthr *[nr]float32, out *[mr * nr]float32, masks, cmasks *[mr]uint32) {
	if !haveAVX2FMA || k <= 0 {
		distTileGo(k, a, b, nb, na, thr, cthr, out, masks, cmasks)
		return
	}
	distTileAVX2(k, &a[:k*mr][0], &b[:k*nr][0], nb, na, thr, cthr, out, masks, cmasks)
}

//go:noescape
func bhSources2AVX2(grp *bhLaneXYZ, src *float32, n, nself int, acc *bhAcc)

// bhSources2 evaluates 2-D Barnes-Hut sources on a group; see bhSources2Go.
// The assembly computes all bhLanes lanes (the padding ones are never
// read) and 1/(1+|e|²) by VRCPPS and one Newton step.
func bhSources2(g *bhLaneXYZ, m int, src []float32, nself int, acc *bhAcc) {
	n := len(src) / 3
	if !haveAVX2FMA || n == 0 {
		bhSources2Go(g, m, src, nself, acc)
		return
	}
	if m > bhLanes || nself < 0 || nself > min(m, n) {
		panic("cpu: bhSources2: bad nself")
	}
	bhSources2AVX2(g, &src[:3*n][0], n, nself, acc)
}

//go:noescape
func bhSources3AVX2(grp *bhLaneXYZ, src *float32, n, nself int, acc *bhAcc)

// bhSources3 evaluates 3-D Barnes-Hut sources on a group; see bhSources3Go
// and bhSources2.
func bhSources3(g *bhLaneXYZ, m int, src []float32, nself int, acc *bhAcc) {
	n := len(src) / 4
	if !haveAVX2FMA || n == 0 {
		bhSources3Go(g, m, src, nself, acc)
		return
	}
	if m > bhLanes || nself < 0 || nself > min(m, n) {
		panic("cpu: bhSources3: bad nself")
	}
	bhSources3AVX2(g, &src[:4*n][0], n, nself, acc)
}

//go:noescape
func attract2AVX2(y *float32, col *int32, val *float32, n int, yi *[2]float32, out *[2]float64)

// attraction2 is Σ val[e]·w_ij·(y_i − y_j) over one row of P in 2-D (j =
// col[e]); see attraction2Go. The assembly takes the row's entries eight at
// a time and Go the rest. Every col[e] must be a point of y (CheckProblem).
func attraction2(y []float32, col []int32, val []float32, yi0, yi1 float32) (a0, a1 float64) {
	m := len(col) &^ 7
	if !haveAVX2FMA || m == 0 {
		return attraction2Go(y, col, val, yi0, yi1)
	}
	yi := [2]float32{yi0, yi1}
	var out [2]float64
	attract2AVX2(&y[0], &col[0], &val[:m][0], m, &yi, &out)
	t0, t1 := attraction2Go(y, col[m:], val[m:], yi0, yi1)
	return out[0] + t0, out[1] + t1
}

//go:noescape
func containsAVX2(list *int32, n int, q int32) bool

// nnContains reports whether q is in list; see nnContainsGo. The assembly
// compares sixteen entries a step and Go the rest.
func nnContains(list []int32, q int32) bool {
	m := 0
	if haveAVX2FMA {
		m = len(list) &^ 15
		if m > 0 && containsAVX2(&list[0], m, q) {
			return true
		}
	}
	return nnContainsGo(list[m:], q)
}

//go:noescape
func prefetchRowsAsm(base unsafe.Pointer, idx *int32, n, stride, lines int)

// prefetchRows asks for the rows idx of table (rows of w elements) to be
// brought into L2 ahead of use. It changes nothing the program can observe;
// it only turns a run of dependent cache misses into overlapping ones.
func prefetchRows[T any](table []T, w int, idx []int32) {
	if len(idx) == 0 || len(table) == 0 || w < 1 {
		return
	}
	stride := w * int(unsafe.Sizeof(table[0]))
	// A row may straddle one more line than its length covers.
	prefetchRowsAsm(unsafe.Pointer(&table[0]), &idx[0], len(idx), stride, (stride+126)/64)
}
