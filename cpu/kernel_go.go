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
// It works in 3×4 sub-tiles whose 12 sums stay in registers (the Go compiler
// does not vectorise, but it keeps scalars there, and fuses the multiply-adds
// on arm64); each sum runs over t in order, like the assembly's.
func gemmTileGo(k int, a, b []float32, c *[mr * nr]float32) {
	a = a[:k*mr]
	b = b[:k*nr]
	for i0 := 0; i0 < mr; i0 += 3 {
		for j0 := 0; j0 < nr; j0 += 4 {
			var c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23 float32
			for t := range k {
				at := a[t*mr+i0 : t*mr+i0+3]
				bt := b[t*nr+j0 : t*nr+j0+4]
				a0, a1, a2 := at[0], at[1], at[2]
				b0, b1, b2, b3 := bt[0], bt[1], bt[2], bt[3]
				c00 += a0 * b0
				c01 += a0 * b1
				c02 += a0 * b2
				c03 += a0 * b3
				c10 += a1 * b0
				c11 += a1 * b1
				c12 += a1 * b2
				c13 += a1 * b3
				c20 += a2 * b0
				c21 += a2 * b1
				c22 += a2 * b2
				c23 += a2 * b3
			}
			r0 := c[i0*nr+j0 : i0*nr+j0+4]
			r0[0], r0[1], r0[2], r0[3] = c00, c01, c02, c03
			r1 := c[(i0+1)*nr+j0 : (i0+1)*nr+j0+4]
			r1[0], r1[1], r1[2], r1[3] = c10, c11, c12, c13
			r2 := c[(i0+2)*nr+j0 : (i0+2)*nr+j0+4]
			r2[0], r2[1], r2[2], r2[3] = c20, c21, c22, c23
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
