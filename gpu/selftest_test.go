package gpu

import (
	"context"
	"testing"

	"github.com/tsnemap/tsnemap/cpu"
	"github.com/tsnemap/tsnemap/embed"
)

// TestSelfTestOnCPU checks the self-test's host references against the
// CPU backend, which defines the semantics the GPU must match: if the CPU
// passes it, a GPU that fails it differs from the CPU.
func TestSelfTestOnCPU(t *testing.T) {
	if err := selfTest(context.Background(), cpu.New(2)); err != nil {
		t.Fatal(err)
	}
}

// wrongIndices is the CPU backend with a neighbour search whose indices
// are wrong (two swapped in one row) while its distances are right.
type wrongIndices struct{ embed.Backend }

func (w wrongIndices) KNearest(ctx context.Context, x []float32, n, d, k int, m embed.NeighborMethod, seed int64) (*embed.Neighbors, error) {
	nb, err := w.Backend.KNearest(ctx, x, n, d, k, m, seed)
	if err == nil {
		nb.Index[5*k], nb.Index[5*k+k-1] = nb.Index[5*k+k-1], nb.Index[5*k]
	}
	return nb, err
}

// wrongFFT is the CPU backend whose FFT repulsion is broken: its steps
// move points by the wrong forces (here, twice the exaggeration).
type wrongFFT struct{ embed.Backend }

func (w wrongFFT) NewOptimizer(ctx context.Context, p *embed.CSR, y0 []float32, cfg embed.OptimizerConfig) (embed.Optimizer, error) {
	o, err := w.Backend.NewOptimizer(ctx, p, y0, cfg)
	if err != nil || cfg.Repulsion != embed.RepulsionFFT {
		return o, err
	}
	return doubled{o}, nil
}

type doubled struct{ embed.Optimizer }

func (d doubled) Step(ctx context.Context, p embed.StepParams) error {
	p.Exaggeration *= 2
	return d.Optimizer.Step(ctx, p)
}

// TestSelfTestRefusesBrokenBackends: the self-test checks the neighbours'
// indices, not only their distances, and runs the FFT repulsion: a backend
// wrong in either is refused.
func TestSelfTestRefusesBrokenBackends(t *testing.T) {
	for _, b := range []embed.Backend{wrongIndices{cpu.New(2)}, wrongFFT{cpu.New(2)}} {
		if err := selfTest(context.Background(), b); err == nil {
			t.Errorf("%T passed the self-test", b)
		} else {
			t.Logf("%T: %v", b, err)
		}
	}
}
