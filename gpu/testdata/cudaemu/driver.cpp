// libcudaemu.so: an emulated CUDA driver. It exports the CUDA Driver API
// entry points that gpu/driver.go binds, with the driver's documented
// semantics and CUresult codes, and runs the kernels of kernels/*.cu,
// compiled as C++ (kern_*.cpp), on the CPU. The gpu package opens it in
// place of libcuda.so.1 only when TSNEMAP_LIBCUDA names it.
//
// The fake device: one device, "tsnemap CUDA emulator", compute capability
// 7.0, TSNEMAP_CUDAEMU_MEMORY_MB of memory (default 8192; read at each
// call, so a test can shrink the device), the limits of a
// Volta GPU; driver version TSNEMAP_CUDAEMU_DRIVER_VERSION (default 12020,
// CUDA 12.2), which also bounds the PTX ISA it accepts.
//
// Stricter than a GPU where a GPU would be undefined: every pointer
// parameter of a launch must point into a live buffer of the context;
// a launch runs synchronously and a fault (out of bounds, use after free,
// not device memory), a shuffle whose mask names missing or exited lanes,
// or a deadlock makes it fail with a sticky error, as a GPU's illegal
// address (700) or launch failure (719) does; tsnemapEmuLastError says
// where (kernel, block, thread, buffer, element).
#include <dlfcn.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <unordered_map>

#include "internal.h"

#define EXPORT extern "C" __attribute__((visibility("default")))

using namespace emu;

