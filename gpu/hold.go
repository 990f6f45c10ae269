//go:build cuda

package gpu

import (
	"context"
	"fmt"
	"slices"
	"unsafe"

	"github.com/tsnemap/tsnemap/embed"
)

// heldData is an input kept on the device for the PCA passes (Hold).
type heldData struct {
	key dataKey
	buf buf
}

// dataKey identifies an input by its host memory: the PCA passes of one
// run read the same slice, and Hold's contract is that it does not change
// while held.
type dataKey struct {
	p    unsafe.Pointer
	n, d int
	u8   bool
}

func keyOf(x embed.Data) dataKey {
	k := dataKey{n: x.N, d: x.D, u8: x.U8 != nil}
	switch {
	case len(x.U8) > 0:
		k.p = unsafe.Pointer(&x.U8[0])
	case len(x.F32) > 0:
		k.p = unsafe.Pointer(&x.F32[0])
	}
	return k
}

// holdShare: Hold keeps an input only when it takes at most this share of
// the free device memory, leaving the rest to the passes' blocks and to
// other jobs on the same device.
const holdShare = 0.5

// Hold implements embed.DataHolder: it uploads x once, in blocks (checking
// ctx between them), so the six PCA passes read it from device memory
// instead of crossing the bus six times (70,000 images of 100×100 RGB:
// 2.1 GB once instead of 12.6 GB). It declines, with an error, when x would
// take more than half of the free device memory.
func (b *Backend) Hold(ctx context.Context, x embed.Data) (func(), error) {
	dev, derr := b.device()
	if derr != nil {
		return nil, derr
	}
	elem := int64(4)
	if x.U8 != nil {
		elem = 1
	}
	bytes := int64(x.N) * int64(x.D) * elem
	h := &heldData{key: keyOf(x)}
	if h.key.p == nil {
		return nil, fmt.Errorf("gpu: hold: empty input")
	}
	err := dev.do(func() (err error) {
		free, _, err := dev.dr.memInfo()
		if err != nil {
			return err
		}
		if float64(bytes) > holdShare*float64(free) {
			return fmt.Errorf("gpu: hold: the input takes %d bytes and %d are free; streaming it instead", bytes, free)
		}
		h.buf, err = dev.alloc(bytes)
		return err
	})
	if err != nil {
		return nil, err
	}
	release := func() { dev.do(func() error { dev.free(&h.buf); return nil }) }
	rows := max(1, (256<<20)/max(1, int(elem)*x.D))
	for lo := 0; lo < x.N; lo += rows {
		if err := ctx.Err(); err != nil {
			release()
			return nil, err
		}
		hi := min(lo+rows, x.N)
		err := dev.do(func() error {
			off := int64(lo) * int64(x.D) * elem
			if x.U8 != nil {
				return dev.dr.htod(h.buf.at(off), unsafe.Pointer(&x.U8[lo*x.D]), int64(hi-lo)*int64(x.D))
			}
			return dev.dr.htod(h.buf.at(off), unsafe.Pointer(&x.F32[lo*x.D]), int64(hi-lo)*int64(x.D)*4)
		})
		if err != nil {
			release()
			return nil, err
		}
	}
	b.mu.Lock()
	b.held = append(b.held, h)
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		b.held = slices.DeleteFunc(b.held, func(e *heldData) bool { return e == h })
		b.mu.Unlock()
		release()
	}, nil
}

// heldFor returns the device copy of x, if Hold made one.
func (b *Backend) heldFor(x embed.Data) *heldData {
	k := keyOf(x)
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, h := range b.held {
		if h.key == k {
			return h
		}
	}
	return nil
}

// rows returns the device address of rows [lo, hi) of x as stored: in the
// held copy when there is one, else uploaded into staging. It runs on the
// device thread.
func (b *Backend) rows(dev *device, x embed.Data, h *heldData, lo, hi int, staging buf) (devPtr, error) {
	if h != nil {
		elem := int64(4)
		if x.U8 != nil {
			elem = 1
		}
		return h.buf.at(int64(lo) * int64(x.D) * elem), nil
	}
	if err := b.uploadRows(dev, x, lo, hi, staging); err != nil {
		return 0, err
	}
	return staging.p, nil
}
