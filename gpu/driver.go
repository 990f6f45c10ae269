//go:build cuda

package gpu

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The CUDA Driver API types this package uses, declared here so the build
// needs neither cuda.h nor libcuda: handles are pointers, device pointers
// 64-bit integers, results ints (CUresult), as in cuda.h.
typedef int tsCUresult;
typedef int tsCUdevice;
typedef void* tsCUcontext;
typedef void* tsCUmodule;
typedef void* tsCUfunction;
typedef unsigned long long tsCUdeviceptr;

typedef struct {
	void* lib;
	tsCUresult (*init)(unsigned int);
	tsCUresult (*driverGetVersion)(int*);
	tsCUresult (*deviceGetCount)(int*);
	tsCUresult (*deviceGet)(tsCUdevice*, int);
	tsCUresult (*deviceGetName)(char*, int, tsCUdevice);
	tsCUresult (*deviceGetAttribute)(int*, int, tsCUdevice);
	tsCUresult (*deviceTotalMem)(size_t*, tsCUdevice);
	tsCUresult (*ctxCreate)(tsCUcontext*, unsigned int, tsCUdevice);
	tsCUresult (*ctxDestroy)(tsCUcontext);
	tsCUresult (*ctxSetCurrent)(tsCUcontext);
	tsCUresult (*ctxSynchronize)(void);
	tsCUresult (*memGetInfo)(size_t*, size_t*);
	tsCUresult (*memAlloc)(tsCUdeviceptr*, size_t);
	tsCUresult (*memFree)(tsCUdeviceptr);
	tsCUresult (*memcpyHtoD)(tsCUdeviceptr, const void*, size_t);
	tsCUresult (*memcpyDtoH)(void*, tsCUdeviceptr, size_t);
	tsCUresult (*memcpyDtoD)(tsCUdeviceptr, tsCUdeviceptr, size_t);
	tsCUresult (*memsetD8)(tsCUdeviceptr, unsigned char, size_t);
	tsCUresult (*memsetD32)(tsCUdeviceptr, unsigned int, size_t);
	tsCUresult (*moduleLoadDataEx)(tsCUmodule*, const void*, unsigned int, int*, void**);
	tsCUresult (*moduleUnload)(tsCUmodule);
	tsCUresult (*moduleGetFunction)(tsCUfunction*, tsCUmodule, const char*);
	tsCUresult (*launchKernel)(tsCUfunction, unsigned int, unsigned int, unsigned int,
		unsigned int, unsigned int, unsigned int, unsigned int, void*, void**, void**);
	tsCUresult (*getErrorName)(tsCUresult, const char**);
	tsCUresult (*getErrorString)(tsCUresult, const char**);
	// Only the emulated driver (gpu/testdata/cudaemu) has it: why the
	// calling thread's last call failed, in detail.
	int (*emuLastError)(char*, int);
} tsDriver;

#ifndef RTLD_NODELETE
#define RTLD_NODELETE 0x01000
#endif

