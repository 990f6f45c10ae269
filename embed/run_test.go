package embed_test

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/tsnemap/tsnemap/cpu"
	"github.com/tsnemap/tsnemap/embed"
	"github.com/tsnemap/tsnemap/internal/synth"
)

// clusters wraps synth.Clusters as embed.Data.
func clusters(n, d, c int, sep float64, seed uint64) (embed.Data, []int) {
	x, labels := synth.Clusters(n, d, c, sep, seed)
	return embed.Data{N: n, D: d, F32: x}, labels
}

func TestClustersSeparated(t *testing.T) {
	n := 5000
	if testing.Short() {
		n = 1500
	}
	data, labels := clusters(n, 50, 10, 10, 1)
	var kls []float64
	obs := &embed.Observer{Progress: func(p embed.Progress) {
		if p.Stage == embed.StageOptimizing && p.Iteration%50 == 0 && !math.IsNaN(p.KL) {
			kls = append(kls, p.KL)
		}
	}}
	res, err := embed.Run(context.Background(), cpu.New(0), data, embed.DefaultOptions(), obs)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Y) != n*2 {
		t.Fatalf("got %d coordinates, want %d", len(res.Y), n*2)
	}
	acc := synth.KNNAccuracy(res.Y, 2, labels, n)
	t.Logf("N=%d: 10-NN accuracy %.4f, KL %.4f, repulsion %s, neighbours %s, timings %+v", n, acc, res.KL, res.Repulsion, res.Neighbors, res.Timings)
	if acc < 0.99 {
		t.Errorf("10-NN accuracy %.4f < 0.99", acc)
	}
	// After early exaggeration the optimiser minimises KL itself: it must
	// fall (allowing the noise of an approximate gradient, 0.5%).
	after := kls[250/50:]
	for i := 1; i < len(after); i++ {
		if after[i] > after[i-1]*1.005 {
			t.Errorf("KL rose from %.5f to %.5f at check %d: %v", after[i-1], after[i], i, kls)
		}
	}
	if !(res.KL < after[0]) || !(res.KL > 0) {
		t.Errorf("final KL %v not below %v (after exaggeration)", res.KL, after[0])
	}
}

func TestDeterministic(t *testing.T) {
	data, _ := clusters(600, 20, 4, 6, 3)
	o := embed.DefaultOptions()
	o.Iterations = 300
	o.Seed = 42
	for _, init := range []embed.Init{embed.InitPCA, embed.InitRandom} {
		o.Init = init
		a, err := embed.Run(context.Background(), cpu.New(2), data, o, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := embed.Run(context.Background(), cpu.New(2), data, o, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a.Y, b.Y) {
			t.Errorf("init %s: two runs with seed 42 differ", init)
		}
	}
	o.Init = embed.InitRandom
	a, _ := embed.Run(context.Background(), cpu.New(2), data, o, nil)
	o.Seed = 43
	c, err := embed.Run(context.Background(), cpu.New(2), data, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(a.Y, c.Y) {
		t.Error("seeds 42 and 43 gave the same random-init result")
	}
}

func TestCancelWithinOneIteration(t *testing.T) {
	data, _ := clusters(2000, 30, 5, 6, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	last := 0
	obs := &embed.Observer{Progress: func(p embed.Progress) {
		if p.Stage == embed.StageOptimizing {
			last = p.Iteration
			if p.Iteration == 10 {
				cancel()
			}
		}
	}}
	_, err := embed.Run(ctx, cpu.New(0), data, embed.DefaultOptions(), obs)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if last != 10 {
		t.Errorf("the optimiser went on to iteration %d after a cancel at 10", last)
	}

	// A cancel during the neighbour search stops the run too.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	obs2 := &embed.Observer{Progress: func(p embed.Progress) {
		if p.Stage == embed.StageComputingAffinities {
			cancel2()
		}
		if p.Stage == embed.StageOptimizing {
			t.Error("optimisation started after a cancel")
		}
	}}
	if _, err := embed.Run(ctx2, cpu.New(0), data, embed.DefaultOptions(), obs2); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancel in affinities: got %v", err)
	}
}

func TestSnapshots(t *testing.T) {
	data, _ := clusters(300, 10, 3, 6, 5)
	o := embed.DefaultOptions()
	o.Perplexity = 10
	o.Iterations = 60
	snaps := 0
	obs := &embed.Observer{SnapshotEvery: 1, Progress: func(p embed.Progress) {
		if p.Coordinates != nil {
			snaps++
			if len(p.Coordinates) != 600 {
				t.Errorf("snapshot of %d values", len(p.Coordinates))
			}
		}
	}}
	if _, err := embed.Run(context.Background(), cpu.New(0), data, o, obs); err != nil {
		t.Fatal(err)
	}
	if snaps != 60 {
		t.Errorf("got %d snapshots with SnapshotEvery=1ns, want 60", snaps)
	}
}

