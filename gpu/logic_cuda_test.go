//go:build cuda

package gpu

import (
	"errors"
	"testing"

	"github.com/tsnemap/tsnemap/embed"
)

// These run without a GPU: the launcher's argument check and the choice of
// repulsion method.

func TestPackArgs(t *testing.T) {
	sig := kernelTable[kRecentre] // ptr, ptr, i32, i32
	vals, err := packArgs(sig, []any{devPtr(0x1000), buf{p: 0x2000}, 7, int32(-1)})
	if err != nil {
		t.Fatal(err)
	}
	want := []uint64{0x1000, 0x2000, 7, 0xffffffff}
	for i := range want {
		if vals[i] != want[i] {
			t.Errorf("slot %d = %#x, want %#x", i, vals[i], want[i])
		}
	}
	if _, err := packArgs(sig, []any{devPtr(1), devPtr(2), 3}); err == nil {
		t.Error("3 arguments for 4 parameters accepted")
	}
	if _, err := packArgs(sig, []any{devPtr(1), devPtr(2), float32(3), 4}); err == nil {
		t.Error("a float32 for an int parameter accepted")
	}
	if _, err := packArgs(kernelTable[kCalibrateRows], []any{devPtr(1), 2, 3, 1.5, float32(1e-5), devPtr(4), devPtr(5)}); err == nil {
		t.Error("a float32 for a double parameter accepted")
	}
}

func TestResolveRepulsion(t *testing.T) {
	cases := []struct {
		req     embed.Repulsion
		n, dims int
		want    embed.Repulsion
		fits    bool
	}{
		{embed.RepulsionAuto, 5000, 2, embed.RepulsionExact, true},
		{embed.RepulsionAuto, 5000, 3, embed.RepulsionExact, true},
		{embed.RepulsionAuto, exactMax + 1, 3, "", false},
		{embed.RepulsionExact, exactMax + 1, 2, "", false},
		{embed.RepulsionBarnesHut, 5000, 2, "", false},
		{embed.RepulsionFFT, 5000, 3, "", false},
	}
	if fftAvailable {
		cases = append(cases, struct {
			req     embed.Repulsion
			n, dims int
			want    embed.Repulsion
			fits    bool
		}{embed.RepulsionAuto, 1_000_000, 2, embed.RepulsionFFT, true})
	} else {
		cases = append(cases, struct {
			req     embed.Repulsion
			n, dims int
			want    embed.Repulsion
			fits    bool
		}{embed.RepulsionAuto, 1_000_000, 2, "", false})
	}
	for _, c := range cases {
		got, err := resolveRepulsion(c.req, c.n, c.dims)
		if c.fits != (err == nil) || got != c.want {
			t.Errorf("%s, N = %d, %d-D: %q, %v; want %q (fits %v)", c.req, c.n, c.dims, got, err, c.want, c.fits)
		}
		if err != nil && !errors.Is(err, ErrDoesNotFit) {
			t.Errorf("%s, N = %d: %v does not wrap ErrDoesNotFit", c.req, c.n, err)
		}
	}
}

func TestDeviceBytes(t *testing.T) {
	// 1,000,000 × 50 features, k = 90: the kNN lists (N·k·8 = 720 MB)
	// and P (2·N·k entries of 8 bytes = 1.44 GB) dominate, plus the FFT
	// repulsion's grid at its cap during the optimisation.
	p := Problem{N: 1_000_000, D: 50, Components: 50, K: 90, Dims: 2, Repulsion: embed.RepulsionAuto}
	got := deviceBytes(p)
	if fb := fftDeviceBytes(p.N); got < 1_400_000_000+fb || got > 3_000_000_000+fb {
		t.Errorf("1M×50 estimate %d bytes", got)
	}
	// 70,000 images of 100×100: a PCA block of 2,184 rows × 30,000 bytes
	// as uint8 and as float32.
	img := Problem{N: 70000, D: 30000, U8: true, Components: 50, K: 90, Dims: 2}
	if b := deviceBytes(img); b < 300<<20 || b > 2<<30 {
		t.Errorf("70k images estimate %d bytes", b)
	}
}
