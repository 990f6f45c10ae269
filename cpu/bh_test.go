package cpu

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/tsnemap/tsnemap/internal/testkit"
)

// bhSourcesRef is the float64 reference of the source kernels for lane a.
func bhSourcesRef(g *bhLaneXYZ, dims, a int, src []float32, nself int) (z float64, f [3]float64, abs [4]float64) {
	st := dims + 1
	for s := 0; s < len(src)/st; s++ {
		if s < nself && s == a {
			continue
		}
		var e [3]float64
		d2 := 0.0
		for d := range dims {
			e[d] = float64(g[d][a]) - float64(src[s*st+d])
			d2 += e[d] * e[d]
		}
		cnt := float64(src[s*st+dims])
		w := 1 / (1 + d2)
		z += cnt * w
		abs[0] += cnt * w
		for d := range dims {
			f[d] += cnt * w * w * e[d]
			abs[d+1] += math.Abs(cnt * w * w * e[d])
		}
	}
	return z, f, abs
}

// The assembly and the portable kernels agree with a float64 reference to
// float32 rounding: each term is rounded a few times (and VRCPPS with one
// Newton step is good to ~2⁻²²), and a chunk of bhChunk terms is summed in
// float32, so each sum may be off by about (bhChunk + 8)·2⁻²⁴·Σ|term|.
func TestBHSourcesMatchReference(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	const u = 1.0 / (1 << 24)
	kernels := []struct {
		name string
		k2   func(*bhLaneXYZ, int, []float32, int, *bhAcc)
		k3   func(*bhLaneXYZ, int, []float32, int, *bhAcc)
	}{{"go", bhSources2Go, bhSources3Go}, {"dispatch", bhSources2, bhSources3}}
	for _, dims := range []int{2, 3} {
		for _, m := range []int{1, 2, 3, 5, 7, 8} {
			for _, n := range []int{0, 1, 7, 63, 64, 65, 130, 700} {
				for _, nself := range []int{0, m} {
					if nself > n {
						continue
					}
					var g bhLaneXYZ
					for a := range bhLanes {
						for d := range dims {
							g[d][a] = r.Float32()*2 - 1
						}
					}
					st := dims + 1
					src := make([]float32, n*st)
					for s := range n {
						// Near sources (distance ~1), far ones (up to ~100)
						// and the group's own points as the first nself.
						scale := float32(1)
						if s%3 == 0 {
							scale = 100
						}
						for d := range dims {
							if s < nself {
								src[s*st+d] = g[d][s]
							} else {
								src[s*st+d] = (r.Float32()*2 - 1) * scale
							}
						}
						src[s*st+dims] = 1
						if s >= nself && s%2 == 1 {
							src[s*st+dims] = float32(1 + r.IntN(500))
						}
					}
					for _, k := range kernels {
						// Start from a non-zero accumulator: the kernels add.
						var acc bhAcc
						for i := range acc {
							for a := range acc[i] {
								acc[i][a] = 1
							}
						}
						if dims == 2 {
							k.k2(&g, m, src, nself, &acc)
						} else {
							k.k3(&g, m, src, nself, &acc)
						}
						for a := range m {
							z, f, abs := bhSourcesRef(&g, dims, a, src, nself)
							want := [4]float64{z + 1, f[0] + 1, f[1] + 1, f[2] + 1}
							for i := range dims + 1 {
								tol := float64(bhChunk+8)*u*abs[i] + 1e-15
								if d := math.Abs(acc[i][a] - want[i]); d > tol {
									t.Fatalf("%s %d-D m=%d n=%d nself=%d lane %d sum %d = %v, want %v ± %v", k.name, dims, m, n, nself, a, i, acc[i][a], want[i], tol)
								}
							}
						}
					}
				}
			}
		}
	}
}

// bhTestPoints are clustered points with some exact duplicates, including
// more than 2·bhGroupSize copies of one point, which give an oversized leaf
// at the deepest level, walked in several groups.
func bhTestPoints(r *rand.Rand, n, dims int) []float32 {
	y := make([]float32, n*dims)
	for i := range n {
		c := float64(i % 5)
		for d := range dims {
			y[i*dims+d] = float32(3*c + r.NormFloat64())
		}
	}
	for i := n - 2*bhGroupSize - 5; i < n; i++ {
		copy(y[i*dims:(i+1)*dims], y[0:dims])
	}
	for i := n - 2*bhGroupSize - 45; i < n-2*bhGroupSize-5; i += 2 {
		copy(y[i*dims:(i+1)*dims], y[(i+1)*dims:(i+2)*dims])
	}
	return y
}

