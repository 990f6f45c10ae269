package cpu

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/tsnemap/tsnemap/embed"
)

const unitRoundoff = 1.0 / (1 << 24)

func randData(r *rand.Rand, n, d int, u8 bool) embed.Data {
	x := embed.Data{N: n, D: d}
	if u8 {
		x.U8 = make([]uint8, n*d)
		for i := range x.U8 {
			x.U8[i] = uint8(r.IntN(256))
		}
	} else {
		x.F32 = make([]float32, n*d)
		for i := range x.F32 {
			// an offset and a spread across columns, as real features have
			x.F32[i] = float32(r.NormFloat64()*float64(1+i%d%7) + 40)
		}
	}
	return x
}

func at(x embed.Data, i, j int) float64 {
	if x.U8 != nil {
		return float64(x.U8[i*x.D+j])
	}
	return float64(x.F32[i*x.D+j])
}

var denseShapes = []struct{ n, d, l int }{
	{1, 1, 1}, {1, 7, 3}, {5, 1, 2}, {7, 13, 1}, {13, 300, 17}, {97, 257, 16},
	{200, 513, 60}, {6, 6, 33}, {301, 50, 64},
}

func TestColumnMeans(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, sh := range denseShapes {
		for _, u8 := range []bool{true, false} {
			x := randData(r, sh.n, sh.d, u8)
			for _, threads := range []int{1, 2, 3} {
				got := make([]float64, sh.d)
				if err := New(threads).ColumnMeans(context.Background(), x, got); err != nil {
					t.Fatal(err)
				}
				for j := range sh.d {
					var s, abs float64
					for i := range sh.n {
						s += at(x, i, j)
						abs += math.Abs(at(x, i, j))
					}
					// float64 sums of n terms: |error| ≤ n·ε·Σ|x| / n
					if want := s / float64(sh.n); math.Abs(got[j]-want) > 4*float64(sh.n)*0x1p-52*abs/float64(sh.n) {
						t.Fatalf("n=%d d=%d u8=%v threads=%d: mean[%d] = %v, want %v", sh.n, sh.d, u8, threads, j, got[j], want)
					}
				}
			}
		}
	}
}

// checkProductResult compares got with the float64 product of the centred
// data and m; the bound is the one argued in dense.go, (kc+2)·u·Σ|xc||m|,
// plus the final rounding to float32.
func checkProductResult(t *testing.T, what string, got []float32, want, abs []float64) {
	t.Helper()
	for i := range got {
		tol := float64(kcBlock+2)*unitRoundoff*abs[i] + unitRoundoff*math.Abs(want[i])
		if d := math.Abs(float64(got[i]) - want[i]); d > tol || math.IsNaN(float64(got[i])) {
			t.Fatalf("%s: element %d = %v, want %v ± %.3g", what, i, got[i], want[i], tol)
		}
	}
}

func TestMulRightAndMulTransLeft(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	ctx := context.Background()
	for _, sh := range denseShapes {
		for _, u8 := range []bool{true, false} {
			n, d, l := sh.n, sh.d, sh.l
			x := randData(r, n, d, u8)
			mean := make([]float32, d)
			for j := range mean {
				mean[j] = float32(at(x, r.IntN(n), j)) + r.Float32()
			}
			mRight := randF32(r, d*l, 1)
			mTrans := randF32(r, n*l, 1)

			wantR, absR := make([]float64, n*l), make([]float64, n*l)
			wantT, absT := make([]float64, d*l), make([]float64, d*l)
			for i := range n {
				for j := range d {
					xc := at(x, i, j) - float64(mean[j])
					for c := range l {
						p := xc * float64(mRight[j*l+c])
						wantR[i*l+c] += p
						absR[i*l+c] += math.Abs(p)
						q := xc * float64(mTrans[i*l+c])
						wantT[j*l+c] += q
						absT[j*l+c] += math.Abs(q)
					}
				}
			}
			for _, kern := range kernelSets {
				var first []float32
				for _, threads := range []int{1, 2, 3} {
					b := New(threads)
					what := fmt.Sprintf("n=%d d=%d l=%d u8=%v threads=%d kernels=%s", n, d, l, u8, threads, kern.name)
					gotR := make([]float32, n*l)
					if err := mulRightWith(ctx, b, kern.k, x, mean, mRight, l, gotR); err != nil {
						t.Fatal(err)
					}
					checkProductResult(t, "MulRight "+what, gotR, wantR, absR)
					gotT := make([]float32, d*l)
					if err := mulTransLeftWith(ctx, b, kern.k, x, mean, mTrans, l, gotT); err != nil {
						t.Fatal(err)
					}
					checkProductResult(t, "MulTransLeft "+what, gotT, wantT, absT)
					// Each output is summed in an order that does not depend
					// on the thread count, so the results are bit-identical.
					all := append(gotR, gotT...)
					if first == nil {
						first = all
					} else {
						for i := range all {
							if math.Float32bits(all[i]) != math.Float32bits(first[i]) {
								t.Fatalf("%s: element %d differs from the 1-thread result", what, i)
							}
						}
					}
				}
			}
		}
	}
}

