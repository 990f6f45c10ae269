// kernels/fft.cu compiled for the emulated driver, each kernel registered as
// the twin of its PTX entry.
#include "cudaemu.h"
#include "../../kernels/fft.cu"

EMU_KERNEL(fft_stage)
EMU_KERNEL(fft_local)
EMU_KERNEL(fft_conv)
EMU_KERNEL(fft_kernel_grid)
EMU_KERNEL(fft_kernel_spectrum)
EMU_KERNEL(fft_bbox)
EMU_KERNEL(fft_spread)
EMU_KERNEL(fft_gather)
