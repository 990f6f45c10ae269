// The CUDA C++ that kernels/*.cu use, for compiling them unchanged as host
// C++ into the emulated driver (libcudaemu.so, see driver.cpp): qualifiers,
// the built-in index variables, vector types, __syncthreads, warp shuffles
// and votes with their masks, atomics on int, float and double, fences and
// the math intrinsics. The semantics are the device's; what they run on is
// emu.h's runtime (one fiber per thread, real barriers).
//
// __shared__ variables are thread_local statics: a worker thread runs one
// block at a time, all of its threads, so a block's threads share them and
// blocks on other workers have their own. Dynamic shared memory
// (extern __shared__) is not provided: no kernel uses it; the launch's
// sharedMemBytes is checked against the device's limit like the driver's.
#pragma once
#include <algorithm>
#include <atomic>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>

#include "emu.h"

#define __device__
#define __global__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __shared__ thread_local
#define __constant__ const
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)

using uint3 = emu::uint3;
using dim3 = emu::uint3;
#define threadIdx (emu::threadIndex())
#define blockIdx (emu::blockIndex())
#define blockDim (emu::gBlockDim)
#define gridDim (emu::gGridDim)
#define warpSize 32

struct alignas(8) float2 {
	float x, y;
};
struct alignas(16) float4 {
	float x, y, z, w;
};
struct alignas(16) double2 {
	double x, y;
};
struct alignas(8) int2 {
	int x, y;
};
inline float2 make_float2(float a, float b) { return {a, b}; }
inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }
inline double2 make_double2(double a, double b) { return {a, b}; }
inline int2 make_int2(int a, int b) { return {a, b}; }

inline void __syncthreads() { emu::syncThreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { emu::warpCollective(mask, emu::opSyncWarp, 0); }
inline unsigned __activemask() { return emu::liveMask(); }

namespace emu {
template <class T>
inline uint64_t toBits(T v) {
	static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
	uint64_t b = 0;
	std::memcpy(&b, &v, sizeof(T));
	return b;
}
template <class T>
inline T fromBits(uint64_t b) {
	T v;
	std::memcpy(&v, &b, sizeof(T));
	return v;
}
// shfl: the value of lane src, which must be in mask (reading a lane
// outside the mask is undefined on the device: here it fails the launch).
template <class T>
inline T shfl(unsigned mask, WarpOp op, T v, int src, bool inRange) {
	const uint64_t* s = warpCollective(mask, op, toBits(v));
	if (!inRange) return v;
	if (!(mask >> src & 1u)) fail("lane %u reads lane %d in a shuffle whose mask %#x leaves it out", laneId(), src, mask);
	return fromBits<T>(s[src]);
}
}  // namespace emu

template <class T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
	unsigned lane = emu::laneId();
	int base = (int)(lane & ~(unsigned)(width - 1));
	return emu::shfl(mask, emu::opShfl, v, base + (src & (width - 1)), true);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
	unsigned lane = emu::laneId();
	int seg = (int)(lane % (unsigned)width);
	return emu::shfl(mask, emu::opShflDown, v, (int)(lane + delta), seg + (int)delta < width);
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
	unsigned lane = emu::laneId();
	int seg = (int)(lane % (unsigned)width);
	return emu::shfl(mask, emu::opShflUp, v, (int)lane - (int)delta, seg >= (int)delta);
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lm, int width = 32) {
	unsigned lane = emu::laneId();
	unsigned src = lane ^ (unsigned)lm;
	return emu::shfl(mask, emu::opShflXor, v, (int)src, (src & ~(unsigned)(width - 1)) == (lane & ~(unsigned)(width - 1)));
}
inline unsigned __ballot_sync(unsigned mask, int p) {
	const uint64_t* s = emu::warpCollective(mask, emu::opBallot, p != 0);
	unsigned r = 0;
	for (int l = 0; l < 32; l++)
		if ((mask >> l & 1u) && s[l]) r |= 1u << l;
	return r;
}
inline int __all_sync(unsigned mask, int p) {
	const uint64_t* s = emu::warpCollective(mask, emu::opAll, p != 0);
	for (int l = 0; l < 32; l++)
		if ((mask >> l & 1u) && !s[l]) return 0;
	return 1;
}
inline int __any_sync(unsigned mask, int p) {
	const uint64_t* s = emu::warpCollective(mask, emu::opAny, p != 0);
	for (int l = 0; l < 32; l++)
		if ((mask >> l & 1u) && s[l]) return 1;
	return 0;
}