// tsOpen loads the driver library path (libcuda.so.1, or the library
// TSNEMAP_LIBCUDA names) and resolves every entry point (the _v2 names are
// the 64-bit ABI cuda.h maps the plain names to since CUDA 3.2). It
// returns NULL and writes why into err.
static tsDriver* tsOpen(const char* path, char* err, int errlen) {
	// RTLD_NODELETE: libcuda starts threads and registers exit handlers,
	// so it must never be unmapped; dlclose then only drops a reference.
	void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
	if (!lib) {
		snprintf(err, errlen, "%s", dlerror());
		return NULL;
	}
	tsDriver* d = (tsDriver*)calloc(1, sizeof(tsDriver));
	d->lib = lib;
#define SYM(field, name) \
	*(void**)(&d->field) = dlsym(lib, name); \
	if (!d->field) { snprintf(err, errlen, "%s has no %s", path, name); dlclose(lib); free(d); return NULL; }
	SYM(init, "cuInit")
	SYM(driverGetVersion, "cuDriverGetVersion")
	SYM(deviceGetCount, "cuDeviceGetCount")
	SYM(deviceGet, "cuDeviceGet")
	SYM(deviceGetName, "cuDeviceGetName")
	SYM(deviceGetAttribute, "cuDeviceGetAttribute")
	SYM(deviceTotalMem, "cuDeviceTotalMem_v2")
	SYM(ctxCreate, "cuCtxCreate_v2")
	SYM(ctxDestroy, "cuCtxDestroy_v2")
	SYM(ctxSetCurrent, "cuCtxSetCurrent")
	SYM(ctxSynchronize, "cuCtxSynchronize")
	SYM(memGetInfo, "cuMemGetInfo_v2")
	SYM(memAlloc, "cuMemAlloc_v2")
	SYM(memFree, "cuMemFree_v2")
	SYM(memcpyHtoD, "cuMemcpyHtoD_v2")
	SYM(memcpyDtoH, "cuMemcpyDtoH_v2")
	SYM(memcpyDtoD, "cuMemcpyDtoD_v2")
	SYM(memsetD8, "cuMemsetD8_v2")
	SYM(memsetD32, "cuMemsetD32_v2")
	SYM(moduleLoadDataEx, "cuModuleLoadDataEx")
	SYM(moduleUnload, "cuModuleUnload")
	SYM(moduleGetFunction, "cuModuleGetFunction")
	SYM(launchKernel, "cuLaunchKernel")
	SYM(getErrorName, "cuGetErrorName")
	SYM(getErrorString, "cuGetErrorString")
#undef SYM
	*(void**)(&d->emuLastError) = dlsym(lib, "tsnemapEmuLastError");
	return d;
}

static void tsClose(tsDriver* d) { dlclose(d->lib); free(d); }

static tsCUresult tsInit(tsDriver* d) { return d->init(0); }
static tsCUresult tsDriverVersion(tsDriver* d, int* v) { return d->driverGetVersion(v); }
static tsCUresult tsDeviceCount(tsDriver* d, int* n) { return d->deviceGetCount(n); }
static tsCUresult tsDeviceGet(tsDriver* d, tsCUdevice* dev, int ord) { return d->deviceGet(dev, ord); }
static tsCUresult tsDeviceName(tsDriver* d, char* s, int n, tsCUdevice dev) { return d->deviceGetName(s, n, dev); }
static tsCUresult tsDeviceAttr(tsDriver* d, int* v, int attr, tsCUdevice dev) { return d->deviceGetAttribute(v, attr, dev); }
static tsCUresult tsDeviceTotalMem(tsDriver* d, size_t* b, tsCUdevice dev) { return d->deviceTotalMem(b, dev); }
static tsCUresult tsCtxCreate(tsDriver* d, tsCUcontext* c, tsCUdevice dev) { return d->ctxCreate(c, 0, dev); }
static tsCUresult tsCtxDestroy(tsDriver* d, tsCUcontext c) { return d->ctxDestroy(c); }
static tsCUresult tsCtxSetCurrent(tsDriver* d, tsCUcontext c) { return d->ctxSetCurrent(c); }
static tsCUresult tsCtxSynchronize(tsDriver* d) { return d->ctxSynchronize(); }
static tsCUresult tsMemInfo(tsDriver* d, size_t* f, size_t* t) { return d->memGetInfo(f, t); }
static tsCUresult tsMemAlloc(tsDriver* d, tsCUdeviceptr* p, size_t n) { return d->memAlloc(p, n); }
static tsCUresult tsMemFree(tsDriver* d, tsCUdeviceptr p) { return d->memFree(p); }
static tsCUresult tsHtoD(tsDriver* d, tsCUdeviceptr dst, const void* src, size_t n) { return d->memcpyHtoD(dst, src, n); }
static tsCUresult tsDtoH(tsDriver* d, void* dst, tsCUdeviceptr src, size_t n) { return d->memcpyDtoH(dst, src, n); }
static tsCUresult tsDtoD(tsDriver* d, tsCUdeviceptr dst, tsCUdeviceptr src, size_t n) { return d->memcpyDtoD(dst, src, n); }
static tsCUresult tsMemsetD8(tsDriver* d, tsCUdeviceptr p, unsigned char v, size_t n) { return d->memsetD8(p, v, n); }
static tsCUresult tsMemsetD32(tsDriver* d, tsCUdeviceptr p, unsigned int v, size_t n) { return d->memsetD32(p, v, n); }
// tsModuleLoad JIT-compiles image with the driver's error log
// (CU_JIT_ERROR_LOG_BUFFER = 5, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6)
// in log.
static tsCUresult tsModuleLoad(tsDriver* d, tsCUmodule* m, const void* image, char* log, int logSize) {
	int opts[2] = {5, 6};
	void* vals[2] = {log, (void*)(uintptr_t)logSize};
	log[0] = 0;
	return d->moduleLoadDataEx(m, image, 2, opts, vals);
}
static tsCUresult tsModuleUnload(tsDriver* d, tsCUmodule m) { return d->moduleUnload(m); }
static tsCUresult tsModuleFunction(tsDriver* d, tsCUfunction* f, tsCUmodule m, const char* name) { return d->moduleGetFunction(f, m, name); }

