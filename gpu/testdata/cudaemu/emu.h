// The runtime interface between the CUDA language emulation (cudaemu.h,
// included by the kernels) and the emulated driver (driver.cpp,
// runtime.cpp). Every thread of a block is a fiber with its own stack; one
// OS worker thread runs all fibers of a block, switching between them at
// __syncthreads and at warp collectives (shuffles, votes), so barriers and
// exchanges have their CUDA meaning. Blocks run in parallel on the worker
// pool.
#pragma once
#include <cstddef>
#include <cstdint>

#define EMU_TLS thread_local

namespace emu {

struct uint3 {
	unsigned x = 1, y = 1, z = 1;
};

// The parts of a fiber (a CUDA thread) and of a block that kernels read
// through the built-in variables, inline.
struct FiberHead {
	uint3 tid;
	unsigned linear = 0;  // linear index in the block; lane = linear % 32
};
struct BlockHead {
	uint3 bid;
};
struct Fiber;
struct Block;

// The fiber running now on this worker thread (a thread of a block), and
// its block. Set by the scheduler before it switches to a fiber.
extern EMU_TLS Fiber* tlsFiber;
extern EMU_TLS Block* tlsBlock;

// Launch-wide geometry (one launch runs at a time in the process).
extern uint3 gBlockDim, gGridDim;

// The index of the running thread and of its block.
inline const uint3& threadIndex() { return reinterpret_cast<FiberHead*>(tlsFiber)->tid; }
inline const uint3& blockIndex() { return reinterpret_cast<BlockHead*>(tlsBlock)->bid; }

// __syncthreads: waits for every thread of the block that has not exited.
void syncThreads();

enum WarpOp : int { opShfl, opShflDown, opShflUp, opShflXor, opAll, opAny, opBallot, opSyncWarp };

// warpCollective: the calling lane contributes v to a collective op of the
// lanes in mask and gets the 32 contributions of that round (valid until
// the lane's next collective). It fails the launch, naming the kernel and
// the lanes, when the mask leaves out the calling lane, names lanes that do
// not exist (a block whose size is not a multiple of 32) or have exited, or
// when lanes of one warp meet in different ops or masks.
const uint64_t* warpCollective(unsigned mask, WarpOp op, uint64_t v);

// The calling thread's lane (threadIdx linear index mod 32) and the mask of
// the lanes of its warp that exist and have not exited.
inline unsigned laneId() { return reinterpret_cast<FiberHead*>(tlsFiber)->linear & 31; }
unsigned liveMask();

// fail ends the launch with CUDA_ERROR_LAUNCH_FAILED and a message naming
// the kernel, the block and the thread. It does not return.
[[noreturn]] void fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// Kernel twins: a kernel compiled from kernels/*.cu, registered under its
// PTX entry name by EMU_KERNEL (cudaemu.h).
struct Param {
	int size;          // bytes of the value in the launch's parameter array
	bool pointer;      // a device pointer
	int elem;          // bytes of the pointee (pointers)
	const char* type;  // C++ type, for messages
};
struct Twin {
	const char* name;
	void* fn;
	int nparams;
	const Param* params;
	// decode copies the values out of the driver's parameter array into a
	// new argument block; invoke runs the kernel with it; release frees it.
	void* (*decode)(void* const* params);
	void (*invoke)(void* fn, const void* args);
	void (*release)(void* args);
};
void registerTwin(const Twin& t);
const Twin* findTwin(const char* name);

}  // namespace emu
