package gpu

import (
	"errors"
	"testing"
)

// TestProbe prints what start-up would log: the device, or why there is
// none. Without a usable device it checks the reason is an error of the
// documented kinds.
func TestProbe(t *testing.T) {
	info, err := Probe()
	if err != nil {
		if !errors.Is(err, ErrNoCUDA) && !errors.Is(err, ErrNoDevice) {
			t.Logf("probe failed with a driver error (not ErrNoCUDA/ErrNoDevice): %v", err)
		}
		t.Skipf("no GPU: %v", err)
	}
	t.Logf("probe: %v", info)
	if info.Name == "" || info.Major*10+info.Minor < MinCapability || info.TotalMemory <= 0 || info.FreeMemory <= 0 {
		t.Errorf("probe picked %+v", info)
	}
}
