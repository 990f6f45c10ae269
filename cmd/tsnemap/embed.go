package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tsnemap/tsnemap/cpu"
	"github.com/tsnemap/tsnemap/embed"
)

var errUsage = errors.New("usage")

// usageError is a mistake in the command line (exit status 2), with the
// sentence that says how to put it right.
type usageError struct{ msg string }

func (e *usageError) Error() string        { return e.msg }
func (e *usageError) Is(target error) bool { return target == errUsage }

func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// learningRateFlag accepts "auto" or a positive number.
type learningRateFlag struct{ v *float64 }

func (f learningRateFlag) String() string {
	if f.v == nil || *f.v == embed.LearningRateAuto {
		return "auto"
	}
	return strconv.FormatFloat(*f.v, 'g', -1, 64)
}

func (f learningRateFlag) Set(s string) error {
	if s == "auto" {
		*f.v = embed.LearningRateAuto
		return nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || !(v > 0) {
		return fmt.Errorf("want auto or a number > 0")
	}
	*f.v = v
	return nil
}

// optionFlags registers the engine's options on fs, defaults filled in.
func optionFlags(fs *flag.FlagSet) *embed.Options {
	o := embed.DefaultOptions()
	fs.Func("method", "tsne or pca (default tsne)", func(s string) error { o.Method = embed.Method(s); return nil })
	fs.IntVar(&o.Dimensions, "dimensions", o.Dimensions, "output dimensions, 2 or 3")
	fs.Float64Var(&o.Perplexity, "perplexity", o.Perplexity, "effective number of neighbours")
	fs.IntVar(&o.Iterations, "iterations", o.Iterations, "gradient steps, early exaggeration included")
	fs.Float64Var(&o.EarlyExaggeration, "early-exaggeration", o.EarlyExaggeration, "P is multiplied by this early on")
	fs.IntVar(&o.ExaggerationIterations, "exaggeration-iterations", o.ExaggerationIterations, "iterations with exaggeration")
	fs.Var(learningRateFlag{&o.LearningRate}, "learning-rate", "auto (max(N/early_exaggeration/4, 50)) or a number")
	fs.Func("init", "pca or random (default pca)", func(s string) error { o.Init = embed.Init(s); return nil })
	fs.Int64Var(&o.Seed, "seed", o.Seed, "random seed")
	fs.IntVar(&o.PCAComponents, "pca-components", o.PCAComponents, "PCA dimensions for the neighbour search")
	fs.Func("repulsion", "auto, exact, barnes-hut or fft (default auto)", func(s string) error { o.Repulsion = embed.Repulsion(s); return nil })
	fs.Float64Var(&o.Theta, "theta", o.Theta, "Barnes-Hut opening angle")
	fs.Func("neighbors", "auto, exact or approximate (default auto)", func(s string) error { o.Neighbors = embed.NeighborMethod(s); return nil })
	fs.Func("metric", "euclidean or cosine (default euclidean; cosine scales every row to unit length first)", func(s string) error { o.Metric = embed.Metric(s); return nil })
	return &o
}

func embedCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tsnemap embed", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: tsnemap embed --input FILE [flags]\n\n"+
			"Reads a numeric matrix, one row per point (.tsv/.csv with an optional header row\n"+
			"and leading id column, or .npy), and writes id, x, y (, z) as TSV.\n\n")
		fs.PrintDefaults()
	}
	input := fs.String("input", "", "matrix file (.tsv, .csv, .npy); - reads standard input")
	format := fs.String("format", "", "tsv, csv or npy (default: from the file name)")
	output := fs.String("output", "-", "coordinates file; - writes standard output")
	threads := fs.Int("threads", 0, "CPU threads (default: all cores)")
	backend := fs.String("backend", "auto", "auto (the GPU when there is one and the problem fits it), cpu or gpu")
	quiet := fs.Bool("quiet", false, "no progress on standard error")
	opts := optionFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if *input == "" {
		fs.Usage()
		return errUsage
	}
	if *format == "" {
		*format = strings.TrimPrefix(filepath.Ext(*input), ".")
		if *input == "-" {
			*format = "tsv"
		}
	}
	var r io.Reader = os.Stdin
	if *input != "-" {
		f, err := os.Open(*input)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	m, err := embed.ReadMatrix(r, *format)
	if err != nil {
		return fmt.Errorf("%s: %w", *input, err)
	}
	var be embed.Backend = cpu.New(*threads)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	g, err := pickGPU(ctx, *backend, log)
	if err != nil {
		return err
	}
	if g != nil {
		defer g.Close()
		if err := g.FitsRun(m.Data.N, m.Data.D, m.Data.U8 != nil, *opts); err != nil {
			if *backend == "gpu" {
				return fmt.Errorf("--backend gpu: %w", err)
			}
			log.Warn("running on the CPU: the problem does not fit the GPU", "reason", err.Error())
		} else {
			be = g
		}
	}
	if !*quiet {
		fmt.Fprintf(stderr, "%d points × %d values, backend %s\n", m.Data.N, m.Data.D, be.Name())
	}
	obs := &embed.Observer{Progress: progressPrinter(stderr, *quiet)}
	res, err := embed.Run(ctx, be, m.Data, *opts, obs)
	if err != nil {
		return err
	}
	if !*quiet {
		t := res.Timings
		fmt.Fprintf(stderr, "done: PCA %.2fs, neighbours %.2fs (%s), affinities %.2fs, optimisation %.2fs (%s), KL %.4f\n",
			t.PCA.Seconds(), t.Neighbors.Seconds(), res.Neighbors, t.Affinities.Seconds(), t.Optimize.Seconds(), res.Repulsion, res.KL)
	}
	var w io.Writer = stdout
	if *output != "-" {
		f, err := os.Create(*output)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	return embed.WriteCoordinates(w, m.IDs, res.Y, res.Dims)
}

// progressPrinter prints stage changes, and the iteration at most twice a
// second and whenever a new KL arrives.
func progressPrinter(w io.Writer, quiet bool) func(embed.Progress) {
	if quiet {
		return nil
	}
	var stage embed.Stage
	var last time.Time
	lastKL := math.NaN()
	return func(p embed.Progress) {
		newKL := !math.IsNaN(p.KL) && p.KL != lastKL
		switch {
		case p.Stage != stage:
			stage = p.Stage
			fmt.Fprintf(w, "%6.1fs %s\n", p.Elapsed.Seconds(), p.Stage)
		case newKL || time.Since(last) > 500*time.Millisecond || p.Iteration == p.Iterations:
			kl := "   -"
			if !math.IsNaN(p.KL) {
				kl = fmt.Sprintf("%.4f", p.KL)
			}
			fmt.Fprintf(w, "%6.1fs optimizing %d/%d KL %s\n", p.Elapsed.Seconds(), p.Iteration, p.Iterations, kl)
			last, lastKL = time.Now(), p.KL
		}
	}
}
