//go:build cuda

package gpu

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/tsnemap/tsnemap/embed"
)

// Backend runs every kernel of a run on one CUDA device. It is safe for
// use by one run at a time per method call; calls are serialised on the
// device's thread. When the device's context is lost (a sticky CUDA error
// or a panic in device work: ErrDeviceLost), the call that saw it fails and
// the next call reopens the device, self-test included; if that fails the
// backend reports it from every call, Fits too (so auto jobs go to the
// CPU) and from Health.
type Backend struct {
	mu     sync.Mutex
	dev    *device     // the open device; replaced when its context is lost
	held   []*heldData // inputs Hold keeps on the device
	closed bool
	resets int   // devices reopened after a loss
	broken error // why the device could not be reopened (nil: usable)
	once   sync.Once

	rmu      sync.Mutex // orders Reserve's check-and-hold
	reserved int64      // device bytes held by runs admitted by Reserve
	idleFree int64      // free device memory when no reservation was held
}

var (
	_ embed.Backend         = (*Backend)(nil)
	_ embed.AffinityBackend = (*Backend)(nil)
	_ embed.DataHolder      = (*Backend)(nil)
)

// openTimeout bounds New's wait for the device, the JIT compilation of the
// kernels and the self-test when its context has no deadline.
const openTimeout = 2 * time.Minute

// New opens the device Probe would pick, loads the kernels and runs the
// self-test (selftest.go). ctx bounds the wait (the first JIT compilation
// of the PTX takes a second or two; the driver caches it afterwards).
func New(ctx context.Context) (*Backend, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d, err := openChecked(ctx)
	if err != nil {
		return nil, err
	}
	return &Backend{dev: d}, nil
}

// openChecked opens a device and runs the self-test on it.
func openChecked(ctx context.Context) (*device, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, openTimeout)
		defer cancel()
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
		if err := selfTest(ctx, &Backend{dev: r.d}); err != nil {
			r.d.close()
			return nil, fmt.Errorf("gpu: %s failed the self-test: %w", r.d.info.Name, err)
		}
		return r.d, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.d != nil {
				r.d.close()
			}
		}()
		return nil, fmt.Errorf("gpu: open the device: %w", ctx.Err())
	}
}

// device returns the open device, reopening it (with the self-test) when
// its context was lost. Every method takes the device once, at its start.
func (b *Backend) device() (*device, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errors.New("gpu: the backend is closed")
	}
	if b.broken != nil {
		return nil, b.broken
	}
	lost := b.dev.lostErr()
	if lost == nil {
		return b.dev, nil
	}
	b.dev.close()
	b.held = nil // the buffers went with the context
	d, err := openChecked(context.Background())
	if err != nil {
		b.broken = fmt.Errorf("gpu: %w, and reopening the device failed: %w (after: %w)", ErrDeviceLost, err, lost)
		return nil, b.broken
	}
	b.dev = d
	b.resets++
	return d, nil
}

// Health is nil while the backend can run work, else why not: the device
// was lost and could not be reopened, or its context was lost and the
// next call will reopen it (the error wraps ErrDeviceLost either way).
// Resets is how many times a lost device was reopened. Both are for
// /readyz and metrics.
func (b *Backend) Health() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.broken != nil || b.closed {
		return b.broken
	}
	return b.dev.lostErr()
}

// Resets is the number of times the device was reopened after its context
// was lost.
func (b *Backend) Resets() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.resets
}

// Info describes the device in use (free memory as at New).
func (b *Backend) Info() Info {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dev.info
}

// Name implements embed.Backend.
func (b *Backend) Name() string {
	info := b.Info()
	return fmt.Sprintf("gpu (%s, %d.%d, %.0f GiB)", info.Name, info.Major, info.Minor,
		float64(info.TotalMemory)/(1<<30))
}

// Close releases the device. It is safe to call more than once, and
// concurrently.
func (b *Backend) Close() error {
	b.once.Do(func() {
		b.mu.Lock()
		b.closed = true
		d := b.dev
		b.mu.Unlock()
		d.close()
	})
	return nil
}

// rowBlock is how many input rows one PCA block holds: ≤ 256 MB as float32
// and at most 8192 rows.
func rowBlock(d int) int {
	return max(64, min(8192, (256<<20)/(4*max(d, 1))))
}

