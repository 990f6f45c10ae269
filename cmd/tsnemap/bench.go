package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/tsnemap/tsnemap/cpu"
	"github.com/tsnemap/tsnemap/embed"
	"github.com/tsnemap/tsnemap/gpu"
	"github.com/tsnemap/tsnemap/internal/synth"
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
// else one pixel high.
func (c benchCase) data(seed uint64) (embed.Data, []int) {
	if !c.Pixels {
		x, labels := synth.Clusters(c.N, c.D, 10, 8, seed)
		return embed.Data{N: c.N, D: c.D, F32: x}, labels
	}
	px := c.D / 3
	w, h := px, 1
	for s := 1; s*s <= px; s++ {
		if s*s == px {
			w, h = s, s
		}
	}
	pix, labels := synth.Images(c.N, w, h, 10, seed)
	return embed.Data{N: c.N, D: c.D, U8: pix}, labels
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
	Accuracy   float64 `json:"knn_accuracy"`
	Repulsion  string  `json:"repulsion"`
	Method     string  `json:"neighbor_method"`
	PeakRSS    int64   `json:"peak_rss_bytes"`
}

const defaultCases = "2000x50,10000x50,70000x50,10000x30000u8"

// gpuCases are the sizes of the GPU figures (issue 5): clustered features
// with D = 50 up to a million points, and 70,000 images of 100×100 RGB.
const gpuCases = "10000x50,70000x50,250000x50,1000000x50,70000x30000u8"

func benchCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tsnemap bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: tsnemap bench [flags]\n\n"+
			"Times each stage of a t-SNE run on synthetic clustered data and reports peak memory\n"+
			"(each case runs in its own process, so its peak is its own) and the 10-nearest-\n"+
			"neighbour accuracy of the clusters in the output.\n\n")
		fs.PrintDefaults()
	}
	cases := fs.String("cases", "", "comma-separated NxD (float features) or NxDu8 (pixel rows) (default "+defaultCases+"; with --backend gpu "+gpuCases+")")
	backend := fs.String("backend", "cpu", "backend to time: cpu or gpu (gpu needs a build with -tags cuda and a CUDA device)")
	threads := fs.Int("threads", 0, "CPU threads (default: all cores)")
	jsonOut := fs.Bool("json", false, "print JSON lines instead of a table")
	child := fs.String("child", "", "")
	opts := optionFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
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
		if err != nil {
			return err
		}
		rec, err := benchOne(ctx, c, *opts, *threads, *backend, stderr)
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
		if _, err := parseCase(name); err != nil {
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
		fmt.Fprintln(tw, "case\tPCA s\tkNN s\taffinities s\toptimise s\ttotal s\tpeak RSS MB\tKL\t10-NN acc\trepulsion\tneighbours\t")
		for _, r := range recs {
			fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.0f\t%.4f\t%.4f\t%s\t%s\t\n", r.Case, r.PCA, r.Neighbors, r.Affinities,
				r.Optimize, r.Total, float64(r.PeakRSS)/(1<<20), r.KL, r.Accuracy, r.Repulsion, r.Method)
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

func benchOne(ctx context.Context, c benchCase, opts embed.Options, threads int, backend string, stderr io.Writer) (benchRecord, error) {
	data, labels := c.data(1)
	var be embed.Backend = cpu.New(threads)
	if backend == "gpu" {
		g, err := gpu.New(ctx)
		if err != nil {
			return benchRecord{}, fmt.Errorf("--backend gpu: %w", err)
		}
		defer g.Close()
		if err := g.FitsRun(data.N, data.D, data.U8 != nil, opts); err != nil {
			return benchRecord{}, err
		}
		be = g
	}
	start := time.Now()
	res, err := embed.Run(ctx, be, data, opts, &embed.Observer{Progress: progressPrinter(stderr, false)})
	if err != nil {
		return benchRecord{}, err
	}
	total := time.Since(start)
	t := res.Timings
	return benchRecord{
		Case: c.Name, Backend: be.Name(),
		PCA: t.PCA.Seconds(), Neighbors: t.Neighbors.Seconds(), Affinities: t.Affinities.Seconds(),
		Optimize: t.Optimize.Seconds(), Total: total.Seconds(), KL: res.KL,
		Accuracy:  synth.KNNAccuracy(res.Y, res.Dims, labels, 2000),
		Repulsion: string(res.Repulsion), Method: string(res.Neighbors),
	}, nil
}
