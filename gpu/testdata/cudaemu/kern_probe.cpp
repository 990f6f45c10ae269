// Kernels for the emulator's own tests (gpu/emu_cuda_test.go): launched
// wrongly on purpose, they prove that the emulated driver catches what a
// GPU would punish (out-of-bounds, freed and host pointers, shuffles whose
// mask names missing lanes, barriers some threads never reach).
#include "cudaemu.h"

// emu_copy: dst[i] = src[i] for i < n (a launch with n beyond the buffers
// reads and writes out of bounds).
extern "C" __global__ void emu_copy(const float* src, float* dst, int n) {
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n) dst[i] = src[i];
}

// emu_warp_sum: out[block] = the sum of the block's first warp's thread
// indices by full-mask shuffles (a block of fewer than 32 threads leaves
// lanes of the mask missing).
extern "C" __global__ void emu_warp_sum(float* out) {
	float v = (float)threadIdx.x;
	for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
	if (threadIdx.x == 0) out[blockIdx.x] = v;
}

// emu_diverge: odd threads wait at a barrier while even ones wait in a
// full-mask shuffle for the odd ones: neither can finish (a hang on a GPU),
// which the emulator reports as a deadlock.
extern "C" __global__ void emu_diverge(float* out) {
	if (threadIdx.x & 1) {
		__syncthreads();
	} else {
		out[threadIdx.x] = __shfl_sync(0xffffffffu, 1.0f, 0);
	}
}

EMU_KERNEL(emu_copy)
EMU_KERNEL(emu_warp_sum)
EMU_KERNEL(emu_diverge)
