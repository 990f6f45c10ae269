package cpu

import (
	"context"
	"errors"

	"github.com/tsnemap/tsnemap/embed"
)

// TODO(knn): replaced by the real search.
func kNearest(ctx context.Context, b *Backend, x []float32, n, d, k int, method embed.NeighborMethod, seed int64) (*embed.Neighbors, error) {
	return nil, errors.New("cpu: kNearest not implemented")
}