// tsLaunch launches f with n parameters whose values (each at most 8 bytes,
// little-endian, in the low bytes of a 64-bit slot) are in vals. The driver
// copies the parameter values before cuLaunchKernel returns.
static tsCUresult tsLaunch(tsDriver* d, tsCUfunction f, unsigned gx, unsigned gy, unsigned gz,
		unsigned bx, unsigned by, unsigned bz, unsigned shmem, uint64_t* vals, int n) {
	void* ptrs[32];
	if (n > 32) return 1; // CUDA_ERROR_INVALID_VALUE
	for (int i = 0; i < n; i++) ptrs[i] = &vals[i];
	return d->launchKernel(f, gx, gy, gz, bx, by, bz, shmem, NULL, ptrs, NULL);
}

static void tsErrorText(tsDriver* d, tsCUresult r, const char** name, const char** text, char* detail, int n) {
	*name = NULL; *text = NULL;
	d->getErrorName(r, name);
	d->getErrorString(r, text);
	detail[0] = 0;
	if (d->emuLastError) d->emuLastError(detail, n);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"unsafe"
)

// driver is an open handle on libcuda.so.1. The handle is per object, not
// per process: dlopen reference-counts the library, and each Backend (and
// each Probe) opens and closes its own.
type driver struct {
	d *C.tsDriver
}

// cuError is a failed driver call.
type cuError struct {
	call   string
	code   int
	name   string
	text   string
	detail string // the emulated driver's account of the failure
}

func (e *cuError) Error() string {
	var s string
	if e.name == "" {
		s = fmt.Sprintf("%s: CUDA error %d", e.call, e.code)
	} else {
		s = fmt.Sprintf("%s: %s (%s)", e.call, e.text, e.name)
	}
	if e.detail != "" {
		s += ": " + e.detail
	}
	return s
}

// Sticky CUresults: after them the context is unusable, every later call
// fails, and only a new context (or process) recovers the device.
const (
	cuErrOutOfMemory      = 2
	cuErrECCUncorrectable = 214
	cuErrIllegalAddress   = 700
	cuErrLaunchTimeout    = 702
	cuErrMisaligned       = 716
	cuErrInvalidPC        = 718
	cuErrLaunchFailed     = 719
)

// isSticky reports whether err is a driver error that leaves the context
// unusable (CUDA's "sticky" errors: an illegal address, a failed or timed
// out launch, an uncorrectable ECC error, ...).
func isSticky(err error) bool {
	var ce *cuError
	if !errors.As(err, &ce) {
		return false
	}
	switch ce.code {
	case cuErrECCUncorrectable, cuErrIllegalAddress, cuErrLaunchTimeout, 715, cuErrMisaligned, 717, cuErrInvalidPC,
		cuErrLaunchFailed, 720:
		return true
	}
	return false
}

// libraryPath is the driver library to open: libcuda.so.1 unless
// LibraryEnv names another.
func libraryPath() string {
	if p := os.Getenv(LibraryEnv); p != "" {
		return p
	}
	return "libcuda.so.1"
}

