package embed_test

import (
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/cpu"
	"github.com/tsnemap/tsnemap/embed"
	"github.com/tsnemap/tsnemap/internal/synth"
)

// syntheticBase is a map of n points in 10 clusters laid out as a t-SNE
// map of 10 classes looks (tight blobs about 80 units across in all),
// with 50-D scores of the same clusters and a basis of 784 columns whose
// first 50 carry the scores (image loading excluded, the projection of
// 784-value rows included).
func syntheticBase(n int) (*embed.Base, func(m int, seed uint64) embed.Data) {
	const k, d, c = 50, 784, 10
	scores, labels := synth.Clusters(n, k, c, 8, 1)
	rng := rand.New(rand.NewPCG(2, 3))
	y := make([]float32, n*2)
	for i, l := range labels {
		a := 2 * math.Pi * float64(l) / c
		y[2*i] = float32(40*math.Cos(a) + 4*rng.NormFloat64())
		y[2*i+1] = float32(40*math.Sin(a) + 4*rng.NormFloat64())
	}
	axes := make([]float32, d*k)
	for j := range k {
		axes[j*k+j] = 1
	}
	base := &embed.Base{Method: embed.MethodTSNE, N: n, Dims: 2, Y: y, Scores: scores,
		Basis: embed.Basis{D: d, K: k, Mean: make([]float32, d), Axes: axes, Metric: embed.MetricEuclidean}}
	newRows := func(m int, seed uint64) embed.Data {
		// The same cluster centres (seed 1), fresh points.
		x, _ := synth.Clusters(n+m, k, c, 8, 1)
		r := rand.New(rand.NewPCG(seed, 4))
		out := make([]float32, m*d)
		for i := range m {
			copy(out[i*d:i*d+k], x[(n+i)*k:(n+i+1)*k])
			for j := k; j < d; j++ {
				out[i*d+j] = float32(r.NormFloat64())
			}
		}
		return embed.Data{N: m, D: d, F32: out}
	}
	return base, newRows
}

// BenchmarkAdd times adding rows to a 70,000-point map: projection,
// neighbours among the base, affinities and 250 steps (issue 16's target:
// 1,000 rows in ≤ 5 s on 2 cores).
func BenchmarkAdd(b *testing.B) {
	for _, m := range []int{1000} {
		b.Run(fmt.Sprintf("M=%d/N=70000", m), func(b *testing.B) {
			base, newRows := syntheticBase(70000)
			data := newRows(m, 9)
			be := cpu.New(0)
			b.ResetTimer()
			cpu0 := cpuSeconds()
			for b.Loop() {
				if _, err := embed.Add(context.Background(), be, base, data, embed.DefaultAddOptions(), nil); err != nil {
					b.Fatal(err)
				}
			}
			// CPU seconds per addition (user + system, all threads): the
			// figure that does not depend on what else the machine runs.
			b.ReportMetric((cpuSeconds()-cpu0)/float64(b.N), "cpu-s/op")
			b.ReportMetric(float64(m)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// cpuSeconds is the process's user + system CPU time so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return math.NaN()
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// fashionDir is where Debian's dataset-fashion-mnist installs the data.
const fashionDir = "/usr/share/datasets/fashion-mnist"

// readIDX reads a gzipped IDX file (LeCun's MNIST format): images as
// n×784 uint8, or labels.
func readIDX(path string) (data []uint8, n int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	var magic uint32
	if err := binary.Read(zr, binary.BigEndian, &magic); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	dims := make([]uint32, magic&0xff)
	if err := binary.Read(zr, binary.BigEndian, dims); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	data, err = io.ReadAll(zr)
	return data, int(dims[0]), err
}

func fashion(b *testing.B, set string) (embed.Data, []int) {
	pix, n, err := readIDX(filepath.Join(fashionDir, set+"-images-idx3-ubyte.gz"))
	if err != nil {
		b.Skipf("Fashion-MNIST (Debian dataset-fashion-mnist) not readable: %v", err)
	}
	lab, _, err := readIDX(filepath.Join(fashionDir, set+"-labels-idx1-ubyte.gz"))
	if err != nil {
		b.Skipf("Fashion-MNIST labels: %v", err)
	}
	labels := make([]int, n)
	for i, l := range lab {
		labels[i] = int(l)
	}
	return embed.Data{N: n, D: 784, U8: pix}, labels
}

// BenchmarkAddFashionMNIST is issue 16's quality check: the 60,000
// training images are the base, the 10,000 test images are added; each
// added image's 10-NN label accuracy judged by its nearest base points in
// the map is compared with the same images' accuracy, judged the same
// way, when all 70,000 are embedded together. It reports acc_added,
// acc_joint and their difference (the target: within 0.03), and the
// addition's wall time. Minutes on 2 cores: run it alone,
// `go test ./embed -run - -bench AddFashionMNIST -benchtime 1x`.
func BenchmarkAddFashionMNIST(b *testing.B) {
	if testing.Short() {
		b.Skip("minutes long; skipped under -short")
	}
	train, trainLabels := fashion(b, "train")
	test, testLabels := fashion(b, "t10k")
	be := cpu.New(0)
	ctx := context.Background()
	for b.Loop() {
		res, err := embed.Run(ctx, be, train, embed.DefaultOptions(), nil)
		if err != nil {
			b.Fatal(err)
		}
		base := &embed.Base{Method: embed.MethodTSNE, Basis: *res.Basis, N: res.N, Dims: res.Dims, Scores: res.Scores, Y: res.Y}
		t0 := time.Now()
		add, err := embed.Add(ctx, be, base, test, embed.DefaultAddOptions(), nil)
		if err != nil {
			b.Fatal(err)
		}
		addTime := time.Since(t0)
		accAdded := synth.KNNAccuracyAgainst(res.Y, trainLabels, add.Y, testLabels, 2)

		all := embed.Data{N: train.N + test.N, D: 784, U8: append(append([]uint8(nil), train.U8...), test.U8...)}
		joint, err := embed.Run(ctx, be, all, embed.DefaultOptions(), nil)
		if err != nil {
			b.Fatal(err)
		}
		accJoint := synth.KNNAccuracyAgainst(joint.Y[:train.N*2], trainLabels, joint.Y[train.N*2:], testLabels, 2)
		b.ReportMetric(accAdded, "acc_added")
		b.ReportMetric(accJoint, "acc_joint")
		b.ReportMetric(accJoint-accAdded, "acc_gap")
		b.ReportMetric(addTime.Seconds(), "add_s")
		b.Logf("base run %v; addition of %d: %v (KL %.4f), 10-NN accuracy added %.4f, joint %.4f, gap %.4f",
			res.Timings, test.N, addTime, add.KL, accAdded, accJoint, accJoint-accAdded)
	}
}