// lowRank makes n×d data whose spectrum decays geometrically, so the
// leading components are well separated.
func lowRank(n, d, r int, seed uint64) [][]float64 {
	rng := rand.New(rand.NewPCG(seed, 9))
	u := mat.NewDense(n, r, nil)
	v := mat.NewDense(r, d, nil)
	for i := range n {
		for j := range r {
			u.Set(i, j, rng.NormFloat64()*math.Pow(0.7, float64(j))*40)
		}
	}
	for i := range r {
		for j := range d {
			v.Set(i, j, rng.NormFloat64())
		}
	}
	var x mat.Dense
	x.Mul(u, v)
	out := make([][]float64, n)
	for i := range n {
		out[i] = make([]float64, d)
		for j := range d {
			out[i][j] = x.At(i, j) + 100 + rng.NormFloat64()*0.01
		}
	}
	return out
}

// TestPCAAgainstSVD checks method pca against a full SVD of the centred
// data, for float32 and uint8 input.
func TestPCAAgainstSVD(t *testing.T) {
	rows := lowRank(400, 300, 12, 11)
	for _, kind := range []string{"f32", "u8"} {
		n, d := len(rows), len(rows[0])
		data := embed.Data{N: n, D: d}
		ref := mat.NewDense(n, d, nil)
		for i, r := range rows {
			for j, v := range r {
				if kind == "u8" {
					v = math.Max(0, math.Min(255, math.Round(v)))
					data.U8 = append(data.U8, uint8(v))
				} else {
					data.F32 = append(data.F32, float32(v))
					v = float64(float32(v))
				}
				ref.Set(i, j, v)
			}
		}
		for j := range d {
			m := 0.0
			for i := range n {
				m += ref.At(i, j)
			}
			m /= float64(n)
			for i := range n {
				ref.Set(i, j, ref.At(i, j)-m)
			}
		}
		var svd mat.SVD
		if !svd.Factorize(ref, mat.SVDThin) {
			t.Fatal("svd failed")
		}
		var u mat.Dense
		svd.UTo(&u)
		sv := svd.Values(nil)
		o := embed.DefaultOptions()
		o.Method, o.Dimensions = embed.MethodPCA, 3
		res, err := embed.Run(context.Background(), cpu.New(0), data, o, nil)
		if err != nil {
			t.Fatal(err)
		}
		for c := range 3 {
			// score column c = ±σ_c·u_c
			dot, norm := 0.0, 0.0
			for i := range n {
				dot += float64(res.Y[i*3+c]) * u.At(i, c) * sv[c]
				norm += sv[c] * sv[c] * u.At(i, c) * u.At(i, c)
			}
			diff := 0.0
			sign := math.Copysign(1, dot)
			for i := range n {
				e := float64(res.Y[i*3+c]) - sign*u.At(i, c)*sv[c]
				diff += e * e
			}
			if rel := math.Sqrt(diff / norm); rel > 1e-3 {
				t.Errorf("%s: component %d differs from the SVD by %.2g (relative)", kind, c, rel)
			}
		}
	}
}

func TestBadInput(t *testing.T) {
	be := cpu.New(0)
	ctx := context.Background()
	o := embed.DefaultOptions()
	small, _ := clusters(3, 4, 1, 1, 1)
	if _, err := embed.Run(ctx, be, small, o, nil); !errors.Is(err, embed.ErrInvalidInput) {
		t.Errorf("N=3: got %v", err)
	}
	data, _ := clusters(60, 4, 2, 3, 1)
	o.Perplexity = 20 // (60 − 1) / 3 = 19.67
	if _, err := embed.Run(ctx, be, data, o, nil); !errors.Is(err, embed.ErrPerplexityTooLarge) {
		t.Errorf("perplexity 20 for 60 points: got %v", err)
	}
	o.Perplexity = -1
	if _, err := embed.Run(ctx, be, data, o, nil); !errors.Is(err, embed.ErrInvalidOption) {
		t.Errorf("perplexity -1: got %v", err)
	}
	data.F32[7] = float32(math.NaN())
	if _, err := embed.Run(ctx, be, data, embed.DefaultOptions(), nil); !errors.Is(err, embed.ErrInvalidInput) {
		t.Errorf("NaN: got %v", err)
	}
	ragged := embed.Data{N: 5, D: 3, F32: make([]float32, 14)}
	if _, err := embed.Run(ctx, be, ragged, embed.DefaultOptions(), nil); !errors.Is(err, embed.ErrInvalidInput) {
		t.Errorf("ragged: got %v", err)
	}
	// Identical points are legal: the run must finish without NaN.
	same := embed.Data{N: 50, D: 3, F32: make([]float32, 150)}
	o = embed.DefaultOptions()
	o.Perplexity, o.Iterations = 5, 100
	res, err := embed.Run(ctx, be, same, o, nil)
	if err != nil {
		t.Fatalf("identical points: %v", err)
	}
	for _, v := range res.Y {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatal("identical points gave non-finite coordinates")
		}
	}
}
