// Shared helpers of the tsnemap kernels. Every kernel is extern "C" so its
// PTX entry has the plain name the Go signature table (kernels.go) uses.
#pragma once
#include <float.h>

// blockSumDouble returns the sum of v over the block to thread 0 (other
// threads get a partial). blockDim.x must be a power of two ≤ 1024.
__device__ __forceinline__ double blockSumDouble(double v, double* sh) {
	unsigned t = threadIdx.x;
	for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
	if ((t & 31) == 0) sh[t >> 5] = v;
	__syncthreads();
	if (t < 32) {
		v = (t < (blockDim.x + 31) / 32) ? sh[t] : 0.0;
		for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
	}
	__syncthreads();
	return v;
}