func TestDenseBadArguments(t *testing.T) {
	ctx := context.Background()
	b := New(2)
	good := embed.Data{N: 3, D: 2, U8: make([]uint8, 6)}
	mean := make([]float32, 2)
	cases := []struct {
		name string
		run  func() error
	}{
		{"means: no data", func() error { return b.ColumnMeans(ctx, embed.Data{N: 3, D: 2}, make([]float64, 2)) }},
		{"means: both set", func() error {
			return b.ColumnMeans(ctx, embed.Data{N: 3, D: 2, U8: make([]uint8, 6), F32: make([]float32, 6)}, make([]float64, 2))
		}},
		{"means: short data", func() error {
			return b.ColumnMeans(ctx, embed.Data{N: 3, D: 2, U8: make([]uint8, 5)}, make([]float64, 2))
		}},
		{"means: dst", func() error { return b.ColumnMeans(ctx, good, make([]float64, 3)) }},
		{"means: zero rows", func() error { return b.ColumnMeans(ctx, embed.Data{N: 0, D: 2, U8: []uint8{}}, make([]float64, 2)) }},
		{"right: mean", func() error { return b.MulRight(ctx, good, mean[:1], make([]float32, 2), 1, make([]float32, 3)) }},
		{"right: l=0", func() error { return b.MulRight(ctx, good, mean, nil, 0, nil) }},
		{"right: m", func() error { return b.MulRight(ctx, good, mean, make([]float32, 3), 1, make([]float32, 3)) }},
		{"right: dst", func() error { return b.MulRight(ctx, good, mean, make([]float32, 2), 1, make([]float32, 2)) }},
		{"trans: m", func() error { return b.MulTransLeft(ctx, good, mean, make([]float32, 2), 1, make([]float32, 2)) }},
		{"trans: dst", func() error { return b.MulTransLeft(ctx, good, mean, make([]float32, 3), 1, make([]float32, 3)) }},
		{"trans: f32 short", func() error {
			return b.MulTransLeft(ctx, embed.Data{N: 3, D: 2, F32: make([]float32, 7)}, mean, make([]float32, 3), 1, make([]float32, 2))
		}},
	}
	for _, c := range cases {
		if err := c.run(); !errors.Is(err, embed.ErrInvalidInput) {
			t.Errorf("%s: err = %v, want ErrInvalidInput", c.name, err)
		}
	}
}

func TestDenseCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := rand.New(rand.NewPCG(1, 1))
	x := randData(r, 50, 40, true)
	b := New(2)
	if err := b.MulRight(ctx, x, make([]float32, 40), make([]float32, 40*3), 3, make([]float32, 150)); !errors.Is(err, context.Canceled) {
		t.Errorf("MulRight: err = %v", err)
	}
	if err := b.MulTransLeft(ctx, x, make([]float32, 40), make([]float32, 50*3), 3, make([]float32, 120)); !errors.Is(err, context.Canceled) {
		t.Errorf("MulTransLeft: err = %v", err)
	}
	if err := b.ColumnMeans(ctx, x, make([]float64, 40)); !errors.Is(err, context.Canceled) {
		t.Errorf("ColumnMeans: err = %v", err)
	}
}

// pixelData is 10,000 images of 100×100 RGB, the shape the PCA of a typical
// job multiplies.
func pixelData(n, d int) embed.Data {
	r := rand.New(rand.NewPCG(9, 9))
	x := embed.Data{N: n, D: d, U8: make([]uint8, n*d)}
	for i := range x.U8 {
		x.U8[i] = uint8(r.Uint32())
	}
	return x
}

func benchProduct(b *testing.B, trans bool) {
	const n, d, l = 10000, 30000, 60
	x := pixelData(n, d)
	r := rand.New(rand.NewPCG(1, 3))
	mean := randF32(r, d, 128)
	var m, dst []float32
	if trans {
		m, dst = randF32(r, n*l, 1), make([]float32, d*l)
	} else {
		m, dst = randF32(r, d*l, 1), make([]float32, n*l)
	}
	be := New(0)
	ctx := context.Background()
	for b.Loop() {
		var err error
		if trans {
			err = be.MulTransLeft(ctx, x, mean, m, l, dst)
		} else {
			err = be.MulRight(ctx, x, mean, m, l, dst)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(2*n*d*l)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

func BenchmarkMulRight(b *testing.B)     { benchProduct(b, false) }
func BenchmarkMulTransLeft(b *testing.B) { benchProduct(b, true) }
