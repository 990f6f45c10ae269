// Runs kernels/fft.cu on the CPU emulator (cudaemu.h) with the launch
// sequence of fft.go, for TestFFTKernelsOnCPU (fftemu_test.go). Input on
// stdin, output on stdout, numbers as text that round-trips.
//
//   fft n batch es bs inverse len tabN, then len complex values (re im):
//       transform() of fft.go on them; prints the len results.
//   rep n nbx nby mx my px py x0 y0 cx cy invh h, then 2n float32 (Y):
//       forces() of fft.go; prints the bounding box (4 values), Z, 2n rep.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "cudaemu.h"
#include "../../kernels/fft.cu"

static std::vector<double2> twiddles(int tabN) {
	std::vector<double2> tw(std::max(tabN / 2, 1));
	for (int t = 0; t < tabN / 2; t++) {
		double a = -2 * M_PI * (double)t / (double)tabN;
		tw[t] = {std::cos(a), std::sin(a)};
	}
	return tw;
}

static unsigned blocks(long n, int block) { return (unsigned)std::max(1L, (n + block - 1) / block); }

// fft.go's transform.
static void transform(double2* x, const double2* tw, int tabN, int n, int batch, int es, int bs, bool inverse) {
	if (n < 2 || batch < 1) return;
	int m = std::min(n, FFT_LOCAL);
	std::vector<int> global;
	if (inverse)
		for (int h = m; h < n; h <<= 1) global.push_back(h);
	else
		for (int h = n >> 1; h >= m; h >>= 1) global.push_back(h);
	int inv = inverse ? 1 : 0;
	auto stage = [&](int h) {
		emuLaunch(blocks((long)batch * n / 2, 256), 256, [&] { fft_stage(x, tw, tabN, n, h, batch, es, bs, inv); });
	};
	if (!inverse)
		for (int h : global) stage(h);
	emuLaunch(batch * (n / m), std::min(256, m / 2), [&] { fft_local(x, tw, tabN, n, m, batch, es, bs, inv); });
	if (inverse)
		for (int h : global) stage(h);
}

// fft.go's convColumns.
static void convColumns(double2* x, const double2* tw, int tabN, int px, int py, const double* spec) {
	int batch = 2 * px, es = 2 * px, bs = 1;
	int m = std::min(py, FFT_LOCAL);
	for (int h = py >> 1; h >= m; h >>= 1)
		emuLaunch(blocks((long)batch * py / 2, 256), 256, [&] { fft_stage(x, tw, tabN, py, h, batch, es, bs, 0); });
	emuLaunch(batch * (py / m), std::min(256, m / 2), [&] { fft_conv(x, tw, tabN, py, m, batch, es, bs, spec, px); });
	for (int h = m; h < py; h <<= 1)
		emuLaunch(blocks((long)batch * py / 2, 256), 256, [&] { fft_stage(x, tw, tabN, py, h, batch, es, bs, 1); });
}

int main(int argc, char** argv) {
	if (argc < 2) return 2;
	std::string mode = argv[1];
	if (mode == "fft") {
		int n, batch, es, bs, inverse, len, tabN;
		if (scanf("%d %d %d %d %d %d %d", &n, &batch, &es, &bs, &inverse, &len, &tabN) != 7) return 3;
		std::vector<double2> x(len);
		for (auto& v : x)
			if (scanf("%lf %lf", &v.x, &v.y) != 2) return 3;
		auto tw = twiddles(tabN);
		transform(x.data(), tw.data(), tabN, n, batch, es, bs, inverse != 0);
		for (auto& v : x) printf("%.17g %.17g\n", v.x, v.y);
		return 0;
	}
	if (mode != "rep") return 2;
	int n, nbx, nby, mx, my, px, py;
	double x0, y0, cx, cy, invh, h;
	if (scanf("%d %d %d %d %d %d %d %lf %lf %lf %lf %lf %lf", &n, &nbx, &nby, &mx, &my, &px, &py, &x0, &y0, &cx, &cy,
	          &invh, &h) != 13)
		return 3;
	std::vector<float> y(2 * n);
	for (auto& v : y)
		if (scanf("%f", &v) != 1) return 3;
	// boundingGeometry: the kernel's partials, reduced as the host does.
	std::vector<float> part(4 * 128);
	emuLaunch(128, 256, [&] { fft_bbox(y.data(), n, part.data()); });
	double box[4] = {INFINITY, -INFINITY, INFINITY, -INFINITY};
	for (int b = 0; b < 128; b++) {
		box[0] = std::min(box[0], (double)part[4 * b]);
		box[1] = std::max(box[1], (double)part[4 * b + 1]);
		box[2] = std::min(box[2], (double)part[4 * b + 2]);
		box[3] = std::max(box[3], (double)part[4 * b + 3]);
	}
	// prepare: twiddles, the kernel's spectrum.
	int tabN = std::max(px, py);
	auto tw = twiddles(tabN);
	std::vector<double2> grid((size_t)2 * px * py);
	std::vector<double> spec((size_t)px * py);
	emuLaunch(blocks((long)px * py, 256), 256, [&] { fft_kernel_grid(grid.data(), px, py, h); });
	transform(grid.data(), tw.data(), tabN, px, 2 * py, 1, px, false);
	transform(grid.data(), tw.data(), tabN, py, 2 * px, 2 * px, 1, false);
	emuLaunch(blocks((long)px * py, 256), 256,
	          [&] { fft_kernel_spectrum(grid.data(), px, py, 1 / (double)((long)px * py), spec.data()); });
	// forces: memset, spread, convolve, gather.
	std::fill(grid.begin(), grid.end(), double2{0, 0});
	emuLaunch(blocks(n, 256), 256, [&] { fft_spread(y.data(), n, x0, y0, cx, cy, invh, nbx, nby, px, grid.data()); });
	transform(grid.data(), tw.data(), tabN, px, 2 * my, 1, px, false);
	convColumns(grid.data(), tw.data(), tabN, px, py, spec.data());
	transform(grid.data(), tw.data(), tabN, px, 2 * my, 1, px, true);
	std::vector<float> rep(2 * n);
	double z = 0;
	emuLaunch(blocks(n, 256), 256,
	          [&] { fft_gather(y.data(), n, x0, y0, cx, cy, invh, nbx, nby, px, grid.data(), rep.data(), &z); });
	printf("%.9g %.9g %.9g %.9g\n%.17g\n", box[0], box[1], box[2], box[3], z);
	for (float v : rep) printf("%.9g\n", v);
	(void)mx;
	return 0;
}
