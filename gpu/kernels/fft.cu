// FFT-accelerated interpolation repulsion in 2-D (Linderman, Rachh, Hoskins,
// Steinerberger & Kluger 2019, "Fast interpolation-based t-SNE for improved
// visualization of single-cell RNA-seq data", Nature Methods 16), as
// cpu/fft.go defines it: boxes of FFT_P × FFT_P equispaced nodes at spacing
// h, Lagrange interpolation, the kernel 1/(1+d²)² convolved with the node
// charges [1, x, y, ‖y‖²] by a zero-padded FFT. Everything on the grid is
// float64 (double2 complex): the Z formula (1+‖y‖²)φ0 − 2y·φ + φ3 cancels
// about three digits at the extents t-SNE reaches, which float32 FFTs would
// not leave. gpu/fftplan.go is the host side: the geometry, the stage plan,
// the butterfly indices (fftPair) and a host reference that the tests
// compare with a naive DFT and the exact sums; these kernels repeat its
// arithmetic.
//
// Grid layout: [py][2][px] double2, row gy of plane 0 (charges 1 + i·x) at
// (2gy)·px, of plane 1 (y + i·‖y‖²) at (2gy+1)·px. Rows are transforms of
// length px with stride 1 (2·rows of them); columns are transforms of length
// py with stride 2px (2px of them).
//
// The FFT is radix-2, in place: forward by decimation in frequency (natural
// in, bit-reversed out), inverse by decimation in time (bit-reversed in,
// natural out), so a convolution needs no reordering (see fftplan.go).
// Spans shorter than FFT_LOCAL run in shared memory in one launch
// (fft_local, fft_conv), longer ones one launch per stage (fft_stage).
#include "common.cuh"

#define FFT_P 3
#define FFT_LOCAL 2048

