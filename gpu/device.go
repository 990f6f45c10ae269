//go:build cuda

package gpu

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

//go:embed kernels/*.ptx
var ptxFiles embed.FS

// device owns one CUDA context on one GPU. CUDA contexts are current per
// OS thread, so the context lives on a dedicated goroutine locked to its
// thread for the device's life; every driver call (allocation, copy,
// launch) runs there, sent as a closure by do. Calls are therefore
// serialised, in order, on one stream (the context's default stream), and
// a kernel's results are visible to every later call without further
// synchronisation. Callers check their context between do calls, so a
// cancelled job stops within one launch.
type device struct {
	dr        *driver
	info      Info
	fn        [numKernels]cuFunction
	work      chan func()
	quit      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	lost      atomic.Pointer[error] // why the context is unusable (nil: it is not)
}

// deviceChoice is the device Probe and newDevice pick.
type deviceChoice struct {
	dev  cuDevice
	info Info
}

// pickDevice initialises the driver and returns the device with compute
// capability ≥ 7.0 and the most free memory. Free memory needs a context
// on each device, so it must run on a locked OS thread; the temporary
// contexts are destroyed before it returns.
func pickDevice(dr *driver) (deviceChoice, error) {
	if err := dr.init(); err != nil {
		// No device, no kernel module, a driver older than the library:
		// whatever it is, there is no GPU to use.
		return deviceChoice{}, fmt.Errorf("%w: %w", ErrNoDevice, err)
	}
	version, err := dr.version()
	if err != nil {
		return deviceChoice{}, err
	}
	if isa, need := ptxRequirement(); version < need {
		return deviceChoice{}, fmt.Errorf("%w: the NVIDIA driver supports CUDA %d.%d, and the kernels' PTX (ISA %s) needs CUDA %d.%d or later (driver R520+): update the driver",
			ErrNoDevice, version/1000, version%1000/10, isa, need/1000, need%1000/10)
	}
	count, err := dr.deviceCount()
	if err != nil {
		return deviceChoice{}, err
	}
	if count == 0 {
		return deviceChoice{}, fmt.Errorf("%w: the driver reports no devices", ErrNoDevice)
	}
	var best deviceChoice
	found := false
	var skipped []string
	for ord := range count {
		dev, err := dr.device(ord)
		if err != nil {
			return deviceChoice{}, err
		}
		name, err := dr.deviceName(dev)
		if err != nil {
			return deviceChoice{}, err
		}
		major, err := dr.attribute(dev, attrComputeCapabilityMaj)
		if err != nil {
			return deviceChoice{}, err
		}
		minor, err := dr.attribute(dev, attrComputeCapabilityMin)
		if err != nil {
			return deviceChoice{}, err
		}
		if major*10+minor < MinCapability {
			skipped = append(skipped, fmt.Sprintf("%s (device %d) has compute capability %d.%d < 7.0", name, ord, major, minor))
			continue
		}
		sms, err := dr.attribute(dev, attrMultiprocessors)
		if err != nil {
			return deviceChoice{}, err
		}
		total, err := dr.totalMem(dev)
		if err != nil {
			return deviceChoice{}, err
		}
		c, err := dr.createContext(dev)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("%s (device %d): %v", name, ord, err))
			continue
		}
		free, _, err := dr.memInfo()
		derr := dr.destroyContext(c)
		if err != nil {
			return deviceChoice{}, err
		}
		if derr != nil {
			return deviceChoice{}, derr
		}
		info := Info{Ordinal: ord, Name: name, TotalMemory: total, FreeMemory: free, Major: major, Minor: minor, Driver: version, Multiprocessors: sms}
		if !found || free > best.info.FreeMemory {
			best, found = deviceChoice{dev: dev, info: info}, true
		}
	}
	if !found {
		return deviceChoice{}, fmt.Errorf("%w: %s", ErrNoDevice, strings.Join(skipped, "; "))
	}
	return best, nil
}

// probeTimeout bounds Probe when its context has no deadline: a driver
// that hangs (a wedged GPU, a kernel module stuck in its init) must not
// hang start-up.
const probeTimeout = 30 * time.Second

// Probe loads the NVIDIA driver, enumerates the devices and describes the
// one a Backend would use: compute capability ≥ 7.0, most free memory. Any
// failure (no driver library, no device, a driver error, no answer before
// ctx ends or probeTimeout) is the error, whose text is the reason to log;
// it wraps ErrNoDevice when there is no usable device. A driver call that
// never returns leaves its goroutine (and OS thread) behind.
func Probe(ctx context.Context) (Info, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, probeTimeout)
		defer cancel()
	}
	type result struct {
		info Info
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		dr, err := openDriver()
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer dr.close()
		c, err := pickDevice(dr)
		ch <- result{info: c.info, err: err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return Info{}, fmt.Errorf("gpu: probe: %w", r.err)
		}
		return r.info, nil
	case <-ctx.Done():
		return Info{}, fmt.Errorf("gpu: probe: the driver (%s) did not answer: %w", libraryPath(), ctx.Err())
	}
}

