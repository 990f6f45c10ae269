package cpu

import (
	"context"
	"errors"

	"github.com/tsnemap/tsnemap/embed"
)

// TODO(knn-approx): replaced by random-projection trees + NN-descent.
func approxNeighbors(ctx context.Context, b *Backend, x []float32, n, d, k int, seed int64) (*embed.Neighbors, error) {
	return nil, errors.New("cpu: approximate neighbours not implemented")
}