__device__ __forceinline__ double2 cmul(double2 a, double2 b) {
	return make_double2(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}

// fftPair: butterfly j of the stage with half-span h pairs i0 and i0 + h;
// its twiddle is tw[k · tabN/2h], k = j mod h (fftplan.go's fftPair).
__device__ __forceinline__ int fftPair(int j, int h, int tabN, int* t) {
	int k = j & (h - 1);
	*t = k * (tabN / (2 * h));
	return ((j - k) << 1) + k;
}

// butterfly: forward (DIF) a, b ← a+b, (a−b)·w; inverse (DIT) with the
// conjugate twiddle, a, b ← a+b·w̄, a−b·w̄ (fftplan.go's fftButterfly).
__device__ __forceinline__ void butterfly(double2* a, double2* b, double2 w, int inv) {
	if (!inv) {
		double2 d = make_double2(a->x - b->x, a->y - b->y);
		*a = make_double2(a->x + b->x, a->y + b->y);
		*b = cmul(d, w);
	} else {
		w.y = -w.y;
		double2 t = cmul(*b, w);
		*b = make_double2(a->x - t.x, a->y - t.y);
		*a = make_double2(a->x + t.x, a->y + t.y);
	}
}

// fft_stage: one global radix-2 stage (half-span h) of batch transforms of
// length n: element e of transform b at x[b·bs + e·es]. One thread per
// butterfly; consecutive threads take consecutive butterflies of a row
// (es = 1) or the same butterfly of consecutive columns (es > 1), so both
// read coalesced.
extern "C" __global__ void fft_stage(double2* x, const double2* tw, int tabN, int n, int h, int batch, int es, int bs,
                                     int inv) {
	// batch · n/2 < 2^31 (the host checks): 32-bit index arithmetic.
	unsigned t = blockIdx.x * blockDim.x + threadIdx.x;
	unsigned half = (unsigned)n >> 1;
	if (t >= (unsigned)batch * half) return;
	int b, j;
	if (es == 1) {
		b = (int)(t / half);
		j = (int)(t & (half - 1));
	} else {
		b = (int)(t % (unsigned)batch);
		j = (int)(t / (unsigned)batch);
	}
	int ti;
	int i0 = fftPair(j, h, tabN, &ti);
	double2* p0 = x + (size_t)b * bs + (size_t)i0 * es;
	double2* p1 = p0 + (size_t)h * es;
	double2 a = *p0, c = *p1;
	butterfly(&a, &c, tw[ti], inv);
	*p0 = a;
	*p1 = c;
}

// fftLocal: the stages with half-span < m of segment s (elements s·m …
// s·m+m−1, m = min(n, FFT_LOCAL)) of transform b, from shared memory: one
// block per (segment, transform), consecutive blocks on consecutive
// transforms (neighbouring columns share their cache lines). Forward stages
// run h = m/2 … 1, inverse ones h = 1 … m/2. With CONV the forward stages,
// the product with the kernel's spectrum (spec[e·kw + b mod kw], e the
// element's bit-reversed position, as the spectrum was made) and the
// inverse stages run in one pass.
template <bool CONV>
__device__ void fftLocal(double2* x, const double2* __restrict__ tw, int tabN, int n, int m, int batch, int es, int bs,
                         int inv, const double* __restrict__ spec, int kw) {
	__shared__ double2 sh[FFT_LOCAL];
	int b = blockIdx.x % batch;
	int s = blockIdx.x / batch;
	double2* base = x + (size_t)b * bs + (size_t)s * m * es;
	for (int e = threadIdx.x; e < m; e += blockDim.x) sh[e] = base[(size_t)e * es];
	__syncthreads();
	int half = m >> 1;
	if (CONV || !inv) {
		for (int h = half; h >= 1; h >>= 1) {
			for (int j = threadIdx.x; j < half; j += blockDim.x) {
				int ti;
				int i0 = fftPair(j, h, tabN, &ti);
				double2 a = sh[i0], c = sh[i0 + h];
				butterfly(&a, &c, tw[ti], 0);
				sh[i0] = a;
				sh[i0 + h] = c;
			}
			__syncthreads();
		}
	}
	if (CONV) {
		for (int e = threadIdx.x; e < m; e += blockDim.x) {
			double k = spec[(size_t)(s * m + e) * kw + b % kw];
			sh[e].x *= k;
			sh[e].y *= k;
		}
		__syncthreads();
	}
	if (CONV || inv) {
		for (int h = 1; h < m; h <<= 1) {
			for (int j = threadIdx.x; j < half; j += blockDim.x) {
				int ti;
				int i0 = fftPair(j, h, tabN, &ti);
				double2 a = sh[i0], c = sh[i0 + h];
				butterfly(&a, &c, tw[ti], 1);
				sh[i0] = a;
				sh[i0 + h] = c;
			}
			__syncthreads();
		}
	}
	for (int e = threadIdx.x; e < m; e += blockDim.x) base[(size_t)e * es] = sh[e];
}

// fft_local: the shared-memory stages of a forward (inv = 0) or inverse
// transform. Grid: batch · n/m blocks.
extern "C" __global__ void fft_local(double2* x, const double2* tw, int tabN, int n, int m, int batch, int es, int bs,
                                     int inv) {
	fftLocal<false>(x, tw, tabN, n, m, batch, es, bs, inv, nullptr, 1);
}

// fft_conv: forward shared-memory stages, × spectrum, inverse shared-memory
// stages (the columns of the convolution).
extern "C" __global__ void fft_conv(double2* x, const double2* tw, int tabN, int n, int m, int batch, int es, int bs,
                                    const double* spec, int kw) {
	fftLocal<true>(x, tw, tabN, n, m, batch, es, bs, 0, spec, kw);
}

// fft_kernel_grid: the kernel 1/(1+d²)² on the padded grid, d the node
// offset of the circulant (even) embedding times h, in both planes
// (fftplan.go's fftKernelValue).
extern "C" __global__ void fft_kernel_grid(double2* x, int px, int py, double h) {
	size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (t >= (size_t)px * py) return;
	int gx = (int)(t % px), gy = (int)(t / px);
	double dx = gx > px / 2 ? (double)(gx - px) : (double)gx;
	double dy = gy > py / 2 ? (double)(gy - py) : (double)gy;
	double d2 = (dx * dx + dy * dy) * h * h;
	double w = 1.0 / (1.0 + d2);
	double2 v = make_double2(w * w, 0.0);
	x[(size_t)(2 * gy) * px + gx] = v;
	x[(size_t)(2 * gy + 1) * px + gx] = v;
}

// fft_kernel_spectrum: the real part of plane 0's transform (the kernel is
// even, so its spectrum is real) times scale = 1/(px·py), the inverse
// transform's normalisation, into spec[gy'·px + gx'].
extern "C" __global__ void fft_kernel_spectrum(const double2* x, int px, int py, double scale, double* spec) {
	size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (t >= (size_t)px * py) return;
	int gx = (int)(t % px), gy = (int)(t / px);
	spec[t] = x[(size_t)(2 * gy) * px + gx].x * scale;
}

// Min and max that keep a NaN (so a diverged Y reaches the host's check).
__device__ __forceinline__ float nanMin(float a, float b) { return (a < b || a != a) ? a : b; }
__device__ __forceinline__ float nanMax(float a, float b) { return (a > b || a != a) ? a : b; }

// fft_bbox: per block, min x, max x, min y, max y of Y (N×2) into
// part[4·block]; 256 threads a block, grid-stride. The host reduces the
// blocks' values.
extern "C" __global__ void fft_bbox(const float* y, int n, float* part) {
	__shared__ float sh[4][8];
	float inf = __int_as_float(0x7f800000);
	float v0 = inf, v1 = -inf, v2 = inf, v3 = -inf;
	for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
		float a = y[2 * (size_t)i], c = y[2 * (size_t)i + 1];
		v0 = nanMin(v0, a);
		v1 = nanMax(v1, a);
		v2 = nanMin(v2, c);
		v3 = nanMax(v3, c);
	}
	for (int o = 16; o > 0; o >>= 1) {
		v0 = nanMin(v0, __shfl_down_sync(0xffffffffu, v0, o));
		v1 = nanMax(v1, __shfl_down_sync(0xffffffffu, v1, o));
		v2 = nanMin(v2, __shfl_down_sync(0xffffffffu, v2, o));
		v3 = nanMax(v3, __shfl_down_sync(0xffffffffu, v3, o));
	}
	int w = threadIdx.x >> 5;
	if ((threadIdx.x & 31) == 0) {
		sh[0][w] = v0;
		sh[1][w] = v1;
		sh[2][w] = v2;
		sh[3][w] = v3;
	}
	__syncthreads();
	if (threadIdx.x < 4) {
		int c = threadIdx.x;
		float r = sh[c][0];
		for (int k = 1; k < (int)(blockDim.x >> 5); k++) r = (c & 1) ? nanMax(r, sh[c][k]) : nanMin(r, sh[c][k]);
		part[4 * blockIdx.x + c] = r;
	}
}

