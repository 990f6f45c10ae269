// kernels/affinity.cu compiled for the emulated driver, each kernel registered as
// the twin of its PTX entry.
#include "cudaemu.h"
#include "../../kernels/affinity.cu"

EMU_KERNEL(calibrate_rows)
