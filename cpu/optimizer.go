package cpu

import (
	"context"
	"errors"

	"github.com/tsnemap/tsnemap/embed"
)

// TODO(optimizer): replaced by the real optimiser.
func newOptimizer(ctx context.Context, b *Backend, p *embed.CSR, y0 []float32, cfg embed.OptimizerConfig) (embed.Optimizer, error) {
	return nil, errors.New("cpu: newOptimizer not implemented")
}
