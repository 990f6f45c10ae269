//go:build cuda

package gpu

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/tsnemap/tsnemap/embed"
	"github.com/tsnemap/tsnemap/internal/synth"
	"github.com/tsnemap/tsnemap/internal/testkit"
)

// emuPTX declares the emulator's test kernels (testdata/cudaemu/
// kern_probe.cpp) as a PTX module: the emulated driver reads the entries'
// names and parameters from it and runs their compiled twins. A real
// driver would reject it (no instructions), so these tests run only on the
// emulator.
const emuPTX = `.version 7.8
.target sm_70
.address_size 64
.visible .entry emu_copy(.param .u64 p0, .param .u64 p1, .param .u32 p2) { ret; }
.visible .entry emu_warp_sum(.param .u64 p0) { ret; }
.visible .entry emu_diverge(.param .u64 p0) { ret; }
`

// emuBackend opens a backend on the emulated driver, or skips: these
// tests check the emulator itself.
func emuBackend(t *testing.T) *Backend {
	t.Helper()
	b := testBackend(t)
	if !emulated(b) {
		t.Skip("the emulator's own checks: this run uses a GPU")
	}
	return b
}

// emuLaunch loads the test module and launches entry on the device
// thread: alloc sizes the float32 buffers, args builds the parameters
// from them.
func emuLaunch(b *Backend, entry string, grid, block [3]int, sizes []int, args func(bufs []buf) []uint64) ([][]float32, error) {
	var out [][]float32
	err := b.dev.do(func() error {
		m, err := b.dev.dr.loadModule("emu", append([]byte(emuPTX), 0))
		if err != nil {
			return err
		}
		defer b.dev.dr.unloadModule(m)
		f, err := b.dev.dr.function(m, entry)
		if err != nil {
			return err
		}
		bufs := make([]buf, len(sizes))
		for i, n := range sizes {
			if bufs[i], err = b.dev.alloc(int64(4 * n)); err != nil {
				return err
			}
			if err := b.dev.zero(bufs[i]); err != nil {
				return err
			}
		}
		if err := b.dev.dr.launch(entry, f, grid, block, 0, args(bufs)); err != nil {
			return err
		}
		for i, n := range sizes {
			v := make([]float32, n)
			if err := download(b.dev, v, bufs[i]); err != nil {
				return err
			}
			out = append(out, v)
			b.dev.free(&bufs[i])
		}
		return nil
	})
	return out, err
}

// TestEmulatorRunsLaunches: a correct launch of each test kernel works.
func TestEmulatorRunsLaunches(t *testing.T) {
	b := emuBackend(t)
	out, err := emuLaunch(b, "emu_warp_sum", [3]int{3, 1, 1}, [3]int{64, 1, 1}, []int{3}, func(bs []buf) []uint64 {
		return []uint64{uint64(bs[0].p)}
	})
	if err != nil {
		t.Fatal(err)
	}
	for blk, v := range out[0] {
		if v != 496 { // 0 + 1 + … + 31, by shuffles
			t.Errorf("block %d: warp sum %v, want 496", blk, v)
		}
	}
	if _, err := emuLaunch(b, "emu_copy", [3]int{1, 1, 1}, [3]int{128, 1, 1}, []int{100, 100}, func(bs []buf) []uint64 {
		return []uint64{uint64(bs[0].p), uint64(bs[1].p), 100}
	}); err != nil {
		t.Fatal(err)
	}
}

