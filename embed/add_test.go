package embed_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/tsnemap/tsnemap/cpu"
	"github.com/tsnemap/tsnemap/embed"
	"github.com/tsnemap/tsnemap/internal/synth"
)

// baseOf is the Base a finished run leaves.
func baseOf(res *embed.Result, method embed.Method) *embed.Base {
	return &embed.Base{Method: method, Basis: *res.Basis, N: res.N, Dims: res.Dims, Scores: res.Scores, Y: res.Y}
}

// splitRows returns rows [lo, hi) of data.
func splitRows(data embed.Data, lo, hi int) embed.Data {
	return embed.Data{N: hi - lo, D: data.D, F32: data.F32[lo*data.D : hi*data.D]}
}

// An addition leaves every base value bitwise as it was, and puts the new
// points of synthetic clusters among their own cluster's base points.
func TestAddPlacesNewPointsWithoutMovingBase(t *testing.T) {
	n, m := 2000, 400
	if testing.Short() {
		n, m = 1200, 200
	}
	data, labels := clusters(n+m, 50, 8, 10, 3)
	be := cpu.New(0)
	ctx := context.Background()
	res, err := embed.Run(ctx, be, splitRows(data, 0, n), embed.DefaultOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	base := baseOf(res, embed.MethodTSNE)
	y0, s0 := slices.Clone(base.Y), slices.Clone(base.Scores)
	mean0, axes0 := slices.Clone(base.Basis.Mean), slices.Clone(base.Basis.Axes)
	add, err := embed.Add(ctx, be, base, splitRows(data, n, n+m), embed.DefaultAddOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, pair := range map[string][2][]float32{"Y": {y0, base.Y}, "scores": {s0, base.Scores},
		"mean": {mean0, base.Basis.Mean}, "axes": {axes0, base.Basis.Axes}} {
		if !bitwiseEqual(pair[0], pair[1]) {
			t.Errorf("the base's %s changed", name)
		}
	}
	if add.M != m || len(add.Y) != m*2 || len(add.Scores) != m*base.Basis.K {
		t.Fatalf("addition of %d rows returned M=%d, %d coordinates, %d scores", m, add.M, len(add.Y), len(add.Scores))
	}
	acc := synth.KNNAccuracyAgainst(base.Y, labels[:n], add.Y, labels[n:], 2)
	t.Logf("%d added to %d: 10-NN accuracy against the base %.4f, mean KL %.4f, %v", m, n, acc, add.KL, add.Elapsed)
	if acc < 0.98 {
		t.Errorf("10-NN accuracy of the added points %.4f < 0.98", acc)
	}
	if !(add.KL >= 0) {
		t.Errorf("mean KL %v", add.KL)
	}
}

func bitwiseEqual(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// Each new point is placed on its own (affinities and repulsion to the
// base only): adding a set with others gives it the same coordinates as
// adding it alone.
func TestAddPointsAreIndependent(t *testing.T) {
	n, m := 800, 60
	data, _ := clusters(n+m, 20, 5, 8, 5)
	be := cpu.New(0)
	ctx := context.Background()
	res, err := embed.Run(ctx, be, splitRows(data, 0, n), embed.DefaultOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	base := baseOf(res, embed.MethodTSNE)
	all, err := embed.Add(ctx, be, base, splitRows(data, n, n+m), embed.DefaultAddOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	part, err := embed.Add(ctx, be, base, splitRows(data, n+m/2, n+m), embed.DefaultAddOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bitwiseEqual(part.Y, all.Y[m/2*2:]) {
		t.Error("the same rows were placed differently when added with others")
	}
}

// A pca map places new rows by its projection: the base's own rows land
// where the base has them (up to the randomized SVD's residual).
func TestAddToPCAMapProjects(t *testing.T) {
	data, _ := clusters(500, 30, 4, 6, 9)
	opts := embed.DefaultOptions()
	opts.Method = embed.MethodPCA
	be := cpu.New(0)
	res, err := embed.Run(context.Background(), be, data, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	add, err := embed.Add(context.Background(), be, baseOf(res, embed.MethodPCA), data, embed.DefaultAddOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	scale := 0.0
	for _, v := range res.Y {
		scale = max(scale, math.Abs(float64(v)))
	}
	for i := range res.Y {
		if d := math.Abs(float64(add.Y[i] - res.Y[i])); d > 1e-3*scale {
			t.Fatalf("row %d coordinate %d: base %v, re-added %v", i/2, i%2, res.Y[i], add.Y[i])
		}
	}
}

func TestAddRejectsMismatchedRows(t *testing.T) {
	data, _ := clusters(300, 10, 3, 6, 2)
	be := cpu.New(1)
	res, err := embed.Run(context.Background(), be, data, embed.DefaultOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	wide, _ := clusters(5, 11, 1, 1, 3)
	_, err = embed.Add(context.Background(), be, baseOf(res, embed.MethodTSNE), wide, embed.DefaultAddOptions(), nil)
	var fe *embed.FieldError
	if !errors.As(err, &fe) || fe.Field != "columns" || !errors.Is(err, embed.ErrInvalidInput) {
		t.Fatalf("11 columns added to a 10-column base: %v, want a FieldError naming columns", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := embed.Add(ctx, be, baseOf(res, embed.MethodTSNE), data, embed.DefaultAddOptions(), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled addition: %v", err)
	}
}
