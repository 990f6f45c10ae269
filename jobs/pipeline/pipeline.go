// Package pipeline is the work of one job: fetch the table, load the
// images, embed them, and assemble the result table. It joins the loader
// and the engine for the job worker (jobs.Runner) and for `tsnemap run`.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/tsnemap/tsnemap/atlas"
	"github.com/tsnemap/tsnemap/embed"
	"github.com/tsnemap/tsnemap/jobs"
	"github.com/tsnemap/tsnemap/loader"
)

// Pipeline runs jobs with a loader and compute backends.
type Pipeline struct {
	Loader *loader.Loader
	// CPU is always there; GPU is nil on a machine without one.
	CPU embed.Backend
	GPU embed.Backend
	// Log receives the backend decisions of jobs (nil: slog.Default()).
	Log *slog.Logger
}

// Fitter is implemented by a backend that can tell, before a run, whether
// a problem fits it (package gpu: free device memory and the sizes its
// kernels handle). A job that asked for backend "gpu" fails with
// backend_unavailable when it does not fit; one that asked for "auto" runs
// on the CPU instead, and the log says why.
type Fitter interface {
	FitsRun(n, d int, u8 bool, opts embed.Options) error
}

var _ jobs.Runner = (*Pipeline)(nil)

func jobErr(code, format string, args ...any) error {
	return &jobs.Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Run implements jobs.Runner.
func (p *Pipeline) Run(ctx context.Context, job jobs.Job, t *jobs.Tracker) (*jobs.Result, error) {
	req := job.Request
	be, err := p.backend(req.Backend)
	if err != nil {
		return nil, err
	}
	t.SetBackend(be.Name())

	t.SetStage(jobs.StageFetchingDataset)
	table, err := p.Loader.FetchTable(ctx, req.DatasetURL, loader.TableOptions{
		IDColumn:         req.IDColumn,
		ImageURLTemplate: req.ImageURLTemplate,
		ImageURLColumn:   req.ImageURLColumn,
		Limit:            req.Limit,
	})
	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case errors.Is(err, loader.ErrDatasetInvalid):
		return nil, jobErr(jobs.CodeDatasetInvalid, "%s", loader.Reason(err))
	case err != nil:
		return nil, jobErr(jobs.CodeDatasetUnreachable, "%s", loader.Reason(err))
	case len(table.Rows) == 0:
		return nil, jobErr(jobs.CodeDatasetInvalid, "the table has no rows with an id in column %q", req.IDColumn)
	}
	t.UpdateProgress(func(pr *jobs.Progress) { pr.RowsDropped = table.Dropped })
	if err := checkPerplexity(req, len(table.Rows)); err != nil {
		return nil, err
	}

	t.SetStage(jobs.StageLoadingImages)
	t.UpdateProgress(func(pr *jobs.Progress) { pr.ImagesTotal = len(table.Rows) })
	var lastBytes int64
	// Failures are published while loading goes on (GET /failures), at
	// most once a second: each write stores the whole list so far. The
	// loader calls this function from one goroutine at a time.
	var soFar []jobs.Failure
	var lastFailWrite time.Time
	written := 0
	images, err := p.Loader.LoadImages(ctx, table.Rows, loader.ImageOptions{Width: req.ImageSize.Width, Height: req.ImageSize.Height},
		func(lp loader.Progress) {
			t.AddBytes(lp.Bytes - lastBytes)
			lastBytes = lp.Bytes
			t.UpdateProgress(func(pr *jobs.Progress) {
				pr.ImagesTotal, pr.ImagesLoaded, pr.ImagesFailed = int(lp.Total), int(lp.Loaded), int(lp.Failed)
			})
			for _, f := range lp.NewFailures {
				soFar = append(soFar, jobs.Failure{Row: f.Row, ID: f.ID, URL: f.URL, Error: f.Reason})
			}
			if len(soFar) > written && time.Since(lastFailWrite) >= time.Second {
				lastFailWrite, written = time.Now(), len(soFar)
				sorted := slices.Clone(soFar)
				slices.SortFunc(sorted, func(a, b jobs.Failure) int { return a.Row - b.Row })
				t.PublishFailures(ctx, sorted)
			}
		})
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var failures []jobs.Failure
	if images != nil {
		for _, f := range images.Failures {
			failures = append(failures, jobs.Failure{Row: f.Row, ID: f.ID, URL: f.URL, Error: f.Reason})
		}
		if err := t.SetFailures(ctx, failures); err != nil {
			return nil, fmt.Errorf("record failures: %w", err)
		}
	}
	switch {
	case errors.Is(err, loader.ErrNoImages):
		return nil, jobErr(jobs.CodeNoImages, "%v", err)
	case err != nil:
		return nil, fmt.Errorf("load images: %w", err)
	}

	// Thumbnails for the map are made from the pixels already resized,
	// alongside the embedding; the atlas is served as soon as it is
	// stored, so a live map shows images while the optimiser runs.
	var thumbs sync.WaitGroup
	defer thumbs.Wait()
	if t.KeepsThumbnails() {
		thumbs.Go(func() { storeThumbnails(ctx, t, table, images) })
	}

	opts := Options(req)
	data := embed.Data{N: images.Len(), D: images.Width * images.Height * 3, U8: images.Pix}
	if f, ok := be.(Fitter); ok && be == p.GPU {
		if err := f.FitsRun(data.N, data.D, true, opts); err != nil {
			if req.Backend == "gpu" {
				return nil, jobErr(jobs.CodeBackendUnavailable, "%d images of %d×%d do not fit this worker's GPU: %v; ask for backend \"auto\" or \"cpu\"",
					data.N, images.Width, images.Height, err)
			}
			p.log().Info("job runs on the CPU: it does not fit the GPU", "job", job.ID, "reason", err.Error())
			be = p.CPU
			t.SetBackend(be.Name())
		}
	}
	obs := &embed.Observer{
		SnapshotEvery: time.Second,
		Progress: func(ep embed.Progress) {
			t.SetStage(jobs.Stage(ep.Stage))
			t.UpdateProgress(func(pr *jobs.Progress) {
				pr.Iteration, pr.Iterations = ep.Iteration, ep.Iterations
				if !math.IsNaN(ep.KL) && !math.IsInf(ep.KL, 0) && ep.Stage == embed.StageOptimizing {
					kl := ep.KL
					pr.KLDivergence = &kl
				}
			})
			if ep.Coordinates != nil {
				t.Embedding(jobs.Embedding{Iteration: ep.Iteration, Dimensions: opts.Dimensions, Rows: images.Rows, Coordinates: ep.Coordinates})
			}
		},
	}
	res, err := embed.Run(ctx, be, data, opts, obs)
	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case errors.Is(err, embed.ErrPerplexityTooLarge):
		return nil, jobErr(jobs.CodePerplexityTooLarge, "perplexity %v is too large for the %d images that loaded: it must be < (N − 1) / 3 = %.4g; send a smaller perplexity",
			req.Perplexity, data.N, embed.MaxPerplexity(data.N))
	case errors.Is(err, embed.ErrInvalidInput):
		return nil, jobErr(jobs.CodeNoImages, "too few images loaded to make a map (%d of %d): %v", data.N, len(table.Rows), err)
	case err != nil:
		return nil, fmt.Errorf("embed: %w", err)
	}
	t.UpdateProgress(func(pr *jobs.Progress) {
		if !math.IsNaN(res.KL) {
			kl := res.KL
			pr.KLDivergence = &kl
		}
	})
	return Assemble(table, images, res), nil
}