// The walk gives the same forces and Z on the assembly and the portable
// kernels (to float32 rounding), matches the exact sums at θ = 0, and is
// bit-for-bit repeatable.
func TestBHWalkPaths(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 1))
	ctx := context.Background()
	for _, dims := range []int{2, 3} {
		n := 1500
		y := bhTestPoints(r, n, dims)
		// Exact reference in float64.
		zExact := 0.0
		fExact := make([]float64, n*dims)
		for i := range n {
			for j := range n {
				if i == j {
					continue
				}
				d2 := 0.0
				for d := range dims {
					e := float64(y[i*dims+d]) - float64(y[j*dims+d])
					d2 += e * e
				}
				w := 1 / (1 + d2)
				zExact += w
				for d := range dims {
					fExact[i*dims+d] += w * w * (float64(y[i*dims+d]) - float64(y[j*dims+d]))
				}
			}
		}
		for _, theta := range []float64{0, 0.5} {
			var got [2][]float64
			var zs [2]float64
			for p, portable := range []bool{false, true} {
				tr := newBHTree(New(3), n, dims, theta)
				tr.portable = portable
				rep := make([]float64, n*dims)
				z, err := tr.repulse(ctx, y, rep)
				if err != nil {
					t.Fatal(err)
				}
				again := make([]float64, n*dims)
				z2, err := tr.repulse(ctx, y, again)
				if err != nil {
					t.Fatal(err)
				}
				if z2 != z {
					t.Fatalf("%d-D θ=%v portable=%v: Z %v then %v", dims, theta, portable, z, z2)
				}
				for i := range rep {
					if rep[i] != again[i] {
						t.Fatalf("%d-D θ=%v portable=%v: force %d %v then %v", dims, theta, portable, i, rep[i], again[i])
					}
				}
				if theta == 0 {
					if e := math.Abs(z-zExact) / zExact; e > 1e-6 {
						t.Errorf("%d-D θ=0 portable=%v: Z %v, exact %v (rel %.3g)", dims, portable, z, zExact, e)
					}
					if e := testkit.RelL2(rep, fExact); e > 1e-5 {
						t.Errorf("%d-D θ=0 portable=%v: forces vs exact: relative error %.3g", dims, portable, e)
					}
				}
				got[p], zs[p] = rep, z
			}
			if e := math.Abs(zs[0]-zs[1]) / zs[1]; e > 1e-6 {
				t.Errorf("%d-D θ=%v: Z %v (dispatch) vs %v (portable)", dims, theta, zs[0], zs[1])
			}
			if e := testkit.RelL2(got[0], got[1]); e > 1e-5 {
				t.Errorf("%d-D θ=%v: forces dispatch vs portable: relative error %.3g", dims, theta, e)
			}
		}
	}
}

func BenchmarkBHSources(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	var g bhLaneXYZ
	for a := range bhLanes {
		for d := range 3 {
			g[d][a] = r.Float32()
		}
	}
	src := randF32(r, 4*bhSrcCap, 10)
	for _, k := range []struct {
		name string
		f    func(*bhLaneXYZ, int, []float32, int, *bhAcc)
		st   int
	}{{"2d/go", bhSources2Go, 3}, {"2d/dispatch", bhSources2, 3}, {"3d/go", bhSources3Go, 4}, {"3d/dispatch", bhSources3, 4}} {
		b.Run(k.name, func(b *testing.B) {
			var acc bhAcc
			s := src[:k.st*bhSrcCap]
			for b.Loop() {
				k.f(&g, bhLanes, s, bhLanes, &acc)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*bhSrcCap), "ns/source")
		})
	}
}

// spreadBits interleaves every bit it is given: bit k of v lands at bit
// k·dims, at the deepest levels too (bhBits2, bhBits3).
func TestSpreadBits(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 9))
	for _, tc := range []struct{ dims, bits int }{{2, bhBits2}, {3, bhBits3}, {2, 32}, {3, 21}} {
		for range 1000 {
			v := r.Uint64() & (1<<tc.bits - 1)
			var want uint64
			for k := range tc.bits {
				want |= (v >> k & 1) << (k * tc.dims)
			}
			if got := spreadBits(v, tc.dims); got != want {
				t.Fatalf("spreadBits(%#x, %d) = %#x, want %#x", v, tc.dims, got, want)
			}
		}
	}
}

// Late in the early exaggeration of a large N the clusters are pulled far
// tighter than the layout is wide. The tree must still split them down to
// leaves of at most bhLeafSize points (only coincident points may share a
// bigger leaf), or the walk sums each oversized leaf directly, O(L²): with
// 16 Morton bits a 250,000-point pass took ~0.9 s instead of ~0.05 s.
func TestBHSplitsCollapsedClusters(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	ctx := context.Background()
	for _, dims := range []int{2, 3} {
		const n, sigma, far = 4000, 1e-3, 400
		y := make([]float32, n*dims)
		for i := range n {
			for d := range dims {
				y[i*dims+d] = float32(sigma * r.NormFloat64())
			}
			if i%2 == 1 {
				y[i*dims] += far
			}
		}
		tr := newBHTree(New(2), n, dims, 0.5)
		if _, err := tr.repulse(ctx, y, make([]float64, n*dims)); err != nil {
			t.Fatal(err)
		}
		for _, nd := range tr.nodes {
			if !nd.leaf || nd.hi-nd.lo <= bhLeafSize {
				continue
			}
			p := tr.ys[int(nd.lo)*dims : int(nd.lo+1)*dims]
			for s := nd.lo; s < nd.hi; s++ {
				if q := tr.ys[int(s)*dims : int(s+1)*dims]; !slices.Equal(p, q) {
					t.Fatalf("%d-D: a leaf of %d distinct points (%v and %v); at most %d may share one", dims, nd.hi-nd.lo, p, q, bhLeafSize)
				}
			}
		}
	}
}
