//go:build cuda

package gpu

import (
	"context"
	"fmt"
	"math"
	"sync"

	"github.com/tsnemap/tsnemap/embed"
)

// Backend runs every kernel of a run on one CUDA device. It is safe for
// use by one run at a time per method call; calls are serialised on the
// device's thread.
type Backend struct {
	dev *device

	mu   sync.Mutex
	held []*heldData // inputs Hold keeps on the device
}

var (
	_ embed.Backend         = (*Backend)(nil)
	_ embed.AffinityBackend = (*Backend)(nil)
	_ embed.DataHolder      = (*Backend)(nil)
)

// New opens the device Probe would pick, loads the kernels and runs the
// self-test (selftest.go). ctx bounds the wait (the first JIT compilation
// of the PTX takes a second or two; the driver caches it afterwards).
func New(ctx context.Context) (*Backend, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	type result struct {
		d   *device
		err error
	}
	ch := make(chan result, 1)
	go func() {
		d, err := newDevice()
		ch <- result{d, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		b := &Backend{dev: r.d}
		if err := selfTest(ctx, b); err != nil {
			b.Close()
			return nil, fmt.Errorf("gpu: %s failed the self-test: %w", r.d.info.Name, err)
		}
		return b, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.d != nil {
				r.d.close()
			}
		}()
		return nil, ctx.Err()
	}
}

// Info describes the device in use (free memory as at New).
func (b *Backend) Info() Info { return b.dev.info }

// Name implements embed.Backend.
func (b *Backend) Name() string {
	return fmt.Sprintf("gpu (%s, %d.%d, %.0f GiB)", b.dev.info.Name, b.dev.info.Major, b.dev.info.Minor,
		float64(b.dev.info.TotalMemory)/(1<<30))
}

// Close releases the device.
func (b *Backend) Close() error {
	b.dev.close()
	return nil
}

// rowBlock is how many input rows one PCA block holds: ≤ 256 MB as float32
// and at most 8192 rows.
func rowBlock(d int) int {
	return max(64, min(8192, (256<<20)/(4*max(d, 1))))
}

// uploadRows copies rows [lo, hi) of x into raw (as stored) on the device.
func (b *Backend) uploadRows(x embed.Data, lo, hi int, raw buf) error {
	if x.U8 != nil {
		return upload(b.dev, raw, x.U8[lo*x.D:hi*x.D])
	}
	return upload(b.dev, raw, x.F32[lo*x.D:hi*x.D])
}

// allocRaw is a device buffer for one block of x as stored.
func (b *Backend) allocRaw(x embed.Data, rows int) (buf, error) {
	elem := int64(4)
	if x.U8 != nil {
		elem = 1
	}
	return b.dev.alloc(int64(rows) * int64(x.D) * elem)
}

// ColumnMeans implements embed.Backend.
func (b *Backend) ColumnMeans(ctx context.Context, x embed.Data, dst []float64) error {
	if len(dst) != x.D {
		return fmt.Errorf("gpu: column means: dst has %d values, want %d", len(dst), x.D)
	}
	br := rowBlock(x.D)
	held := b.heldFor(x)
	var raw, sums buf
	defer b.dev.do(func() error { b.dev.free(&raw); b.dev.free(&sums); return nil })
	err := b.dev.do(func() (err error) {
		if raw, err = b.allocRaw(x, min(br, x.N)); err != nil {
			return err
		}
		if sums, err = b.dev.alloc(int64(x.D) * 8); err != nil {
			return err
		}
		return b.dev.zero(sums)
	})
	if err != nil {
		return err
	}
	for lo := 0; lo < x.N; lo += br {
		if err := ctx.Err(); err != nil {
			return err
		}
		hi := min(lo+br, x.N)
		err := b.dev.do(func() error {
			src, err := b.rows(x, held, lo, hi, raw)
			if err != nil {
				return err
			}
			k := kColsumF32
			if x.U8 != nil {
				k = kColsumU8
			}
			return b.dev.launch1D(k, x.D, 128, src, hi-lo, x.D, sums)
		})
		if err != nil {
			return err
		}
	}
	return b.dev.do(func() error {
		if err := download(b.dev, dst, sums); err != nil {
			return err
		}
		for c := range dst {
			dst[c] /= float64(x.N)
		}
		return nil
	})
}

// centre launches the conversion of one raw block into centred float32.
func (b *Backend) centre(x embed.Data, raw devPtr, mean buf, rows int, out buf) error {
	k := kCenterF32
	if x.U8 != nil {
		k = kCenterU8
	}
	total := rows * x.D
	blocks := min((total+255)/256, 65535*8)
	return b.dev.launch(k, [3]int{max(blocks, 1), 1, 1}, [3]int{256, 1, 1}, 0, raw, mean, rows, x.D, out)
}