// lagrange: the FFT_P Lagrange basis polynomials through the nodes k + 0.5
// at u (cpu/fft.go's lagrange).
__device__ __forceinline__ void lagrange(double u, double* w) {
#pragma unroll
	for (int k = 0; k < FFT_P; k++) {
		double num = 1.0, den = 1.0;
#pragma unroll
		for (int l = 0; l < FFT_P; l++) {
			if (l != k) {
				num *= u - (double)l - 0.5;
				den *= (double)(k - l);
			}
		}
		w[k] = num / den;
	}
}

// locate: the box of a point and its weights (fftplan.go's locate).
__device__ __forceinline__ void locate(float px_, float py_, double x0, double y0, double invh, int nbx, int nby, int* bx,
                                       int* by, double* wx, double* wy) {
	double ux = ((double)px_ - x0) * invh;
	double uy = ((double)py_ - y0) * invh;
	*bx = max(min((int)ux / FFT_P, nbx - 1), 0);
	*by = max(min((int)uy / FFT_P, nby - 1), 0);
	lagrange(ux - (double)(*bx * FFT_P), wx);
	lagrange(uy - (double)(*by * FFT_P), wy);
}

__device__ __forceinline__ double warpSum(double v) {
	for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
	return v;
}

// fft_spread: each point adds its weights × charges [1, x, y, ‖y‖²] (x, y
// relative to the box centre (cx, cy)) to the FFT_P² nodes of its box, with
// float64 atomics. While a layout is compact many points share a box, and a
// warp whose 32 points are all in one box sums them with shuffles first and
// adds once (at the first steps every point is in the same box).
extern "C" __global__ void fft_spread(const float* y, int n, double x0, double y0, double cx, double cy, double invh,
                                      int nbx, int nby, int px, double2* grid) {
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	bool active = i < n;
	int bx = 0, by = 0;
	double wx[FFT_P] = {}, wy[FFT_P] = {};
	double x = 0, v = 0;
	if (active) {
		float a = y[2 * (size_t)i], c = y[2 * (size_t)i + 1];
		locate(a, c, x0, y0, invh, nbx, nby, &bx, &by, wx, wy);
		x = (double)a - cx;
		v = (double)c - cy;
	}
	int key = active ? by * nbx + bx : -1;
	bool uniform = __all_sync(0xffffffffu, key == __shfl_sync(0xffffffffu, key, 0)) && key >= 0;
	double q1 = x, q2 = v, q3 = x * x + v * v;
	double* g = (double*)grid;
#pragma unroll
	for (int a = 0; a < FFT_P; a++) {
#pragma unroll
		for (int c = 0; c < FFT_P; c++) {
			double s = wy[a] * wx[c];
			size_t k = 2 * ((size_t)(2 * (by * FFT_P + a)) * px + bx * FFT_P + c); // plane 0, real part
			size_t k1 = k + 2 * (size_t)px;                                       // plane 1
			if (uniform) {
				double s0 = warpSum(s), s1 = warpSum(s * q1), s2 = warpSum(s * q2), s3 = warpSum(s * q3);
				if ((threadIdx.x & 31) == 0) {
					atomicAdd(g + k, s0);
					atomicAdd(g + k + 1, s1);
					atomicAdd(g + k1, s2);
					atomicAdd(g + k1 + 1, s3);
				}
			} else if (active) {
				atomicAdd(g + k, s);
				atomicAdd(g + k + 1, s * q1);
				atomicAdd(g + k1, s * q2);
				atomicAdd(g + k1 + 1, s * q3);
			}
		}
	}
}

