package cpu

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// kernelSets are the paths every dense and neighbour test runs on: the
// production dispatch (assembly on AVX2+FMA machines) and the portable Go
// kernels that every other CPU uses.
var kernelSets = []struct {
	name string
	k    tileKernels
}{{"default", defaultKernels()}, {"portable", portableKernels()}}

func randF32(r *rand.Rand, n int, scale float32) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = (r.Float32()*2 - 1) * scale
	}
	return s
}

// The assembly and the portable kernel sum the same products in the same
// order; they differ only in that FMA rounds once per step where the Go code
// rounds twice, so each result may differ by at most about 2k·u·Σ|a||b|.
func TestKernelsAssemblyMatchesGo(t *testing.T) {
	if !haveAVX2FMA {
		t.Skip("no AVX2+FMA on this CPU: only the portable kernel is in use")
	}
	r := rand.New(rand.NewPCG(7, 11))
	const u = 1.0 / (1 << 24)
	for _, k := range []int{1, 2, 3, 7, 16, 49, 50, 257, 1000} {
		a := randF32(r, k*mr, 3)
		b := randF32(r, k*nr, 5)
		var cg0, ca0 [mr * nr]float32
		gemmTileGo(k, a, b, &cg0)
		gemmTile(k, a, b, &ca0)
		for i := range mr {
			for j := range nr {
				var abs, exact float64
				for tt := range k {
					p := float64(a[tt*mr+i]) * float64(b[tt*nr+j])
					exact += p
					abs += math.Abs(p)
				}
				tol := 2 * float64(k+1) * u * abs
				for name, c := range map[string]*[mr * nr]float32{"go": &cg0, "avx2": &ca0} {
					if d := math.Abs(float64(c[i*nr+j]) - exact); d > tol {
						t.Fatalf("k=%d %s tile[%d][%d] = %v, want %v ± %v", k, name, i, j, c[i*nr+j], exact, tol)
					}
				}
			}
		}

		nb := (*[nr]float32)(randF32(r, nr, 10))
		na := (*[mr]float32)(randF32(r, mr, 10))
		thr := (*[mr]float32)(randF32(r, mr, 10))
		cthr := (*[nr]float32)(randF32(r, nr, 10))
		thr[0] = float32(math.Inf(1))
		thr[1] = float32(math.Inf(-1))
		cthr[5] = float32(math.Inf(-1))
		nb[3] = float32(math.Inf(1))
		var og, oa [mr * nr]float32
		var mg, ma, cg, ca [mr]uint32
		distTileGo(k, a, b, nb, na, thr, cthr, &og, &mg, &cg)
		distTile(k, a, b, nb, na, thr, cthr, &oa, &ma, &ca)
		for i := range mr {
			for j := range nr {
				want := float64(cg0[i*nr+j]) + float64(na[i]+nb[j])
				got := float64(oa[i*nr+j])
				if math.IsInf(want, 1) {
					if !math.IsInf(got, 1) {
						t.Fatalf("k=%d dist[%d][%d] = %v, want +Inf", k, i, j, got)
					}
				} else if math.Abs(got-want) > 2*float64(k+1)*u*math.Abs(want)+1e-4*(1+math.Abs(want)) {
					t.Fatalf("k=%d dist[%d][%d] = %v, want %v", k, i, j, got, want)
				}
				// The masks must agree with the values each kernel returned.
				for _, c := range []struct {
					name  string
					out   *[mr * nr]float32
					m, cm *[mr]uint32
				}{{"avx2", &oa, &ma, &ca}, {"go", &og, &mg, &cg}} {
					v := c.out[i*nr+j]
					if bit := c.m[i]>>j&1 == 1; bit != (v <= thr[i]) {
						t.Fatalf("k=%d %s mask row %d bit %d = %v for %v ≤ %v", k, c.name, i, j, bit, v, thr[i])
					}
					if bit := c.cm[i]>>j&1 == 1; bit != (v <= cthr[j]) {
						t.Fatalf("k=%d %s column mask row %d bit %d = %v for %v ≤ %v", k, c.name, i, j, bit, v, cthr[j])
					}
				}
			}
		}
		if ma[0] != 1<<nr-1 || ma[1] != 0 { // ≤: +Inf passes even an infinite distance
			t.Fatalf("k=%d masks for thresholds +Inf/-Inf = %#x, %#x", k, ma[0], ma[1])
		}
		for i := range mr {
			if ca[i]&(1<<3|1<<5) != 0 {
				t.Fatalf("k=%d column mask row %d set for an infinite distance or a −Inf threshold", k, i)
			}
		}
	}
}

func BenchmarkGemmTile(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	const k = 256
	a := randF32(r, k*mr, 1)
	bb := randF32(r, k*nr, 1)
	for _, ks := range kernelSets {
		b.Run(ks.name, func(b *testing.B) {
			var c [mr * nr]float32
			for b.Loop() {
				ks.k.gemm(k, a, bb, &c)
			}
			b.ReportMetric(float64(2*k*mr*nr)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// The 2-D attraction of the assembly (eight entries at a time, float32
// lanes) against the portable loop (float64 row sums), over rows of every
// length around the multiples of eight, neighbours anywhere in y (the first
// and the last point included, so a gather out of bounds would show). Each
// term is at most |val|·|d|/(1+d²) ≤ |val|/2; the lanes' float32 sums can
// differ from float64 ones by about len·u·Σ|term|.
func TestAttraction2MatchesGo(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	const n = 1000
	y := randF32(r, 2*n, 20)
	for _, m := range []int{0, 1, 7, 8, 9, 15, 16, 17, 64, 129, 1000} {
		col := make([]int32, m)
		val := make([]float32, m)
		for e := range col {
			col[e] = int32(r.IntN(n))
			val[e] = r.Float32()
		}
		if m > 2 {
			col[0], col[m-1] = 0, n-1
		}
		yi0, yi1 := y[2*17], y[2*17+1]
		g0, g1 := attraction2Go(y, col, val, yi0, yi1)
		a0, a1 := attraction2(y, col, val, yi0, yi1)
		bound := 0.0
		for e := range col {
			bound += float64(val[e])
		}
		tol := 4 * float64(m+8) / (1 << 24) * bound
		if math.Abs(a0-g0) > tol || math.Abs(a1-g1) > tol {
			t.Errorf("row of %d: assembly (%g, %g), Go (%g, %g), tolerance %g", m, a0, a1, g0, g1, tol)
		}
	}
}

// TestPrefetchRowsIsHarmless asks for rows up to the last of small tables,
// whose lines run past the table's end, and for none at all: a prefetch
// must neither fault nor change the table or the indices.
func TestPrefetchRowsIsHarmless(t *testing.T) {
	for _, tc := range []struct {
		name string
		rows int
		w    int
		idx  []int32
	}{
		{"one short row", 1, 3, []int32{0, 0}},
		{"last of odd rows", 5, 13, []int32{4, 0, 4, 2}},
		{"rows wider than a line", 3, 50, []int32{2, 1, 0}},
		{"no rows asked", 4, 8, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table := make([]float32, tc.rows*tc.w)
			for i := range table {
				table[i] = float32(i)
			}
			idx := slices.Clone(tc.idx)
			prefetchRows(table, tc.w, idx)
			prefetchRows(table[:0], tc.w, idx)
			for i, v := range table {
				if v != float32(i) {
					t.Fatalf("table[%d] = %v after prefetching, want %d", i, v, i)
				}
			}
			if !slices.Equal(idx, tc.idx) {
				t.Fatalf("indices %v after prefetching, want %v", idx, tc.idx)
			}
		})
	}
}
