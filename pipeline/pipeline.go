// Package pipeline is the application: the work of one job. It fetches the
// table, loads the images, embeds them (building the thumbnails alongside),
// and assembles the result table. It joins the loader, the engine and the
// atlas for the job worker (as a jobs.Runner) and for `tsnemap run`.
package pipeline

import (
	"bytes"
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
	"github.com/tsnemap/tsnemap/explore"
	"github.com/tsnemap/tsnemap/gpu"
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
	// ShardAbove: a job of more rows loads its images in shards of
	// ShardSize rows, taken by every worker of the cluster (defaults
	// DefaultShardAbove and DefaultShardSize).
	ShardAbove, ShardSize int
}

// Reserver is implemented by a backend that admits a run only when it
// fits (package gpu: device memory not yet taken or reserved by other
// runs, the sizes its kernels handle, a usable device), holding what the
// run needs until release. A job that asked for backend "gpu" fails with
// backend_unavailable when it cannot reserve; one that asked for "auto"
// runs on the CPU instead, and the log says why.
type Reserver interface {
	ReserveRun(n, d int, u8 bool, opts embed.Options) (release func(), err error)
}

var _ jobs.Runner = (*Pipeline)(nil)

// maxMessage bounds a job's error message: it is stored in the job record,
// whose size is limited, and read by people.
const maxMessage = 4000

func jobErr(code, format string, args ...any) error {
	return &jobs.Error{Code: code, Message: loader.Shorten(fmt.Sprintf(format, args...), maxMessage)}
}

// Run implements jobs.Runner: the stages of a job, in order. Each stage
// reports itself on t and turns its failures into the contract's error
// codes.
func (p *Pipeline) Run(ctx context.Context, job jobs.Job, t *jobs.Tracker) (*jobs.Result, error) {
	be, err := p.backend(job.Request.Backend)
	if err != nil {
		return nil, err
	}
	t.SetBackend(be.Name())
	table, err := p.fetchTable(ctx, job.Request, t)
	if err != nil {
		return nil, err
	}
	if job.Request.FeaturesURL != "" {
		return p.runFeatures(ctx, job, be, table, t)
	}
	if job.Request.BaseJobID != "" {
		out, err := p.runAddition(ctx, job, table, t)
		return followed(ctx, out, err, job, t)
	}
	var images *loader.Images
	if p.sharded(job, len(table.Rows), t) {
		images, err = p.loadShards(ctx, job, table, t)
	} else {
		images, err = p.loadImages(ctx, job.Request, table, t)
	}
	if err != nil {
		return nil, err
	}
	defer images.Release() // after the thumbnails (deferred below) are made
	// Thumbnails for the map are made from the pixels already resized,
	// alongside the embedding; the atlas is served as soon as it is
	// stored, so a live map shows images while the optimiser runs.
	var thumbs sync.WaitGroup
	defer thumbs.Wait()
	if t.KeepsThumbnails() {
		thumbs.Go(func() { storeThumbnails(ctx, t, table, images) })
	}
	res, err := p.embed(ctx, job, be, table, images, t)
	if err != nil {
		return nil, err
	}
	storeState(ctx, t, table, images, res, job.Request)
	// Hotspots and the grid layout are extras: the map stands without them.
	out := Assemble(table, images, res)
	if err := explore.Annotate(ctx, out, job.Request.Grid); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		t.Warn("explore the map", "err", err)
	}
	return followed(ctx, out, nil, job, t)
}

// followed marks the result of a job that follows its table (it gets a
// removed column) and records the following in the store; a Follower
// checks the table once the job has succeeded.
func followed(ctx context.Context, out *jobs.Result, err error, job jobs.Job, t *jobs.Tracker) (*jobs.Result, error) {
	if err != nil || job.Request.FollowIntervalSeconds <= 0 {
		return out, err
	}
	out.Followed = true
	if err := t.StartFollow(ctx, time.Duration(job.Request.FollowIntervalSeconds)*time.Second); err != nil {
		return nil, fmt.Errorf("follow the table: %w", err)
	}
	return out, nil
}