// uploadRows copies rows [lo, hi) of x into raw (as stored) on the device.
func (b *Backend) uploadRows(dev *device, x embed.Data, lo, hi int, raw buf) error {
	if x.U8 != nil {
		return upload(dev, raw, x.U8[lo*x.D:hi*x.D])
	}
	return upload(dev, raw, x.F32[lo*x.D:hi*x.D])
}

// allocRaw is a device buffer for one block of x as stored.
func (b *Backend) allocRaw(dev *device, x embed.Data, rows int) (buf, error) {
	elem := int64(4)
	if x.U8 != nil {
		elem = 1
	}
	return dev.alloc(int64(rows) * int64(x.D) * elem)
}

// ColumnMeans implements embed.Backend.
func (b *Backend) ColumnMeans(ctx context.Context, x embed.Data, dst []float64) error {
	dev, derr := b.device()
	if derr != nil {
		return derr
	}
	if len(dst) != x.D {
		return fmt.Errorf("gpu: column means: dst has %d values, want %d", len(dst), x.D)
	}
	br := rowBlock(x.D)
	held := b.heldFor(x)
	var raw, sums buf
	defer dev.do(func() error { dev.free(&raw); dev.free(&sums); return nil })
	err := dev.do(func() (err error) {
		if raw, err = b.allocRaw(dev, x, min(br, x.N)); err != nil {
			return err
		}
		if sums, err = dev.alloc(int64(x.D) * 8); err != nil {
			return err
		}
		return dev.zero(sums)
	})
	if err != nil {
		return err
	}
	for lo := 0; lo < x.N; lo += br {
		if err := ctx.Err(); err != nil {
			return err
		}
		hi := min(lo+br, x.N)
		err := dev.do(func() error {
			src, err := b.rows(dev, x, held, lo, hi, raw)
			if err != nil {
				return err
			}
			k := kColsumF32
			if x.U8 != nil {
				k = kColsumU8
			}
			return dev.launch1D(k, x.D, 128, src, hi-lo, x.D, sums)
		})
		if err != nil {
			return err
		}
	}
	return dev.do(func() error {
		if err := download(dev, dst, sums); err != nil {
			return err
		}
		for c := range dst {
			dst[c] /= float64(x.N)
		}
		return nil
	})
}

// centre launches the conversion of one raw block into centred float32.
func (b *Backend) centre(dev *device, x embed.Data, raw devPtr, mean buf, rows int, out buf) error {
	k := kCenterF32
	if x.U8 != nil {
		k = kCenterU8
	}
	total := rows * x.D
	blocks := min((total+255)/256, 65535*8)
	return dev.launch(k, [3]int{max(blocks, 1), 1, 1}, [3]int{256, 1, 1}, 0, raw, mean, rows, x.D, out)
}

