package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/tsnemap/tsnemap/cpu"
	"github.com/tsnemap/tsnemap/embed"
	"github.com/tsnemap/tsnemap/gpu"
	"github.com/tsnemap/tsnemap/internal/rowspool"
	"github.com/tsnemap/tsnemap/internal/synth"
	"github.com/tsnemap/tsnemap/loader"
)

// A benchCase is synthetic data of one shape: N rows of D float32 features
// from 10 Gaussian clusters, or N image rows of W×H RGB uint8 pixels in 10
// classes (D = W·H·3).
type benchCase struct {
	Name   string
	N, D   int
	Pixels bool
}

func parseCase(s string) (benchCase, error) {
	c := benchCase{Name: s}
	spec, pixels := strings.CutSuffix(s, "u8")
	c.Pixels = pixels
	ns, ds, ok := strings.Cut(spec, "x")
	n, err1 := strconv.Atoi(ns)
	d, err2 := strconv.Atoi(ds)
	if !ok || err1 != nil || err2 != nil || n < 4 || d < 1 {
		return c, fmt.Errorf("case %q: want NxD (float features) or NxDu8 (pixels), e.g. 10000x50 or 10000x30000u8", s)
	}
	if pixels && d%3 != 0 {
		return c, fmt.Errorf("case %q: pixel rows need D = W·H·3", s)
	}
	c.N, c.D = n, d
	return c, nil
}

// data makes the case's data: images are square when D/3 is a square,
// else one pixel high. Pixels of more than spoolAbove bytes (negative:
// never) are made a block at a time into a temporary file in spoolDir, as
// the service spools what it loads; close removes it.
func (c benchCase) data(ctx context.Context, seed uint64, spoolAbove int64, spoolDir string) (_ embed.Data, labels []int, close func(), _ error) {
	if !c.Pixels {
		x, labels := synth.Clusters(c.N, c.D, 10, 8, seed)
		return embed.Data{N: c.N, D: c.D, F32: x}, labels, func() {}, nil
	}
	px := c.D / 3
	w, h := px, 1
	for s := 1; s*s <= px; s++ {
		if s*s == px {
			w, h = s, s
		}
	}
	if spoolAbove < 0 || int64(c.N)*int64(c.D) <= spoolAbove {
		pix, labels := synth.Images(c.N, w, h, 10, seed)
		return embed.Data{N: c.N, D: c.D, U8: pix}, labels, func() {}, nil
	}
	f, labels, err := spoolImages(ctx, synth.NewImageSet(w, h, 10, seed), c.N, c.D, spoolDir)
	if err != nil {
		return embed.Data{}, nil, nil, err
	}
	return embed.Data{N: c.N, D: c.D, Rows: f}, labels, func() { f.Close() }, nil
}

// spoolImages writes n images of d bytes from g to a new spool in dir,
// 64 MB at a time; on an error nothing is left behind.
func spoolImages(ctx context.Context, g *synth.ImageSet, n, d int, dir string) (_ *rowspool.File, labels []int, err error) {
	f, err := rowspool.Create(dir, d)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	labels = make([]int, n)
	rows := min(n, max(1, (64<<20)/d))
	buf := make([]uint8, rows*d)
	for lo := 0; lo < n; lo += rows {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		hi := min(n, lo+rows)
		g.Fill(lo, hi, buf[:(hi-lo)*d], labels[lo:hi])
		if err := f.Append(buf[:(hi-lo)*d]); err != nil {
			return nil, nil, err
		}
	}
	if err := f.Finish(); err != nil {
		return nil, nil, err
	}
	return f, labels, nil
}

// benchRecord is one case's figures; a child process prints it as JSON.
type benchRecord struct {
	Case       string  `json:"case"`
	Backend    string  `json:"backend"`
	PCA        float64 `json:"pca_s"`
	Neighbors  float64 `json:"neighbors_s"`
	Affinities float64 `json:"affinities_s"`
	Optimize   float64 `json:"optimize_s"`
	Total      float64 `json:"total_s"`
	KL         float64 `json:"kl"`
	// Accuracy is the 10-NN accuracy of the labels in the output (absent
	// for an --input without --labels); Recall the approximate neighbour
	// search's recall on a sample of queries (absent when it was exact).
	Accuracy  *float64 `json:"knn_accuracy,omitempty"`
	Recall    *float64 `json:"knn_recall,omitempty"`
	Repulsion string   `json:"repulsion"`
	Method    string   `json:"neighbor_method"`
	PeakRSS   int64    `json:"peak_rss_bytes"`
}

// benchInput is a matrix file to time instead of synthetic cases, with
// optional labels (one integer per line) for the 10-NN accuracy.
type benchInput struct {
	path, labels string
	recall       int // queries for the recall of an approximate search
	// Synthetic pixels of more than spoolAbove bytes (negative: never)
	// are spooled to a temporary file in spoolDir ("": the system's).
	spoolAbove int64
	spoolDir   string
}

