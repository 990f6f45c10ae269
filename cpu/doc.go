// Package cpu is the embed.Backend that runs every kernel of a t-SNE run on
// the CPU, parallel over all cores, in Go without cgo: exact nearest
// neighbours (blocked distance tiles) and approximate ones (random-projection
// trees refined by NN-descent), the PCA products, and the optimiser with
// exact, Barnes-Hut and FFT-interpolated repulsion.
//
// # What it computes with
//
// The hot inner loops are Go assembly for amd64 with AVX2 and FMA
// (kernel_amd64.s): the mr×nr tiles of the PCA products (gemmTile), of the
// squared distances of the exact neighbour search (distTile), and the
// Barnes-Hut source groups in 2-D and 3-D (bhSources2/3). Each has a
// portable Go version with the same contract (kernel_go.go), used on CPUs
// without AVX2/FMA and on other architectures (kernel_other.go) and checked
// against the assembly by the tests. The approximate search also asks for
// the rows and lists it will read at random a step ahead (prefetchRows,
// PREFETCHT1; a no-op elsewhere), which took its stage of a whole run at
// 1,000,000 points from 172 s to 109 s. Everything else — the FFT (our own
// Stockham radix-4/2/3 transform, fft_plan.go), the trees, NN-descent, the
// update — is plain Go.
//
// # Why not gonum or cgo
//
// gonum is used only by embed, for the small dense linear algebra of its
// PCA (orthonormalisation and the eigendecomposition of k×k matrices,
// k ≈ 50), where its speed does not matter. The kernels that do matter are
// ours because their shapes are not a library call's: the distance tile
// fuses ‖a‖²+‖b‖²−2a·b with the per-row candidate thresholds and masks in
// registers, so a separate GEMM and a pass over its output are never made;
// the Barnes-Hut groups evaluate the kernel and its sums in one sweep.
// gonum's FFTPACK port was measured in the FFT repulsion and was several
// times slower on the grid sizes used than the radix-2 loop that replaced
// it, itself replaced by a Stockham radix-4/2/3 transform (fft_plan.go)
// so that grids pad to 2^a·3^b. A BLAS or FFTW through cgo would make the default
// build need a C toolchain and the library on every host; the service must
// build with plain `go build` and run anywhere, with the GPU as an option
// (package gpu, which binds the CUDA driver itself). The tiles reach 47–105
// GFLOP/s per core against 3.3 for the portable Go fallback (AVX2 Xeon).
//
// Results are deterministic for a given thread count (see Backend).
package cpu
