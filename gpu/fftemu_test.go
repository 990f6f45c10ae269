package gpu

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"math/cmplx"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tsnemap/tsnemap/internal/testkit"
)

// TestFFTKernelsOnCPU compiles kernels/fft.cu with a C++ compiler against a
// small CUDA emulator (testdata/cudaemu: blocks run one after another on
// blockDim threads, with real barriers for __syncthreads and the warp
// intrinsics) and runs fft.go's launch sequences on it: so the kernels'
// index arithmetic, shared-memory stages, warp-aggregated spreading and
// reductions are checked here against the host reference (fftplan.go),
// without a GPU. It checks the source, not the PTX or the GPU's memory
// model; the device tests (fft_cuda_test.go) do that where there is one.
func TestFFTKernelsOnCPU(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: compiling and emulating the kernels takes ~20 s")
	}
	cxx, err := exec.LookPath("g++")
	if err != nil {
		t.Skip("no g++ (C++20) to compile kernels/fft.cu for the CPU emulator")
	}
	bin := filepath.Join(t.TempDir(), "harness")
	out, err := exec.Command(cxx, "-std=c++20", "-O2", "-pthread", "-Wno-unknown-pragmas", "-o", bin,
		filepath.Join("testdata", "cudaemu", "harness.cpp")).CombinedOutput()
	if err != nil {
		t.Fatalf("compiling the emulator harness: %v\n%s", err, out)
	}
	run := func(t *testing.T, args string, input string) []float64 {
		t.Helper()
		cmd := exec.Command(bin, args)
		cmd.Stdin = strings.NewReader(input)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("harness %s: %v\n%s", args, err, stderr.String())
		}
		var vals []float64
		sc := bufio.NewScanner(&stdout)
		sc.Split(bufio.ScanWords)
		for sc.Scan() {
			v, err := strconv.ParseFloat(sc.Text(), 64)
			if err != nil {
				t.Fatal(err)
			}
			vals = append(vals, v)
		}
		return vals
	}

	t.Run("transforms", func(t *testing.T) {
		cases := []struct {
			n, batch, es, bs int
			inverse          bool
		}{
			{64, 5, 1, 64, false},     // rows
			{64, 5, 1, 64, true},      //
			{32, 16, 16, 1, false},    // columns
			{32, 16, 16, 1, true},     //
			{8192, 2, 1, 8192, false}, // rows with global stages
			{8192, 2, 1, 8192, true},  //
			{4096, 3, 3, 1, false},    // columns with global stages
			{4096, 3, 3, 1, true},     //
			{2048, 2, 1, 2048, false}, // one shared-memory launch, 256 threads
			{8, 3, 1, 8, true},        // 4 threads a block
			{16, 6, 1, 16, false},     //
			{1 << 13, 1, 1, 1, false}, // bs unused
			{1 << 12, 2, 1, 1 << 12, true},
		}
		for _, c := range cases {
			length := c.n * c.batch
			if c.es > 1 {
				length = c.n * c.es
			}
			x := randComplex(length, uint64(c.n+c.batch))
			tabN := 2 * c.n
			var in strings.Builder
			inv := 0
			if c.inverse {
				inv = 1
			}
			fmt.Fprintf(&in, "%d %d %d %d %d %d %d\n", c.n, c.batch, c.es, c.bs, inv, length, tabN)
			for _, v := range x {
				fmt.Fprintf(&in, "%s %s\n", ftoa(real(v)), ftoa(imag(v)))
			}
			got := run(t, "fft", in.String())
			if len(got) != 2*length {
				t.Fatalf("%+v: %d values back", c, len(got))
			}
			tw := fftTwiddles(tabN)
			var num, den float64
			seq := make([]complex128, c.n)
			for b := range c.batch {
				for e := range c.n {
					seq[e] = x[b*c.bs+e*c.es]
				}
				hostFFT(seq, tw, tabN, fftLocal, c.inverse, nil)
				for e := range c.n {
					k := b*c.bs + e*c.es
					num += math.Pow(cmplx.Abs(complex(got[2*k], got[2*k+1])-seq[e]), 2)
					den += math.Pow(cmplx.Abs(seq[e]), 2)
				}
			}
			if e := math.Sqrt(num / den); !(e < 1e-13) {
				t.Errorf("%+v: relative error %.3g against the host reference", c, e)
			}
		}
	})

	t.Run("repulsion", func(t *testing.T) {
		// exact: also compare with the exact sums (the stretched layouts
		// are for the long transforms; the method's own error on them, the
		// host reference's too, is up to ~1e-3 on Z).
		layouts := []struct {
			name  string
			y     []float32
			exact bool
		}{
			{"compact", clusteredY(2000, 0.01, 21), true},
			{"radius 3", clusteredY(2000, 3, 22), true},
			{"wide (rows > 2048)", stretch(clusteredY(700, 1, 23), 150, 0.5), false},
			{"tall (columns > 2048)", stretch(clusteredY(700, 1, 24), 0.5, 150), false},
			{"partial warps", clusteredY(301, 2, 25), true},
		}
		for _, l := range layouts {
			n := len(l.y) / 2
			want, zw, g, err := hostFFTRepulsion(l.y, n)
			if err != nil {
				t.Fatal(err)
			}
			var in strings.Builder
			fmt.Fprintf(&in, "%d %d %d %d %d %d %d %s %s %s %s %s %s\n", n, g.nbx, g.nby, g.mx, g.my, g.px, g.py,
				ftoa(g.x0), ftoa(g.y0), ftoa(g.cx), ftoa(g.cy), ftoa(g.invh()), ftoa(fftSpacing))
			for _, v := range l.y {
				in.WriteString(strconv.FormatFloat(float64(v), 'g', -1, 32) + "\n")
			}
			got := run(t, "rep", in.String())
			if len(got) != 5+2*n {
				t.Fatalf("%s: %d values back", l.name, len(got))
			}
			lox, hix, loy, hiy := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
			for i := range n {
				lox, hix = min(lox, float64(l.y[2*i])), max(hix, float64(l.y[2*i]))
				loy, hiy = min(loy, float64(l.y[2*i+1])), max(hiy, float64(l.y[2*i+1]))
			}
			for k := range 4 {
				got[k] = float64(float32(got[k])) // printed as float32
			}
			if [4]float64(got[:4]) != [4]float64{lox, hix, loy, hiy} {
				t.Errorf("%s: bounding box %v, want %v", l.name, got[:4], []float64{lox, hix, loy, hiy})
			}
			zg, rep := got[4], got[5:]
			fe, ze := testkit.RelL2(rep, want), math.Abs(zg-zw)/zw
			t.Logf("%s: N %d grid %d×%d: rep vs host reference %.2g, Z %.2g", l.name, n, g.px, g.py, fe, ze)
			// rep is float32 on the device; the rest is float64 in
			// another summation order (atomics, shuffles).
			if !(fe < 1e-6) || !(ze < 1e-10) {
				t.Errorf("%s: rep error %.3g, Z error %.3g against the host reference", l.name, fe, ze)
			}
			if !l.exact {
				continue
			}
			ex, zx := exactRepulsion2D(l.y, n)
			if fe, ze := testkit.RelL2(rep, ex), math.Abs(zg-zx)/zx; fe > fftForceTol || ze > fftZTol {
				t.Errorf("%s: against the exact sums, force error %.3g, Z error %.3g", l.name, fe, ze)
			}
		}
	})
}

func ftoa(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// stretch scales a layout's x and y.
func stretch(y []float32, sx, sy float32) []float32 {
	for i := 0; i < len(y); i += 2 {
		y[i] *= sx
		y[i+1] *= sy
	}
	return y
}
