package gpu

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
	kColsumU8:       {"pca", "colsum_u8", []paramKind{pPtr, pI32, pI32, pPtr}},
	kColsumF32:      {"pca", "colsum_f32", []paramKind{pPtr, pI32, pI32, pPtr}},
	kCenterU8:       {"pca", "center_u8", []paramKind{pPtr, pPtr, pI32, pI32, pPtr}},
	kCenterF32:      {"pca", "center_f32", []paramKind{pPtr, pPtr, pI32, pI32, pPtr}},
	kGemmNN:         {"pca", "gemm_nn", []paramKind{pPtr, pPtr, pPtr, pI32, pI32, pI32}},
	kGemmTNAcc:      {"pca", "gemm_tn_acc", []paramKind{pPtr, pPtr, pPtr, pI32, pI32, pI32}},
	kF64ToF32:       {"pca", "f64_to_f32", []paramKind{pPtr, pPtr, pI32}},
	kKNNScan:        {"knn", "knn_scan", []paramKind{pPtr, pI32, pI32, pI32, pI32, pI32, pPtr, pPtr}},
	kCalibrateRows:  {"affinity", "calibrate_rows", []paramKind{pPtr, pI32, pI32, pF64, pF64, pPtr, pPtr}},
	kRepulseExact2D: {"tsne", "repulse_exact_2d", []paramKind{pPtr, pI32, pI32, pPtr, pPtr}},
	kRepulseExact3D: {"tsne", "repulse_exact_3d", []paramKind{pPtr, pI32, pI32, pPtr, pPtr}},
	kUpdate2D: {"tsne", "update_2d", []paramKind{pPtr, pPtr, pPtr, pPtr, pPtr, pPtr, pI32,
		pF32, pF32, pF32, pPtr, pPtr, pPtr, pPtr}},
	kUpdate3D: {"tsne", "update_3d", []paramKind{pPtr, pPtr, pPtr, pPtr, pPtr, pPtr, pI32,
		pF32, pF32, pF32, pPtr, pPtr, pPtr, pPtr}},
	kRecentre: {"tsne", "recentre", []paramKind{pPtr, pPtr, pI32, pI32}},
	kKLTerms:  {"tsne", "kl_terms", []paramKind{pPtr, pPtr, pPtr, pPtr, pI32, pI32, pPtr}},
	// fft.cu (the FFT-interpolation repulsion, fft.go)
	kFFTStage:          {"fft", "fft_stage", []paramKind{pPtr, pPtr, pI32, pI32, pI32, pI32, pI32, pI32, pI32}},
	kFFTLocal:          {"fft", "fft_local", []paramKind{pPtr, pPtr, pI32, pI32, pI32, pI32, pI32, pI32, pI32}},
	kFFTConv:           {"fft", "fft_conv", []paramKind{pPtr, pPtr, pI32, pI32, pI32, pI32, pI32, pI32, pPtr, pI32}},
	kFFTKernelGrid:     {"fft", "fft_kernel_grid", []paramKind{pPtr, pI32, pI32, pF64}},
	kFFTKernelSpectrum: {"fft", "fft_kernel_spectrum", []paramKind{pPtr, pI32, pI32, pF64, pPtr}},
	kFFTBBox:           {"fft", "fft_bbox", []paramKind{pPtr, pI32, pPtr}},
	kFFTSpread: {"fft", "fft_spread", []paramKind{pPtr, pI32, pF64, pF64, pF64, pF64, pF64,
		pI32, pI32, pI32, pPtr}},
	kFFTGather: {"fft", "fft_gather", []paramKind{pPtr, pI32, pF64, pF64, pF64, pF64, pF64,
		pI32, pI32, pI32, pPtr, pPtr, pPtr}},
}

// Launch geometry constants shared with the .cu files (#define there).
const (
	knnQueriesPerBlock = 128 // KNN_Q in knn.cu
	repBlock           = 256 // REP_BLOCK in tsne.cu
)
