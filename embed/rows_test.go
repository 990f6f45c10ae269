package embed_test

import (
	"context"
	"errors"
	"math"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/tsnemap/tsnemap/cpu"
	"github.com/tsnemap/tsnemap/embed"
	"github.com/tsnemap/tsnemap/internal/rowspool"
	"github.com/tsnemap/tsnemap/internal/synth"
)

// spooled returns x's pixels as a Data read from a spool in a temporary
// directory (closed when the test ends) and that directory.
func spooled(t *testing.T, x embed.Data) (embed.Data, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := rowspool.Create(dir, x.D)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := errors.Join(s.Append(x.U8), s.Finish()); err != nil {
		t.Fatal(err)
	}
	return embed.Data{N: x.N, D: x.D, Rows: s}, dir
}

func images(n, side int) embed.Data {
	pix, _ := synth.Images(n, side, side, 5, 3)
	return embed.Data{N: n, D: side * side * 3, U8: pix}
}

// The PCA of spooled pixels read in blocks is the in-memory one: the same
// means, and scores within float32 rounding of the blocks' partial sums
// (identical with one block).
func TestSpooledPCAMatchesInMemory(t *testing.T) {
	x := images(700, 12)
	be := cpu.New(2)
	const k = 10
	want, err := embed.PrincipalComponentsInBlocks(context.Background(), be, x, k, 7, x.N)
	if err != nil {
		t.Fatal(err)
	}
	src, _ := spooled(t, x)
	tests := []struct {
		name  string
		block int
	}{{"one block", x.N}, {"blocks of 256 rows", 256}, {"blocks of 100 rows", 100}, {"blocks of 37 rows", 37}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := embed.PrincipalComponentsInBlocks(context.Background(), be, src, k, 7, tc.block)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Mean, want.Mean) {
				t.Errorf("means differ")
			}
			scale := 0.0
			for _, v := range want.Scores {
				scale = max(scale, math.Abs(float64(v)))
			}
			worst := 0.0
			for i, v := range got.Scores {
				worst = max(worst, math.Abs(float64(v-want.Scores[i])))
			}
			t.Logf("largest score difference %.3g of largest score %.3g", worst, scale)
			if tc.block == x.N && worst != 0 {
				t.Errorf("one block: scores differ by %g, want identical", worst)
			}
			if worst > 1e-4*scale {
				t.Errorf("scores differ by %g > 1e-4 × %g", worst, scale)
			}
		})
	}
}

// A whole run on spooled pixels gives the in-memory embedding (one block
// at this size: bit for bit).
func TestSpooledRunMatchesInMemory(t *testing.T) {
	x := images(400, 10)
	opts := embed.DefaultOptions()
	opts.Iterations, opts.Perplexity = 150, 10
	be := cpu.New(2)
	want, err := embed.Run(context.Background(), be, x, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	src, _ := spooled(t, x)
	got, err := embed.Run(context.Background(), be, src, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Y, want.Y) || got.KL != want.KL {
		t.Errorf("spooled run differs: KL %v, in memory %v", got.KL, want.KL)
	}
}

// A run cancelled while PCA reads the spool stops with ctx's error.
func TestSpooledRunStopsWhenCancelled(t *testing.T) {
	src, _ := spooled(t, images(300, 10))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	obs := &embed.Observer{Progress: func(p embed.Progress) {
		if p.Stage == embed.StageReducing {
			cancel()
		}
	}}
	_, err := embed.Run(ctx, cpu.New(2), src, embed.DefaultOptions(), obs)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run: %v, want context.Canceled", err)
	}
}

// failingSource fails every read, as a file on a broken disk would.
type failingSource struct{}

var errBroken = errors.New("broken disk")

func (failingSource) ReadRows(context.Context, int, []uint8) error { return errBroken }

func TestSpoolReadErrorIsReturned(t *testing.T) {
	x := embed.Data{N: 50, D: 12, Rows: failingSource{}}
	opts := embed.DefaultOptions()
	opts.Perplexity = 5
	_, err := embed.Run(context.Background(), cpu.New(1), x, opts, nil)
	if !errors.Is(err, errBroken) {
		t.Errorf("Run: %v, want the source's error", err)
	}
}

func TestDataWithTwoSourcesIsInvalid(t *testing.T) {
	x := images(10, 2)
	x.Rows = failingSource{}
	if err := x.Validate(); !errors.Is(err, embed.ErrInvalidInput) {
		t.Errorf("Validate: %v, want ErrInvalidInput", err)
	}
}

// The cosine metric reads a spool too.
func TestUnitRowsOfSpooledPixels(t *testing.T) {
	x := images(40, 4)
	want, err := embed.UnitRows(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	src, _ := spooled(t, x)
	got, err := embed.UnitRows(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.F32, want.F32) {
		t.Error("unit rows of the spool differ from the in-memory ones")
	}
}

// A cosine run does not copy pixels, in memory or spooled, to float32
// (4·N·D bytes): the view allocates nothing of their size, and the rows
// are scaled as each pass reads them.
func TestCosineViewOfPixelsCopiesNothing(t *testing.T) {
	x := images(2000, 16)
	src, _ := spooled(t, x)
	for name, data := range map[string]embed.Data{"in memory": x, "spooled": src} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		got, err := embed.UnitView(context.Background(), data)
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatal(err)
		}
		if a := after.TotalAlloc - before.TotalAlloc; a > uint64(x.N*x.D) {
			t.Errorf("%s: the cosine view of %d×%d pixels allocated %d bytes", name, x.N, x.D, a)
		}
		if got.F32 != nil || got.Pixels() {
			t.Errorf("%s: the cosine view is %+v, want pixels read as unit float32 rows", name, got)
		}
	}
}

// A cosine run of pixels, in memory or spooled, is the euclidean run of
// their unit rows made in memory (one block: to the bit), and a row of
// zeros is an error naming it.
func TestCosineRunOfPixels(t *testing.T) {
	ctx := context.Background()
	x := images(400, 10)
	opts := embed.DefaultOptions()
	opts.Iterations, opts.Perplexity = 150, 10
	be := cpu.New(2)
	unit, err := embed.UnitRows(ctx, x)
	if err != nil {
		t.Fatal(err)
	}
	want, err := embed.Run(ctx, be, unit, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts.Metric = embed.MetricCosine
	src, _ := spooled(t, x)
	for name, data := range map[string]embed.Data{"in memory": x, "spooled": src} {
		got, err := embed.Run(ctx, be, data, opts, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Y, want.Y) || got.KL != want.KL {
			t.Errorf("%s: cosine run differs from the euclidean run of the unit rows: KL %v, want %v", name, got.KL, want.KL)
		}
	}
	clear(x.U8[7*x.D : 8*x.D])
	src, _ = spooled(t, x)
	for name, data := range map[string]embed.Data{"in memory": x, "spooled": src} {
		_, err = embed.Run(ctx, be, data, opts, nil)
		var fe *embed.FieldError
		if !errors.As(err, &fe) || !errors.Is(err, embed.ErrInvalidInput) || !strings.Contains(err.Error(), "row 7 ") {
			t.Errorf("%s: cosine run with a row of zeros: %v, want an invalid-input error naming row 7", name, err)
		}
	}
}
