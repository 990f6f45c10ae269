// Declarations shared by the emulated driver's runtime.cpp and driver.cpp.
#pragma once
#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "emu.h"

namespace emu {

struct Context;

// Alloc is one cuMemAlloc: bytes at start, the last byte just below a
// PROT_NONE guard; the region (guards included) stays reserved after
// cuMemFree so a use after free faults and is recognised.
struct Alloc {
	unsigned long id;
	Context* ctx;
	uintptr_t region;
	size_t span;
	uintptr_t start;
	size_t bytes;
	bool live;
};

struct Memory {
	size_t used = 0;
	unsigned long nextID = 0;
	std::map<uintptr_t, Alloc*> byRegion;
	std::deque<Alloc*> freed;
	Alloc* allocate(Context* ctx, size_t bytes, int* code);
	void release(Alloc* a);
	Alloc* find(uintptr_t p);
	Alloc* live(Context* ctx, uintptr_t p, size_t n, std::string* why);
	void releaseContext(Context* ctx);
};
Memory& memory();
// totalMemory is the fake device's memory: TSNEMAP_CUDAEMU_MEMORY_MB
// (default 8192), read at each call so that a test can change it.
size_t totalMemory();

// Kernel is one entry of a loaded module: its twin and what the PTX
// declares.
struct Kernel {
	std::string name;
	const Twin* twin;
	size_t staticShared;  // bytes of .shared declared in the entry
	struct Module* module;
};

struct Module {
	Context* ctx;
	std::vector<Kernel*> kernels;
};

struct Context {
	int device;
	int sticky = 0;  // a sticky error: every later call returns it
	std::string stickyMsg;
	std::vector<Module*> modules;
};

void installFaultHandler();
int workers();
int run(const Twin* twin, const Kernel* k, void* args, std::vector<uintptr_t> ptrArgs, uint3 grid, uint3 block,
        std::string* msg);

}  // namespace emu