// TestEmulatorCatchesBrokenLaunches: launches a GPU would punish (or
// silently get wrong) fail, with the kernel, the buffer and the element
// named, and leave the context unusable like a GPU's sticky errors; the
// backend then reopens the device.
func TestEmulatorCatchesBrokenLaunches(t *testing.T) {
	host := make([]float32, 100)
	cases := []struct {
		name   string
		entry  string
		block  int
		sizes  []int
		args   func(bs []buf) []uint64
		code   int
		detail []string
	}{
		{"out of bounds", "emu_copy", 128, []int{100, 100}, func(bs []buf) []uint64 {
			return []uint64{uint64(bs[0].p), uint64(bs[1].p), 101}
		}, cuErrIllegalAddress, []string{"kernel emu_copy", "byte 400 of buffer", "(400 bytes)", "element 100 of 100"}},
		{"host pointer", "emu_copy", 128, []int{100}, func(bs []buf) []uint64 {
			return []uint64{uint64(uintptr(unsafe.Pointer(&host[0]))), uint64(bs[0].p), 100}
		}, cuErrIllegalAddress, []string{"kernel emu_copy, parameter 0", "not device memory"}},
		{"partial warp", "emu_warp_sum", 16, []int{1}, func(bs []buf) []uint64 {
			return []uint64{uint64(bs[0].p)}
		}, cuErrLaunchFailed, []string{"kernel emu_warp_sum", "__shfl_down_sync with mask 0xffffffff", "do not exist"}},
		{"deadlock", "emu_diverge", 64, []int{64}, func(bs []buf) []uint64 {
			return []uint64{uint64(bs[0].p)}
		}, cuErrLaunchFailed, []string{"kernel emu_diverge", "deadlock"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := emuBackend(t)
			_, err := emuLaunch(b, c.entry, [3]int{1, 1, 1}, [3]int{c.block, 1, 1}, c.sizes, c.args)
			var ce *cuError
			if !errors.As(err, &ce) || ce.code != c.code || !errors.Is(err, ErrDeviceLost) {
				t.Fatalf("err = %v, want CUDA error %d and ErrDeviceLost", err, c.code)
			}
			for _, s := range c.detail {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q does not say %q", err, s)
				}
			}
			// Sticky: the device fails every call until reopened, which the
			// next backend call does.
			if err := b.dev.do(func() error { return nil }); !errors.Is(err, ErrDeviceLost) {
				t.Errorf("after the fault: %v, want ErrDeviceLost", err)
			}
			means := make([]float64, 2)
			if err := b.ColumnMeans(context.Background(), embed.Data{N: 2, D: 2, F32: []float32{1, 2, 3, 4}}, means); err != nil || means[0] != 2 {
				t.Errorf("after reopening: %v, %v", means, err)
			}
			if b.Resets() != 1 {
				t.Errorf("%d resets, want 1", b.Resets())
			}
		})
	}
}

// TestEmulatorUseAfterFree: a freed buffer passed to a launch, and a copy
// past a buffer's end, fail.
func TestEmulatorUseAfterFree(t *testing.T) {
	b := emuBackend(t)
	err := b.dev.do(func() error {
		a, err := b.dev.alloc(400)
		if err != nil {
			return err
		}
		if err := upload(b.dev, a, make([]float32, 101)); err == nil {
			t.Error("an upload of 404 bytes into 400 accepted")
		}
		if err := b.dev.dr.htod(a.p+8, unsafe.Pointer(&make([]float32, 100)[0]), 400); err == nil ||
			!strings.Contains(err.Error(), "bytes [8, 408) of buffer") {
			t.Errorf("a copy past the end: %v", err)
		}
		stale := a
		b.dev.free(&a)
		return b.dev.launch(kRecentre, [3]int{1, 1, 1}, [3]int{128, 1, 1}, 0, stale, stale, 100, 1)
	})
	if err == nil || !strings.Contains(err.Error(), "freed") || !strings.Contains(err.Error(), "kernel recentre") {
		t.Errorf("launch on a freed buffer: %v", err)
	}
}

