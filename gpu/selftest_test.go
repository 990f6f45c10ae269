package gpu

import (
	"context"
	"testing"

	"github.com/tsnemap/tsnemap/cpu"
)

// TestSelfTestOnCPU checks the self-test's host references against the
// CPU backend, which defines the semantics the GPU must match: if the CPU
// passes it, a GPU that fails it differs from the CPU.
func TestSelfTestOnCPU(t *testing.T) {
	if err := selfTest(context.Background(), cpu.New(2)); err != nil {
		t.Fatal(err)
	}
}
