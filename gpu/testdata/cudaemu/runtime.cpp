// The execution side of the emulated driver: device memory with guard
// pages, the worker pool, one fiber per CUDA thread, barriers and warp
// collectives, and the fault handler that turns a bad access into a failed
// launch naming the kernel, the buffer and the index.
#include "internal.h"

#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdarg>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <thread>

#if !defined(__x86_64__)
#error "the CUDA emulator's fibers and fault handler are written for x86-64"
#endif

namespace emu {

EMU_TLS Fiber* tlsFiber;
EMU_TLS Block* tlsBlock;
uint3 gBlockDim, gGridDim;
static EMU_TLS struct Worker* tlsWorker;

// ---- device memory -------------------------------------------------------

static const size_t kPage = 4096;
static const size_t kGuard = 64 << 20;  // PROT_NONE on both sides of every buffer
static const size_t kQuarantine = 2048; // freed buffers kept unmapped-but-reserved

Memory& memory() {
	static Memory m;
	return m;
}

size_t totalMemory() {
	const char* e = getenv("TSNEMAP_CUDAEMU_MEMORY_MB");
	long mb = e && *e ? atol(e) : 8192;
	return (size_t)(mb > 0 ? mb : 8192) << 20;
}

Alloc* Memory::allocate(Context* ctx, size_t bytes, int* code) {
	if (bytes == 0) {
		*code = 1;
		return nullptr;
	}
	if (used + bytes > totalMemory()) {
		*code = 2;
		return nullptr;
	}
	size_t data = (bytes + kPage - 1) / kPage * kPage;
	size_t span = kGuard + data + kGuard;
	void* base = mmap(nullptr, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED) {
		*code = 2;
		return nullptr;
	}
	char* d = (char*)base + kGuard;
	if (mprotect(d, data, PROT_READ | PROT_WRITE) != 0) {
		munmap(base, span);
		*code = 2;
		return nullptr;
	}
	auto* a = new Alloc;
	a->id = ++nextID;
	a->ctx = ctx;
	a->region = (uintptr_t)base;
	a->span = span;
	// The buffer ends where the readable pages end, so the first byte past
	// it faults. Its start is as aligned as its size allows.
	a->start = (uintptr_t)d + data - bytes;
	a->bytes = bytes;
	a->live = true;
	byRegion[a->region] = a;
	used += bytes;
	*code = 0;
	return a;
}

void Memory::release(Alloc* a) {
	a->live = false;
	used -= a->bytes;
	size_t data = (a->bytes + (a->start & (kPage - 1)) + kPage - 1) / kPage * kPage;
	uintptr_t page = a->start & ~(uintptr_t)(kPage - 1);
	madvise((void*)page, data, MADV_DONTNEED);
	mprotect((void*)page, data, PROT_NONE);
	freed.push_back(a);
	while (freed.size() > kQuarantine) {
		Alloc* old = freed.front();
		freed.pop_front();
		byRegion.erase(old->region);
		munmap((void*)old->region, old->span);
		delete old;
	}
}

// find returns the buffer whose reserved region (guards included) holds p.
Alloc* Memory::find(uintptr_t p) {
	auto it = byRegion.upper_bound(p);
	if (it == byRegion.begin()) return nullptr;
	--it;
	Alloc* a = it->second;
	return p < a->region + a->span ? a : nullptr;
}

// live returns the live buffer of ctx holding [p, p+n), or why not.
Alloc* Memory::live(Context* ctx, uintptr_t p, size_t n, std::string* why) {
	Alloc* a = find(p);
	char buf[256];
	if (!a) {
		snprintf(buf, sizeof buf, "address %#lx is not device memory (a host pointer?)", (unsigned long)p);
	} else if (!a->live) {
		snprintf(buf, sizeof buf, "address %#lx is in buffer #%lu (%zu bytes), freed", (unsigned long)p, a->id, a->bytes);
	} else if (a->ctx != ctx) {
		snprintf(buf, sizeof buf, "address %#lx is in buffer #%lu of another context", (unsigned long)p, a->id);
	} else if (p < a->start || p - a->start + n > a->bytes) {
		snprintf(buf, sizeof buf, "bytes [%ld, %ld) of buffer #%lu, which has %zu", (long)(p - a->start),
		         (long)(p - a->start + n), a->id, a->bytes);
	} else {
		return a;
	}
	if (why) *why = buf;
	return nullptr;
}

void Memory::releaseContext(Context* ctx) {
	std::vector<Alloc*> mine;
	for (auto& [_, a] : byRegion)
		if (a->live && a->ctx == ctx) mine.push_back(a);
	for (Alloc* a : mine) release(a);
}

// ---- fibers --------------------------------------------------------------

// emu_switch saves the callee-saved registers on the current stack, stores
// its pointer in *save and resumes the stack at to (a fiber or the
// scheduler). The floating-point control words are not switched: kernels
// never change them (saving them made a switch several times slower).
extern "C" void emu_switch(void** save, void* to);
asm(R"(
	.text
	.globl emu_switch
	.hidden emu_switch
	.type emu_switch,@function
emu_switch:
	pushq %rbp
	pushq %rbx
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	subq $8, %rsp
	movq %rsp, (%rdi)
	movq %rsi, %rsp
	addq $8, %rsp
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbx
	popq %rbp
	ret
	.size emu_switch,.-emu_switch
)");

enum FiberState { fReady, fWaiting, fDone, fFailed };

struct Fiber : FiberHead {  // FiberHead first, at offset 0 (threadIndex)
	void* sp = nullptr;
	char* stack = nullptr;  // lowest usable byte (a guard page below it)
	FiberState state = fReady;
	const unsigned* waitGen = nullptr;  // waiting until *waitGen != waitVal
	unsigned waitVal = 0;
	const char* waitWhat = "";
};

struct WarpRound {
	unsigned mask = 0, arrived = 0, gen = 0;
	WarpOp op = opShfl;
	uint64_t slots[2][32];
};

struct Block : BlockHead {
	unsigned nthreads = 0, live = 0;
	unsigned barArrived = 0, barGen = 0;
	std::vector<WarpRound> warps;
	std::vector<unsigned> warpExist, warpLive;
};

static const size_t kStack = 256 << 10;

struct Worker {
	void* schedSP = nullptr;
	std::vector<Fiber> fibers;
	Block block;
	char* altstack = nullptr;
	// stack returns fiber i's stack (created on first use, then reused).
	char* stack(unsigned i) {
		if (fibers[i].stack) return fibers[i].stack;
		void* m = mmap(nullptr, kStack + kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (m == MAP_FAILED) return nullptr;
		mprotect(m, kPage, PROT_NONE);
		fibers[i].stack = (char*)m + kPage;
		return fibers[i].stack;
	}
};

unsigned liveMask() { return tlsBlock->warpLive[tlsFiber->linear >> 5]; }

static void yieldToScheduler() { emu_switch(&tlsFiber->sp, tlsWorker->schedSP); }

static void waitFor(const unsigned* gen, const char* what) {
	Fiber* f = tlsFiber;
	f->state = fWaiting;
	f->waitGen = gen;
	f->waitVal = *gen;
	f->waitWhat = what;
	yieldToScheduler();
}

void syncThreads() {
	Block& b = *tlsBlock;
	if (++b.barArrived == b.live) {
		b.barArrived = 0;
		b.barGen++;
		return;
	}
	waitFor(&b.barGen, "__syncthreads");
}

static const char* opName(WarpOp op) {
	static const char* names[] = {"__shfl_sync", "__shfl_down_sync", "__shfl_up_sync", "__shfl_xor_sync",
	                              "__all_sync",  "__any_sync",       "__ballot_sync",  "__syncwarp"};
	return names[op];
}

const uint64_t* warpCollective(unsigned mask, WarpOp op, uint64_t v) {
	Fiber* f = tlsFiber;
	Block& b = *tlsBlock;
	unsigned w = f->linear >> 5, lane = f->linear & 31;
	WarpRound& r = b.warps[w];
	if (!(mask >> lane & 1u)) fail("%s with mask %#x called by lane %u, which the mask leaves out", opName(op), mask, lane);
	if (mask & ~b.warpExist[w])
		fail("%s with mask %#x in warp %u: lanes %#x do not exist (the block has %u threads, not a multiple of 32)",
		     opName(op), mask, w, mask & ~b.warpExist[w], b.nthreads);
	if (mask & ~b.warpLive[w])
		fail("%s with mask %#x in warp %u: lanes %#x have exited", opName(op), mask, w, mask & ~b.warpLive[w]);
	if (r.arrived == 0) {
		r.mask = mask;
		r.op = op;
	} else if (r.mask != mask || r.op != op) {
		fail("divergent warp collectives in warp %u: lane %u calls %s(mask %#x) while lanes wait in %s(mask %#x)", w, lane,
		     opName(op), mask, opName(r.op), r.mask);
	}
	unsigned par = r.gen & 1;
	r.slots[par][lane] = v;
	if (++r.arrived == (unsigned)__builtin_popcount(mask)) {
		r.arrived = 0;
		r.gen++;
		return r.slots[par];
	}
	waitFor(&r.gen, opName(op));
	return r.slots[par];
}

// ---- launches ------------------------------------------------------------

// The launch in progress (one at a time: the driver's entry points take the
// emulator's lock).
struct Launch {
	const Twin* twin;
	const Kernel* kernel;
	void* args;
	std::vector<uintptr_t> ptrArgs;  // each parameter's value (pointers), else 0
	uint3 grid, block;
	unsigned long nblocks;
	std::atomic<unsigned long> next{0};
	std::atomic<bool> failed{false};
	int code = 0;
	std::mutex msgMu;
	std::string msg;
	void setFailure(int c, const std::string& m) {
		std::lock_guard<std::mutex> l(msgMu);
		if (!failed.exchange(true)) {
			code = c;
			msg = m;
		}
	}
};
static Launch* gLaunch;

static std::string where() {
	char buf[160];
	Fiber* f = tlsFiber;
	Block* b = tlsBlock;
	snprintf(buf, sizeof buf, "kernel %s, block (%u,%u,%u), thread (%u,%u,%u)", gLaunch->twin->name, b->bid.x, b->bid.y,
	         b->bid.z, f->tid.x, f->tid.y, f->tid.z);
	return buf;
}

void fail(const char* fmt, ...) {
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	gLaunch->setFailure(719, where() + ": " + buf);
	tlsFiber->state = fFailed;
	yieldToScheduler();
	__builtin_unreachable();
}

static void fiberMain() {
	gLaunch->twin->invoke(gLaunch->twin->fn, gLaunch->args);
	Fiber* f = tlsFiber;
	Block& b = *tlsBlock;
	unsigned w = f->linear >> 5;
	b.warpLive[w] &= ~(1u << (f->linear & 31));
	WarpRound& r = b.warps[w];
	if (r.arrived > 0 && (r.mask >> (f->linear & 31) & 1u))
		fail("thread exits while lanes of its warp wait for it in %s(mask %#x)", opName(r.op), r.mask);
	b.live--;
	if (b.barArrived > 0 && b.barArrived == b.live) {
		b.barArrived = 0;
		b.barGen++;
	}
	f->state = fDone;
	yieldToScheduler();
	__builtin_unreachable();
}

// faultMain is where the signal handler sends a fiber that touched memory
// it must not: the launch is already marked failed.
static void faultMain() {
	tlsFiber->state = fFailed;
	yieldToScheduler();
	__builtin_unreachable();
}

static void startFiber(Worker& w, unsigned i) {
	Fiber& f = w.fibers[i];
	char* top = w.stack(i) + kStack;
	uintptr_t t = (uintptr_t)top & ~(uintptr_t)15;
	auto* sp = (uint64_t*)(t - 72);
	for (int k = 0; k <= 6; k++) sp[k] = 0;
	sp[7] = (uint64_t)(uintptr_t)&fiberMain;
	sp[8] = 0;
	f.sp = sp;
	f.state = fReady;
}

static void runBlock(Worker& w, unsigned long id) {
	Launch& L = *gLaunch;
	Block& b = w.block;
	b.bid = {(unsigned)(id % L.grid.x), (unsigned)(id / L.grid.x % L.grid.y), (unsigned)(id / L.grid.x / L.grid.y)};
	unsigned n = L.block.x * L.block.y * L.block.z;
	b.nthreads = b.live = n;
	b.barArrived = 0;
	unsigned nw = (n + 31) / 32;
	b.warps.assign(nw, WarpRound{});
	b.warpExist.assign(nw, 0);
	for (unsigned k = 0; k < n; k++) b.warpExist[k >> 5] |= 1u << (k & 31);
	b.warpLive = b.warpExist;
	if (w.fibers.size() < n) w.fibers.resize(n);
	for (unsigned k = 0; k < n; k++) {
		Fiber& f = w.fibers[k];
		f.linear = k;
		f.tid = {k % L.block.x, k / L.block.x % L.block.y, k / L.block.x / L.block.y};
		startFiber(w, k);
	}
	tlsBlock = &b;
	for (;;) {
		bool progress = false, done = true;
		for (unsigned k = 0; k < n; k++) {
			Fiber& f = w.fibers[k];
			if (f.state == fDone) continue;
			if (f.state == fFailed) return;
			done = false;
			if (f.state == fWaiting && *f.waitGen == f.waitVal) continue;
			f.state = fReady;
			tlsFiber = &f;
			emu_switch(&w.schedSP, f.sp);
			progress = true;
			if (f.state == fFailed || L.failed.load(std::memory_order_relaxed)) return;
		}
		if (done) return;
		if (!progress) {
			Fiber* f = nullptr;
			for (unsigned k = 0; k < n && !f; k++)
				if (w.fibers[k].state == fWaiting) f = &w.fibers[k];
			tlsFiber = f;
			char buf[256];
			snprintf(buf, sizeof buf,
			         ": deadlock: every thread still running waits (this one in %s, %u of %u threads at __syncthreads, "
			         "%u not exited)",
			         f->waitWhat, b.barArrived, n, b.live);
			L.setFailure(719, where() + buf);
			return;
		}
	}
}

// ---- the fault handler ---------------------------------------------------

static struct sigaction gOldSegv, gOldBus;

static void describeFault(uintptr_t addr) {
	Launch& L = *gLaunch;
	Alloc* a = memory().find(addr);
	char buf[512];
	if (!a) {
		Fiber* f = tlsFiber;
		uintptr_t lo = (uintptr_t)f->stack - kPage;
		if (f->stack && addr >= lo && addr < (uintptr_t)f->stack)
			snprintf(buf, sizeof buf, ": stack overflow (the emulator gives a thread %zu KiB)", kStack >> 10);
		else
			snprintf(buf, sizeof buf, ": access at %#lx, which is not device memory", (unsigned long)addr);
		L.setFailure(700, where() + buf);
		return;
	}
	long off = (long)(addr - a->start);
	const char* state = a->live ? "" : " (freed: use after free)";
	int n = snprintf(buf, sizeof buf, ": access at byte %ld of buffer #%lu (%zu bytes)%s", off, a->id, a->bytes, state);
	for (int i = 0; i < L.twin->nparams && n < (int)sizeof buf; i++) {
		const Param& p = L.twin->params[i];
		uintptr_t v = L.ptrArgs[i];
		if (!p.pointer || !v || memory().find(v) != a) continue;
		long idx = ((long)addr - (long)v) / p.elem;
		n += snprintf(buf + n, sizeof buf - n, "; parameter %d + %ld bytes = element %ld of %zu (%d-byte elements)", i,
		              (long)addr - (long)v, idx, (a->bytes - (size_t)(v - a->start)) / p.elem, p.elem);
	}
	L.setFailure(700, where() + buf);
}

static void onFault(int sig, siginfo_t* info, void* uctx) {
	if (tlsWorker && tlsFiber && gLaunch) {
		describeFault((uintptr_t)info->si_addr);
		auto* uc = (ucontext_t*)uctx;
		// Resume the fiber in faultMain on its own stack, below the fault.
		uintptr_t sp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
		Fiber* f = tlsFiber;
		if (sp < (uintptr_t)f->stack + 4096) sp = (uintptr_t)f->stack + kStack / 2;  // overflowed
		sp = ((sp - 1024) & ~(uintptr_t)15) - 8;
		uc->uc_mcontext.gregs[REG_RSP] = (greg_t)sp;
		uc->uc_mcontext.gregs[REG_RIP] = (greg_t)(uintptr_t)&faultMain;
		return;
	}
	struct sigaction* old = sig == SIGBUS ? &gOldBus : &gOldSegv;
	if (old->sa_flags & SA_SIGINFO) {
		old->sa_sigaction(sig, info, uctx);
	} else if (old->sa_handler != SIG_IGN && old->sa_handler != SIG_DFL) {
		old->sa_handler(sig);
	} else {
		signal(sig, SIG_DFL);  // the fault repeats and ends the process
	}
}

// installFaultHandler chains the emulator's handler in front of the
// existing one (the Go runtime's): faults outside kernels go on to it.
void installFaultHandler() {
	static std::once_flag once;
	std::call_once(once, [] {
		struct sigaction sa {};
		sa.sa_sigaction = onFault;
		sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGSEGV, &sa, &gOldSegv);
		sigaction(SIGBUS, &sa, &gOldBus);
	});
}

// ---- the worker pool -----------------------------------------------------

struct Pool {
	std::mutex mu;
	std::condition_variable cv, doneCv;
	unsigned long epoch = 0;
	unsigned busy = 0;
	std::vector<std::thread> threads;
};
static Pool& pool() {
	static Pool* p = new Pool;  // never destroyed: its threads live with the process
	return *p;
}

static void work(Worker& w) {
	Launch& L = *gLaunch;
	for (;;) {
		if (L.failed.load(std::memory_order_relaxed)) return;
		unsigned long id = L.next.fetch_add(1);
		if (id >= L.nblocks) return;
		runBlock(w, id);
	}
}

static void workerMain() {
	Worker w;
	tlsWorker = &w;
	w.altstack = (char*)mmap(nullptr, 64 << 10, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	stack_t ss{};
	ss.ss_sp = w.altstack;
	ss.ss_size = 64 << 10;
	sigaltstack(&ss, nullptr);
	sigset_t all;
	sigfillset(&all);
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGFPE);
	sigdelset(&all, SIGILL);
	pthread_sigmask(SIG_SETMASK, &all, nullptr);
	Pool& p = pool();
	unsigned long seen = 0;
	for (;;) {
		{
			std::unique_lock<std::mutex> l(p.mu);
			p.cv.wait(l, [&] { return p.epoch != seen; });
			seen = p.epoch;
		}
		work(w);
		tlsFiber = nullptr;
		std::lock_guard<std::mutex> l(p.mu);
		if (--p.busy == 0) p.doneCv.notify_all();
	}
}

int workers() {
	static int n = [] {
		int v = (int)std::thread::hardware_concurrency();
		if (const char* e = getenv("TSNEMAP_CUDAEMU_THREADS")) v = atoi(e);
		return v < 1 ? 1 : v;
	}();
	return n;
}

// run executes a launch on the pool and returns its CUDA result; msg gets
// the failure's description.
int run(const Twin* twin, const Kernel* k, void* args, std::vector<uintptr_t> ptrArgs, uint3 grid, uint3 block,
        std::string* msg) {
	Launch L;
	L.twin = twin;
	L.kernel = k;
	L.args = args;
	L.ptrArgs = std::move(ptrArgs);
	L.grid = grid;
	L.block = block;
	L.nblocks = (unsigned long)grid.x * grid.y * grid.z;
	gLaunch = &L;
	gBlockDim = block;
	gGridDim = grid;
	Pool& p = pool();
	{
		std::unique_lock<std::mutex> l(p.mu);
		while (p.threads.size() < (size_t)workers()) p.threads.emplace_back(workerMain);
		p.busy = (unsigned)p.threads.size();
		p.epoch++;
		p.cv.notify_all();
		p.doneCv.wait(l, [&] { return p.busy == 0; });
	}
	gLaunch = nullptr;
	if (L.failed) *msg = L.msg;
	return L.failed ? L.code : 0;
}

}  // namespace emu
