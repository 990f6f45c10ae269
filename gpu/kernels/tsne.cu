// The t-SNE optimisation on the device (van der Maaten & Hinton 2008):
// exact repulsion, the fused attraction + gains/momentum update, the
// re-centring, and the KL(P‖Q) sum. w_ij = 1/(1+‖y_i−y_j‖²) throughout.
#include "common.cuh"

#define REP_BLOCK 256

// repulse_exact: for every point i, rep[i] = Σ_{j≠i} w_ij² (y_i − y_j)
// (when forces ≠ 0) and Z += Σ_{i≠j} w_ij, by all-pairs tiles: each block
// stages REP_BLOCK points of Y in shared memory and every thread runs its
// point against them. The per-tile partial sums (≤ 256 terms) are float32,
// the per-point and Z totals float64 (Z has N² terms). The block's Z is
// reduced in shared memory and added with one double atomicAdd.
template <int D>
__device__ void repulseExact(const float* __restrict__ y, int n, int forces, float* __restrict__ rep, double* z) {
	__shared__ float sy[REP_BLOCK * D];
	__shared__ double red[32];
	int i = blockIdx.x * REP_BLOCK + threadIdx.x;
	bool active = i < n;
	float yi[D];
#pragma unroll
	for (int c = 0; c < D; c++) yi[c] = active ? y[(size_t)i * D + c] : 0.f;
	double f[D] = {};
	double zs = 0;
	for (int t0 = 0; t0 < n; t0 += REP_BLOCK) {
		int j = t0 + threadIdx.x;
#pragma unroll
		for (int c = 0; c < D; c++) sy[threadIdx.x * D + c] = j < n ? y[(size_t)j * D + c] : 0.f;
		__syncthreads();
		int m = min(REP_BLOCK, n - t0);
		float pf[D] = {};
		float pz = 0;
		for (int r = 0; r < m; r++) {
			float diff[D];
			float d2 = 0;
#pragma unroll
			for (int c = 0; c < D; c++) {
				diff[c] = yi[c] - sy[r * D + c];
				d2 = fmaf(diff[c], diff[c], d2);
			}
			float w = 1.f / (1.f + d2);
			if (t0 + r == i) w = 0.f;
			pz += w;
			float w2 = w * w;
#pragma unroll
			for (int c = 0; c < D; c++) pf[c] = fmaf(w2, diff[c], pf[c]);
		}
		zs += pz;
#pragma unroll
		for (int c = 0; c < D; c++) f[c] += pf[c];
		__syncthreads();
	}
	if (active && forces) {
#pragma unroll
		for (int c = 0; c < D; c++) rep[(size_t)i * D + c] = (float)f[c];
	}
	double bz = blockSumDouble(active ? zs : 0.0, red);
	if (threadIdx.x == 0) atomicAdd(z, bz);
}

extern "C" __global__ void repulse_exact_2d(const float* y, int n, int forces, float* rep, double* z) {
	repulseExact<2>(y, n, forces, rep, z);
}
extern "C" __global__ void repulse_exact_3d(const float* y, int n, int forces, float* rep, double* z) {
	repulseExact<3>(y, n, forces, rep, z);
}

__device__ __forceinline__ int sgn(float v) { return (v > 0) - (v < 0); }

// update: one thread per point. Attraction a_i = Σ_j p_ij w_ij (y_i − y_j)
// over row i of the CSR P (terms float32, row sum float64, as the host),
// gradient g = 4(ex·a_i − rep_i / Z), delta-bar-delta gains (+0.2 when
// sign(g) ≠ sign(update), ×0.8 otherwise, min 0.01), update = mom·update −
// lr·gain·g, ynext = y + update. The block's sum of ynext is added to
// centroid[0..D) (float64) for the re-centring that follows.
template <int D>
__device__ void updateStep(const float* __restrict__ y, const int* __restrict__ rowptr, const int* __restrict__ col,
                           const float* __restrict__ val, const float* __restrict__ rep, const double* z, int n,
                           float ex, float mom, float lr, float* gains, float* upd, float* ynext, double* centroid) {
	__shared__ double red[32];
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	bool active = i < n;
	float yn[D] = {};
	if (active) {
		float yi[D];
#pragma unroll
		for (int c = 0; c < D; c++) yi[c] = y[(size_t)i * D + c];
		double a[D] = {};
		for (int e = rowptr[i]; e < rowptr[i + 1]; e++) {
			int j = col[e];
			float diff[D];
			float d2 = 0;
#pragma unroll
			for (int c = 0; c < D; c++) {
				diff[c] = yi[c] - y[(size_t)j * D + c];
				d2 = fmaf(diff[c], diff[c], d2);
			}
			float pw = val[e] / (1.f + d2);
#pragma unroll
			for (int c = 0; c < D; c++) a[c] += (double)(pw * diff[c]);
		}
		double invZ = 1.0 / *z;
#pragma unroll
		for (int c = 0; c < D; c++) {
			size_t k = (size_t)i * D + c;
			float g = (float)(4.0 * ((double)ex * a[c] - (double)rep[k] * invZ));
			float gain = gains[k];
			float u = upd[k];
			gain = sgn(g) != sgn(u) ? gain + 0.2f : gain * 0.8f;
			gain = fmaxf(gain, 0.01f);
			gains[k] = gain;
			u = mom * u - lr * gain * g;
			upd[k] = u;
			yn[c] = yi[c] + u;
			ynext[k] = yn[c];
		}
	}
#pragma unroll
	for (int c = 0; c < D; c++) {
		double s = blockSumDouble((double)yn[c], red);
		if (threadIdx.x == 0) atomicAdd(&centroid[c], s);
	}
}

extern "C" __global__ void update_2d(const float* y, const int* rowptr, const int* col, const float* val, const float* rep,
                                     const double* z, int n, float ex, float mom, float lr, float* gains, float* upd,
                                     float* ynext, double* centroid) {
	updateStep<2>(y, rowptr, col, val, rep, z, n, ex, mom, lr, gains, upd, ynext, centroid);
}
extern "C" __global__ void update_3d(const float* y, const int* rowptr, const int* col, const float* val, const float* rep,
                                     const double* z, int n, float ex, float mom, float lr, float* gains, float* upd,
                                     float* ynext, double* centroid) {
	updateStep<3>(y, rowptr, col, val, rep, z, n, ex, mom, lr, gains, upd, ynext, centroid);
}

// recentre: y −= centroid / n (the mean rounded to float32, as the host).
extern "C" __global__ void recentre(float* y, const double* centroid, int n, int dims) {
	size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (k >= (size_t)n * dims) return;
	y[k] -= (float)(centroid[k % dims] / n);
}

// kl_terms: out += Σ_ij p_ij log(1 + ‖y_i − y_j‖²) over the CSR P, in
// float64; with Σ p log p and log Z (host) it is KL(P‖Q) =
// Σ p log p − Σ p log w + log Z.
extern "C" __global__ void kl_terms(const float* y, const int* rowptr, const int* col, const float* val, int n, int dims,
                                    double* out) {
	__shared__ double red[32];
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	double s = 0;
	if (i < n) {
		for (int e = rowptr[i]; e < rowptr[i + 1]; e++) {
			float v = val[e];
			if (v <= 0) continue;
			int j = col[e];
			double d2 = 0;
			for (int c = 0; c < dims; c++) {
				double t = (double)(y[(size_t)i * dims + c] - y[(size_t)j * dims + c]);
				d2 += t * t;
			}
			s += (double)v * log1p(d2);
		}
	}
	double b = blockSumDouble(s, red);
	if (threadIdx.x == 0) atomicAdd(out, b);
}