// fetchTable is the first stage: the table, its rows kept and cut.
func (p *Pipeline) fetchTable(ctx context.Context, req jobs.Request, t *jobs.Tracker) (*loader.Table, error) {
	t.SetStage(jobs.StageFetchingDataset)
	table, err := p.Loader.FetchTable(ctx, req.DatasetURL, loader.TableOptions{
		IDColumn:         req.IDColumn,
		ImageURLTemplate: req.ImageURLTemplate,
		ImageURLColumn:   req.ImageURLColumn,
		Limit:            req.Limit,
		ImagesOptional:   req.FeaturesURL != "",
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
	if req.BaseJobID != "" {
		return table, nil // an addition's perplexity is the transform's (embed.DefaultAddOptions)
	}
	if err := checkPerplexity(req, len(table.Rows)); err != nil {
		return nil, err
	}
	return table, nil
}

// loadImages is the second stage: every row's image, resized. A broken
// image fails its row (a Failure), not the job; the job fails only when
// none loaded.
func (p *Pipeline) loadImages(ctx context.Context, req jobs.Request, table *loader.Table, t *jobs.Tracker) (*loader.Images, error) {
	t.SetStage(jobs.StageLoadingImages)
	t.UpdateProgress(func(pr *jobs.Progress) { pr.ImagesTotal = len(table.Rows) })
	pub := &loadReporter{ctx: ctx, t: t}
	images, err := p.Loader.LoadImages(ctx, table.Rows, loader.ImageOptions{Width: req.ImageSize.Width, Height: req.ImageSize.Height}, pub.report)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if images != nil {
		if err := t.SetFailures(ctx, toJobFailures(images.Failures)); err != nil {
			return nil, fmt.Errorf("record failures: %w", err)
		}
	}
	switch {
	case errors.Is(err, loader.ErrNoImages):
		return nil, jobErr(jobs.CodeNoImages, "%v", err)
	case errors.Is(err, loader.ErrDatasetInvalid): // more rows than the memory budget holds
		return nil, jobErr(jobs.CodeDatasetInvalid, "%v", err)
	case err != nil:
		return nil, fmt.Errorf("load images: %w", err)
	}
	return images, nil
}

// loadReporter passes the loader's progress to the tracker. Failures are
// published while loading goes on (GET /failures), at most once a second:
// each write stores the whole list so far. The loader calls report from
// one goroutine at a time.
type loadReporter struct {
	ctx       context.Context
	t         *jobs.Tracker
	lastBytes int64
	soFar     []jobs.Failure
	written   int
	lastWrite time.Time
}

func (r *loadReporter) report(lp loader.Progress) {
	r.t.AddBytes(lp.Bytes - r.lastBytes)
	r.lastBytes = lp.Bytes
	r.t.UpdateProgress(func(pr *jobs.Progress) {
		pr.ImagesTotal, pr.ImagesLoaded, pr.ImagesFailed = int(lp.Total), int(lp.Loaded), int(lp.Failed)
	})
	r.soFar = append(r.soFar, toJobFailures(lp.NewFailures)...)
	if len(r.soFar) > r.written && time.Since(r.lastWrite) >= time.Second {
		r.lastWrite, r.written = time.Now(), len(r.soFar)
		sorted := slices.Clone(r.soFar)
		slices.SortFunc(sorted, func(a, b jobs.Failure) int { return a.Row - b.Row })
		r.t.PublishFailures(r.ctx, sorted)
	}
}

func toJobFailures(fs []loader.Failure) []jobs.Failure {
	var out []jobs.Failure
	for _, f := range fs {
		out = append(out, jobs.Failure{Row: f.Row, ID: f.ID, URL: f.URL, Error: f.Reason})
	}
	return out
}

// embed is the last stage: the embedding of the loaded images, on the
// GPU when the job fits it.
func (p *Pipeline) embed(ctx context.Context, job jobs.Job, be embed.Backend, table *loader.Table, images *loader.Images, t *jobs.Tracker) (*embed.Result, error) {
	req := job.Request
	opts := Options(req)
	data := imageData(images)
	what := fmt.Sprintf("%d images of %d×%d", data.N, images.Width, images.Height)
	be, release, err := p.fit(job, be, data, true, what, opts, t)
	if err != nil {
		return nil, err
	}
	defer release()
	res, err := embed.Run(ctx, be, data, opts, observer(t, opts, images))
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
	recordKL(t, res.KL)
	return res, nil
}

// imageData is the engine's input of images: their pixels in memory, or
// read back from their spool file a block at a time when the loader kept
// them on disk (loader.Config.SpoolAbove).
func imageData(images *loader.Images) embed.Data {
	d := embed.Data{N: images.Len(), D: images.Width * images.Height * 3}
	if images.Spooled() {
		d.Rows = images
	} else {
		d.U8 = images.Pix
	}
	return d
}

// recordKL puts the final KL divergence in the job's progress (NaN: none
// was computed, e.g. for PCA).
func recordKL(t *jobs.Tracker, kl float64) {
	if math.IsNaN(kl) {
		return
	}
	t.UpdateProgress(func(pr *jobs.Progress) { pr.KLDivergence = &kl })
}

// fit returns the backend the embedding runs on and the release of what
// it holds there (call it when the run ends): be, with its reservation of
// device memory, or the CPU when be is the GPU and the job cannot reserve
// it (it does not fit, or the device is unusable) and asked for "auto".
// what names the input for the error and the log.
func (p *Pipeline) fit(job jobs.Job, be embed.Backend, data embed.Data, u8 bool, what string, opts embed.Options, t *jobs.Tracker) (embed.Backend, func(), error) {
	r, ok := be.(Reserver)
	if !ok || be != p.GPU {
		return be, func() {}, nil
	}
	release, err := r.ReserveRun(data.N, data.D, u8, opts)
	switch {
	case err == nil:
		return be, release, nil
	case job.Request.Backend == "gpu" && errors.Is(err, gpu.ErrDeviceLost):
		return nil, nil, jobErr(jobs.CodeBackendUnavailable, "this worker's GPU is unusable: %v; ask for backend \"auto\" or \"cpu\"", err)
	case job.Request.Backend == "gpu":
		return nil, nil, jobErr(jobs.CodeBackendUnavailable, "%s do not fit this worker's GPU: %v; ask for backend \"auto\" or \"cpu\"", what, err)
	case errors.Is(err, gpu.ErrDeviceLost):
		p.log().Warn("job runs on the CPU: the GPU is unusable", "job", job.ID, "reason", err.Error())
	default:
		p.log().Info("job runs on the CPU: it does not fit the GPU", "job", job.ID, "reason", err.Error())
	}
	t.SetBackend(p.CPU.Name())
	return p.CPU, func() {}, nil
}

// observer passes the engine's progress to the tracker: its stage, the
// iteration, KL once the optimiser computes it, and snapshots of the
// coordinates for live viewers.
func observer(t *jobs.Tracker, opts embed.Options, images *loader.Images) *embed.Observer {
	return &embed.Observer{
		SnapshotEvery: time.Second,
		Progress: func(ep embed.Progress) {
			if s, ok := jobStage(ep.Stage); ok {
				t.SetStage(s)
			}
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
}

// jobStage names an engine stage as the job API does; ok is false for a
// stage the engine has and the API does not (the job keeps its stage).
func jobStage(s embed.Stage) (_ jobs.Stage, ok bool) {
	switch s {
	case embed.StageReducing:
		return jobs.StageReducing, true
	case embed.StageComputingAffinities:
		return jobs.StageComputingAffinities, true
	case embed.StageOptimizing:
		return jobs.StageOptimizing, true
	}
	return "", false
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
	src := atlas.Source{Width: images.Width, Height: images.Height, Pix: images.Pix, Reader: images, Rows: images.Rows, TotalRows: len(table.Rows),
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
	if r.Metric != "" {
		o.Metric = embed.Metric(r.Metric)
	}
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
	out.Failures = toJobFailures(images.Failures)
	return out
}

// storeState keeps what an addition to this map needs with the job (or,
// for `tsnemap run`, in the tracker for the caller to write). A failure
// is logged: the map stands without it; only additions to it are refused.
func storeState(ctx context.Context, t *jobs.Tracker, table *loader.Table, images *loader.Images, res *embed.Result, req jobs.Request) {
	if res.Basis == nil {
		return
	}
	st := &State{Width: images.Width, Height: images.Height, IDs: make([]string, len(images.Rows)),
		Base: embed.Base{Method: embed.Method(req.Method), Basis: *res.Basis, N: res.N, Dims: res.Dims, Scores: res.Scores, Y: res.Y}}
	for k, r := range images.Rows {
		st.IDs[k] = table.Rows[r].ID
	}
	var buf bytes.Buffer
	if err := EncodeState(&buf, st); err != nil {
		t.Warn("encode addition state", "err", err)
		return
	}
	if err := t.PutState(ctx, buf.Bytes()); err != nil && ctx.Err() == nil {
		t.Warn("store addition state", "err", err)
	}
}