// ptxRequirement is the PTX ISA of the embedded kernels and the driver API
// version that accepts it (ISA 7.x: CUDA 11.x, 8.x: 12.x, 9.x: 13.x).
func ptxRequirement() (isa string, driver int) {
	src, err := ptxFiles.ReadFile("kernels/" + modules[0] + ".ptx")
	if err != nil {
		return "?", 0
	}
	var major, minor int
	for _, line := range strings.Split(string(src), "\n") {
		if _, err := fmt.Sscanf(line, ".version %d.%d", &major, &minor); err == nil {
			break
		}
	}
	return fmt.Sprintf("%d.%d", major, minor), (major+4)*1000 + minor*10
}

// newDevice starts the device goroutine: picks the device, creates the
// context and loads the embedded PTX modules.
func newDevice() (*device, error) {
	d := &device{work: make(chan func()), quit: make(chan struct{}), done: make(chan struct{})}
	ready := make(chan error, 1)
	go d.loop(ready)
	if err := <-ready; err != nil {
		return nil, err
	}
	return d, nil
}

func (d *device) loop(ready chan<- error) {
	runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
	defer close(d.done)
	dr, err := openDriver()
	if err != nil {
		ready <- fmt.Errorf("gpu: %w", err)
		return
	}
	defer dr.close()
	choice, err := pickDevice(dr)
	if err != nil {
		ready <- fmt.Errorf("gpu: %w", err)
		return
	}
	c, err := dr.createContext(choice.dev)
	if err != nil {
		ready <- fmt.Errorf("gpu: %s: %w", choice.info.Name, err)
		return
	}
	defer dr.destroyContext(c)
	d.dr, d.info = dr, choice.info
	mods, err := d.loadKernels()
	if err != nil {
		ready <- fmt.Errorf("gpu: %s: %w", choice.info.Name, err)
		return
	}
	defer func() {
		for _, m := range mods {
			dr.unloadModule(m)
		}
	}()
	ready <- nil
	for {
		select {
		case f := <-d.work:
			f()
		case <-d.quit:
			return
		}
	}
}

// lostErr is why the device's context is unusable, or nil.
func (d *device) lostErr() error {
	if p := d.lost.Load(); p != nil {
		return *p
	}
	return nil
}

// markLost records that the context is unusable (the first reason wins).
func (d *device) markLost(err error) { d.lost.CompareAndSwap(nil, &err) }

// loadKernels JIT-compiles every module and resolves every kernel of
// kernelTable.
func (d *device) loadKernels() ([]cuModule, error) {
	loaded := make(map[string]cuModule, len(modules))
	var list []cuModule
	for _, name := range modules {
		src, err := ptxFiles.ReadFile("kernels/" + name + ".ptx")
		if err != nil {
			return list, fmt.Errorf("embedded PTX: %w", err)
		}
		m, err := d.dr.loadModule(name, append(src, 0))
		if err != nil {
			return list, err
		}
		loaded[name] = m
		list = append(list, m)
	}
	for id, sig := range kernelTable {
		f, err := d.dr.function(loaded[sig.module], sig.name)
		if err != nil {
			return list, err
		}
		d.fn[id] = f
	}
	return list, nil
}

// do runs f on the device thread and returns its error. A sticky driver
// error, or a panic in f, marks the device lost (ErrDeviceLost): the
// panic fails this call, not the process, and every later do fails at
// once until the Backend reopens the device.
func (d *device) do(f func() error) error {
	if err := d.lostErr(); err != nil {
		return err
	}
	errc := make(chan error, 1)
	run := func() {
		defer func() {
			if p := recover(); p != nil {
				err := fmt.Errorf("gpu: %w: panic in device work: %v\n%s", ErrDeviceLost, p, debug.Stack())
				d.markLost(err)
				errc <- err
			}
		}()
		err := f()
		if isSticky(err) {
			err = fmt.Errorf("gpu: %w: %w", ErrDeviceLost, err)
			d.markLost(err)
		}
		errc <- err
	}
	select {
	case d.work <- run:
	case <-d.done:
		return errors.New("gpu: device is closed")
	}
	return <-errc
}

// close stops the device goroutine, which destroys the context (and with
// it every allocation still live). It may be called more than once, and
// concurrently.
func (d *device) close() {
	d.closeOnce.Do(func() { close(d.quit) })
	<-d.done
}