namespace {

enum : int {
	SUCCESS = 0,
	INVALID_VALUE = 1,
	OUT_OF_MEMORY = 2,
	NOT_INITIALIZED = 3,
	DEINITIALIZED = 4,
	NO_DEVICE = 100,
	INVALID_DEVICE = 101,
	INVALID_IMAGE = 200,
	INVALID_CONTEXT = 201,
	ECC_UNCORRECTABLE = 214,
	INVALID_PTX = 218,
	UNSUPPORTED_PTX_VERSION = 222,
	INVALID_HANDLE = 400,
	NOT_FOUND = 500,
	ILLEGAL_ADDRESS = 700,
	LAUNCH_OUT_OF_RESOURCES = 701,
	LAUNCH_FAILED = 719,
	NOT_SUPPORTED = 801,
	UNKNOWN = 999,
};

struct ErrorText {
	int code;
	const char* name;
	const char* text;
};
const ErrorText kErrors[] = {
    {SUCCESS, "CUDA_SUCCESS", "no error"},
    {INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {DEINITIALIZED, "CUDA_ERROR_DEINITIALIZED", "driver shutting down"},
    {NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {INVALID_IMAGE, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
    {INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {ECC_UNCORRECTABLE, "CUDA_ERROR_ECC_UNCORRECTABLE", "uncorrectable ECC error encountered"},
    {INVALID_PTX, "CUDA_ERROR_INVALID_PTX", "a PTX JIT compilation failed"},
    {UNSUPPORTED_PTX_VERSION, "CUDA_ERROR_UNSUPPORTED_PTX_VERSION",
     "the provided PTX was compiled with an unsupported toolchain."},
    {INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {ILLEGAL_ADDRESS, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"},
    {LAUNCH_OUT_OF_RESOURCES, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", "too many resources requested for launch"},
    {LAUNCH_FAILED, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
    {NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
    {UNKNOWN, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

// The fake device's limits (a Volta GPU's).
const int kMaxThreads = 1024, kMaxBlockX = 1024, kMaxBlockY = 1024, kMaxBlockZ = 64;
const int kMaxGridX = 2147483647, kMaxGridY = 65535, kMaxGridZ = 65535;
const int kMaxShared = 48 << 10;

std::mutex gMu;  // every entry point runs under it: one call at a time
bool gInit = false;
thread_local Context* tlsCurrent;
thread_local std::string tlsDetail;  // why the calling thread's last call failed
std::vector<Context*> gContexts;

int envInt(const char* name, int def) {
	const char* e = getenv(name);
	return e && *e ? atoi(e) : def;
}
int driverVersion() { return envInt("TSNEMAP_CUDAEMU_DRIVER_VERSION", 12020); }

int fail(int code, const std::string& detail) {
	tlsDetail = detail;
	return code;
}

// current checks the calling thread's context, and returns its sticky
// error if it has one.
int current(Context** c) {
	if (!gInit) return fail(NOT_INITIALIZED, "cuInit has not been called");
	if (!tlsCurrent) return fail(INVALID_CONTEXT, "no context is current on this thread");
	if (tlsCurrent->sticky) return fail(tlsCurrent->sticky, "the context is unusable after an earlier error: " + tlsCurrent->stickyMsg);
	*c = tlsCurrent;
	return SUCCESS;
}

bool knownContext(Context* c) {
	for (Context* x : gContexts)
		if (x == c) return true;
	return false;
}

// ---- PTX -----------------------------------------------------------------

// The highest PTX ISA a driver version accepts: CUDA 11.x: 7.x, 12.x: 8.x,
// 13.x: 9.x (11.8 is 7.8).
int maxISA(int v) {
	int major = v / 1000, minor = v % 1000 / 10;
	return (major - 4) * 10 + minor;
}

struct PTXEntry {
	std::string name;
	std::vector<int> paramBytes;
	size_t shared = 0;
};

size_t typeBytes(const std::string& t) {
	if (t == ".u64" || t == ".s64" || t == ".b64" || t == ".f64") return 8;
	if (t == ".u32" || t == ".s32" || t == ".b32" || t == ".f32") return 4;
	if (t == ".u16" || t == ".s16" || t == ".b16" || t == ".f16") return 2;
	if (t == ".u8" || t == ".s8" || t == ".b8") return 1;
	return 0;
}

// parsePTX reads what the emulator needs from a PTX module: the ISA
// version and target, and every entry's parameter sizes and static shared
// memory. It returns a CUresult and writes ptxas-like messages into log.
int parsePTX(const char* src, std::vector<PTXEntry>* out, std::string* log) {
	std::string s(src);
	size_t v = s.find(".version ");
	if (v == std::string::npos) {
		*log = "ptxas fatal   : Missing .version directive at start of file";
		return INVALID_PTX;
	}
	int vmaj = 0, vmin = 0;
	sscanf(s.c_str() + v, ".version %d.%d", &vmaj, &vmin);
	int have = maxISA(driverVersion());
	if (vmaj * 10 + vmin > have) {
		char buf[200];
		snprintf(buf, sizeof buf, "ptxas application ptx input, line 1; fatal   : Unsupported .version %d.%d; current version is '%d.%d'",
		         vmaj, vmin, have / 10, have % 10);
		*log = buf;
		return UNSUPPORTED_PTX_VERSION;
	}
	size_t t = s.find(".target sm_");
	int sm = t == std::string::npos ? 0 : atoi(s.c_str() + t + 11);
	if (sm == 0 || sm > 70) {
		*log = "ptxas fatal   : the .target is missing or newer than sm_70, the device's compute capability";
		return INVALID_PTX;
	}
	for (size_t p = s.find(".entry "); p != std::string::npos; p = s.find(".entry ", p + 1)) {
		PTXEntry e;
		size_t q = p + 7;
		while (q < s.size() && s[q] == ' ') q++;
		size_t open = s.find('(', q);
		if (open == std::string::npos) return INVALID_PTX;
		e.name = s.substr(q, s.find_first_of(" \t\n(", q) - q);
		size_t close = s.find(')', open);
		std::string params = s.substr(open + 1, close - open - 1);
		for (size_t k = params.find(".param"); k != std::string::npos; k = params.find(".param", k + 1)) {
			size_t end = params.find_first_of(",", k);
			std::string decl = params.substr(k, end == std::string::npos ? std::string::npos : end - k);
			char type[32] = {0};
			sscanf(decl.c_str(), ".param %31s", type);
			size_t b = typeBytes(type);
			if (std::string(type) == ".align") {
				size_t lb = decl.find('['), rb = decl.find(']');
				b = lb == std::string::npos ? 0 : (size_t)atol(decl.c_str() + lb + 1) * typeBytes(decl.substr(decl.find(".b"), 3));
				(void)rb;
			}
			e.paramBytes.push_back((int)b);
		}
		size_t body = s.find('{', close), depth = 0, end = body;
		for (; end < s.size(); end++) {
			if (s[end] == '{') depth++;
			if (s[end] == '}' && --depth == 0) break;
		}
		for (size_t k = s.find(".shared ", body); k != std::string::npos && k < end; k = s.find(".shared ", k + 1)) {
			size_t semi = s.find(';', k);
			std::string decl = s.substr(k, semi - k);
			size_t lb = decl.find('[');
			size_t bt = decl.find(" .b");
			if (lb == std::string::npos || bt == std::string::npos) continue;
			size_t width = typeBytes(decl.substr(bt + 1, decl.find(' ', bt + 1) - bt - 1));
			e.shared += (size_t)atol(decl.c_str() + lb + 1) * (width ? width : 1);
		}
		out->push_back(e);
		p = end;
	}
	return SUCCESS;
}

int loadModule(Module** out, const void* image, char* log, size_t logSize) {
	Context* c;
	if (int r = current(&c)) return r;
	if (!image) return fail(INVALID_VALUE, "cuModuleLoadData: NULL image");
	std::vector<PTXEntry> entries;
	std::string msg;
	int r = parsePTX((const char*)image, &entries, &msg);
	auto* m = new Module{c, {}};
	for (const PTXEntry& e : entries) {
		if (r) break;
		const Twin* tw = findTwin(e.name.c_str());
		if (!tw) {
			msg = "cudaemu: PTX entry " + e.name + " has no twin compiled into the emulator (EMU_KERNEL in gpu/testdata/cudaemu/kern_*.cpp)";
			r = NOT_SUPPORTED;
			break;
		}
		bool same = (int)e.paramBytes.size() == tw->nparams;
		for (int i = 0; same && i < tw->nparams; i++) same = e.paramBytes[i] == tw->params[i].size;
		if (!same) {
			msg = "cudaemu: entry " + e.name + ": the PTX's parameters differ from the .cu source's (regenerate the PTX: go generate ./gpu)";
			r = INVALID_IMAGE;
			break;
		}
		m->kernels.push_back(new Kernel{e.name, tw, e.shared, m});
	}
	if (r) {
		for (Kernel* k : m->kernels) delete k;
		delete m;
		if (log && logSize) snprintf(log, logSize, "%s", msg.c_str());
		return fail(r, msg);
	}
	c->modules.push_back(m);
	*out = m;
	return SUCCESS;
}

void freeModule(Module* m) {
	for (Kernel* k : m->kernels) delete k;
	delete m;
}

bool knownModule(Context* c, Module* m) {
	for (Module* x : c->modules)
		if (x == m) return true;
	return false;
}

bool knownKernel(Context* c, Kernel* k) {
	for (Module* m : c->modules)
		for (Kernel* x : m->kernels)
			if (x == k) return true;
	return false;
}

std::unordered_map<std::string, Twin>& twins() {
	static std::unordered_map<std::string, Twin> t;
	return t;
}

// inject: TSNEMAP_CUDAEMU_INJECT=kernel:code makes launches of kernel fail
// with code (sticky for 700, 214, 719), for tests of the error handling.
int injected(const std::string& kernel) {
	const char* e = getenv("TSNEMAP_CUDAEMU_INJECT");
	if (!e) return 0;
	std::string s(e);
	size_t colon = s.find(':');
	if (colon == std::string::npos || s.substr(0, colon) != kernel) return 0;
	return atoi(s.c_str() + colon + 1);
}

bool sticky(int code) { return code == ILLEGAL_ADDRESS || code == LAUNCH_FAILED || code == ECC_UNCORRECTABLE; }

}  // namespace

namespace emu {
void registerTwin(const Twin& t) { twins()[t.name] = t; }
const Twin* findTwin(const char* name) {
	auto it = twins().find(name);
	return it == twins().end() ? nullptr : &it->second;
}
}  // namespace emu

// ---- the Driver API ------------------------------------------------------

EXPORT int cuInit(unsigned flags) {
	// A hung driver, for the probe's bound (tests only).
	if (int ms = envInt("TSNEMAP_CUDAEMU_INIT_DELAY_MS", 0)) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
	std::lock_guard<std::mutex> l(gMu);
	if (flags != 0) return fail(INVALID_VALUE, "cuInit: flags must be 0");
	if (!gInit) {
		installFaultHandler();
		gInit = true;
	}
	return SUCCESS;
}

EXPORT int cuDriverGetVersion(int* v) {
	if (!v) return INVALID_VALUE;
	*v = driverVersion();
	return SUCCESS;
}

EXPORT int cuDeviceGetCount(int* n) {
	std::lock_guard<std::mutex> l(gMu);
	if (!gInit) return fail(NOT_INITIALIZED, "cuInit has not been called");
	if (!n) return INVALID_VALUE;
	*n = 1;
	return SUCCESS;
}

EXPORT int cuDeviceGet(int* dev, int ordinal) {
	std::lock_guard<std::mutex> l(gMu);
	if (!gInit) return fail(NOT_INITIALIZED, "cuInit has not been called");
	if (!dev) return INVALID_VALUE;
	if (ordinal != 0) return fail(INVALID_DEVICE, "the emulator has one device, 0");
	*dev = 0;
	return SUCCESS;
}

EXPORT int cuDeviceGetName(char* name, int len, int dev) {
	std::lock_guard<std::mutex> l(gMu);
	if (!gInit) return fail(NOT_INITIALIZED, "cuInit has not been called");
	if (dev != 0) return INVALID_DEVICE;
	if (!name || len <= 0) return INVALID_VALUE;
	snprintf(name, (size_t)len, "tsnemap CUDA emulator (CPU, %d threads)", workers());
	return SUCCESS;
}

EXPORT int cuDeviceGetAttribute(int* v, int attr, int dev) {
	std::lock_guard<std::mutex> l(gMu);
	if (!gInit) return fail(NOT_INITIALIZED, "cuInit has not been called");
	if (dev != 0) return INVALID_DEVICE;
	if (!v) return INVALID_VALUE;
	switch (attr) {
	case 1: *v = kMaxThreads; break;
	case 2: *v = kMaxBlockX; break;
	case 3: *v = kMaxBlockY; break;
	case 4: *v = kMaxBlockZ; break;
	case 5: *v = kMaxGridX; break;
	case 6: *v = kMaxGridY; break;
	case 7: *v = kMaxGridZ; break;
	case 8: *v = kMaxShared; break;
	case 10: *v = 32; break;          // warp size
	case 16: *v = workers(); break;   // multiprocessors
	case 39: *v = 2048; break;        // max threads per multiprocessor
	case 75: *v = 7; break;           // compute capability
	case 76: *v = 0; break;
	default: return fail(INVALID_VALUE, "cuDeviceGetAttribute: attribute " + std::to_string(attr) + " is not emulated");
	}
	return SUCCESS;
}

EXPORT int cuDeviceTotalMem_v2(size_t* bytes, int dev) {
	std::lock_guard<std::mutex> l(gMu);
	if (!gInit) return fail(NOT_INITIALIZED, "cuInit has not been called");
	if (dev != 0) return INVALID_DEVICE;
	if (!bytes) return INVALID_VALUE;
	*bytes = totalMemory();
	return SUCCESS;
}

EXPORT int cuCtxCreate_v2(Context** out, unsigned flags, int dev) {
	std::lock_guard<std::mutex> l(gMu);
	if (!gInit) return fail(NOT_INITIALIZED, "cuInit has not been called");
	if (dev != 0) return INVALID_DEVICE;
	if (!out) return INVALID_VALUE;
	(void)flags;
	auto* c = new Context{dev};
	gContexts.push_back(c);
	tlsCurrent = c;
	*out = c;
	return SUCCESS;
}

EXPORT int cuCtxDestroy_v2(Context* c) {
	std::lock_guard<std::mutex> l(gMu);
	if (!gInit) return fail(NOT_INITIALIZED, "cuInit has not been called");
	if (!knownContext(c)) return fail(INVALID_CONTEXT, "cuCtxDestroy: not a context");
	memory().releaseContext(c);
	for (Module* m : c->modules) freeModule(m);
	for (size_t i = 0; i < gContexts.size(); i++)
		if (gContexts[i] == c) gContexts.erase(gContexts.begin() + (long)i);
	if (tlsCurrent == c) tlsCurrent = nullptr;
	delete c;
	return SUCCESS;
}

EXPORT int cuCtxSetCurrent(Context* c) {
	std::lock_guard<std::mutex> l(gMu);
	if (!gInit) return fail(NOT_INITIALIZED, "cuInit has not been called");
	if (c && !knownContext(c)) return fail(INVALID_CONTEXT, "cuCtxSetCurrent: not a context");
	tlsCurrent = c;
	return SUCCESS;
}

EXPORT int cuCtxSynchronize() {
	std::lock_guard<std::mutex> l(gMu);
	Context* c;
	return current(&c);  // launches are synchronous: nothing is pending
}

EXPORT int cuMemGetInfo_v2(size_t* free, size_t* total) {
	std::lock_guard<std::mutex> l(gMu);
	Context* c;
	if (int r = current(&c)) return r;
	if (!free || !total) return INVALID_VALUE;
	*total = totalMemory();
	*free = *total > memory().used ? *total - memory().used : 0;
	return SUCCESS;
}

EXPORT int cuMemAlloc_v2(uintptr_t* p, size_t bytes) {
	std::lock_guard<std::mutex> l(gMu);
	Context* c;
	if (int r = current(&c)) return r;
	if (!p) return INVALID_VALUE;
	int code;
	Alloc* a = memory().allocate(c, bytes, &code);
	if (!a) return fail(code, code == OUT_OF_MEMORY ? "cuMemAlloc: " + std::to_string(bytes) + " bytes do not fit the emulated device's free memory" : "cuMemAlloc: 0 bytes");
	*p = a->start;
	return SUCCESS;
}

EXPORT int cuMemFree_v2(uintptr_t p) {
	std::lock_guard<std::mutex> l(gMu);
	Context* c;
	if (int r = current(&c)) return r;
	Alloc* a = memory().find(p);
	if (!a || !a->live || a->ctx != c || a->start != p) {
		std::string why;
		memory().live(c, p, 1, &why);
		return fail(INVALID_VALUE, "cuMemFree: " + (a && a->live && a->start != p ? std::string("not the start of a buffer") : why));
	}
	memory().release(a);
	return SUCCESS;
}

static int checkRange(Context* c, const char* call, uintptr_t p, size_t n) {
	std::string why;
	if (!memory().live(c, p, n, &why)) return fail(INVALID_VALUE, std::string(call) + ": " + why);
	return SUCCESS;
}

EXPORT int cuMemcpyHtoD_v2(uintptr_t dst, const void* src, size_t n) {
	std::lock_guard<std::mutex> l(gMu);
	Context* c;
	if (int r = current(&c)) return r;
	if (n == 0) return SUCCESS;
	if (int r = checkRange(c, "cuMemcpyHtoD", dst, n)) return r;
	std::memcpy((void*)dst, src, n);
	return SUCCESS;
}

EXPORT int cuMemcpyDtoH_v2(void* dst, uintptr_t src, size_t n) {
	std::lock_guard<std::mutex> l(gMu);
	Context* c;
	if (int r = current(&c)) return r;
	if (n == 0) return SUCCESS;
	if (int r = checkRange(c, "cuMemcpyDtoH", src, n)) return r;
	std::memcpy(dst, (const void*)src, n);
	return SUCCESS;
}

EXPORT int cuMemcpyDtoD_v2(uintptr_t dst, uintptr_t src, size_t n) {
	std::lock_guard<std::mutex> l(gMu);
	Context* c;
	if (int r = current(&c)) return r;
	if (n == 0) return SUCCESS;
	if (int r = checkRange(c, "cuMemcpyDtoD (destination)", dst, n)) return r;
	if (int r = checkRange(c, "cuMemcpyDtoD (source)", src, n)) return r;
	std::memmove((void*)dst, (const void*)src, n);
	return SUCCESS;
}

EXPORT int cuMemsetD8_v2(uintptr_t p, unsigned char v, size_t n) {
	std::lock_guard<std::mutex> l(gMu);
	Context* c;
	if (int r = current(&c)) return r;
	if (n == 0) return SUCCESS;
	if (int r = checkRange(c, "cuMemsetD8", p, n)) return r;
	std::memset((void*)p, v, n);
	return SUCCESS;
}

EXPORT int cuMemsetD32_v2(uintptr_t p, unsigned v, size_t n) {
	std::lock_guard<std::mutex> l(gMu);
	Context* c;
	if (int r = current(&c)) return r;
	if (n == 0) return SUCCESS;
	if (p % 4) return fail(INVALID_VALUE, "cuMemsetD32: the address is not 4-byte aligned");
	if (int r = checkRange(c, "cuMemsetD32", p, n * 4)) return r;
	auto* w = (unsigned*)p;
	for (size_t i = 0; i < n; i++) w[i] = v;
	return SUCCESS;
}

EXPORT int cuModuleLoadData(Module** m, const void* image) {
	std::lock_guard<std::mutex> l(gMu);
	if (!m) return INVALID_VALUE;
	return loadModule(m, image, nullptr, 0);
}

// cuModuleLoadDataEx honours CU_JIT_ERROR_LOG_BUFFER (5) and
// CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES (6); other options are accepted and
// ignored.
EXPORT int cuModuleLoadDataEx(Module** m, const void* image, unsigned n, int* options, void** values) {
	std::lock_guard<std::mutex> l(gMu);
	if (!m) return INVALID_VALUE;
	char* log = nullptr;
	size_t size = 0;
	for (unsigned i = 0; i < n; i++) {
		if (options[i] == 5) log = (char*)values[i];
		if (options[i] == 6) size = (size_t)(uintptr_t)values[i];
	}
	if (log && size) log[0] = 0;
	return loadModule(m, image, log, size);
}

EXPORT int cuModuleUnload(Module* m) {
	std::lock_guard<std::mutex> l(gMu);
	Context* c;
	if (int r = current(&c)) return r;
	if (!knownModule(c, m)) return fail(INVALID_HANDLE, "cuModuleUnload: not a module of the current context");
	for (size_t i = 0; i < c->modules.size(); i++)
		if (c->modules[i] == m) c->modules.erase(c->modules.begin() + (long)i);
	freeModule(m);
	return SUCCESS;
}

EXPORT int cuModuleGetFunction(Kernel** f, Module* m, const char* name) {
	std::lock_guard<std::mutex> l(gMu);
	Context* c;
	if (int r = current(&c)) return r;
	if (!f || !name) return INVALID_VALUE;
	if (!knownModule(c, m)) return fail(INVALID_HANDLE, "cuModuleGetFunction: not a module of the current context");
	for (Kernel* k : m->kernels)
		if (k->name == name) {
			*f = k;
			return SUCCESS;
		}
	return fail(NOT_FOUND, std::string("cuModuleGetFunction: the module has no entry ") + name);
}

EXPORT int cuLaunchKernel(Kernel* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                          unsigned shmem, void* stream, void** params, void** extra) {
	std::lock_guard<std::mutex> l(gMu);
	Context* c;
	if (int r = current(&c)) return r;
	if (!knownKernel(c, f)) return fail(INVALID_HANDLE, "cuLaunchKernel: not a function of the current context");
	const std::string& name = f->name;
	char buf[256];
	if (stream) return fail(INVALID_HANDLE, "cuLaunchKernel " + name + ": the emulator has only the default stream");
	if (extra) return fail(NOT_SUPPORTED, "cuLaunchKernel " + name + ": extra is not emulated; pass kernelParams");
	if (gx == 0 || gy == 0 || gz == 0 || bx == 0 || by == 0 || bz == 0 || gx > (unsigned)kMaxGridX || gy > (unsigned)kMaxGridY ||
	    gz > (unsigned)kMaxGridZ || bx > (unsigned)kMaxBlockX || by > (unsigned)kMaxBlockY || bz > (unsigned)kMaxBlockZ ||
	    (unsigned long)bx * by * bz > (unsigned long)kMaxThreads) {
		snprintf(buf, sizeof buf, "cuLaunchKernel %s: grid (%u,%u,%u) of blocks (%u,%u,%u) exceeds the device's limits",
		         name.c_str(), gx, gy, gz, bx, by, bz);
		return fail(INVALID_VALUE, buf);
	}
	if (f->staticShared + shmem > (size_t)kMaxShared) {
		snprintf(buf, sizeof buf, "cuLaunchKernel %s: %zu bytes of static and %u of dynamic shared memory exceed the device's %d",
		         name.c_str(), f->staticShared, shmem, kMaxShared);
		return fail(INVALID_VALUE, buf);
	}
	const Twin* tw = f->twin;
	if (tw->nparams > 0 && !params) return fail(INVALID_VALUE, "cuLaunchKernel " + name + ": no kernelParams");
	std::vector<uintptr_t> ptrs(tw->nparams, 0);
	for (int i = 0; i < tw->nparams; i++) {
		if (!params[i]) return fail(INVALID_VALUE, "cuLaunchKernel " + name + ": kernelParams[" + std::to_string(i) + "] is NULL");
		if (!tw->params[i].pointer) continue;
		std::memcpy(&ptrs[i], params[i], sizeof(uintptr_t));
		std::string why;
		if (ptrs[i] && !memory().live(c, ptrs[i], 1, &why)) {
			c->sticky = ILLEGAL_ADDRESS;
			c->stickyMsg = "kernel " + name + ", parameter " + std::to_string(i) + " (" + tw->params[i].type + "): " + why;
			return fail(ILLEGAL_ADDRESS, c->stickyMsg);
		}
	}
	if (int code = injected(name)) {
		std::string msg = "kernel " + name + ": failure injected by TSNEMAP_CUDAEMU_INJECT";
		if (sticky(code)) {
			c->sticky = code;
			c->stickyMsg = msg;
		}
		return fail(code, msg);
	}
	void* args = tw->decode(params);
	std::string msg;
	int r = run(tw, f, args, ptrs, uint3{gx, gy, gz}, uint3{bx, by, bz}, &msg);
	tw->release(args);
	if (r) {
		c->sticky = r;
		c->stickyMsg = msg;
		return fail(r, msg);
	}
	return SUCCESS;
}

EXPORT int cuGetErrorName(int code, const char** s) {
	if (!s) return INVALID_VALUE;
	for (const ErrorText& e : kErrors)
		if (e.code == code) {
			*s = e.name;
			return SUCCESS;
		}
	*s = nullptr;
	return INVALID_VALUE;
}

EXPORT int cuGetErrorString(int code, const char** s) {
	if (!s) return INVALID_VALUE;
	for (const ErrorText& e : kErrors)
		if (e.code == code) {
			*s = e.text;
			return SUCCESS;
		}
	*s = nullptr;
	return INVALID_VALUE;
}

// tsnemapEmuLastError copies why the calling thread's last failed call
// failed (the kernel, block, thread, buffer and element of a fault) into
// buf; gpu/driver.go adds it to the error when the library has it.
EXPORT int tsnemapEmuLastError(char* buf, int n) {
	if (!buf || n <= 0) return 0;
	snprintf(buf, (size_t)n, "%s", tlsDetail.c_str());
	return (int)tlsDetail.size();
}
