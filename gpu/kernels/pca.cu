// PCA kernels: column sums and the two products of the randomized SVD
// (Halko, Martinsson & Tropp 2011) on a block of rows. The host streams the
// input in row blocks (uint8 pixels are converted here, on the device, so
// they cross the bus as bytes) and accumulates across blocks in float64.
#include "common.cuh"

// colsum_u8: sums[c] += Σ_r x[r·d + c] over one block of rows. One thread
// per column, so a warp reads 32 consecutive bytes of a row. Exact: a
// block's sum of bytes fits a double's 53 bits.
extern "C" __global__ void colsum_u8(const unsigned char* x, int rows, int d, double* sums) {
	int c = blockIdx.x * blockDim.x + threadIdx.x;
	if (c >= d) return;
	double s = 0;
	for (int r = 0; r < rows; r++) s += x[(size_t)r * d + c];
	sums[c] += s;
}

extern "C" __global__ void colsum_f32(const float* x, int rows, int d, double* sums) {
	int c = blockIdx.x * blockDim.x + threadIdx.x;
	if (c >= d) return;
	double s = 0;
	for (int r = 0; r < rows; r++) s += x[(size_t)r * d + c];
	sums[c] += s;
}

// center_u8 / center_f32: out = x − 1·meanᵀ for one block (rows×d).
extern "C" __global__ void center_u8(const unsigned char* x, const float* mean, int rows, int d, float* out) {
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	size_t total = (size_t)rows * d;
	for (; i < total; i += (size_t)gridDim.x * blockDim.x) out[i] = (float)x[i] - mean[i % d];
}

extern "C" __global__ void center_f32(const float* x, const float* mean, int rows, int d, float* out) {
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	size_t total = (size_t)rows * d;
	for (; i < total; i += (size_t)gridDim.x * blockDim.x) out[i] = x[i] - mean[i % d];
}

#define TILE 16

// gemm_nn: C (m×n) = A (m×k) · B (k×n), all row-major float32, with 16×16
// shared-memory tiles (the textbook blocked product). Used for MulRight on
// one row block, where k (the input's columns) is summed within the tile
// loop: at most 30,000 float32 terms of centred pixels, well inside float32
// for the randomized SVD's purposes (the host's product is float32 too).
extern "C" __global__ void gemm_nn(const float* A, const float* B, float* C, int m, int k, int n) {
	__shared__ float as[TILE][TILE];
	__shared__ float bs[TILE][TILE + 1];
	int row = blockIdx.y * TILE + threadIdx.y;
	int col = blockIdx.x * TILE + threadIdx.x;
	float acc = 0;
	for (int t = 0; t < k; t += TILE) {
		int ac = t + threadIdx.x, br = t + threadIdx.y;
		as[threadIdx.y][threadIdx.x] = (row < m && ac < k) ? A[(size_t)row * k + ac] : 0.f;
		bs[threadIdx.y][threadIdx.x] = (br < k && col < n) ? B[(size_t)br * n + col] : 0.f;
		__syncthreads();
#pragma unroll
		for (int e = 0; e < TILE; e++) acc += as[threadIdx.y][e] * bs[e][threadIdx.x];
		__syncthreads();
	}
	if (row < m && col < n) C[(size_t)row * n + col] = acc;
}

// gemm_tn_acc: C (d×l, float64) += Aᵀ·B for A (rows×d) and B (rows×l),
// float32 and row-major. The sum over one block's rows is float32; the sum
// across blocks (up to 10⁶ rows) is float64, in C.
extern "C" __global__ void gemm_tn_acc(const float* A, const float* B, double* C, int rows, int d, int l) {
	__shared__ float as[TILE][TILE + 1];
	__shared__ float bs[TILE][TILE + 1];
	int ci = blockIdx.y * TILE + threadIdx.y; // row of C = column of A
	int cj = blockIdx.x * TILE + threadIdx.x; // column of C = column of B
	float acc = 0;
	for (int t = 0; t < rows; t += TILE) {
		// as[r][c] = A[t+r][blockIdx.y·TILE + c]; bs[r][c] = B[t+r][blockIdx.x·TILE + c]
		int r = t + threadIdx.y;
		int ac = blockIdx.y * TILE + threadIdx.x;
		as[threadIdx.y][threadIdx.x] = (r < rows && ac < d) ? A[(size_t)r * d + ac] : 0.f;
		bs[threadIdx.y][threadIdx.x] = (r < rows && cj < l) ? B[(size_t)r * l + cj] : 0.f;
		__syncthreads();
#pragma unroll
		for (int e = 0; e < TILE; e++) acc += as[e][threadIdx.y] * bs[e][threadIdx.x];
		__syncthreads();
	}
	if (ci < d && cj < l) C[(size_t)ci * l + cj] += acc;
}

// f64_to_f32 narrows an accumulated result for the host.
extern "C" __global__ void f64_to_f32(const double* src, float* dst, int n) {
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n) dst[i] = (float)src[i];
}
