package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tsnemap/tsnemap/api"
	"github.com/tsnemap/tsnemap/jobs"
	"github.com/tsnemap/tsnemap/loader"
	"github.com/tsnemap/tsnemap/pipeline"
)

// runCommand is the museum script as one command: one job, in this process,
// no server and no store.
func runCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tsnemap run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs, true)
	req := jobs.DefaultRequest()
	fs.StringVar(&req.DatasetURL, "dataset-url", "", "http(s) URL of the table (TSV or CSV with a header row)")
	fs.StringVar(&req.ImageURLTemplate, "image-url-template", "", "image URL with {id} where the row's id goes")
	fs.StringVar(&req.ImageURLColumn, "image-url-column", "", "column holding each row's image URL (instead of a template)")
	fs.StringVar(&req.IDColumn, "id-column", req.IDColumn, "column of row ids; rows with empty or NaN-like ids are dropped")
	fs.StringVar(&req.FeaturesURL, "features-url", "", "http(s) URL of vectors to map instead of pixels (.parquet, .tsv, .csv, .npy + .ids.txt), matched to rows by id; images then optional")
	fs.StringVar(&req.FeaturesColumn, "features-column", "", "Parquet: the list column of vectors (default: the only one)")
	fs.StringVar(&req.Metric, "metric", req.Metric, "euclidean or cosine (rows scaled to unit length first)")
	fs.IntVar(&req.Limit, "limit", 0, "keep only the first N rows (0: all)")
	fs.IntVar(&req.ImageSize.Width, "image-width", req.ImageSize.Width, "width every image is resized to (4..512)")
	fs.IntVar(&req.ImageSize.Height, "image-height", req.ImageSize.Height, "height every image is resized to (4..512)")
	fs.StringVar(&req.Method, "method", req.Method, "tsne or pca")
	fs.IntVar(&req.Dimensions, "dimensions", req.Dimensions, "2 or 3")
	fs.Float64Var(&req.Perplexity, "perplexity", req.Perplexity, "t-SNE perplexity; must be < (images − 1) / 3")
	fs.IntVar(&req.Iterations, "iterations", req.Iterations, "gradient steps, early exaggeration included")
	fs.Float64Var(&req.EarlyExaggeration, "early-exaggeration", req.EarlyExaggeration, "early exaggeration factor")
	fs.IntVar(&req.ExaggerationIterations, "exaggeration-iterations", req.ExaggerationIterations, "iterations with exaggeration")
	fs.Var(learningRateFlag{(*float64)(&req.LearningRate)}, "learning-rate", "auto or a number > 0")
	fs.StringVar(&req.Init, "init", req.Init, "pca or random")
	fs.Int64Var(&req.Seed, "seed", req.Seed, "random seed: the same request and seed give the same map")
	output := fs.String("o", "zegami_tsne.tab", "output file (.tab/.tsv, .csv or .json); - writes standard output")
	quiet := fs.Bool("quiet", false, "no progress bar on standard error")
	baseFile := fs.String("base", "", "add to the map whose state this file holds (the .state a previous run wrote beside its result): its rows keep their x, y; new ids are placed among them")
	fs.Usage = usageWithEnv(fs, stderr, "usage: tsnemap run --dataset-url URL --image-url-template T [-o zegami_tsne.tab] [flags]\n\n"+
		"Fetches the table and its images, maps them, and writes the table with x, y appended.\n\nflags:\n")
	if err := parseWithEnv(fs, args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		fmt.Fprintln(stderr, err)
		return errUsage
	}
	if err := checkRunRequest(req); err != nil {
		return err
	}
	var base *jobs.Base
	if *baseFile != "" {
		var err error
		if base, err = readBase(*baseFile, fs, &req); err != nil {
			return err
		}
	}
	req.Backend = c.backend
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	pl, err := c.pipeline(ctx, log, nil)
	if err != nil {
		return err
	}
	defer pl.Close()

	if c.maxTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, c.maxTimeout, jobs.ErrTimeout)
		defer cancel()
	}
	job := jobs.Job{ID: "local", Status: jobs.StatusRunning, Stage: jobs.StageQueued, Request: req,
		Progress: jobs.Progress{Iterations: req.Iterations}}
	bar := newProgressBar(stderr, *quiet)
	tctx, stopTracker := context.WithCancel(ctx)
	tracker := jobs.NewLocalTracker(tctx, job, log, bar.show)
	if base != nil {
		tracker.SetLocalBase(base)
	}
	res, err := pl.Run(ctx, job, tracker)
	stopTracker()
	tracker.Close()
	bar.end()
	if err != nil {
		var je *jobs.Error
		if errors.As(err, &je) {
			return fmt.Errorf("%s: %s", je.Code, je.Message)
		}
		if errors.Is(context.Cause(ctx), jobs.ErrTimeout) {
			return fmt.Errorf("timeout: the job ran longer than --max-timeout %v", c.maxTimeout)
		}
		return err
	}
	if err := writeResult(res, *output, stdout); err != nil {
		return err
	}
	if st := tracker.LocalState(); st != nil && *output != "-" {
		if err := os.WriteFile(*output+".state", st, 0o644); err != nil {
			return fmt.Errorf("write the map's state: %w", err)
		}
	}
	if !*quiet {
		mapped := 0
		for _, r := range res.Rows {
			if r.Coords != nil {
				mapped++
			}
		}
		fmt.Fprintf(stderr, "done: %d of %d rows mapped (%d images failed; %d rows dropped for an empty or NaN-like id in %q) in %.1fs; wrote %s\n",
			mapped, len(res.Rows), len(res.Failures), bar.job.Progress.RowsDropped, req.IDColumn, time.Since(bar.start).Seconds(), *output)
	}
	return nil
}

