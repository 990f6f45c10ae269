package gpu

import (
	"errors"
	"fmt"

	"github.com/tsnemap/tsnemap/embed"
)

// ErrNoCUDA is wrapped by every error of a build without the cuda tag.
var ErrNoCUDA = errors.New("built without CUDA")

// ErrNoDevice is wrapped when the driver loads but offers no usable device
// (none present, none of compute capability ≥ 7.0, or no driver library).
var ErrNoDevice = errors.New("no usable CUDA device")

// ErrDoesNotFit is wrapped by Backend.Fits when a problem needs more device
// memory than is free, or a size the device kernels do not handle.
var ErrDoesNotFit = errors.New("problem does not fit the GPU")

// LibraryEnv names the environment variable that selects the driver
// library instead of libcuda.so.1: set it to the emulated driver
// (gpu/testdata/cudaemu, docs/gpu.md) to run the GPU backend on the CPU.
// It is read by Probe and New and never set by the package.
const LibraryEnv = "TSNEMAP_LIBCUDA"

// ErrDeviceLost is wrapped when the device failed in a way that leaves its
// context unusable (an illegal address, a failed launch, an uncorrectable
// ECC error, a panic in device work). The backend reopens the device for
// the next call; the call that saw it fails.
var ErrDeviceLost = errors.New("the GPU context was lost")

// MinCapability is the oldest compute capability the embedded PTX
// (compute_70) runs on.
const MinCapability = 70

// Info describes the device Probe picked.
type Info struct {
	Ordinal      int
	Name         string
	TotalMemory  int64 // bytes
	FreeMemory   int64 // bytes, when probed
	Major, Minor int   // compute capability
	Driver       int   // driver API version, e.g. 13000 for CUDA 13.0
	// Multiprocessors is the device's SM count (it sizes the launches
	// that are split for cancellation).
	Multiprocessors int
}

// String is the one line Probe's caller logs.
func (i Info) String() string {
	return fmt.Sprintf("%s (device %d, compute capability %d.%d, %.1f GiB free of %.1f GiB, driver %d.%d)",
		i.Name, i.Ordinal, i.Major, i.Minor,
		float64(i.FreeMemory)/(1<<30), float64(i.TotalMemory)/(1<<30), i.Driver/1000, i.Driver%1000/10)
}

// Problem is the size of one run, for Backend.Fits.
type Problem struct {
	N, D int // points and input columns (pixels or features)
	// Components is the PCA dimension the neighbours are found in, K the
	// number of neighbours, Dims the embedding dimension (2 or 3).
	Components, K, Dims int
	Repulsion           embed.Repulsion // as requested; auto lets the backend pick
	U8                  bool            // input held as uint8 (pixels), else float32
}