// TestEmulatorLimits: the driver's launch limits, and the module errors.
func TestEmulatorLimits(t *testing.T) {
	b := emuBackend(t)
	err := b.dev.do(func() error {
		vals := make([]uint64, 9)
		if err := b.dev.dr.launch("fft_local", b.dev.fn[kFFTLocal], [3]int{1, 1, 1}, [3]int{2048, 1, 1}, 0, vals); err == nil {
			t.Error("a block of 2048 threads launched")
		}
		// fft_local has 32 KiB of static shared memory: 20 KiB more is
		// beyond the device's 48 KiB.
		if err := b.dev.dr.launch("fft_local", b.dev.fn[kFFTLocal], [3]int{1, 1, 1}, [3]int{32, 1, 1}, 20<<10, vals); err == nil ||
			!strings.Contains(err.Error(), "shared memory") {
			t.Errorf("too much shared memory: %v", err)
		}
		m, err := b.dev.dr.loadModule("emu", append([]byte(emuPTX), 0))
		if err != nil {
			return err
		}
		defer b.dev.dr.unloadModule(m)
		var ce *cuError
		if _, err := b.dev.dr.function(m, "no_such_kernel"); !errors.As(err, &ce) || ce.code != 500 {
			t.Errorf("unknown entry: %v, want CUDA_ERROR_NOT_FOUND", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestLaunchGeometryChecked (defect 5): the launcher refuses blocks the
// kernels are not written for, before the device computes garbage.
func TestLaunchGeometryChecked(t *testing.T) {
	b := testBackend(t)
	err := b.dev.do(func() error {
		y, err := b.dev.alloc(8 * 1000)
		if err != nil {
			return err
		}
		defer b.dev.free(&y)
		part, err := b.dev.alloc(4 * 4 * fftBBoxBlk)
		if err != nil {
			return err
		}
		defer b.dev.free(&part)
		for _, block := range []int{512, 48} {
			if err := b.dev.launch(kFFTBBox, [3]int{fftBBoxBlk, 1, 1}, [3]int{block, 1, 1}, 0, y, 1000, part); err == nil {
				t.Errorf("fft_bbox launched with %d threads a block", block)
			}
		}
		if err := b.dev.launch(kRepulseExact2D, [3]int{4, 1, 1}, [3]int{128, 1, 1}, 0, y, 500, 1, y, part); err == nil {
			t.Error("repulse_exact_2d launched with 128 threads a block (written for 256)")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestProbeOldDriver (defect 5): a driver too old for the PTX's ISA is
// refused by the probe with what to do, and a module it cannot JIT fails
// with the JIT's log.
func TestProbeOldDriver(t *testing.T) {
	b := emuBackend(t)
	t.Setenv("TSNEMAP_CUDAEMU_DRIVER_VERSION", "11040")
	_, err := Probe(context.Background())
	if !errors.Is(err, ErrNoDevice) || !strings.Contains(err.Error(), "CUDA 11.4") || !strings.Contains(err.Error(), "update the driver") {
		t.Errorf("probe with a CUDA 11.4 driver: %v", err)
	}
	err = b.dev.do(func() error {
		_, err := b.dev.dr.loadModule("emu", append([]byte(emuPTX), 0))
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "JIT log") || !strings.Contains(err.Error(), "Unsupported .version 7.8") {
		t.Errorf("module load on an old driver: %v", err)
	}
}

// TestProbeBounded: a driver that does not answer does not hang the probe.
func TestProbeBounded(t *testing.T) {
	emuBackend(t)
	t.Setenv("TSNEMAP_CUDAEMU_INIT_DELAY_MS", "3000")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Probe(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "did not answer") {
		t.Errorf("probe of a hung driver: %v", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("probe returned after %v", el)
	}
}

// TestStickyErrorReopens (defect 4): after an uncorrectable ECC error
// (sticky), the step that saw it fails with ErrDeviceLost and the next
// run works on a reopened context.
func TestStickyErrorReopens(t *testing.T) {
	b := emuBackend(t)
	ctx := context.Background()
	p, y0, _ := agreeProblem(t, 500)
	run := func() error {
		opt, err := b.NewOptimizer(ctx, p, y0, embed.OptimizerConfig{N: 500, Dims: 2, Repulsion: embed.RepulsionExact})
		if err != nil {
			return err
		}
		defer opt.Close()
		return opt.Step(ctx, embed.StepParams{Exaggeration: 12, Momentum: 0.5, LearningRate: 100})
	}
	t.Setenv("TSNEMAP_CUDAEMU_INJECT", "update_2d:214")
	if err := run(); !errors.Is(err, ErrDeviceLost) || !strings.Contains(err.Error(), "CUDA_ERROR_ECC_UNCORRECTABLE") {
		t.Fatalf("step with an ECC error: %v", err)
	}
	t.Setenv("TSNEMAP_CUDAEMU_INJECT", "")
	if err := run(); err != nil {
		t.Fatalf("the run after the ECC error: %v", err)
	}
	if b.Resets() != 1 || b.Health() != nil {
		t.Errorf("resets %d, health %v", b.Resets(), b.Health())
	}
}

// TestPanicInDeviceWork (defect 2): a panic on the device goroutine fails
// the call, not the process, and the device is reopened for the next.
func TestPanicInDeviceWork(t *testing.T) {
	b := testBackend(t)
	d, err := b.device()
	if err != nil {
		t.Fatal(err)
	}
	err = d.do(func() error {
		var s []int
		_ = s[3]
		return nil
	})
	if !errors.Is(err, ErrDeviceLost) || !strings.Contains(err.Error(), "index out of range") {
		t.Fatalf("panic in device work: %v", err)
	}
	means := make([]float64, 1)
	if err := b.ColumnMeans(context.Background(), embed.Data{N: 2, D: 1, F32: []float32{1, 3}}, means); err != nil || means[0] != 2 {
		t.Errorf("after the panic: %v, %v", means, err)
	}
}

// TestKNearestNaN (defect 5): a row of NaNs is an error naming the row,
// not neighbour lists holding index −1.
func TestKNearestNaN(t *testing.T) {
	b := testBackend(t)
	n, d := 300, 5
	x, _ := synth.Clusters(n, d, 3, 8, 1)
	for c := range d {
		x[7*d+c] = float32(math.NaN())
	}
	nb, err := b.KNearest(context.Background(), x, n, d, 10, embed.NeighborsExact, 1)
	if err == nil {
		for _, j := range nb.Index {
			if j < 0 {
				t.Fatal("neighbour index −1 returned without an error")
			}
		}
	} else if !strings.Contains(err.Error(), "point 7") {
		t.Errorf("error %v does not name point 7", err)
	}
	if err == nil {
		t.Error("NaN row accepted")
	}
}

// TestFFTSpectrumAfterFailedGrowth (defect 5): when growing a buffer for a
// larger grid fails (device memory taken by others), the cached spectrum
// is forgotten: the next step on the old grid remakes it.
func TestFFTSpectrumAfterFailedGrowth(t *testing.T) {
	b := emuBackend(t) // the emulator's memory is reserved lazily, so a filler costs nothing
	n := 1000
	small, large := clusteredY(n, 3, 61), clusteredY(n, 40, 62)
	want, _, _, err := hostFFTRepulsion(small, n)
	if err != nil {
		t.Fatal(err)
	}
	err = b.dev.do(func() error {
		var yb, rb, zb, filler buf
		defer func() {
			for _, p := range []*buf{&yb, &rb, &zb, &filler} {
				b.dev.free(p)
			}
		}()
		for _, p := range []*buf{&yb, &rb} {
			var err error
			if *p, err = b.dev.alloc(int64(8 * n)); err != nil {
				return err
			}
		}
		var err error
		if zb, err = b.dev.alloc(8); err != nil {
			return err
		}
		r, err := newFFTRepulsion(b.dev, n)
		if err != nil {
			return err
		}
		defer r.release()
		f := r.(*fftRepulsion)
		step := func(y []float32) error {
			if err := upload(b.dev, yb, y); err != nil {
				return err
			}
			if err := b.dev.zero(zb); err != nil {
				return err
			}
			return r.forces(yb.p, rb.p, zb.p)
		}
		if err := step(small); err != nil {
			return err
		}
		// Leave room for the large grid's planes but not its spectrum.
		_, _, g, err := hostFFTRepulsion(large, n)
		if err != nil {
			return err
		}
		free, _, err := b.dev.dr.memInfo()
		if err != nil {
			return err
		}
		gridBytes := int64(g.px) * int64(g.py) * 2 * 16
		if filler, err = b.dev.alloc(free + f.grid.bytes - gridBytes); err != nil {
			return err
		}
		if err := step(large); err == nil {
			t.Fatal("the large grid's spectrum fitted: the test did not make the growth fail")
		}
		b.dev.free(&filler)
		if err := step(small); err != nil {
			return err
		}
		rep32 := make([]float32, 2*n)
		if err := download(b.dev, rep32, rb); err != nil {
			return err
		}
		got := make([]float64, 2*n)
		for i, v := range rep32 {
			got[i] = float64(v)
		}
		if e := testkit.RelL2(got, want); e > 1e-5 {
			t.Errorf("after the failed growth: rep error %.3g against the host reference", e)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestCloseConcurrently (defect 5): Close from several goroutines at once.
func TestCloseConcurrently(t *testing.T) {
	b, err := New(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { b.Close() })
	}
	wg.Wait()
	if _, err := b.KNearest(context.Background(), make([]float32, 20), 10, 2, 3, embed.NeighborsExact, 1); err == nil {
		t.Error("a closed backend ran a search")
	}
}
