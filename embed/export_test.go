package embed

import "context"

// PrincipalComponentsInBlocks exposes the PCA to the external tests with
// a RowSource read block rows at a time.
func PrincipalComponentsInBlocks(ctx context.Context, be Backend, x Data, k int, seed int64, block int) (*PCA, error) {
	return principalComponentsIn(ctx, passes{be: be, block: block}, x, k, seed)
}

// UnitView exposes how a cosine run sees its data.
var UnitView = unitView
