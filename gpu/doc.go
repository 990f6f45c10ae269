// Package gpu is the CUDA embed.Backend: every heavy kernel of a t-SNE run
// (PCA products, exact nearest neighbours, perplexity calibration,
// attraction over the sparse P, repulsion, the KL reductions and the
// gains/momentum update) runs on one NVIDIA device, with Y, P, the gains
// and the velocities resident in device memory for the whole optimisation.
//
// The real backend is built with the tag "cuda" (go build -tags cuda); it
// needs cgo and a C compiler to build, and only the NVIDIA driver's
// libcuda.so.1 to run. Without the tag the package is a stub whose Probe
// and New return an error wrapping ErrNoCUDA, so the default build stays
// pure Go.
//
// # Why our own driver bindings and not gorgonia.org/cu
//
// The design asked for gorgonia's CUDA stack. gorgonia.org/gorgonia's CUDA
// engine needs cuBLAS at run time, which a driver-only host does not have.
// gorgonia.org/cu v0.9.6 (driver API only) has two properties that break
// the start-up contract of this service: its package init calls cuInit and
// os.Exit(1)s when it fails (a host without a GPU), and it links -lcuda, so
// a binary built with it does not even start where libcuda.so.1 is
// missing. "--backend auto" must start anywhere and fall back to the CPU
// with a reason; so the backend binds the ~25 driver entry points it needs
// itself (driver.go), opening libcuda.so.1 with dlopen when Probe or New
// runs, or the library TSNEMAP_LIBCUDA names: the tests of the cuda build
// run on the emulated driver of testdata/cudaemu where there is no GPU
// (docs/gpu.md). The binding is
// the CUDA Driver API as NVIDIA documents it; kernels are ours, compiled to
// PTX (kernels/*.cu → kernels/*.ptx, go generate ./gpu) for compute_70 and
// JIT-compiled by the driver for the GPU it finds (Volta to Hopper and
// later), so no CUDA runtime, cuBLAS or cuFFT library is needed.
//
// # Precision
//
// Device storage is float32 (Y, gains, velocities, P values, PCA blocks).
// Sums are float64 where the number of terms grows with N: Z = Σ w_ij and
// the KL sum (atomicAdd on double, sm_60+), the centroid, the PCA Gram
// products across row blocks (up to 10⁶ rows of values up to 255), and the
// perplexity search (which must match the host's to 1e-5 nats). Per-tile
// partial sums of at most a few hundred terms are float32.
//
// Unlike the CPU backend, runs are not bitwise reproducible: Z, the
// centroid and the KL sum add per-block partial sums with atomicAdd, in
// whatever order the blocks finish, so the last bits of Z vary from run to
// run and t-SNE's trajectories amplify them. The tests compare the GPU
// with the CPU by tolerances for that reason (agree_test.go).
package gpu
