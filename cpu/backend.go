package cpu

import (
	"context"
	"fmt"
	"runtime"

	"github.com/tsnemap/tsnemap/embed"
)

// Backend runs the kernels on the CPU with a fixed number of threads. Results
// are deterministic for a given thread count: work is split into chunks whose
// bounds depend only on the problem size and the thread count, and partial
// sums are combined in chunk order.
type Backend struct {
	threads int
}

var _ embed.Backend = (*Backend)(nil)

// New returns a backend using threads goroutines; threads ≤ 0 means
// GOMAXPROCS.
func New(threads int) *Backend {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	return &Backend{threads: threads}
}

// Threads is the number of goroutines the kernels use.
func (b *Backend) Threads() int { return b.threads }

// Name implements embed.Backend.
func (b *Backend) Name() string {
	if b.threads == 1 {
		return "cpu (1 thread)"
	}
	return fmt.Sprintf("cpu (%d threads)", b.threads)
}

// ColumnMeans implements embed.Backend.
func (b *Backend) ColumnMeans(ctx context.Context, x embed.Data, dst []float64) error {
	return columnMeans(ctx, b, x, dst)
}

// MulRight implements embed.Backend.
func (b *Backend) MulRight(ctx context.Context, x embed.Data, mean, m []float32, l int, dst []float32) error {
	return mulRight(ctx, b, x, mean, m, l, dst)
}

// MulTransLeft implements embed.Backend.
func (b *Backend) MulTransLeft(ctx context.Context, x embed.Data, mean, m []float32, l int, dst []float32) error {
	return mulTransLeft(ctx, b, x, mean, m, l, dst)
}

// KNearest implements embed.Backend.
func (b *Backend) KNearest(ctx context.Context, x []float32, n, d, k int, method embed.NeighborMethod, seed int64) (*embed.Neighbors, error) {
	return kNearest(ctx, b, x, n, d, k, method, seed)
}

// NewOptimizer implements embed.Backend.
func (b *Backend) NewOptimizer(ctx context.Context, p *embed.CSR, y0 []float32, cfg embed.OptimizerConfig) (embed.Optimizer, error) {
	return newOptimizer(ctx, b, p, y0, cfg)
}
