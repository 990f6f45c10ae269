// kernels/knn.cu compiled for the emulated driver, each kernel registered as
// the twin of its PTX entry.
#include "cudaemu.h"
#include "../../kernels/knn.cu"

EMU_KERNEL(knn_scan)
