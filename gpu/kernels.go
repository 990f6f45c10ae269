package gpu

import "fmt"

// paramKind is the type of one kernel parameter as the PTX declares it.
type paramKind uint8

const (
	pPtr paramKind = iota // a device pointer: .param .u64
	pI32                  // int: .param .u32 (or .s32)
	pF32                  // float: .param .f32
	pF64                  // double: .param .f64
)

func (k paramKind) String() string {
	switch k {
	case pPtr:
		return "ptr"
	case pI32:
		return "i32"
	case pF32:
		return "f32"
	case pF64:
		return "f64"
	}
	return "?"
}

// bytes is the parameter's size in the PTX.
func (k paramKind) bytes() int {
	if k == pPtr || k == pF64 {
		return 8
	}
	return 4
}

// kernelID names an entry of kernelTable.
type kernelID int

// kernelSig is one kernel: the PTX module (kernels/<module>.ptx) that holds
// it, its entry name and its parameters in order. The launcher checks every
// launch's arguments against it, and TestKernelTableMatchesPTX checks it
// against the committed PTX, so the Go side and the .cu side cannot drift
// apart silently.
type kernelSig struct {
	module string
	name   string
	params []paramKind
	block  blockRule
}

// blockRule is what a kernel's source assumes of its block; the launcher
// refuses a launch that breaks it (a GPU would not: it would compute
// garbage or read past a shared array).
type blockRule struct {
	exact     [3]int // the block must be exactly this (zero: any size)
	warps     bool   // whole warps: full-mask shuffles and votes
	maxThread int    // at most this many threads (zero: the device's limit)
}

// check reports whether block satisfies the rule. Kernels without an
// exact rule index by threadIdx.x only: their blocks are 1-D.
func (r blockRule) check(block [3]int) error {
	if r.exact != ([3]int{}) {
		if block != r.exact {
			return fmt.Errorf("block %v, the kernel is written for exactly %v", block, r.exact)
		}
		return nil
	}
	if block[1] != 1 || block[2] != 1 {
		return fmt.Errorf("block %v, the kernel is 1-D", block)
	}
	if r.warps && block[0]%32 != 0 {
		return fmt.Errorf("block of %d threads, the kernel's warp shuffles need a multiple of 32", block[0])
	}
	if r.maxThread > 0 && block[0] > r.maxThread {
		return fmt.Errorf("block of %d threads, the kernel handles at most %d", block[0], r.maxThread)
	}
	return nil
}

const (
	kColsumU8 kernelID = iota
	kColsumF32
	kCenterU8
	kCenterF32
	kGemmNN
	kGemmTNAcc
	kF64ToF32
	kKNNScan
	kCalibrateRows
	kRepulseExact2D
	kRepulseExact3D
	kUpdate2D
	kUpdate3D
	kRecentre
	kKLTerms
	kFFTStage
	kFFTLocal
	kFFTConv
	kFFTKernelGrid
	kFFTKernelSpectrum
	kFFTBBox
	kFFTSpread
	kFFTGather
	numKernels
)

// modules are the PTX files go generate ./gpu writes (gen.go).
var modules = []string{"pca", "knn", "affinity", "tsne", "fft"}

