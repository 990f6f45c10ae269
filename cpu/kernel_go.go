package cpu

// The dense kernels share one register-blocked micro-kernel in the style of
// GotoBLAS (Goto & van de Geijn 2008, "Anatomy of high-performance matrix
// multiplication"): a tile of mr×nr dot products over k, where the left
// operand is packed k×mr (a[t*mr+i]) and the right operand k×nr
// (b[t*nr+j]). With mr = 6 and nr = 16 the 12 AVX2 accumulators, two loads of
// b and one broadcast of a fill the 16 vector registers.
const (
	mr = 6
	nr = 16
)

// tileKernels is the pair of micro-kernels a computation runs on: the
// dispatching ones (assembly where the CPU has it) in production, the
// portable ones when a test checks the whole computation on both paths.
type tileKernels struct {
	gemm func(k int, a, b []float32, c *[mr * nr]float32)
	dist func(k int, a, b []float32, nb *[nr]float32, na, thr *[mr]float32, cthr *[nr]float32, out *[mr * nr]float32, masks, cmasks *[mr]uint32)
}

func defaultKernels() tileKernels  { return tileKernels{gemm: gemmTile, dist: distTile} }
func portableKernels() tileKernels { return tileKernels{gemm: gemmTileGo, dist: distTileGo} }

// gemmTileGo is the portable kernel: c[i*nr+j] = Σ_t a[t*mr+i]·b[t*nr+j].
// Scalar sub-tiles kept in locals (3×4, 2×4) measured slower than this
// read-modify-write form on amd64, which has only 16 vector registers.
func gemmTileGo(k int, a, b []float32, c *[mr * nr]float32) {
	*c = [mr * nr]float32{}
	a = a[:k*mr]
	b = b[:k*nr]
	for t := range k {
		bt := (*[nr]float32)(b[t*nr : t*nr+nr])
		at := (*[mr]float32)(a[t*mr : t*mr+mr])
		for i, ai := range at {
			ci := (*[nr]float32)(c[i*nr : i*nr+nr])
			for j, bj := range bt {
				ci[j] += ai * bj
			}
		}
	}
}

// distTileGo is the portable distance kernel. With a packed as −2·x it gives
// out[i*nr+j] = (na[i]+nb[j]) + Σ_t a[t*mr+i]·b[t*nr+j] = ‖x_i‖²+‖y_j‖²−2x_i·y_j.
// It sets bit j of masks[i] when out[i*nr+j] ≤ thr[i] (the query row's
// threshold) and of cmasks[i] when out[i*nr+j] ≤ cthr[j] (the candidate
// row's), so the caller only looks at the few pairs that can enter a list.
func distTileGo(k int, a, b []float32, nb *[nr]float32, na, thr *[mr]float32, cthr *[nr]float32, out *[mr * nr]float32, masks, cmasks *[mr]uint32) {
	gemmTileGo(k, a, b, out)
	for i := range mr {
		var m, cm uint32
		for j := range nr {
			v := out[i*nr+j] + (na[i] + nb[j])
			out[i*nr+j] = v
			if v <= thr[i] {
				m |= 1 << j
			}
			if v <= cthr[j] {
				cm |= 1 << j
			}
		}
		masks[i], cmasks[i] = m, cm
	}
}
