package embed_test

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/tsnemap/tsnemap/cpu"
	"github.com/tsnemap/tsnemap/embed"
	"github.com/tsnemap/tsnemap/internal/synth"
)

func TestUnitRows(t *testing.T) {
	for _, tc := range []struct {
		name string
		data embed.Data
	}{
		{"float32", embed.Data{N: 3, D: 2, F32: []float32{3, 4, -1e-3, 0, 1e30, 1e30}}},
		{"uint8", embed.Data{N: 2, D: 3, U8: []uint8{0, 255, 0, 1, 2, 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := embed.UnitRows(context.Background(), tc.data)
			if err != nil {
				t.Fatal(err)
			}
			for i := range tc.data.N {
				row := u.F32[i*u.D : (i+1)*u.D]
				var sq, dot, orig float64
				for j, v := range row {
					x := value(tc.data, i*u.D+j)
					sq += float64(v) * float64(v)
					dot += float64(v) * x
					orig += x * x
				}
				// Unit length, and the same direction: cos(row, original) = 1.
				if math.Abs(sq-1) > 1e-6 || math.Abs(dot/math.Sqrt(orig)-1) > 1e-6 {
					t.Errorf("row %d = %v: |row|² = %v, cos to the original %v", i, row, sq, dot/math.Sqrt(orig))
				}
			}
		})
	}
	_, err := embed.UnitRows(context.Background(), embed.Data{N: 2, D: 2, F32: []float32{1, 0, 0, 0}})
	if !errors.Is(err, embed.ErrInvalidInput) || !strings.Contains(err.Error(), "row 1") {
		t.Errorf("zero row: %v, want ErrInvalidInput naming row 1", err)
	}
}

func value(d embed.Data, k int) float64 {
	if d.U8 != nil {
		return float64(d.U8[k])
	}
	return float64(d.F32[k])
}

func TestMetricOption(t *testing.T) {
	o := embed.DefaultOptions()
	if o.Metric != embed.MetricEuclidean {
		t.Errorf("default metric %q", o.Metric)
	}
	o.Metric = "manhattan"
	var fe *embed.FieldError
	if err := o.Validate(); !errors.As(err, &fe) || fe.Field != "metric" {
		t.Errorf("metric manhattan: %v", err)
	}
}

// TestCosineIsEuclideanOfUnitRows: a cosine run is the euclidean run of
// the rows scaled to unit length, exactly; and it does not see the rows'
// norms, so rows scaled by random factors give the same neighbours and
// nearly the same map.
func TestCosineIsEuclideanOfUnitRows(t *testing.T) {
	data, labels := clusters(300, 20, 3, 6, 9)
	opts := embed.DefaultOptions()
	opts.Iterations, opts.Seed = 300, 5
	be := cpu.New(2)
	ctx := context.Background()
	unit, err := embed.UnitRows(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	eu, err := embed.Run(ctx, be, unit, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts.Metric = embed.MetricCosine
	co, err := embed.Run(ctx, be, data, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(eu.Y, co.Y) {
		t.Fatal("cosine run differs from the euclidean run of the unit rows")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	scaled := embed.Data{N: data.N, D: data.D, F32: slices.Clone(data.F32)}
	for i := range data.N {
		s := float32(math.Pow(10, rng.Float64()*4-2))
		for j := range data.D {
			scaled.F32[i*data.D+j] *= s
		}
	}
	us, err := embed.UnitRows(context.Background(), scaled)
	if err != nil {
		t.Fatal(err)
	}
	for k := range us.F32 {
		if d := math.Abs(float64(us.F32[k] - unit.F32[k])); d > 1e-6 {
			t.Fatalf("value %d: unit rows of the scaled rows differ by %v", k, d)
		}
	}
	sc, err := embed.Run(ctx, be, scaled, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Rounding differences grow in the optimiser: the maps are not equal,
	// but they are equally good.
	a, b := synth.KNNAccuracy(co.Y, 2, labels, data.N), synth.KNNAccuracy(sc.Y, 2, labels, data.N)
	if math.Abs(a-b) > 0.01 || a < 0.95 {
		t.Errorf("10-NN accuracy: cosine %v, cosine of scaled rows %v", a, b)
	}
}