const gemmTile = 16 // TILE in pca.cu

// MulRight implements embed.Backend: dst (N×l) = (X − 1·meanᵀ)·B.
func (b *Backend) MulRight(ctx context.Context, x embed.Data, mean []float32, m []float32, l int, dst []float32) error {
	if len(mean) != x.D || len(m) != x.D*l || len(dst) != x.N*l {
		return fmt.Errorf("gpu: mul right: sizes mean %d, B %d, dst %d for %d×%d and l = %d", len(mean), len(m), len(dst), x.N, x.D, l)
	}
	br := rowBlock(x.D)
	rows := min(br, x.N)
	held := b.heldFor(x)
	var raw, cen, dm, db, out buf
	defer b.dev.do(func() error {
		for _, p := range []*buf{&raw, &cen, &dm, &db, &out} {
			b.dev.free(p)
		}
		return nil
	})
	err := b.dev.do(func() (err error) {
		if raw, err = b.allocRaw(x, rows); err != nil {
			return err
		}
		if cen, err = b.dev.alloc(int64(rows) * int64(x.D) * 4); err != nil {
			return err
		}
		if dm, err = b.dev.alloc(int64(x.D) * 4); err != nil {
			return err
		}
		if db, err = b.dev.alloc(int64(x.D) * int64(l) * 4); err != nil {
			return err
		}
		if out, err = b.dev.alloc(int64(rows) * int64(l) * 4); err != nil {
			return err
		}
		if err := upload(b.dev, dm, mean); err != nil {
			return err
		}
		return upload(b.dev, db, m)
	})
	if err != nil {
		return err
	}
	for lo := 0; lo < x.N; lo += br {
		if err := ctx.Err(); err != nil {
			return err
		}
		hi := min(lo+br, x.N)
		err := b.dev.do(func() error {
			src, err := b.rows(x, held, lo, hi, raw)
			if err != nil {
				return err
			}
			if err := b.centre(x, src, dm, hi-lo, cen); err != nil {
				return err
			}
			grid := [3]int{(l + gemmTile - 1) / gemmTile, (hi - lo + gemmTile - 1) / gemmTile, 1}
			if err := b.dev.launch(kGemmNN, grid, [3]int{gemmTile, gemmTile, 1}, 0, cen, db, out, hi-lo, x.D, l); err != nil {
				return err
			}
			return download(b.dev, dst[lo*l:hi*l], out)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// MulTransLeft implements embed.Backend: dst (D×l) = (X − 1·meanᵀ)ᵀ·B.
func (b *Backend) MulTransLeft(ctx context.Context, x embed.Data, mean []float32, m []float32, l int, dst []float32) error {
	if len(mean) != x.D || len(m) != x.N*l || len(dst) != x.D*l {
		return fmt.Errorf("gpu: mul trans left: sizes mean %d, B %d, dst %d for %d×%d and l = %d", len(mean), len(m), len(dst), x.N, x.D, l)
	}
	br := rowBlock(x.D)
	rows := min(br, x.N)
	held := b.heldFor(x)
	var raw, cen, dm, db, acc, out buf
	defer b.dev.do(func() error {
		for _, p := range []*buf{&raw, &cen, &dm, &db, &acc, &out} {
			b.dev.free(p)
		}
		return nil
	})
	err := b.dev.do(func() (err error) {
		if raw, err = b.allocRaw(x, rows); err != nil {
			return err
		}
		if cen, err = b.dev.alloc(int64(rows) * int64(x.D) * 4); err != nil {
			return err
		}
		if dm, err = b.dev.alloc(int64(x.D) * 4); err != nil {
			return err
		}
		if db, err = b.dev.alloc(int64(rows) * int64(l) * 4); err != nil {
			return err
		}
		if acc, err = b.dev.alloc(int64(x.D) * int64(l) * 8); err != nil {
			return err
		}
		if out, err = b.dev.alloc(int64(x.D) * int64(l) * 4); err != nil {
			return err
		}
		if err := b.dev.zero(acc); err != nil {
			return err
		}
		return upload(b.dev, dm, mean)
	})
	if err != nil {
		return err
	}
	for lo := 0; lo < x.N; lo += br {
		if err := ctx.Err(); err != nil {
			return err
		}
		hi := min(lo+br, x.N)
		err := b.dev.do(func() error {
			src, err := b.rows(x, held, lo, hi, raw)
			if err != nil {
				return err
			}
			if err := upload(b.dev, db, m[lo*l:hi*l]); err != nil {
				return err
			}
			if err := b.centre(x, src, dm, hi-lo, cen); err != nil {
				return err
			}
			grid := [3]int{(l + gemmTile - 1) / gemmTile, (x.D + gemmTile - 1) / gemmTile, 1}
			return b.dev.launch(kGemmTNAcc, grid, [3]int{gemmTile, gemmTile, 1}, 0, cen, db, acc, hi-lo, x.D, l)
		})
		if err != nil {
			return err
		}
	}
	return b.dev.do(func() error {
		if err := b.dev.launch1D(kF64ToF32, x.D*l, 256, acc, out, x.D*l); err != nil {
			return err
		}
		return download(b.dev, dst, out)
	})
}

// knnWork is the number of distance terms (query × reference × dimension)
// one knn_scan launch covers: about 10 ms on a recent GPU, so cancellation
// is seen within that.
const knnWork = 1e11

// KNearest implements embed.Backend by exact search on the device for
// every n (the method argument is not needed: exact search of 10⁶ points
// in 50 dimensions is ~5·10¹³ multiply-adds, seconds on one GPU). The
// result's Method is NeighborsExact.
func (b *Backend) KNearest(ctx context.Context, x []float32, n, d, k int, method embed.NeighborMethod, seed int64) (*embed.Neighbors, error) {
	if n < 2 || k < 1 || k > n-1 || len(x) != n*d || d < 1 {
		return nil, fmt.Errorf("gpu: k nearest: %d points of %d values (%d given), k = %d", n, d, len(x), k)
	}
	var dx, bd, bi buf
	defer b.dev.do(func() error { b.dev.free(&dx); b.dev.free(&bd); b.dev.free(&bi); return nil })
	err := b.dev.do(func() (err error) {
		if dx, err = b.dev.alloc(int64(n) * int64(d) * 4); err != nil {
			return err
		}
		if bd, err = b.dev.alloc(int64(n) * int64(k) * 4); err != nil {
			return err
		}
		if bi, err = b.dev.alloc(int64(n) * int64(k) * 4); err != nil {
			return err
		}
		if err := upload(b.dev, dx, x); err != nil {
			return err
		}
		if err := b.dev.dr.memsetD32(bd.p, math.Float32bits(math.MaxFloat32), int64(n)*int64(k)); err != nil {
			return err
		}
		return b.dev.dr.memsetD32(bi.p, math.MaxUint32, int64(n)*int64(k))
	})
	if err != nil {
		return nil, err
	}
	chunk := int(min(float64(n), max(1024, knnWork/(float64(n)*float64(d)))))
	chunk = (chunk + 31) / 32 * 32
	blocks := (n + knnQueriesPerBlock - 1) / knnQueriesPerBlock
	for r0 := 0; r0 < n; r0 += chunk {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r1 := min(r0+chunk, n)
		err := b.dev.do(func() error {
			if err := b.dev.launch(kKNNScan, [3]int{blocks, 1, 1}, [3]int{knnQueriesPerBlock, 1, 1}, 0,
				dx, n, d, r0, r1, k, bd, bi); err != nil {
				return err
			}
			return b.dev.dr.synchronize()
		})
		if err != nil {
			return nil, err
		}
	}
	nb := &embed.Neighbors{N: n, K: k, Index: make([]int32, n*k), Dist2: make([]float32, n*k), Method: embed.NeighborsExact}
	err = b.dev.do(func() error {
		if err := download(b.dev, nb.Dist2, bd); err != nil {
			return err
		}
		return download(b.dev, nb.Index, bi)
	})
	if err != nil {
		return nil, err
	}
	return nb, nil
}

// Calibrate implements embed.AffinityBackend: the perplexity search of
// every point on the device (kernels/affinity.cu, the same safeguarded
// Newton iteration as the host's, in float64, to the same tolerance).
func (b *Backend) Calibrate(ctx context.Context, nb *embed.Neighbors, perplexity float64) ([]float64, error) {
	n, k := nb.N, nb.K
	if len(nb.Dist2) != n*k || k < 1 {
		return nil, fmt.Errorf("gpu: calibrate: %d distances for %d×%d", len(nb.Dist2), n, k)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cond := make([]float64, n*k)
	var dd, dc, dbeta buf
	defer b.dev.do(func() error { b.dev.free(&dd); b.dev.free(&dc); b.dev.free(&dbeta); return nil })
	err := b.dev.do(func() (err error) {
		if dd, err = b.dev.alloc(int64(n) * int64(k) * 4); err != nil {
			return err
		}
		if dc, err = b.dev.alloc(int64(n) * int64(k) * 8); err != nil {
			return err
		}
		if dbeta, err = b.dev.alloc(int64(n) * 8); err != nil {
			return err
		}
		if err := upload(b.dev, dd, nb.Dist2); err != nil {
			return err
		}
		if err := b.dev.launch1D(kCalibrateRows, n, 128, dd, n, k, math.Log(perplexity), embed.PerplexityTolerance, dc, dbeta); err != nil {
			return err
		}
		return download(b.dev, cond, dc)
	})
	if err != nil {
		return nil, err
	}
	return cond, nil
}
