// A minimal CUDA emulator for testing kernels/fft.cu on a machine without a
// GPU (TestFFTKernelsOnCPU in fftemu_test.go). Each launch runs its blocks
// one after another on blockDim OS threads: __syncthreads is a barrier of
// the block's threads, the warp intrinsics a barrier of the warp's 32 lanes
// around an exchange array, atomicAdd a std::atomic_ref, __shared__
// variables are statics (shared by the block's threads; blocks do not
// overlap). Only what fft.cu and common.cuh use is here.
#pragma once
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

struct emuDim3 {
	unsigned x = 1, y = 1, z = 1;
};
struct double2 {
	double x, y;
};
inline double2 make_double2(double a, double b) { return {a, b}; }

#define __device__
#define __global__
#define __forceinline__ inline
#define __shared__ static

inline thread_local emuDim3 threadIdx, blockIdx;
inline emuDim3 blockDim, gridDim;

struct emuWarp {
	explicit emuWarp(int lanes) : bar(lanes) {}
	std::barrier<> bar;
	unsigned long long slot[32];
};
inline std::barrier<>* emuBlockBarrier;
inline std::vector<std::unique_ptr<emuWarp>> emuWarps;

inline void __syncthreads() { emuBlockBarrier->arrive_and_wait(); }

template <class T>
inline T emuExchange(T v, int src, bool valid) {
	emuWarp& w = *emuWarps[threadIdx.x / 32];
	unsigned long long bits = 0;
	std::memcpy(&bits, &v, sizeof(T));
	w.slot[threadIdx.x % 32] = bits;
	w.bar.arrive_and_wait();
	T r = v;
	if (valid) std::memcpy(&r, &w.slot[src], sizeof(T));
	w.bar.arrive_and_wait();
	return r;
}
template <class T>
inline T __shfl_down_sync(unsigned, T v, int o) {
	int lane = threadIdx.x % 32;
	return emuExchange(v, lane + o, lane + o < 32);
}
template <class T>
inline T __shfl_sync(unsigned, T v, int src) {
	return emuExchange(v, src, true);
}
inline bool __all_sync(unsigned, bool p) {
	emuWarp& w = *emuWarps[threadIdx.x / 32];
	w.slot[threadIdx.x % 32] = p;
	w.bar.arrive_and_wait();
	bool all = true;
	for (int l = 0; l < 32; l++) all = all && w.slot[l];
	w.bar.arrive_and_wait();
	return all;
}
inline double atomicAdd(double* p, double v) { return std::atomic_ref<double>(*p).fetch_add(v); }
inline float __int_as_float(int i) {
	float f;
	std::memcpy(&f, &i, 4);
	return f;
}
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }

// emuLaunch runs body for every thread of grid blocks of block threads.
template <class F>
void emuLaunch(unsigned grid, unsigned block, F body) {
	gridDim = {grid, 1, 1};
	blockDim = {block, 1, 1};
	std::barrier<> bb(block);
	emuBlockBarrier = &bb;
	emuWarps.clear();
	for (unsigned w = 0; w * 32 < block; w++) emuWarps.push_back(std::make_unique<emuWarp>(std::min(32u, block - 32 * w)));
	std::vector<std::thread> ts;
	for (unsigned t = 0; t < block; t++) {
		ts.emplace_back([&, t] {
			threadIdx = {t, 0, 0};
			for (unsigned b = 0; b < grid; b++) {
				blockIdx = {b, 0, 0};
				body();
				bb.arrive_and_wait();
			}
		});
	}
	for (auto& t : ts) t.join();
}
