//go:build cuda

package gpu

import (
	"context"
	"errors"
	"math"
	"math/cmplx"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/tsnemap/tsnemap/cpu"
	"github.com/tsnemap/tsnemap/embed"
	"github.com/tsnemap/tsnemap/internal/synth"
	"github.com/tsnemap/tsnemap/internal/testkit"
)

// TestFFTDeviceBytes (no GPU): the FFT's memory estimate covers the buffers
// forces allocates at the largest grid it accepts, grows linearly with N
// between the CPU's cap and the hard cap, and leaves 1,000,000 points (11
// GB) far inside an 80 GB GPU; Fits and auto route large 2-D problems to
// the FFT.
func TestFFTDeviceBytes(t *testing.T) {
	for _, n := range []int{1000, 70_000, 250_000, 1_000_000, 4_000_000} {
		g := int64(fftMaxGrid(n))
		// The cap's most elongated grid has the longest twiddle table.
		need := 2*g*16 + g*8 + (g/8)/2*16 + 4*4*fftBBoxBlk
		if got := fftDeviceBytes(n); got < need {
			t.Errorf("N = %d: fftDeviceBytes %d < %d, what the largest grid allocates", n, got, need)
		}
	}
	if a, b := fftDeviceBytes(200_000), fftDeviceBytes(400_000); b < 2*a-(1<<20) || b > 2*a+(1<<20) {
		t.Errorf("fftDeviceBytes(200k) = %d, (400k) = %d: not linear", a, b)
	}
	if b := fftDeviceBytes(1_000_000); b > 12<<30 {
		t.Errorf("fftDeviceBytes(1M) = %.1f GiB", float64(b)/(1<<30))
	}
	for _, n := range []int{exactAutoMax2D + 1, 70_000, 250_000, 1_000_000} {
		if m, err := resolveRepulsion(embed.RepulsionAuto, n, 2); err != nil || m != embed.RepulsionFFT {
			t.Errorf("auto, N = %d, 2-D: %q, %v", n, m, err)
		}
	}
	p := ProblemOf(1_000_000, 50, false, embed.DefaultOptions())
	if b := deviceBytes(p); b > 16<<30 {
		t.Errorf("1M × 50 run estimate %.1f GiB", float64(b)/(1<<30))
	}
}