// Atomics: blocks run in parallel on the worker threads, so these are real
// atomic read-modify-writes (the threads of one block never interleave
// inside one).
template <class T>
inline T emuAtomicAdd(T* p, T v) {
	return std::atomic_ref<T>(*p).fetch_add(v, std::memory_order_relaxed);
}
inline int atomicAdd(int* p, int v) { return emuAtomicAdd(p, v); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return emuAtomicAdd(p, v); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) { return emuAtomicAdd(p, v); }
inline float atomicAdd(float* p, float v) { return emuAtomicAdd(p, v); }
inline double atomicAdd(double* p, double v) { return emuAtomicAdd(p, v); }
inline int atomicSub(int* p, int v) { return std::atomic_ref<int>(*p).fetch_sub(v, std::memory_order_relaxed); }
template <class T>
inline T atomicExch(T* p, T v) {
	return std::atomic_ref<T>(*p).exchange(v, std::memory_order_relaxed);
}
template <class T>
inline T atomicCAS(T* p, T cmp, T v) {
	std::atomic_ref<T>(*p).compare_exchange_strong(cmp, v, std::memory_order_relaxed);
	return cmp;
}
template <class T>
inline T atomicMin(T* p, T v) {
	std::atomic_ref<T> a(*p);
	T old = a.load(std::memory_order_relaxed);
	while (v < old && !a.compare_exchange_weak(old, v, std::memory_order_relaxed)) {
	}
	return old;
}
template <class T>
inline T atomicMax(T* p, T v) {
	std::atomic_ref<T> a(*p);
	T old = a.load(std::memory_order_relaxed);
	while (v > old && !a.compare_exchange_weak(old, v, std::memory_order_relaxed)) {
	}
	return old;
}
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }

// Math: the C library's double and float functions are in scope as on the
// device; the bit casts and the fast-math intrinsics.
using std::isfinite;
using std::isinf;
using std::isnan;
inline float __int_as_float(int i) { return emu::fromBits<float>((uint32_t)i); }
inline int __float_as_int(float f) { return (int)(uint32_t)emu::toBits(f); }
inline double __longlong_as_double(long long i) { return emu::fromBits<double>((uint64_t)i); }
inline long long __double_as_longlong(double d) { return (long long)emu::toBits(d); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __saturatef(float x) { return fminf(fmaxf(x, 0.f), 1.f); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }

// min and max of the device: for any two arithmetic types, in their common
// type.
template <class A, class B, class = std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>>>
inline std::common_type_t<A, B> min(A a, B b) {
	using C = std::common_type_t<A, B>;
	return (C)a < (C)b ? (C)a : (C)b;
}
template <class A, class B, class = std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>>>
inline std::common_type_t<A, B> max(A a, B b) {
	using C = std::common_type_t<A, B>;
	return (C)a > (C)b ? (C)a : (C)b;
}

// EMU_KERNEL(name) registers the kernel name (an extern "C" __global__
// function of the .cu file included before it) as the twin of the PTX
// entry of the same name.
namespace emu {
template <class T>
constexpr Param paramOf() {
	if constexpr (std::is_pointer_v<T>) {
		using E = std::remove_cv_t<std::remove_pointer_t<T>>;
		if constexpr (std::is_void_v<E>)
			return {(int)sizeof(T), true, 1, "void*"};
		else
			return {(int)sizeof(T), true, (int)sizeof(E), "pointer"};
	} else {
		return {(int)sizeof(T), false, 0, "value"};
	}
}
template <class... A>
struct TwinOf {
	static constexpr Param params[sizeof...(A) + 1] = {paramOf<A>()..., Param{}};
	using Args = std::tuple<std::remove_cv_t<A>...>;
	static void* decode(void* const* p) {
		auto* t = new Args();
		std::size_t i = 0;
		std::apply([&](auto&... a) { ((std::memcpy(&a, p[i++], sizeof(a))), ...); }, *t);
		return t;
	}
	static void invoke(void* fn, const void* args) {
		std::apply(reinterpret_cast<void (*)(A...)>(fn), *static_cast<const Args*>(args));
	}
	static void release(void* args) { delete static_cast<Args*>(args); }
};
struct Registrar {
	template <class... A>
	Registrar(const char* name, void (*fn)(A...)) {
		using T = TwinOf<A...>;
		registerTwin(Twin{name, reinterpret_cast<void*>(fn), (int)sizeof...(A), T::params, &T::decode, &T::invoke, &T::release});
	}
};
}  // namespace emu
#define EMU_KERNEL(name) static emu::Registrar emuRegistrar_##name(#name, name);
