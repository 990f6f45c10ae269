package gpu

// The PTX is generated from kernels/*.cu by nvcc (Debian: nvidia-cuda-toolkit
// in non-free) for the virtual architecture compute_70, which the driver
// JIT-compiles for whatever GPU it runs on, Volta (sm_70) to Hopper (sm_90)
// and later. -lineinfo is left out and paths are relative so the output is
// the same bytes on every machine with the same nvcc; CI regenerates and
// diffs it. The PTX is committed so a build needs no CUDA toolkit.
//
//go:generate nvcc -ptx -arch=compute_70 -O3 -o kernels/pca.ptx kernels/pca.cu
//go:generate nvcc -ptx -arch=compute_70 -O3 -o kernels/knn.ptx kernels/knn.cu
//go:generate nvcc -ptx -arch=compute_70 -O3 -o kernels/affinity.ptx kernels/affinity.cu
//go:generate nvcc -ptx -arch=compute_70 -O3 -o kernels/tsne.ptx kernels/tsne.cu
//go:generate nvcc -ptx -arch=compute_70 -O3 -o kernels/fft.ptx kernels/fft.cu