// checkPerplexity fails a t-SNE job whose perplexity is too large even if
// every row's image loads, as soon as the table is read: before any image
// is fetched.
func checkPerplexity(req jobs.Request, rows int) error {
	if req.Method != "tsne" || req.Perplexity < embed.MaxPerplexity(rows) {
		return nil
	}
	return jobErr(jobs.CodePerplexityTooLarge, "perplexity %v is too large for the %d rows of the table: it must be < (rows − 1) / 3 = %.4g, and less if some images fail; send a smaller perplexity (no image was fetched)",
		req.Perplexity, rows, embed.MaxPerplexity(rows))
}

// Close releases the loader and the GPU backend, if any.
func (p *Pipeline) Close() {
	p.Loader.Close()
	if c, ok := p.GPU.(interface{ Close() error }); ok {
		c.Close()
	}
}

func (p *Pipeline) log() *slog.Logger {
	if p.Log != nil {
		return p.Log
	}
	return slog.Default()
}

func storeThumbnails(ctx context.Context, t *jobs.Tracker, table *loader.Table, images *loader.Images) {
	src := atlas.Source{Width: images.Width, Height: images.Height, Pix: images.Pix, Rows: images.Rows, TotalRows: len(table.Rows),
		IDs: make([]string, len(images.Rows)), URLs: make([]string, len(images.Rows))}
	for k, r := range images.Rows {
		src.IDs[k], src.URLs[k] = table.Rows[r].ID, table.Rows[r].ImageURL
	}
	a, err := atlas.Build(ctx, src)
	if err != nil {
		if ctx.Err() == nil {
			t.Warn("build thumbnails", "err", err)
		}
		return
	}
	t.SetAtlas(ctx, a)
}

func (p *Pipeline) backend(want string) (embed.Backend, error) {
	switch {
	case want == "gpu" && p.GPU == nil:
		return nil, jobErr(jobs.CodeBackendUnavailable, "this worker has no GPU; ask for backend \"auto\" or \"cpu\"")
	case want == "gpu", want == "auto" && p.GPU != nil:
		return p.GPU, nil
	}
	return p.CPU, nil
}

// Options maps a job request to the engine's options.
func Options(r jobs.Request) embed.Options {
	o := embed.DefaultOptions()
	o.Method = embed.Method(r.Method)
	o.Dimensions = r.Dimensions
	o.Perplexity = r.Perplexity
	o.Iterations = r.Iterations
	o.EarlyExaggeration = r.EarlyExaggeration
	o.ExaggerationIterations = r.ExaggerationIterations
	o.LearningRate = float64(r.LearningRate)
	o.Init = embed.Init(r.Init)
	o.Seed = r.Seed
	return o
}

// Assemble builds the result table: every kept row, in order, with the
// coordinates of its image (none where the image failed).
func Assemble(table *loader.Table, images *loader.Images, res *embed.Result) *jobs.Result {
	out := &jobs.Result{Columns: table.Header, Dimensions: res.Dims, Rows: make([]jobs.ResultRow, len(table.Rows))}
	for i, r := range table.Rows {
		vals := r.Values
		if len(vals) > len(table.Header) {
			vals = vals[:len(table.Header)]
		}
		out.Rows[i] = jobs.ResultRow{ID: r.ID, Values: vals}
	}
	for k, row := range images.Rows {
		out.Rows[row].Coords = res.Y[k*res.Dims : (k+1)*res.Dims : (k+1)*res.Dims]
	}
	for _, f := range images.Failures {
		out.Failures = append(out.Failures, jobs.Failure{Row: f.Row, ID: f.ID, URL: f.URL, Error: f.Reason})
	}
	return out
}
