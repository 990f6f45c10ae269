//go:build cuda

package gpu

import (
	"errors"
	"strings"
	"testing"

	"github.com/tsnemap/tsnemap/embed"
)

// TestReserveHoldsMemory (defect 5): a run admitted by Reserve holds its
// estimate until released, so a second run that fits the free memory
// alone but not beside the first is refused (Fits and Reserve alike),
// and admitted once the first releases.
func TestReserveHoldsMemory(t *testing.T) {
	b := testBackend(t)
	dev, err := b.device()
	if err != nil {
		t.Fatal(err)
	}
	var free int64
	if err := dev.do(func() (err error) { free, _, err = dev.dr.memInfo(); return err }); err != nil {
		t.Fatal(err)
	}
	// A problem needing (with the reserve) between 55 % and 95 % of the
	// free memory: one fits, two do not.
	p := Problem{N: 1000, D: 50, Components: 50, K: 90, Dims: 2, Repulsion: embed.RepulsionAuto}
	for deviceBytes(p)+memoryReserve < free*55/100 {
		p.N += p.N/10 + 1
	}
	if need := deviceBytes(p) + memoryReserve; need > free*95/100 {
		t.Fatalf("no problem size between 55 %% and 95 %% of %d free bytes (%d needs %d)", free, p.N, need)
	}
	release, err := b.Reserve(p)
	if err != nil {
		t.Fatalf("first run: %v", err)
	}
	if err := b.Fits(p); !errors.Is(err, ErrDoesNotFit) || !strings.Contains(err.Error(), "reserved by runs in progress") {
		t.Errorf("Fits beside a reservation: %v", err)
	}
	if _, err := b.Reserve(p); !errors.Is(err, ErrDoesNotFit) {
		t.Errorf("second reservation: %v", err)
	}
	release()
	release() // a second call does nothing
	again, err := b.Reserve(p)
	if err != nil {
		t.Fatalf("after the release: %v", err)
	}
	again()
}
