// Perplexity calibration on the device, one thread per point, in float64:
// the same safeguarded Newton search on β as the host's calibrateRow
// (embed/affinity.go; van der Maaten & Hinton 2008, §2): with distances
// shifted by their minimum, H(β) = log Σ_j e^{−β d_j} + β E_p[d] and
// dH/dβ = −β Var_p(d), Newton steps guarded by a bisection bracket, to
// |H − log perplexity| < tol. Writes the normalised conditional
// probabilities (N×K, float64) and β.
#include "common.cuh"

__device__ static void entropyRow(const float* d, int k, double dmin, double beta, double* p, double* h, double* dh) {
	double sum = 0, mean = 0;
	for (int j = 0; j < k; j++) {
		double dj = (double)d[j] - dmin;
		double e = exp(-beta * dj);
		p[j] = e;
		sum += e;
		mean += e * dj;
	}
	mean /= sum;
	double var = 0;
	for (int j = 0; j < k; j++) {
		double dj = (double)d[j] - dmin;
		p[j] /= sum;
		var += p[j] * (dj - mean) * (dj - mean);
	}
	*h = log(sum) + beta * mean;
	*dh = -beta * var;
}

extern "C" __global__ void calibrate_rows(const float* dist2, int n, int k, double target, double tol, double* cond, double* betaOut) {
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= n) return;
	const float* d = dist2 + (size_t)i * k;
	double* p = cond + (size_t)i * k;
	double dmin = d[0];
	for (int j = 0; j < k; j++) dmin = fmin(dmin, (double)d[j]);
	double spread = (double)d[k / 2] - dmin;
	if (!(spread > 0)) spread = (double)d[k - 1] - dmin;
	if (!(spread > 0)) {
		for (int j = 0; j < k; j++) p[j] = 1.0 / k;
		betaOut[i] = 1;
		return;
	}
	double beta = fmax(target, 1.0) / spread;
	double lo = 0, hi = __longlong_as_double(0x7ff0000000000000LL);
	double h, dh;
	for (int it = 0; it < 200; it++) {
		entropyRow(d, k, dmin, beta, p, &h, &dh);
		double diff = h - target;
		if (fabs(diff) < tol / 4) {
			betaOut[i] = beta;
			return;
		}
		if (diff > 0) lo = beta;
		else hi = beta;
		double next = beta - diff / dh;
		if (!(next > lo && next < hi) || dh == 0) {
			next = isinf(hi) ? beta * 2 : (lo + hi) / 2;
		}
		if (next == beta) break;
		beta = next;
	}
	entropyRow(d, k, dmin, beta, p, &h, &dh);
	betaOut[i] = beta;
}