// defaultSpoolAbove is where the bench starts to spool pixels: where the
// service does (1 GiB, 35,000 images of 100×100 RGB).
const defaultSpoolAbove = loader.DefaultSpoolAbove

const defaultCases = "2000x50,10000x50,70000x50,10000x30000u8"

// gpuCases are the sizes of the GPU figures (issue 5): clustered features
// with D = 50 up to a million points, and 70,000 images of 100×100 RGB.
const gpuCases = "10000x50,70000x50,250000x50,1000000x50,70000x30000u8"

func benchCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tsnemap bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: tsnemap bench [flags]\n\n"+
			"Times each stage of a t-SNE run on synthetic clustered data (or on --input FILE) and\n"+
			"reports peak memory (each case runs in its own process, so its peak is its own), the\n"+
			"10-nearest-neighbour accuracy of the clusters (or of --labels) in the output, and the\n"+
			"recall of the neighbour search on a sample of queries when it is approximate.\n\n")
		fs.PrintDefaults()
	}
	cases := fs.String("cases", "", "comma-separated NxD (float features) or NxDu8 (pixel rows) (default "+defaultCases+"; with --backend gpu "+gpuCases+")")
	backend := fs.String("backend", "cpu", "backend to time: cpu or gpu (gpu needs a build with -tags cuda and a CUDA device)")
	threads := fs.Int("threads", 0, "CPU threads (default: all cores)")
	jsonOut := fs.Bool("json", false, "print JSON lines instead of a table")
	var in benchInput
	fs.StringVar(&in.path, "input", "", "time this matrix file (.npy, .tsv, .csv) instead of synthetic cases")
	fs.StringVar(&in.labels, "labels", "", "with --input: a file of one integer label per row, for the 10-NN accuracy")
	fs.IntVar(&in.recall, "recall-queries", 1000, "queries (at most) for the recall of an approximate neighbour search; 0 skips it")
	fs.Int64Var(&in.spoolAbove, "spool-above", defaultSpoolAbove, "synthetic pixels of more bytes than this are made into a temporary file and read from it in blocks (-1: never)")
	fs.StringVar(&in.spoolDir, "spool-dir", "", "directory of that temporary file (default: the system's temporary directory)")
	child := fs.String("child", "", "")
	opts := optionFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if in.labels != "" && in.path == "" {
		return fmt.Errorf("tsnemap bench: --labels needs --input")
	}
	if in.path != "" {
		if *cases != "" {
			return fmt.Errorf("tsnemap bench: --input and --cases exclude each other")
		}
		*cases = inputCase
	}
	switch *backend {
	case "cpu":
		if *cases == "" {
			*cases = defaultCases
		}
	case "gpu":
		if *cases == "" {
			*cases = gpuCases
		}
		if *child == "" {
			info, err := gpu.Probe(ctx)
			if err != nil {
				return fmt.Errorf("--backend gpu: %w", err)
			}
			fmt.Fprintf(stderr, "GPU: %v\n", info)
		}
	default:
		return fmt.Errorf("tsnemap bench: --backend %q: want cpu or gpu", *backend)
	}
	if *child != "" {
		c, err := parseCase(*child)
		if *child == inputCase {
			c, err = benchCase{Name: filepath.Base(in.path)}, nil
		}
		if err != nil {
			return err
		}
		rec, err := benchOne(ctx, c, in, *opts, *threads, *backend, stderr)
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(rec)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var recs []benchRecord
	var failed []string
	for _, name := range strings.Split(*cases, ",") {
		if _, err := parseCase(name); err != nil && name != inputCase {
			return err
		}
		childArgs := append([]string{"bench", "--child", name}, args...)
		cmd := exec.CommandContext(ctx, self, childArgs...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, stderr
		fmt.Fprintf(stderr, "case %s\n", name)
		if err := cmd.Run(); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// The child said why on stderr (a case too large for the
			// GPU, say); the other cases still run.
			fmt.Fprintf(stderr, "case %s failed: %v\n", name, err)
			failed = append(failed, name)
			continue
		}
		var rec benchRecord
		if err := json.Unmarshal(out.Bytes(), &rec); err != nil {
			return fmt.Errorf("case %s: %w", name, err)
		}
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			rec.PeakRSS = ru.Maxrss * 1024 // kilobytes on Linux
		}
		recs = append(recs, rec)
		if *jsonOut {
			json.NewEncoder(stdout).Encode(rec)
		}
	}
	if !*jsonOut {
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "case\tPCA s\tkNN s\taffinities s\toptimise s\ttotal s\tpeak RSS MB\tKL\t10-NN acc\trepulsion\tneighbours\tkNN recall\t")
		for _, r := range recs {
			fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.0f\t%.4f\t%s\t%s\t%s\t%s\t\n", r.Case, r.PCA, r.Neighbors, r.Affinities,
				r.Optimize, r.Total, float64(r.PeakRSS)/(1<<20), r.KL, optFigure(r.Accuracy), r.Repulsion, r.Method, optFigure(r.Recall))
		}
		tw.Flush()
		if len(recs) > 0 {
			fmt.Fprintf(stdout, "backend %s, %d iterations, perplexity %g\n", recs[0].Backend, opts.Iterations, opts.Perplexity)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("cases failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// accuracyQueries is the sample of the 10-NN accuracy: 10,000 queries put
// its standard error near 0.004 at an accuracy of 0.84 (2,000 gave
// 0.830 on a Fashion-MNIST layout where 10,000 gave 0.846).
const accuracyQueries = 10000

// inputCase names the one case of a bench with --input.
const inputCase = "input"

func optFigure(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.4f", *v)
}

// load makes the case's data and labels: the --input file (labels nil
// without --labels), or the synthetic case; close releases them.
func (in benchInput) load(ctx context.Context, c benchCase) (embed.Data, []int, func(), error) {
	if in.path == "" {
		return c.data(ctx, 1, in.spoolAbove, in.spoolDir)
	}
	data, labels, err := in.read()
	return data, labels, func() {}, err
}

// read reads the --input file and its --labels.
func (in benchInput) read() (embed.Data, []int, error) {
	f, err := os.Open(in.path)
	if err != nil {
		return embed.Data{}, nil, fmt.Errorf("--input: %w", err)
	}
	defer f.Close()
	format := strings.TrimPrefix(filepath.Ext(in.path), ".")
	m, err := embed.ReadMatrix(bufio.NewReaderSize(f, 1<<20), format)
	if err != nil {
		return embed.Data{}, nil, fmt.Errorf("--input %s: %w", in.path, err)
	}
	if in.labels == "" {
		return m.Data, nil, nil
	}
	labels, err := readLabels(in.labels, m.Data.N)
	return m.Data, labels, err
}

// readLabels reads one integer per line, n lines (blank lines skipped).
func readLabels(path string, n int) ([]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--labels: %w", err)
	}
	defer f.Close()
	labels := make([]int, 0, n)
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		t := strings.TrimSpace(sc.Text())
		if t == "" {
			continue
		}
		v, err := strconv.Atoi(t)
		if err != nil {
			return nil, fmt.Errorf("--labels %s: line %d: %q is not an integer", path, line, t)
		}
		labels = append(labels, v)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--labels %s: %w", path, err)
	}
	if len(labels) != n {
		return nil, fmt.Errorf("--labels %s: %d labels for %d rows", path, len(labels), n)
	}
	return labels, nil
}