// buf is a device allocation. Methods run on the device thread.
type buf struct {
	p     devPtr
	bytes int64
}

func (d *device) alloc(bytes int64) (buf, error) {
	if bytes <= 0 {
		bytes = 8 // a valid, unused address keeps kernel arguments simple
	}
	p, err := d.dr.alloc(bytes)
	return buf{p, bytes}, err
}

func (d *device) free(b *buf) {
	if b.p != 0 {
		d.dr.free(b.p)
		b.p = 0
	}
}

// upload copies a host slice of numbers to the start of b.
func upload[T uint8 | int32 | float32 | float64](d *device, b buf, src []T) error {
	if len(src) == 0 {
		return nil
	}
	bytes := int64(len(src)) * int64(unsafe.Sizeof(src[0]))
	if bytes > b.bytes {
		return fmt.Errorf("gpu: upload of %d bytes into a %d-byte buffer", bytes, b.bytes)
	}
	return d.dr.htod(b.p, unsafe.Pointer(&src[0]), bytes)
}

// download copies the start of b into a host slice of numbers. It waits
// for every kernel launched before it (the default stream is in order).
func download[T uint8 | int32 | float32 | float64](d *device, dst []T, b buf) error {
	if len(dst) == 0 {
		return nil
	}
	bytes := int64(len(dst)) * int64(unsafe.Sizeof(dst[0]))
	if bytes > b.bytes {
		return fmt.Errorf("gpu: download of %d bytes from a %d-byte buffer", bytes, b.bytes)
	}
	return d.dr.dtoh(unsafe.Pointer(&dst[0]), b.p, bytes)
}

// zero clears b.
func (d *device) zero(b buf) error { return d.dr.memsetD8(b.p, 0, b.bytes) }

// at is the address off bytes into b.
func (b buf) at(off int64) devPtr { return b.p + devPtr(off) }

// launch checks args against the kernel's signature and launches it on a
// 1-D or 2-D grid. Arguments are devPtr, buf, int, int32, float32 or float64.
func (d *device) launch(id kernelID, grid, block [3]int, shmem int, args ...any) error {
	sig := kernelTable[id]
	vals, err := packArgs(sig, args)
	if err != nil {
		return err
	}
	// The driver's limits on every GPU since compute capability 3.0.
	if grid[0] < 1 || grid[0] > math.MaxInt32 || grid[1] < 1 || grid[1] > 65535 || grid[2] < 1 || grid[2] > 65535 {
		return fmt.Errorf("gpu: launch %s: grid %v exceeds the device's limits", sig.name, grid)
	}
	if block[0] < 1 || block[1] < 1 || block[2] < 1 || block[0]*block[1]*block[2] > 1024 {
		return fmt.Errorf("gpu: launch %s: block %v exceeds the device's limits", sig.name, block)
	}
	if err := sig.block.check(block); err != nil {
		return fmt.Errorf("gpu: launch %s: %w", sig.name, err)
	}
	return d.dr.launch(sig.name, d.fn[id], grid, block, shmem, vals)
}

// launch1D launches n threads in blocks of block threads.
func (d *device) launch1D(id kernelID, n, block int, args ...any) error {
	return d.launch(id, [3]int{max(1, (n+block-1)/block), 1, 1}, [3]int{block, 1, 1}, 0, args...)
}

// packArgs converts launch arguments into 64-bit parameter slots, checking
// kind and count against sig.
func packArgs(sig kernelSig, args []any) ([]uint64, error) {
	if len(args) != len(sig.params) {
		return nil, fmt.Errorf("gpu: launch %s: %d arguments, the kernel takes %d", sig.name, len(args), len(sig.params))
	}
	vals := make([]uint64, len(args))
	for i, a := range args {
		var kind paramKind
		switch v := a.(type) {
		case devPtr:
			kind, vals[i] = pPtr, uint64(v)
		case buf:
			kind, vals[i] = pPtr, uint64(v.p)
		case int:
			if v < math.MinInt32 || v > math.MaxInt32 {
				return nil, fmt.Errorf("gpu: launch %s: argument %d = %d overflows int32", sig.name, i, v)
			}
			kind, vals[i] = pI32, uint64(uint32(int32(v)))
		case int32:
			kind, vals[i] = pI32, uint64(uint32(v))
		case float32:
			kind, vals[i] = pF32, uint64(math.Float32bits(v))
		case float64:
			kind, vals[i] = pF64, math.Float64bits(v)
		default:
			return nil, fmt.Errorf("gpu: launch %s: argument %d has type %T", sig.name, i, a)
		}
		if kind != sig.params[i] {
			return nil, fmt.Errorf("gpu: launch %s: argument %d is %v, the kernel takes %v", sig.name, i, kind, sig.params[i])
		}
	}
	return vals, nil
}