func openDriver() (*driver, error) {
	var buf [512]C.char
	path := C.CString(libraryPath())
	defer C.free(unsafe.Pointer(path))
	d := C.tsOpen(path, &buf[0], C.int(len(buf)))
	if d == nil {
		return nil, fmt.Errorf("%w: load the NVIDIA driver library: %s", ErrNoDevice, C.GoString(&buf[0]))
	}
	return &driver{d: d}, nil
}

func (dr *driver) close() {
	if dr.d != nil {
		C.tsClose(dr.d)
		dr.d = nil
	}
}

// check turns a CUresult into an error naming the call.
func (dr *driver) check(call string, r C.tsCUresult) error {
	if r == 0 {
		return nil
	}
	var name, text *C.char
	detail := (*C.char)(C.malloc(1024))
	defer C.free(unsafe.Pointer(detail))
	C.tsErrorText(dr.d, r, &name, &text, detail, 1024)
	e := &cuError{call: call, code: int(r), detail: C.GoString(detail)}
	if name != nil {
		e.name = C.GoString(name)
	}
	if text != nil {
		e.text = C.GoString(text)
	}
	return e
}

func (dr *driver) init() error { return dr.check("cuInit", C.tsInit(dr.d)) }

func (dr *driver) version() (int, error) {
	var v C.int
	err := dr.check("cuDriverGetVersion", C.tsDriverVersion(dr.d, &v))
	return int(v), err
}

func (dr *driver) deviceCount() (int, error) {
	var n C.int
	err := dr.check("cuDeviceGetCount", C.tsDeviceCount(dr.d, &n))
	return int(n), err
}

type cuDevice C.tsCUdevice

func (dr *driver) device(ordinal int) (cuDevice, error) {
	var dev C.tsCUdevice
	err := dr.check("cuDeviceGet", C.tsDeviceGet(dr.d, &dev, C.int(ordinal)))
	return cuDevice(dev), err
}

func (dr *driver) deviceName(dev cuDevice) (string, error) {
	var buf [256]C.char
	if err := dr.check("cuDeviceGetName", C.tsDeviceName(dr.d, &buf[0], C.int(len(buf)), C.tsCUdevice(dev))); err != nil {
		return "", err
	}
	return C.GoString(&buf[0]), nil
}

// Device attributes (CUdevice_attribute in cuda.h).
const (
	attrMultiprocessors      = 16
	attrComputeCapabilityMaj = 75
	attrComputeCapabilityMin = 76
)

func (dr *driver) attribute(dev cuDevice, attr int) (int, error) {
	var v C.int
	err := dr.check("cuDeviceGetAttribute", C.tsDeviceAttr(dr.d, &v, C.int(attr), C.tsCUdevice(dev)))
	return int(v), err
}

func (dr *driver) totalMem(dev cuDevice) (int64, error) {
	var b C.size_t
	err := dr.check("cuDeviceTotalMem", C.tsDeviceTotalMem(dr.d, &b, C.tsCUdevice(dev)))
	return int64(b), err
}

type cuContext struct{ c C.tsCUcontext }

// createContext creates a context on dev and makes it current on the
// calling OS thread (cuCtxCreate's contract).
func (dr *driver) createContext(dev cuDevice) (cuContext, error) {
	var c C.tsCUcontext
	err := dr.check("cuCtxCreate", C.tsCtxCreate(dr.d, &c, C.tsCUdevice(dev)))
	return cuContext{c}, err
}

func (dr *driver) destroyContext(c cuContext) error {
	return dr.check("cuCtxDestroy", C.tsCtxDestroy(dr.d, c.c))
}

func (dr *driver) setCurrent(c cuContext) error {
	return dr.check("cuCtxSetCurrent", C.tsCtxSetCurrent(dr.d, c.c))
}

func (dr *driver) synchronize() error {
	return dr.check("cuCtxSynchronize", C.tsCtxSynchronize(dr.d))
}

// memInfo is the free and total memory of the current context's device.
func (dr *driver) memInfo() (free, total int64, err error) {
	var f, t C.size_t
	err = dr.check("cuMemGetInfo", C.tsMemInfo(dr.d, &f, &t))
	return int64(f), int64(t), err
}

// devPtr is a device address (CUdeviceptr).
type devPtr uint64