// fftOnDevice runs f (with an fftRepulsion whose tables it may set up) on
// the device thread.
func fftOnDevice(t *testing.T, b *Backend, n int, run func(f *fftRepulsion) error) {
	t.Helper()
	err := b.dev.do(func() error {
		r, err := newFFTRepulsion(b.dev, n)
		if err != nil {
			return err
		}
		f := r.(*fftRepulsion)
		defer f.release()
		return run(f)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func complexToFlat(x []complex128) []float64 {
	out := make([]float64, 2*len(x))
	for i, v := range x {
		out[2*i], out[2*i+1] = real(v), imag(v)
	}
	return out
}

// TestFFTTransformsOnDevice: the device's 2-D forward transform (rows then
// columns, bit-reversed out) of random n×n data against the host reference
// in full and against a direct DFT at sampled bins, and forward then inverse
// against n²·x, for n = 64 … 4096 (4096: global stages before the shared-
// memory ones). The transform is float64: relative error < 1e-10 (the
// brief's float32 bound was 1e-5).
func TestFFTTransformsOnDevice(t *testing.T) {
	b := testBackend(t)
	rng := rand.New(rand.NewPCG(3, 4))
	sizes := []int{64, 256, 1024, 2048, 4096}
	if emulated(b) {
		// Sides above 2048 (global stages) are covered on the emulator by
		// TestFFTRepulsionRegrid's long rows and columns.
		sizes = []int{64, 256, 2048}
	}
	for _, n := range sizes {
		x := randComplex(n*n, uint64(n))
		var dev []float64
		var back []float64
		fftOnDevice(t, b, 1, func(f *fftRepulsion) error {
			d, err := f.dev.alloc(int64(n*n) * 16)
			if err != nil {
				return err
			}
			defer f.dev.free(&d)
			if err := f.twiddles(n); err != nil {
				return err
			}
			if err := upload(f.dev, d, complexToFlat(x)); err != nil {
				return err
			}
			if err := f.transform(d.p, n, n, 1, n, false); err != nil {
				return err
			}
			if err := f.transform(d.p, n, n, n, 1, false); err != nil {
				return err
			}
			dev = make([]float64, 2*n*n)
			if err := download(f.dev, dev, d); err != nil {
				return err
			}
			if err := f.transform(d.p, n, n, n, 1, true); err != nil {
				return err
			}
			if err := f.transform(d.p, n, n, 1, n, true); err != nil {
				return err
			}
			back = make([]float64, 2*n*n)
			return download(f.dev, back, d)
		})
		// Host reference, same plan.
		ref := append([]complex128(nil), x...)
		tw := fftTwiddles(n)
		hostRowsCols(ref, n, tw)
		var num, den float64
		for i, v := range ref {
			d := complex(dev[2*i], dev[2*i+1]) - v
			num += real(d)*real(d) + imag(d)*imag(d)
			den += real(v)*real(v) + imag(v)*imag(v)
		}
		if e := math.Sqrt(num / den); !(e < 1e-12) {
			t.Errorf("%d×%d: forward transform vs host reference: relative error %.3g", n, n, e)
		}
		// Direct DFT at a few bins (bit-reversed positions).
		bins := 16
		if n > 1024 {
			bins = 3
		}
		for range bins {
			ky, kx := rng.IntN(n), rng.IntN(n)
			var want complex128
			for r := range n {
				for c := range n {
					ph := -2 * math.Pi * (float64((r*ky)%n)/float64(n) + float64((c*kx)%n)/float64(n))
					want += x[r*n+c] * cmplx.Exp(complex(0, ph))
				}
			}
			k := bitReverse(ky, n)*n + bitReverse(kx, n)
			got := complex(dev[2*k], dev[2*k+1])
			if cmplx.Abs(got-want) > 1e-10*math.Sqrt(den/float64(n*n)) {
				t.Errorf("%d×%d bin (%d, %d): device %v, DFT %v", n, n, ky, kx, got, want)
			}
		}
		num, den = 0, 0
		for i, v := range x {
			d := complex(back[2*i], back[2*i+1]) - complex(float64(n*n), 0)*v
			num += real(d)*real(d) + imag(d)*imag(d)
			den += float64(n*n) * float64(n*n) * (real(v)*real(v) + imag(v)*imag(v))
		}
		if e := math.Sqrt(num / den); !(e < 1e-12) {
			t.Errorf("%d×%d: inverse(forward(x)) vs n²·x: relative error %.3g", n, n, e)
		}
	}
}

// hostRowsCols is the forward 2-D transform of n×n data on the host.
func hostRowsCols(x []complex128, n int, tw []complex128) {
	for r := range n {
		hostFFT(x[r*n:(r+1)*n], tw, n, fftLocal, false, nil)
	}
	col := make([]complex128, n)
	for c := range n {
		for r := range n {
			col[r] = x[r*n+c]
		}
		hostFFT(col, tw, n, fftLocal, false, nil)
		for r := range n {
			x[r*n+c] = col[r]
		}
	}
}

// deviceForces runs a repulsion's forces on y and returns rep and Z.
func deviceForces(t *testing.T, b *Backend, y []float32, method string) ([]float64, float64, error) {
	t.Helper()
	n := len(y) / 2
	rep32 := make([]float32, 2*n)
	var z [1]float64
	err := b.dev.do(func() error {
		var yb, rb, zb buf
		var err error
		defer func() {
			for _, p := range []*buf{&yb, &rb, &zb} {
				b.dev.free(p)
			}
		}()
		if yb, err = b.dev.alloc(int64(8 * n)); err != nil {
			return err
		}
		if rb, err = b.dev.alloc(int64(8 * n)); err != nil {
			return err
		}
		if zb, err = b.dev.alloc(8); err != nil {
			return err
		}
		if err := upload(b.dev, yb, y); err != nil {
			return err
		}
		if err := b.dev.zero(zb); err != nil {
			return err
		}
		switch method {
		case "exact":
			err = launchExact(b.dev, n, 2, 1, yb.p, rb.p, zb.p)
		default:
			var r repulsion
			if r, err = newFFTRepulsion(b.dev, n); err != nil {
				return err
			}
			defer r.release()
			// Twice: the second call runs with the cached spectrum.
			for range 2 {
				if err := b.dev.zero(zb); err != nil {
					return err
				}
				if err = r.forces(yb.p, rb.p, zb.p); err != nil {
					return err
				}
			}
		}
		if err != nil {
			return err
		}
		if err := download(b.dev, rep32, rb); err != nil {
			return err
		}
		return download(b.dev, z[:], zb)
	})
	rep := make([]float64, 2*n)
	for i, v := range rep32 {
		rep[i] = float64(v)
	}
	return rep, z[0], err
}

// TestFFTRepulsionOnDevice: at N = 5,000 on clustered layouts of radius 3
// and 30 (a finished map's spread), the device's forces and Z against the
// device's exact kernel (the method's error: < fftForceTol = 1e-2 on the
// force field, < fftZTol = 1e-3 on Z; the host reference, which agrees
// with the CPU's code, gives 0.42 % / 0.40 % force and 1.0e-4 / 1.8e-4 Z
// on these two layouts, in float64 against the exact sums) and against the host
// reference of the same pipeline (rounding only: rep 1e-5, Z 1e-9). A
// layout with a NaN is an error, not a fault.
func TestFFTRepulsionOnDevice(t *testing.T) {
	b := testBackend(t)
	n := pick(b, 5000, 2000)
	for _, radius := range []float64{3, 30} {
		y := clusteredY(n, radius, 41)
		got, zg, err := deviceForces(t, b, y, "fft")
		if err != nil {
			t.Fatal(err)
		}
		ex, zx, err := deviceForces(t, b, y, "exact")
		if err != nil {
			t.Fatal(err)
		}
		ref, zr, g, err := hostFFTRepulsion(y, n)
		if err != nil {
			t.Fatal(err)
		}
		fe, ze := testkit.RelL2(got, ex), math.Abs(zg-zx)/zx
		re, rz := testkit.RelL2(got, ref), math.Abs(zg-zr)/zr
		t.Logf("radius %g, grid %d×%d: vs exact force %.2g Z %.2g; vs host reference force %.2g Z %.2g", radius, g.px, g.py, fe, ze, re, rz)
		if fe > fftForceTol || ze > fftZTol {
			t.Errorf("radius %g: against the exact kernel, force error %.3g, Z error %.3g", radius, fe, ze)
		}
		if re > 1e-5 || rz > 1e-9 {
			t.Errorf("radius %g: against the host reference, rep error %.3g, Z error %.3g", radius, re, rz)
		}
	}
	y := clusteredY(100, 3, 1)
	y[7] = float32(math.NaN())
	if _, _, err := deviceForces(t, b, y, "fft"); err == nil {
		t.Error("a NaN in Y was not an error")
	}
}

// TestFFTRunAgreesWithCPU: a whole 1000-step run at N = 30,000 (auto: the
// FFT on the GPU, FFT then Barnes-Hut on the CPU) ends with the same
// quality as the CPU's, by agree_test.go's tolerances. The 70,000-point
// case of TestAgreeWithCPU runs the FFT too (full mode).
func TestFFTRunAgreesWithCPU(t *testing.T) {
	g := testBackend(t)
	n := 30_000
	rep, iterations := embed.RepulsionAuto, 1000
	if emulated(g) {
		// The FFT forced (auto runs the exact method below 20,000 points).
		// The grid's spacing is fixed, so once the map spreads after the
		// early exaggeration its grids reach 1024² whatever N: the emulator
		// runs 400 steps (250 exaggerated, 150 spreading), where 1000 take
		// it many minutes.
		n, rep, iterations = 1000, embed.RepulsionFFT, 400
	}
	p, y0, labels := agreeProblem(t, n)
	yc, klc, mc := schedule(t, cpu.New(0), p, y0, 2, iterations, embed.RepulsionAuto)
	yg, klg, mg := schedule(t, g, p, y0, 2, iterations, rep)
	if mg != embed.RepulsionFFT {
		t.Errorf("GPU auto at N = %d ran %s", n, mg)
	}
	accC := synth.KNNAccuracy(yc, 2, labels, 2000)
	accG := synth.KNNAccuracy(yg, 2, labels, 2000)
	t.Logf("N = %d, %d steps: KL cpu %.4f (%s) gpu %.4f (%s); 10-NN accuracy cpu %.4f gpu %.4f", n, iterations, klc, mc, klg, mg, accC, accG)
	if math.Abs(klg-klc) > agreeKLTol*klc {
		t.Errorf("final KL: gpu %.4f vs cpu %.4f, more than 1 %% apart", klg, klc)
	}
	if math.Abs(accG-accC) > agreeAccTol {
		t.Errorf("10-NN accuracy: gpu %.4f vs cpu %.4f, more than 0.5 points apart", accG, accC)
	}
}

// TestFFTOptimizerLargeN: NewOptimizer takes the FFT for 2-D N above
// klExactMax, its KL then uses the FFT's Z, and a cancelled context stops
// a step. 200,000 points with a random sparse P, 20 steps.
func TestFFTOptimizerLargeN(t *testing.T) {
	g := testBackend(t)
	if testing.Short() {
		t.Skip("-short")
	}
	n := klExactMax + 50_000
	rng := rand.New(rand.NewPCG(9, 9))
	p := &embed.CSR{N: n, RowPtr: make([]int32, n+1)}
	for i := range n {
		for range 4 {
			p.Col = append(p.Col, int32(rng.IntN(n)))
			p.Val = append(p.Val, float32(1/(4*float64(n))))
		}
		slices.Sort(p.Col[4*i:])
		p.RowPtr[i+1] = int32(len(p.Col))
	}
	y0 := clusteredY(n, 0.01, 5)
	ctx := context.Background()
	opt, err := g.NewOptimizer(ctx, p, y0, embed.OptimizerConfig{N: n, Dims: 2, Repulsion: embed.RepulsionAuto, Theta: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Close()
	if opt.Repulsion() != embed.RepulsionFFT {
		t.Fatalf("method %s", opt.Repulsion())
	}
	for range 20 {
		if err := opt.Step(ctx, embed.StepParams{Exaggeration: 12, Momentum: 0.5, LearningRate: float64(n) / 48}); err != nil {
			t.Fatal(err)
		}
	}
	kl, err := opt.KL(ctx)
	if err != nil || math.IsNaN(kl) || math.IsInf(kl, 0) {
		t.Fatalf("KL %v, %v", kl, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := opt.Step(cctx, embed.StepParams{Exaggeration: 1, Momentum: 0.8, LearningRate: 100}); !errors.Is(err, context.Canceled) {
		t.Errorf("step with a cancelled context: %v", err)
	}
}

// TestFFTRepulsionRegrid: one fftRepulsion through layouts whose grids
// grow, shrink, change shape and need columns longer than 2048, so the
// buffers are regrown, the twiddle table and the kernel's spectrum remade
// or kept: after every call the result matches the host reference of that
// layout.
func TestFFTRepulsionRegrid(t *testing.T) {
	b := testBackend(t)
	n := pick(b, 3000, 1500)
	layouts := [][]float32{
		clusteredY(n, 3, 51),
		clusteredY(n, 30, 52),
		clusteredY(n, 3, 53),
		stretch(clusteredY(n, 1, 54), 0.5, 200),
		stretch(clusteredY(n, 1, 55), 200, 0.5),
		clusteredY(n, 3, 56),
		clusteredY(n, 3.1, 57), // same grid: the cached spectrum
	}
	rep32 := make([]float32, 2*n)
	err := b.dev.do(func() error {
		var yb, rb, zb buf
		var err error
		defer func() {
			for _, p := range []*buf{&yb, &rb, &zb} {
				b.dev.free(p)
			}
		}()
		if yb, err = b.dev.alloc(int64(8 * n)); err != nil {
			return err
		}
		if rb, err = b.dev.alloc(int64(8 * n)); err != nil {
			return err
		}
		if zb, err = b.dev.alloc(8); err != nil {
			return err
		}
		r, err := newFFTRepulsion(b.dev, n)
		if err != nil {
			return err
		}
		defer r.release()
		for k, y := range layouts {
			if err := upload(b.dev, yb, y); err != nil {
				return err
			}
			if err := b.dev.zero(zb); err != nil {
				return err
			}
			if err := r.forces(yb.p, rb.p, zb.p); err != nil {
				return err
			}
			var z [1]float64
			if err := download(b.dev, rep32, rb); err != nil {
				return err
			}
			if err := download(b.dev, z[:], zb); err != nil {
				return err
			}
			ref, zr, g, err := hostFFTRepulsion(y, n)
			if err != nil {
				return err
			}
			rep := make([]float64, 2*n)
			for i, v := range rep32 {
				rep[i] = float64(v)
			}
			re, rz := testkit.RelL2(rep, ref), math.Abs(z[0]-zr)/zr
			t.Logf("layout %d, grid %d×%d: rep %.2g, Z %.2g against the host reference", k, g.px, g.py, re, rz)
			if re > 1e-5 || rz > 1e-9 {
				t.Errorf("layout %d (grid %d×%d): rep error %.3g, Z error %.3g", k, g.px, g.py, re, rz)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
