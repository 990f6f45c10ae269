package gpu

import (
	"context"
	"errors"
	"testing"
)

// TestProbe: a build without the cuda tag has no GPU backend, and Probe
// says so with ErrNoCUDA; a cuda build's tests run on a device (a GPU, or
// the emulated driver that TestMain builds), which Probe must describe.
func TestProbe(t *testing.T) {
	info, err := Probe(context.Background())
	if !cudaBuild {
		if !errors.Is(err, ErrNoCUDA) {
			t.Fatalf("probe without the cuda tag: %v, %v; want ErrNoCUDA", info, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	t.Logf("probe: %v", info)
	if info.Name == "" || info.Major*10+info.Minor < MinCapability || info.TotalMemory <= 0 || info.FreeMemory <= 0 {
		t.Errorf("probe picked %+v", info)
	}
}