// MulRight implements embed.Backend: dst (N×l) = (X − 1·meanᵀ)·B.
func (b *Backend) MulRight(ctx context.Context, x embed.Data, mean []float32, m []float32, l int, dst []float32) error {
	dev, derr := b.device()
	if derr != nil {
		return derr
	}
	if len(mean) != x.D || len(m) != x.D*l || len(dst) != x.N*l {
		return fmt.Errorf("gpu: mul right: sizes mean %d, B %d, dst %d for %d×%d and l = %d", len(mean), len(m), len(dst), x.N, x.D, l)
	}
	br := rowBlock(x.D)
	rows := min(br, x.N)
	held := b.heldFor(x)
	var raw, cen, dm, db, out buf
	defer dev.do(func() error {
		for _, p := range []*buf{&raw, &cen, &dm, &db, &out} {
			dev.free(p)
		}
		return nil
	})
	err := dev.do(func() (err error) {
		if raw, err = b.allocRaw(dev, x, rows); err != nil {
			return err
		}
		if cen, err = dev.alloc(int64(rows) * int64(x.D) * 4); err != nil {
			return err
		}
		if dm, err = dev.alloc(int64(x.D) * 4); err != nil {
			return err
		}
		if db, err = dev.alloc(int64(x.D) * int64(l) * 4); err != nil {
			return err
		}
		if out, err = dev.alloc(int64(rows) * int64(l) * 4); err != nil {
			return err
		}
		if err := upload(dev, dm, mean); err != nil {
			return err
		}
		return upload(dev, db, m)
	})
	if err != nil {
		return err
	}
	for lo := 0; lo < x.N; lo += br {
		if err := ctx.Err(); err != nil {
			return err
		}
		hi := min(lo+br, x.N)
		err := dev.do(func() error {
			src, err := b.rows(dev, x, held, lo, hi, raw)
			if err != nil {
				return err
			}
			if err := b.centre(dev, x, src, dm, hi-lo, cen); err != nil {
				return err
			}
			grid := [3]int{(l + gemmTile - 1) / gemmTile, (hi - lo + gemmTile - 1) / gemmTile, 1}
			if err := dev.launch(kGemmNN, grid, [3]int{gemmTile, gemmTile, 1}, 0, cen, db, out, hi-lo, x.D, l); err != nil {
				return err
			}
			return download(dev, dst[lo*l:hi*l], out)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// MulTransLeft implements embed.Backend: dst (D×l) = (X − 1·meanᵀ)ᵀ·B.
func (b *Backend) MulTransLeft(ctx context.Context, x embed.Data, mean []float32, m []float32, l int, dst []float32) error {
	dev, derr := b.device()
	if derr != nil {
		return derr
	}
	if len(mean) != x.D || len(m) != x.N*l || len(dst) != x.D*l {
		return fmt.Errorf("gpu: mul trans left: sizes mean %d, B %d, dst %d for %d×%d and l = %d", len(mean), len(m), len(dst), x.N, x.D, l)
	}
	br := rowBlock(x.D)
	rows := min(br, x.N)
	held := b.heldFor(x)
	var raw, cen, dm, db, acc, out buf
	defer dev.do(func() error {
		for _, p := range []*buf{&raw, &cen, &dm, &db, &acc, &out} {
			dev.free(p)
		}
		return nil
	})
	err := dev.do(func() (err error) {
		if raw, err = b.allocRaw(dev, x, rows); err != nil {
			return err
		}
		if cen, err = dev.alloc(int64(rows) * int64(x.D) * 4); err != nil {
			return err
		}
		if dm, err = dev.alloc(int64(x.D) * 4); err != nil {
			return err
		}
		if db, err = dev.alloc(int64(rows) * int64(l) * 4); err != nil {
			return err
		}
		if acc, err = dev.alloc(int64(x.D) * int64(l) * 8); err != nil {
			return err
		}
		if out, err = dev.alloc(int64(x.D) * int64(l) * 4); err != nil {
			return err
		}
		if err := dev.zero(acc); err != nil {
			return err
		}
		return upload(dev, dm, mean)
	})
	if err != nil {
		return err
	}
	for lo := 0; lo < x.N; lo += br {
		if err := ctx.Err(); err != nil {
			return err
		}
		hi := min(lo+br, x.N)
		err := dev.do(func() error {
			src, err := b.rows(dev, x, held, lo, hi, raw)
			if err != nil {
				return err
			}
			if err := upload(dev, db, m[lo*l:hi*l]); err != nil {
				return err
			}
			if err := b.centre(dev, x, src, dm, hi-lo, cen); err != nil {
				return err
			}
			grid := [3]int{(l + gemmTile - 1) / gemmTile, (x.D + gemmTile - 1) / gemmTile, 1}
			return dev.launch(kGemmTNAcc, grid, [3]int{gemmTile, gemmTile, 1}, 0, cen, db, acc, hi-lo, x.D, l)
		})
		if err != nil {
			return err
		}
	}
	return dev.do(func() error {
		if err := dev.launch1D(kF64ToF32, x.D*l, 256, acc, out, x.D*l); err != nil {
			return err
		}
		return download(dev, dst, out)
	})
}

// knnWork is the number of distance terms (query × reference × dimension)
// one knn_scan launch covers on a device of knnWorkSMs multiprocessors
// (scaled by the device's count): about 10 ms on a recent GPU, so
// cancellation is seen within that.
const (
	knnWork    = 1e11
	knnWorkSMs = 132 // an H100's
)

// KNearest implements embed.Backend by exact search on the device for
// every n (the method argument is not needed: exact search of 10⁶ points
// in 50 dimensions is ~5·10¹³ multiply-adds, seconds on one GPU). The
// result's Method is NeighborsExact.
func (b *Backend) KNearest(ctx context.Context, x []float32, n, d, k int, method embed.NeighborMethod, seed int64) (*embed.Neighbors, error) {
	dev, derr := b.device()
	if derr != nil {
		return nil, derr
	}
	if n < 2 || k < 1 || k > n-1 || len(x) != n*d || d < 1 {
		return nil, fmt.Errorf("gpu: k nearest: %d points of %d values (%d given), k = %d", n, d, len(x), k)
	}
	var dx, bd, bi buf
	defer dev.do(func() error { dev.free(&dx); dev.free(&bd); dev.free(&bi); return nil })
	err := dev.do(func() (err error) {
		if dx, err = dev.alloc(int64(n) * int64(d) * 4); err != nil {
			return err
		}
		if bd, err = dev.alloc(int64(n) * int64(k) * 4); err != nil {
			return err
		}
		if bi, err = dev.alloc(int64(n) * int64(k) * 4); err != nil {
			return err
		}
		if err := upload(dev, dx, x); err != nil {
			return err
		}
		if err := dev.dr.memsetD32(bd.p, math.Float32bits(math.MaxFloat32), int64(n)*int64(k)); err != nil {
			return err
		}
		return dev.dr.memsetD32(bi.p, math.MaxUint32, int64(n)*int64(k))
	})
	if err != nil {
		return nil, err
	}
	work := knnWork * float64(max(1, dev.info.Multiprocessors)) / knnWorkSMs
	chunk := int(min(float64(n), max(1024, work/(float64(n)*float64(d)))))
	chunk = (chunk + 31) / 32 * 32
	blocks := (n + knnQueriesPerBlock - 1) / knnQueriesPerBlock
	for r0 := 0; r0 < n; r0 += chunk {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r1 := min(r0+chunk, n)
		err := dev.do(func() error {
			if err := dev.launch(kKNNScan, [3]int{blocks, 1, 1}, [3]int{knnQueriesPerBlock, 1, 1}, 0,
				dx, n, d, r0, r1, k, bd, bi); err != nil {
				return err
			}
			return dev.dr.synchronize()
		})
		if err != nil {
			return nil, err
		}
	}
	nb := &embed.Neighbors{N: n, K: k, Index: make([]int32, n*k), Dist2: make([]float32, n*k), Method: embed.NeighborsExact}
	err = dev.do(func() error {
		if err := download(dev, nb.Dist2, bd); err != nil {
			return err
		}
		return download(dev, nb.Index, bi)
	})
	if err != nil {
		return nil, err
	}
	// A row whose distances are NaN or Inf (NaN or huge features) keeps
	// fewer than k neighbours: the rest of its list is still index −1.
	for i, j := range nb.Index {
		if j < 0 || int(j) >= n {
			return nil, fmt.Errorf("gpu: k nearest: point %d has fewer than %d neighbours at a finite distance (NaN or infinite values in its row?)", i/k, k)
		}
	}
	return nb, nil
}

// Calibrate implements embed.AffinityBackend: the perplexity search of
// every point on the device (kernels/affinity.cu, the same safeguarded
// Newton iteration as the host's, in float64, to the same tolerance).
func (b *Backend) Calibrate(ctx context.Context, nb *embed.Neighbors, perplexity float64) ([]float64, error) {
	dev, derr := b.device()
	if derr != nil {
		return nil, derr
	}
	n, k := nb.N, nb.K
	if len(nb.Dist2) != n*k || k < 1 {
		return nil, fmt.Errorf("gpu: calibrate: %d distances for %d×%d", len(nb.Dist2), n, k)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cond := make([]float64, n*k)
	var dd, dc, dbeta buf
	defer dev.do(func() error { dev.free(&dd); dev.free(&dc); dev.free(&dbeta); return nil })
	err := dev.do(func() (err error) {
		if dd, err = dev.alloc(int64(n) * int64(k) * 4); err != nil {
			return err
		}
		if dc, err = dev.alloc(int64(n) * int64(k) * 8); err != nil {
			return err
		}
		if dbeta, err = dev.alloc(int64(n) * 8); err != nil {
			return err
		}
		if err := upload(dev, dd, nb.Dist2); err != nil {
			return err
		}
		if err := dev.launch1D(kCalibrateRows, n, 128, dd, n, k, math.Log(perplexity), embed.PerplexityTolerance, dc, dbeta); err != nil {
			return err
		}
		return download(dev, cond, dc)
	})
	if err != nil {
		return nil, err
	}
	return cond, nil
}
