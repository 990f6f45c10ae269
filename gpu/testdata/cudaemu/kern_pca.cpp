// kernels/pca.cu compiled for the emulated driver, each kernel registered as
// the twin of its PTX entry.
#include "cudaemu.h"
#include "../../kernels/pca.cu"

EMU_KERNEL(colsum_u8)
EMU_KERNEL(colsum_f32)
EMU_KERNEL(center_u8)
EMU_KERNEL(center_f32)
EMU_KERNEL(gemm_nn)
EMU_KERNEL(gemm_tn_acc)
EMU_KERNEL(f64_to_f32)