// fft_gather: each point interpolates the potentials φ0 + iφ1 (plane 0)
// and φ2 + iφ3 (plane 1) at its box's nodes and forms
//   rep_i = y_i φ0 − (φ1, φ2)
//   Z_i   = (1+‖y_i‖²) φ0 − 2 y_i·(φ1, φ2) + φ3 − 1
// (the −1 removes the self term w_ii = 1; cpu/fft.go subtracts N at the
// end). The block's Z is added to z with one double atomicAdd. 256 threads
// a block.
extern "C" __global__ void fft_gather(const float* y, int n, double x0, double y0, double cx, double cy, double invh,
                                      int nbx, int nby, int px, const double2* grid, float* rep, double* z) {
	__shared__ double red[32];
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	double zs = 0;
	if (i < n) {
		float a0 = y[2 * (size_t)i], c0 = y[2 * (size_t)i + 1];
		int bx, by;
		double wx[FFT_P], wy[FFT_P];
		locate(a0, c0, x0, y0, invh, nbx, nby, &bx, &by, wx, wy);
		double2 pa = make_double2(0, 0), pb = make_double2(0, 0);
#pragma unroll
		for (int a = 0; a < FFT_P; a++) {
			const double2* r0 = grid + (size_t)(2 * (by * FFT_P + a)) * px + bx * FFT_P;
			const double2* r1 = r0 + px;
			double2 ra = make_double2(0, 0), rb = make_double2(0, 0);
#pragma unroll
			for (int c = 0; c < FFT_P; c++) {
				double2 u = r0[c], w = r1[c];
				ra.x += wx[c] * u.x;
				ra.y += wx[c] * u.y;
				rb.x += wx[c] * w.x;
				rb.y += wx[c] * w.y;
			}
			pa.x += wy[a] * ra.x;
			pa.y += wy[a] * ra.y;
			pb.x += wy[a] * rb.x;
			pb.y += wy[a] * rb.y;
		}
		double phi0 = pa.x, phi1 = pa.y, phi2 = pb.x, phi3 = pb.y;
		double x = (double)a0 - cx, v = (double)c0 - cy;
		rep[2 * (size_t)i] = (float)(x * phi0 - phi1);
		rep[2 * (size_t)i + 1] = (float)(v * phi0 - phi2);
		zs = (1.0 + x * x + v * v) * phi0 - 2.0 * (x * phi1 + v * phi2) + phi3 - 1.0;
	}
	double bz = blockSumDouble(zs, red);
	if (threadIdx.x == 0) atomicAdd(z, bz);
}
