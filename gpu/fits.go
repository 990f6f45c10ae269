//go:build cuda

package gpu

import (
	"fmt"
	"sync"

	"github.com/tsnemap/tsnemap/embed"
)

// memoryReserve is kept free beyond the estimate: the context, the JIT'd
// modules and the allocator's rounding (a few hundred MB on recent GPUs).
const memoryReserve = 512 << 20

// maxColumns is the widest input the PCA kernels take: gemm_tn_acc's grid
// has a row of blocks per gemmTile columns, and a grid's y extent is at
// most 65,535.
const maxColumns = 65535 * gemmTile

// deviceBytes estimates the peak device memory of a run. Stages free their
// buffers before the next starts, so the peak is the largest stage.
func deviceBytes(p Problem) int64 {
	n, d, c, k, dims := int64(p.N), int64(p.D), int64(p.Components), int64(p.K), int64(p.Dims)
	l := c + 10 // the randomized SVD's oversampled width (embed/pca.go)
	rows := int64(rowBlock(p.D))
	elem := int64(4)
	if p.U8 {
		elem = 1
	}
	pca := rows*d*elem + rows*d*4 + d*4 + max(d*l*4, rows*l*4) + d*l*12
	if k == 0 {
		return pca
	}
	knn := n*c*4 + n*k*8
	calib := n*k*4 + n*k*8 + n*8
	nnz := 2 * n * k
	opt := (n+1)*4 + nnz*8 + 5*n*dims*4 + 64
	peak := max(pca, knn, calib, opt)
	if p.Repulsion != "" {
		if m, err := resolveRepulsion(p.Repulsion, p.N, p.Dims); err == nil && m == embed.RepulsionFFT {
			peak = max(peak, opt+fftDeviceBytes(p.N))
		}
	}
	return peak
}

// Fits reports whether a run of size p can run on this backend's device
// now: a repulsion method exists for it (see resolveRepulsion) and its
// peak memory, plus a reserve, is below the device memory not yet taken
// or reserved (see Reserve). The error wraps ErrDoesNotFit and says what
// is missing, or ErrDeviceLost when the device is unusable.
func (b *Backend) Fits(p Problem) error {
	release, err := b.Reserve(p)
	if err != nil {
		return err
	}
	release()
	return nil
}

// Reserve is Fits that also holds the run's estimated device memory until
// release is called (once the run ends): the check and the hold are one
// step, so two runs admitted at once (a worker with concurrency above 1)
// cannot both count on the same free memory. A run fits when its estimate
// plus the reserve is at most the free memory now, and at most the free
// memory when no reservation was held less what is reserved (runs still
// allocating their buffers have not yet taken all they will).
func (b *Backend) Reserve(p Problem) (release func(), err error) {
	dev, derr := b.device()
	if derr != nil {
		return nil, derr
	}
	if err := checkShape(p); err != nil {
		return nil, err
	}
	b.rmu.Lock()
	defer b.rmu.Unlock()
	var free int64
	if err := dev.do(func() (err error) {
		free, _, err = dev.dr.memInfo()
		return err
	}); err != nil {
		return nil, fmt.Errorf("gpu: free memory: %w", err)
	}
	if b.reserved == 0 {
		b.idleFree = free
	}
	avail := min(free, b.idleFree-b.reserved)
	need := deviceBytes(p) + memoryReserve
	if need > avail {
		held := ""
		if b.reserved > 0 {
			held = fmt.Sprintf(" (%.1f GiB reserved by runs in progress)", float64(b.reserved)/(1<<30))
		}
		return nil, fmt.Errorf("gpu: %w: %d×%d needs about %.1f GiB of device memory, %s has %.1f GiB available%s",
			ErrDoesNotFit, p.N, p.D, float64(need)/(1<<30), dev.info.Name, float64(max(avail, 0))/(1<<30), held)
	}
	b.reserved += need
	var once sync.Once
	return func() {
		once.Do(func() {
			b.rmu.Lock()
			b.reserved -= need
			b.rmu.Unlock()
		})
	}, nil
}

// checkShape reports a problem the kernels cannot run whatever the memory.
func checkShape(p Problem) error {
	if p.N < 2 || (p.K > 0 && (p.Dims < 2 || p.Dims > 3)) {
		return fmt.Errorf("gpu: %w: %d points in %d dimensions", ErrDoesNotFit, p.N, p.Dims)
	}
	if p.D > maxColumns {
		return fmt.Errorf("gpu: %w: %d input columns; the GPU's PCA (gemm_tn_acc, a grid row per 16 columns) handles at most %d",
			ErrDoesNotFit, p.D, maxColumns)
	}
	if p.K > 0 { // a t-SNE run (K = 0: PCA only, no optimiser)
		req := p.Repulsion
		if req == "" {
			req = embed.RepulsionAuto
		}
		if _, err := resolveRepulsion(req, p.N, p.Dims); err != nil {
			return fmt.Errorf("gpu: %w", err)
		}
	}
	return nil
}
