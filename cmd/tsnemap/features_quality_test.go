package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/internal/featurefile"
	"github.com/tsnemap/tsnemap/internal/synth"
	"github.com/tsnemap/tsnemap/openapi"
)

// fashionDir is where Debian's dataset-fashion-mnist installs the data.
const fashionDir = "/usr/share/datasets/fashion-mnist"

// readIDX reads an IDX file (LeCun's MNIST format, gzipped): the first
// limit items of images (magic 2051) or labels (2049).
func readIDX(t *testing.T, name string, limit int) (items, size int, data []byte) {
	t.Helper()
	f, err := os.Open(filepath.Join(fashionDir, name))
	if err != nil {
		t.Skipf("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist): %v", err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var magic, n uint32
	if err := binary.Read(z, binary.BigEndian, &magic); err != nil {
		t.Fatal(err)
	}
	_ = binary.Read(z, binary.BigEndian, &n)
	size = 1
	for range int(magic&0xff) - 1 { // the low byte is the number of dimensions
		var d uint32
		if err := binary.Read(z, binary.BigEndian, &d); err != nil {
			t.Fatal(err)
		}
		size *= int(d)
	}
	items = min(int(n), limit)
	data = make([]byte, items*size)
	if _, err := io.ReadFull(z, data); err != nil {
		t.Fatal(err)
	}
	return items, size, data
}

// fashionRows is how many Fashion-MNIST images the quality test maps:
// TSNEMAP_FASHION_ROWS, default 5000.
func fashionRows(t *testing.T) int {
	n := 5000
	if s := os.Getenv("TSNEMAP_FASHION_ROWS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 100 {
			t.Fatalf("TSNEMAP_FASHION_ROWS=%q: want a number ≥ 100", s)
		}
		n = v
	}
	return n
}

// TestFashionMNISTFeaturesQuality: the 784 raw pixels of Fashion-MNIST
// images, as a Parquet file in shuffled order, give through the service
// exactly the map `tsnemap embed` makes of the same matrix in catalogue
// order (same seed, CPU, threads) — the matching by id loses and moves
// nothing. And with metric cosine on the rows each scaled by a random
// factor in [0.1, 10], the 10-NN accuracy of the map equals that of cosine
// on the unscaled rows within 0.005, and is no worse than euclidean's on
// the unscaled rows (less 0.005).
func TestFashionMNISTFeaturesQuality(t *testing.T) {
	if testing.Short() || fashionUnderRace {
		t.Skip("maps thousands of Fashion-MNIST images: not in -short or under the race detector")
	}
	n, d, pix := readIDX(t, "train-images-idx3-ubyte.gz", fashionRows(t))
	_, _, lab := readIDX(t, "train-labels-idx1-ubyte.gz", n)
	labels := make([]int, n)
	ids := make([]string, n)
	vecs := make([][]float32, n)
	scaled := make([][]float32, n)
	rng := rand.New(rand.NewPCG(15, 15))
	var table bytes.Buffer
	table.WriteString("id\tlabel\n")
	for i := range n {
		labels[i], ids[i] = int(lab[i]), fmt.Sprintf("fm%05d", i)
		fmt.Fprintf(&table, "%s\t%d\n", ids[i], labels[i])
		vecs[i], scaled[i] = make([]float32, d), make([]float32, d)
		s := float32(math.Pow(10, rng.Float64()*2-1))
		for j := range d {
			vecs[i][j] = float32(pix[i*d+j])
			scaled[i][j] = vecs[i][j] * s
		}
	}
	order := rng.Perm(n)
	sid, sv, ss := make([]string, n), make([][]float32, n), make([][]float32, n)
	for k, i := range order {
		sid[k], sv[k], ss[k] = ids[i], vecs[i], scaled[i]
	}
	files := map[string][]byte{"/fashion.tab": table.Bytes()}
	var err error
	if files["/pixels.parquet"], err = featurefile.Parquet(sid, sv, "id", "pixels", true); err != nil {
		t.Fatal(err)
	}
	if files["/scaled.parquet"], err = featurefile.Parquet(sid, ss, "id", "pixels", false); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(files[r.URL.Path]) }))
	defer srv.Close()

	// tsnemap embed of the matrix in catalogue order.
	dir := t.TempDir()
	npy, _ := featurefile.NPY(ids, vecs, false)
	if err := os.WriteFile(dir+"/pixels.npy", npy, 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var stderr bytes.Buffer
	if err := embedCommand(context.Background(), []string{"--input", dir + "/pixels.npy", "--output", dir + "/map.tsv",
		"--backend", "cpu", "--threads", "2", "--seed", "1", "--quiet"}, io.Discard, &stderr); err != nil {
		t.Fatalf("embed: %v %s", err, stderr.String())
	}
	t.Logf("tsnemap embed of %d×%d: %v", n, d, time.Since(start).Round(time.Millisecond))
	want := readCoordinates(t, dir+"/map.tsv", n)

	e := startE2E(t, true)
	job := func(file, metric string) []float32 {
		start := time.Now()
		id := e.submit(fmt.Sprintf(`{"dataset_url":%q,"features_url":%q,"metric":%q,"seed":1,"backend":"cpu"}`, srv.URL+"/fashion.tab", srv.URL+file, metric))
		j := e.wait(id, 20*time.Minute, ended)
		if j.Status != "succeeded" {
			t.Fatalf("%s %s: %s %+v", file, metric, j.Status, j.Error)
		}
		var res openapi.Result
		e.getJSON("/v1/jobs/"+id+"/result?format=json", &res)
		y := make([]float32, 2*n)
		for i, p := range res.Points {
			if p.Id != ids[i] || p.X == nil {
				t.Fatalf("%s: point %d is %s (mapped %v)", file, i, p.Id, p.X != nil)
			}
			y[2*i], y[2*i+1] = float32(*p.X), float32(*p.Y)
		}
		t.Logf("job %s %s: %v", file, metric, time.Since(start).Round(time.Millisecond))
		return y
	}
	got := job("/pixels.parquet", "euclidean")
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("row %d (%s): the job put it at %v, tsnemap embed at %v", i/2, ids[i/2], got[i], want[i])
		}
	}
	accE := synth.KNNAccuracy(got, 2, labels, n)
	accC := synth.KNNAccuracy(job("/pixels.parquet", "cosine"), 2, labels, n)
	accCS := synth.KNNAccuracy(job("/scaled.parquet", "cosine"), 2, labels, n)
	accES := synth.KNNAccuracy(job("/scaled.parquet", "euclidean"), 2, labels, n)
	t.Logf("10-NN accuracy over %d Fashion-MNIST images: euclidean %.4f; cosine %.4f; rows scaled by random factors: cosine %.4f, euclidean %.4f",
		n, accE, accC, accCS, accES)
	// Cosine ignores the norms: the scaled rows map as well as the rows.
	if math.Abs(accCS-accC) > 0.005 {
		t.Errorf("10-NN accuracy: cosine of scaled rows %.4f, of the rows %.4f; want within 0.005", accCS, accC)
	}
	// And it loses nothing against euclidean on the unscaled rows (on raw
	// pixels it is better: the two metrics differ, so they are not equal).
	if accCS < accE-0.005 {
		t.Errorf("10-NN accuracy: cosine of scaled rows %.4f, euclidean of the rows %.4f; want at least that less 0.005", accCS, accE)
	}
}

func readCoordinates(t *testing.T, path string, n int) []float32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if strings.HasPrefix(lines[0], "id") {
		lines = lines[1:]
	}
	if len(lines) != n {
		t.Fatalf("%s: %d lines, want %d", path, len(lines), n)
	}
	y := make([]float32, 0, 2*n)
	for _, l := range lines {
		f := strings.Split(l, "\t")
		for _, s := range f[1:3] {
			v, err := strconv.ParseFloat(s, 32)
			if err != nil {
				t.Fatalf("%s: %q: %v", path, l, err)
			}
			y = append(y, float32(v))
		}
	}
	return y
}