var kernelTable = [numKernels]kernelSig{
	kColsumU8:       {"pca", "colsum_u8", []paramKind{pPtr, pI32, pI32, pPtr}, blockRule{}},
	kColsumF32:      {"pca", "colsum_f32", []paramKind{pPtr, pI32, pI32, pPtr}, blockRule{}},
	kCenterU8:       {"pca", "center_u8", []paramKind{pPtr, pPtr, pI32, pI32, pPtr}, blockRule{}},
	kCenterF32:      {"pca", "center_f32", []paramKind{pPtr, pPtr, pI32, pI32, pPtr}, blockRule{}},
	kGemmNN:         {"pca", "gemm_nn", []paramKind{pPtr, pPtr, pPtr, pI32, pI32, pI32}, blockRule{exact: [3]int{gemmTile, gemmTile, 1}}},
	kGemmTNAcc:      {"pca", "gemm_tn_acc", []paramKind{pPtr, pPtr, pPtr, pI32, pI32, pI32}, blockRule{exact: [3]int{gemmTile, gemmTile, 1}}},
	kF64ToF32:       {"pca", "f64_to_f32", []paramKind{pPtr, pPtr, pI32}, blockRule{}},
	kKNNScan:        {"knn", "knn_scan", []paramKind{pPtr, pI32, pI32, pI32, pI32, pI32, pPtr, pPtr}, blockRule{exact: [3]int{knnQueriesPerBlock, 1, 1}}},
	kCalibrateRows:  {"affinity", "calibrate_rows", []paramKind{pPtr, pI32, pI32, pF64, pF64, pPtr, pPtr}, blockRule{}},
	kRepulseExact2D: {"tsne", "repulse_exact_2d", []paramKind{pPtr, pI32, pI32, pPtr, pPtr}, blockRule{exact: [3]int{repBlock, 1, 1}}},
	kRepulseExact3D: {"tsne", "repulse_exact_3d", []paramKind{pPtr, pI32, pI32, pPtr, pPtr}, blockRule{exact: [3]int{repBlock, 1, 1}}},
	kUpdate2D: {"tsne", "update_2d", []paramKind{pPtr, pPtr, pPtr, pPtr, pPtr, pPtr, pI32,
		pF32, pF32, pF32, pPtr, pPtr, pPtr, pPtr}, blockRule{warps: true}},
	kUpdate3D: {"tsne", "update_3d", []paramKind{pPtr, pPtr, pPtr, pPtr, pPtr, pPtr, pI32,
		pF32, pF32, pF32, pPtr, pPtr, pPtr, pPtr}, blockRule{warps: true}},
	kRecentre: {"tsne", "recentre", []paramKind{pPtr, pPtr, pI32, pI32}, blockRule{}},
	kKLTerms:  {"tsne", "kl_terms", []paramKind{pPtr, pPtr, pPtr, pPtr, pI32, pI32, pPtr}, blockRule{warps: true}},
	// fft.cu (the FFT-interpolation repulsion, fft.go)
	kFFTStage:          {"fft", "fft_stage", []paramKind{pPtr, pPtr, pI32, pI32, pI32, pI32, pI32, pI32, pI32}, blockRule{}},
	kFFTLocal:          {"fft", "fft_local", []paramKind{pPtr, pPtr, pI32, pI32, pI32, pI32, pI32, pI32, pI32}, blockRule{}},
	kFFTConv:           {"fft", "fft_conv", []paramKind{pPtr, pPtr, pI32, pI32, pI32, pI32, pI32, pI32, pPtr, pI32}, blockRule{}},
	kFFTKernelGrid:     {"fft", "fft_kernel_grid", []paramKind{pPtr, pI32, pI32, pF64}, blockRule{}},
	kFFTKernelSpectrum: {"fft", "fft_kernel_spectrum", []paramKind{pPtr, pI32, pI32, pF64, pPtr}, blockRule{}},
	kFFTBBox:           {"fft", "fft_bbox", []paramKind{pPtr, pI32, pPtr}, blockRule{warps: true, maxThread: 256}},
	kFFTSpread: {"fft", "fft_spread", []paramKind{pPtr, pI32, pF64, pF64, pF64, pF64, pF64,
		pI32, pI32, pI32, pPtr}, blockRule{warps: true}},
	kFFTGather: {"fft", "fft_gather", []paramKind{pPtr, pI32, pF64, pF64, pF64, pF64, pF64,
		pI32, pI32, pI32, pPtr, pPtr, pPtr}, blockRule{warps: true}},
}

// Launch geometry constants shared with the .cu files (#define there).
const (
	knnQueriesPerBlock = 128 // KNN_Q in knn.cu
	repBlock           = 256 // REP_BLOCK in tsne.cu
	gemmTile           = 16  // TILE in pca.cu
)
