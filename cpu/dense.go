package cpu

import (
	"context"
	"errors"

	"github.com/tsnemap/tsnemap/embed"
)

// TODO(dense): replaced by the real kernels.
func columnMeans(ctx context.Context, b *Backend, x embed.Data, dst []float64) error {
	return errors.New("cpu: columnMeans not implemented")
}
func mulRight(ctx context.Context, b *Backend, x embed.Data, mean, m []float32, l int, dst []float32) error {
	return errors.New("cpu: mulRight not implemented")
}
func mulTransLeft(ctx context.Context, b *Backend, x embed.Data, mean, m []float32, l int, dst []float32) error {
	return errors.New("cpu: mulTransLeft not implemented")
}