func benchOne(ctx context.Context, c benchCase, in benchInput, opts embed.Options, threads int, backend string, stderr io.Writer) (benchRecord, error) {
	data, labels, closeData, err := in.load(ctx, c)
	if err != nil {
		return benchRecord{}, err
	}
	defer closeData()
	var be embed.Backend = cpu.New(threads)
	if backend == "gpu" {
		g, err := gpu.New(ctx)
		if err != nil {
			return benchRecord{}, fmt.Errorf("--backend gpu: %w", err)
		}
		defer g.Close()
		if err := g.FitsRun(data.N, data.D, data.Pixels(), opts); err != nil {
			return benchRecord{}, err
		}
		be = g
	}
	var recall *float64
	var recallTime time.Duration
	obs := &embed.Observer{Progress: progressPrinter(stderr, false)}
	obs.Neighbors = func(x []float32, d int, nb *embed.Neighbors) {
		if nb.Method != embed.NeighborsApprox || in.recall <= 0 {
			return
		}
		t := time.Now()
		r := synth.KNNRecall(x, d, nb.Index, nb.K, in.recall)
		recall, recallTime = &r, time.Since(t)
		fmt.Fprintf(stderr, "kNN recall %.4f on %d queries (%.1fs, not counted)\n", r, in.recall, recallTime.Seconds())
	}
	start := time.Now()
	res, err := embed.Run(ctx, be, data, opts, obs)
	if err != nil {
		return benchRecord{}, err
	}
	total := time.Since(start) - recallTime
	t := res.Timings
	rec := benchRecord{
		Case: c.Name, Backend: be.Name(),
		PCA: t.PCA.Seconds(), Neighbors: t.Neighbors.Seconds(), Affinities: t.Affinities.Seconds(),
		Optimize: t.Optimize.Seconds(), Total: total.Seconds(), KL: res.KL, Recall: recall,
		Repulsion: string(res.Repulsion), Method: string(res.Neighbors),
	}
	if labels != nil {
		acc := synth.KNNAccuracy(res.Y, res.Dims, labels, accuracyQueries)
		rec.Accuracy = &acc
	}
	return rec, nil
}
