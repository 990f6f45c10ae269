// kernels/tsne.cu compiled for the emulated driver, each kernel registered as
// the twin of its PTX entry.
#include "cudaemu.h"
#include "../../kernels/tsne.cu"

EMU_KERNEL(repulse_exact_2d)
EMU_KERNEL(repulse_exact_3d)
EMU_KERNEL(update_2d)
EMU_KERNEL(update_3d)
EMU_KERNEL(recentre)
EMU_KERNEL(kl_terms)
