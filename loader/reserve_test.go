package loader

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestCheckAndReserveImages: CheckImages refuses at once, with the
// message LoadImages gives, what could never fit, and takes nothing;
// ReserveImages takes the memory until Release.
func TestCheckAndReserveImages(t *testing.T) {
	l, err := New(Config{MemoryBudget: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	opts := ImageOptions{Width: 8, Height: 8}
	per := int64(8*8*3 + RowOverhead)
	fits := int((4 << 20) * 3 / 4 / per)
	for _, tc := range []struct {
		n    int
		fail bool
	}{{1, false}, {fits, false}, {fits + 1, true}} {
		err := l.CheckImages(tc.n, opts)
		if got := err != nil; got != tc.fail {
			t.Errorf("CheckImages(%d) = %v, want failure %v", tc.n, err, tc.fail)
		}
		if tc.fail && (!errors.Is(err, ErrDatasetInvalid) || !strings.Contains(err.Error(), "set limit")) {
			t.Errorf("CheckImages(%d): %v", tc.n, err)
		}
		if l.MemoryInUse() != 0 {
			t.Fatalf("CheckImages took %d bytes", l.MemoryInUse())
		}
	}
	im, err := l.ReserveImages(context.Background(), 10, opts)
	if err != nil {
		t.Fatal(err)
	}
	if cap(im.Pix) != 10*192 || im.Len() != 0 || l.MemoryInUse() != 10*per {
		t.Errorf("reserved: cap %d, len %d, in use %d", cap(im.Pix), im.Len(), l.MemoryInUse())
	}
	im.Release()
	im.Release()
	if l.MemoryInUse() != 0 {
		t.Errorf("after Release: %d bytes in use", l.MemoryInUse())
	}
}