// checkRunRequest finds the mistakes of the command line that need no
// download: a usage error (exit status 2) that names the flag.
func checkRunRequest(req jobs.Request) error {
	if req.DatasetURL == "" {
		return usageErrorf("give --dataset-url, the http(s) URL of the table (TSV or CSV with a header row)")
	}
	if _, err := loader.ParseURL(req.DatasetURL); err != nil {
		return usageErrorf("--dataset-url: %v", err)
	}
	if req.FeaturesURL != "" {
		if _, err := loader.ParseURL(req.FeaturesURL); err != nil {
			return usageErrorf("--features-url: %v", err)
		}
	}
	switch {
	case req.ImageURLTemplate != "" && req.ImageURLColumn != "":
		return usageErrorf("give --image-url-template or --image-url-column, not both")
	case req.ImageURLTemplate == "" && req.ImageURLColumn == "" && req.FeaturesURL == "":
		return usageErrorf("give --image-url-template (a URL with {id} where each row's id goes) or --image-url-column (the column holding each row's image URL); with --features-url images are optional")
	case req.ImageURLTemplate != "" && !strings.Contains(req.ImageURLTemplate, "{id}"):
		return usageErrorf("--image-url-template %q has no {id}: put {id} where each row's id goes, e.g. https://host/images/{id}.jpg", req.ImageURLTemplate)
	case req.ImageURLTemplate != "":
		if _, err := loader.ParseURL(strings.ReplaceAll(req.ImageURLTemplate, "{id}", "1")); err != nil {
			return usageErrorf("--image-url-template: %v", err)
		}
	}
	return nil
}

func writeResult(res *jobs.Result, path string, stdout io.Writer) error {
	var b []byte
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		b = api.WriteTable(res, ',')
	case ".json":
		var err error
		if b, err = json.MarshalIndent(api.ResultJSON(res), "", "  "); err != nil {
			return err
		}
	default:
		b = api.WriteTable(res, '\t')
	}
	if path == "-" {
		_, err := stdout.Write(b)
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	return nil
}

// progressBar draws the job's state on one terminal line.
type progressBar struct {
	w     io.Writer
	quiet bool
	last  string
	start time.Time
	job   jobs.Job // as last shown
}

func newProgressBar(w io.Writer, quiet bool) *progressBar {
	return &progressBar{w: w, quiet: quiet, start: time.Now()}
}

func (b *progressBar) show(j jobs.Job) {
	b.job = j
	if b.quiet {
		return
	}
	p := j.Progress
	var s string
	switch j.Stage {
	case jobs.StageLoadingImages:
		done := p.ImagesLoaded + p.ImagesFailed
		s = fmt.Sprintf("loading images %s %d/%d (%d failed)", bar(done, p.ImagesTotal), done, p.ImagesTotal, p.ImagesFailed)
	case jobs.StageOptimizing:
		s = fmt.Sprintf("optimizing %s %d/%d", bar(p.Iteration, p.Iterations), p.Iteration, p.Iterations)
		if p.KLDivergence != nil {
			s += fmt.Sprintf(" KL %.3f", *p.KLDivergence)
		}
	default:
		s = strings.ReplaceAll(string(j.Stage), "_", " ")
	}
	s = fmt.Sprintf("%s  %5.1fs", s, time.Since(b.start).Seconds())
	if s != b.last {
		fmt.Fprintf(b.w, "\r\033[K%s", s)
		b.last = s
	}
}

func (b *progressBar) end() {
	if !b.quiet && b.last != "" {
		fmt.Fprintln(b.w)
	}
}

func bar(done, total int) string {
	const width = 24
	if total <= 0 {
		return "[" + strings.Repeat(" ", width) + "]"
	}
	n := min(width, done*width/total)
	return "[" + strings.Repeat("=", n) + strings.Repeat(" ", width-n) + "]"
}

// readBase reads a --base state file and makes the request an addition to
// it: the image size, method, dimensions and metric are the base's, and a
// flag that says otherwise is a usage error naming it.
func readBase(path string, fs *flag.FlagSet, req *jobs.Request) (*jobs.Base, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usageErrorf("--base: %v", err)
	}
	base, st, err := pipeline.BaseFromState(b)
	if err != nil {
		return nil, usageErrorf("--base %s: %v", path, err)
	}
	if req.FeaturesURL != "" {
		return nil, usageErrorf("--base adds images; it cannot be used with --features-url")
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	want := map[string]string{"image-width": strconv.Itoa(st.Width), "image-height": strconv.Itoa(st.Height),
		"method": string(st.Base.Method), "dimensions": strconv.Itoa(st.Base.Dims), "metric": string(st.Base.Basis.Metric)}
	for _, name := range []string{"image-width", "image-height", "method", "dimensions", "metric"} {
		if given[name] && fs.Lookup(name).Value.String() != want[name] {
			return nil, usageErrorf("--%s %s differs from the base's %s (%s); leave it out to take the base's", name, fs.Lookup(name).Value, want[name], path)
		}
	}
	req.ImageSize = jobs.ImageSize{Width: st.Width, Height: st.Height}
	req.Method, req.Dimensions, req.Metric = string(st.Base.Method), st.Base.Dims, string(st.Base.Basis.Metric)
	req.BaseJobID = "local"
	return base, nil
}
