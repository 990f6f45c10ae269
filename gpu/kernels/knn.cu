// Exact k-nearest neighbours: every query row scans a range of reference
// rows held in shared-memory tiles, and keeps its k best in a sorted list
// in global memory (ascending squared distance, ties by ascending index,
// as the host's exact search orders them). The host launches one range of
// references at a time and checks for cancellation between launches; the
// lists persist between launches, so memory is N·k·8 bytes whatever N.
#include "common.cuh"

#define KNN_Q 128 // query rows per block (one per thread)
#define KNN_R 32  // reference rows per shared tile
#define KNN_C 32  // dimensions per chunk

extern "C" __global__ void knn_scan(const float* x, int n, int d, int r0, int r1, int k, float* bestD, int* bestI) {
	// Every thread of a warp reads the same reference element at a time
	// (a broadcast, so no bank conflicts without padding), four at once as
	// a float4: one shared load per eight arithmetic instructions.
	__shared__ __align__(16) float rs[KNN_R][KNN_C];
	int q = blockIdx.x * KNN_Q + threadIdx.x;
	bool active = q < n;
	float* bd = bestD + (size_t)(active ? q : 0) * k;
	int* bi = bestI + (size_t)(active ? q : 0) * k;
	float worst = active ? bd[k - 1] : 0.f;
	const float* xq = x + (size_t)(active ? q : 0) * d;
	for (int t0 = r0; t0 < r1; t0 += KNN_R) {
		float acc[KNN_R];
#pragma unroll
		for (int r = 0; r < KNN_R; r++) acc[r] = 0.f;
		for (int c0 = 0; c0 < d; c0 += KNN_C) {
			for (int e = threadIdx.x; e < KNN_R * KNN_C; e += KNN_Q) {
				int r = e / KNN_C, c = e % KNN_C;
				int gr = t0 + r, gc = c0 + c;
				rs[r][c] = (gr < r1 && gc < d) ? x[(size_t)gr * d + gc] : 0.f;
			}
			__syncthreads();
			float qv[KNN_C];
#pragma unroll
			for (int c = 0; c < KNN_C; c++) qv[c] = (active && c0 + c < d) ? xq[c0 + c] : 0.f;
#pragma unroll
			for (int r = 0; r < KNN_R; r++) {
				const float4* row = reinterpret_cast<const float4*>(rs[r]);
				float s = 0.f;
#pragma unroll
				for (int c4 = 0; c4 < KNN_C / 4; c4++) {
					float4 v = row[c4];
					float a0 = qv[4 * c4] - v.x, a1 = qv[4 * c4 + 1] - v.y;
					float a2 = qv[4 * c4 + 2] - v.z, a3 = qv[4 * c4 + 3] - v.w;
					s = fmaf(a0, a0, s);
					s = fmaf(a1, a1, s);
					s = fmaf(a2, a2, s);
					s = fmaf(a3, a3, s);
				}
				acc[r] += s;
			}
			__syncthreads();
		}
		if (!active) continue;
		for (int r = 0; r < KNN_R; r++) {
			int j = t0 + r;
			if (j >= r1 || j == q) continue;
			float v = acc[r];
			if (!(v < worst)) continue; // references come in ascending index: equal distances keep the earlier one
			int p = k - 1;
			while (p > 0 && bd[p - 1] > v) {
				bd[p] = bd[p - 1];
				bi[p] = bi[p - 1];
				p--;
			}
			bd[p] = v;
			bi[p] = j;
			worst = bd[k - 1];
		}
	}
}
