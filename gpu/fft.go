//go:build cuda

package gpu

// This file is the place of the FFT-accelerated interpolation repulsion
// (Linderman et al. 2019, as cpu/fft.go defines it: node spacing 0.2, 3
// nodes per box) on the device. It is not written yet: fftAvailable is
// false, so resolveRepulsion runs 2-D problems exactly up to exactMax
// points and Fits refuses larger ones (auto then runs them on the CPU).
// The implementation replaces this file, keeping these three names, and
// adds kernels/fft.cu: a //go:generate line in gen.go, "fft" in modules
// and its entries in kernelTable (kernels.go; TestKernelTableMatchesPTX
// then checks them against the PTX), and sets exactAutoMax2D
// (optimizer.go) from measurements. Its forces must follow the repulsion
// contract in optimizer.go, and checkStep-style tests can compare it with
// exactRepulsion on the device.

// fftAvailable reports whether newFFTRepulsion works in this build.
const fftAvailable = false

// newFFTRepulsion returns the FFT repulsion for n points in 2-D. It runs
// on the device thread.
func newFFTRepulsion(dev *device, n int) (repulsion, error) { return nil, errNoFFT }

// fftDeviceBytes is the device memory the FFT method needs for n points,
// beyond the optimiser's own buffers (for Fits).
func fftDeviceBytes(n int) int64 { return 0 }