func (dr *driver) alloc(bytes int64) (devPtr, error) {
	var p C.tsCUdeviceptr
	err := dr.check(fmt.Sprintf("cuMemAlloc(%d bytes)", bytes), C.tsMemAlloc(dr.d, &p, C.size_t(bytes)))
	return devPtr(p), err
}

func (dr *driver) free(p devPtr) error {
	return dr.check("cuMemFree", C.tsMemFree(dr.d, C.tsCUdeviceptr(p)))
}

// htod copies bytes from host memory at src. src must not contain Go
// pointers (it is a slice of numbers), as cgo requires.
func (dr *driver) htod(dst devPtr, src unsafe.Pointer, bytes int64) error {
	if bytes == 0 {
		return nil
	}
	return dr.check("cuMemcpyHtoD", C.tsHtoD(dr.d, C.tsCUdeviceptr(dst), src, C.size_t(bytes)))
}

func (dr *driver) dtoh(dst unsafe.Pointer, src devPtr, bytes int64) error {
	if bytes == 0 {
		return nil
	}
	return dr.check("cuMemcpyDtoH", C.tsDtoH(dr.d, dst, C.tsCUdeviceptr(src), C.size_t(bytes)))
}

func (dr *driver) dtod(dst, src devPtr, bytes int64) error {
	if bytes == 0 {
		return nil
	}
	return dr.check("cuMemcpyDtoD", C.tsDtoD(dr.d, C.tsCUdeviceptr(dst), C.tsCUdeviceptr(src), C.size_t(bytes)))
}

func (dr *driver) memsetD8(p devPtr, v byte, n int64) error {
	if n == 0 {
		return nil
	}
	return dr.check("cuMemsetD8", C.tsMemsetD8(dr.d, C.tsCUdeviceptr(p), C.uchar(v), C.size_t(n)))
}

func (dr *driver) memsetD32(p devPtr, v uint32, n int64) error {
	if n == 0 {
		return nil
	}
	return dr.check("cuMemsetD32", C.tsMemsetD32(dr.d, C.tsCUdeviceptr(p), C.uint(v), C.size_t(n)))
}

type cuModule struct{ m C.tsCUmodule }
type cuFunction struct{ f C.tsCUfunction }

// loadModule JIT-compiles a NUL-terminated PTX image for the current device.
func (dr *driver) loadModule(name string, ptx []byte) (cuModule, error) {
	if len(ptx) == 0 || ptx[len(ptx)-1] != 0 {
		return cuModule{}, errors.New("load module " + name + ": PTX image is not NUL-terminated")
	}
	img := C.CBytes(ptx)
	defer C.free(img)
	const logSize = 8192
	log := (*C.char)(C.malloc(logSize))
	defer C.free(unsafe.Pointer(log))
	var m C.tsCUmodule
	err := dr.check("cuModuleLoadDataEx("+name+")", C.tsModuleLoad(dr.d, &m, img, log, logSize))
	if err != nil {
		if l := C.GoString(log); l != "" {
			err = fmt.Errorf("%w; JIT log: %s", err, l)
		}
	}
	return cuModule{m}, err
}

func (dr *driver) unloadModule(m cuModule) error {
	return dr.check("cuModuleUnload", C.tsModuleUnload(dr.d, m.m))
}

func (dr *driver) function(m cuModule, name string) (cuFunction, error) {
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	var f C.tsCUfunction
	err := dr.check("cuModuleGetFunction("+name+")", C.tsModuleFunction(dr.d, &f, m.m, cs))
	return cuFunction{f}, err
}

// launch runs f on grid×block threads with the given parameter slots
// (see kernelSig). It does not wait for the kernel.
func (dr *driver) launch(name string, f cuFunction, grid, block [3]int, shmem int, vals []uint64) error {
	var p *C.uint64_t
	if len(vals) > 0 {
		p = (*C.uint64_t)(unsafe.Pointer(&vals[0]))
	}
	return dr.check("launch "+name, C.tsLaunch(dr.d, f.f,
		C.uint(grid[0]), C.uint(grid[1]), C.uint(grid[2]),
		C.uint(block[0]), C.uint(block[1]), C.uint(block[2]),
		C.uint(shmem), p, C.int(len(vals))))
}
