//go:build !cuda

package gpu

import (
	"context"
	"fmt"

	"github.com/tsnemap/tsnemap/embed"
)

// Probe reports that this build has no GPU backend.
func Probe(ctx context.Context) (Info, error) {
	return Info{}, fmt.Errorf("gpu: %w (rebuild with -tags cuda)", ErrNoCUDA)
}

// Backend is the CUDA backend; in this build it cannot be created.
type Backend struct{ embed.Backend }

// New fails: this build has no GPU backend.
func New(ctx context.Context) (*Backend, error) {
	return nil, fmt.Errorf("gpu: %w (build with -tags cuda)", ErrNoCUDA)
}

// Info is never reached in this build.
func (b *Backend) Info() Info { return Info{} }

// Fits reports that nothing fits a GPU this build cannot use.
func (b *Backend) Fits(p Problem) error { return fmt.Errorf("gpu: %w", ErrNoCUDA) }

// Reserve reports that nothing fits a GPU this build cannot use.
func (b *Backend) Reserve(p Problem) (func(), error) { return nil, fmt.Errorf("gpu: %w", ErrNoCUDA) }

// Close does nothing.
func (b *Backend) Close() error { return nil }
