package pipeline

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tsnemap/tsnemap/jobs"
	"github.com/tsnemap/tsnemap/loader"
)

// Defaults of Pipeline.ShardAbove and Pipeline.ShardSize.
const (
	DefaultShardAbove = 20_000
	DefaultShardSize  = 5_000
)

var _ jobs.ShardLoader = (*Pipeline)(nil)

// sharded reports whether a job's images load in shards across the
// cluster: its request forces a shard size, or its table has more rows
// than the threshold.
func (p *Pipeline) sharded(job jobs.Job, rows int, t *jobs.Tracker) bool {
	req := job.Request
	if !t.CanShard() || req.FeaturesURL != "" {
		return false
	}
	return job.Shards != nil || req.ShardSize > 0 || rows > cmp.Or(p.ShardAbove, DefaultShardAbove)
}

// LoadShard implements jobs.ShardLoader: one shard's images, resized as
// the job asks, with rows and failures numbered among the job's kept rows.
// A shard whose every image failed is no error: other shards may load.
func (p *Pipeline) LoadShard(ctx context.Context, req jobs.Request, task jobs.ShardTask, rows []jobs.ShardRow) (*jobs.ShardOutput, error) {
	lrows := make([]loader.Row, len(rows))
	for i, r := range rows {
		lrows[i] = loader.Row{Index: task.First + i, ID: r.ID, ImageURL: r.ImageURL}
	}
	opts := imageOptions(req)
	if !p.Loader.FitsNow(len(rows), opts) {
		// Waiting here would hold the shard (in-progress acks) until this
		// worker's jobs give memory back, maybe for hours: leave it to
		// another worker. (One that can never fit fails in LoadImages.)
		if p.Loader.CheckImages(len(rows), opts) == nil {
			return nil, fmt.Errorf("shard %d: %w: its memory is taken by other jobs", task.Shard, jobs.ErrShardBusy)
		}
	}
	images, err := p.Loader.LoadImages(ctx, lrows, opts, nil)
	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case errors.Is(err, loader.ErrNoImages):
	case errors.Is(err, loader.ErrDatasetInvalid):
		return nil, jobErr(jobs.CodeDatasetInvalid, "shard %d: %v", task.Shard, err)
	case err != nil:
		return nil, fmt.Errorf("load shard %d: %w", task.Shard, err)
	}
	// The pixels outlive the budget's hold: they are stored right after
	// and dropped, and the worker loads one shard a slot at a time.
	defer images.Release()
	pix, err := shardPixels(ctx, images)
	if err != nil {
		return nil, fmt.Errorf("load shard %d: %w", task.Shard, err)
	}
	out := &jobs.ShardOutput{Width: images.Width, Height: images.Height, Pix: pix, Rows: make([]int, len(images.Rows)), Failures: toJobFailures(images.Failures)}
	for k, r := range images.Rows {
		out.Rows[k] = task.First + r
	}
	for k := range out.Failures {
		out.Failures[k].Row += task.First
	}
	if out.Failures == nil {
		out.Failures = []jobs.Failure{}
	}
	return out, nil
}

// shardPixels are the pixels of a shard's images, to store as one object:
// read back from their spool file when a shard was larger than the
// loader's SpoolAbove (a --shard-size far above the default). A shard is
// bounded by its size, so it is read whole.
func shardPixels(ctx context.Context, images *loader.Images) ([]uint8, error) {
	if !images.Spooled() {
		return images.Pix, nil
	}
	pix := make([]uint8, images.Len()*images.Width*images.Height*3)
	if err := images.ReadRows(ctx, 0, pix); err != nil {
		return nil, err
	}
	return pix, nil
}

// loadShards is loadImages for a large job: its rows are cut into
// shards that every worker of the cluster loads, and the shards' pixels
// are then read back in order into one block of uint8 pixels (or one
// spool file, above the loader's SpoolAbove), exactly as loadImages
// would have made them (the same rows, failures and bytes):
// the embedding that follows cannot tell the difference.
func (p *Pipeline) loadShards(ctx context.Context, job jobs.Job, table *loader.Table, t *jobs.Tracker) (*loader.Images, error) {
	req := job.Request
	if sh := job.Shards; sh.Complete() && sh.Embedder != "" {
		// Handed to this worker with its shards in: embed them.
		t.AdoptShards()
		return p.assembleShards(ctx, req, table, sh, t)
	}
	t.SetStage(jobs.StageLoadingImages)
	t.UpdateProgress(func(pr *jobs.Progress) { pr.ImagesTotal = len(table.Rows) })
	// A job that could never fit this worker's memory fails at once,
	// naming the numbers, as a job's own load does; the memory is taken
	// only to assemble the shards, so none is held while they load (this
	// worker's own shard slot needs some).
	if err := p.Loader.CheckImages(len(table.Rows), imageOptions(req)); err != nil {
		return nil, jobErr(jobs.CodeDatasetInvalid, "%v", err)
	}
	rows := make([]jobs.ShardRow, len(table.Rows))
	for i, r := range table.Rows {
		rows[i] = jobs.ShardRow{ID: r.ID, ImageURL: r.ImageURL}
	}
	size := cmp.Or(req.ShardSize, p.ShardSize, DefaultShardSize)
	count, err := t.StartShards(ctx, size, rows)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("queue shards: %w", err)
	}
	p.log().Info("job loads in shards", "job", t.ID(), "shards", count, "size", size, "rows", len(rows))
	sh, err := t.WaitShards(ctx)
	var je *jobs.Error
	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case errors.As(err, &je):
		return nil, je
	case err != nil:
		return nil, fmt.Errorf("wait for shards: %w", err)
	}
	if req.Backend == "auto" && p.GPU == nil {
		if name := t.GPUWorker(ctx); name != "" {
			return nil, t.HandOff(ctx, name)
		}
	}
	return p.assembleShards(ctx, req, table, sh, t)
}

// assembleShards takes the memory of the images that loaded and reads
// the shards into it.
func (p *Pipeline) assembleShards(ctx context.Context, req jobs.Request, table *loader.Table, sh *jobs.Sharding, t *jobs.Tracker) (*loader.Images, error) {
	loaded := 0
	for _, d := range sh.Done {
		loaded += d.Loaded
	}
	images, err := p.Loader.ReserveImages(ctx, loaded, imageOptions(req))
	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case errors.Is(err, loader.ErrDatasetInvalid):
		return nil, jobErr(jobs.CodeDatasetInvalid, "%v", err)
	case err != nil:
		return nil, fmt.Errorf("assemble shards: %w", err)
	}
	if err := p.assemble(ctx, images, table, sh, t); err != nil {
		images.Release()
		return nil, err
	}
	dropShards(ctx, t) // the pixels are here now: free the store early
	return images, nil
}

func imageOptions(req jobs.Request) loader.ImageOptions {
	return loader.ImageOptions{Width: req.ImageSize.Width, Height: req.ImageSize.Height}
}

// assemble reads the loaded shards in order into images (reserved for
// the images that loaded).
func (p *Pipeline) assemble(ctx context.Context, images *loader.Images, table *loader.Table, sh *jobs.Sharding, t *jobs.Tracker) error {
	var failures []jobs.Failure
	for k := range sh.Count {
		out, err := t.ShardOutput(ctx, sh, k)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			return fmt.Errorf("assemble shards: %w", err)
		case len(out.Rows) > 0 && (out.Width != images.Width || out.Height != images.Height):
			return fmt.Errorf("assemble shards: shard %d has images of %d×%d, want %d×%d", k, out.Width, out.Height, images.Width, images.Height)
		}
		if err := images.AppendImages(out.Pix, out.Rows); err != nil {
			return fmt.Errorf("assemble shards: shard %d: %w", k, err)
		}
		failures = append(failures, out.Failures...)
	}
	if err := images.Finish(); err != nil {
		return fmt.Errorf("assemble shards: %w", err)
	}
	if n := len(images.Rows) + len(failures); n != len(table.Rows) {
		return fmt.Errorf("assemble shards: the shards hold %d rows, the table has %d (it changed since they were loaded)", n, len(table.Rows))
	}
	for _, f := range failures {
		images.Failures = append(images.Failures, loader.Failure{Row: f.Row, ID: f.ID, URL: f.URL, Reason: f.Error})
	}
	if err := t.SetFailures(ctx, failures); err != nil {
		return fmt.Errorf("record failures: %w", err)
	}
	if images.Len() == 0 {
		first := "no rows"
		if len(failures) > 0 {
			first = fmt.Sprintf("row %d %s: %s", failures[0].Row, failures[0].URL, failures[0].Error)
		}
		return jobErr(jobs.CodeNoImages, "%v: all %d images failed (first: %s)", loader.ErrNoImages, len(table.Rows), first)
	}
	return nil
}

// dropShards removes the job's shard messages and objects once they are
// assembled (the worker removes them too when the attempt ends, whatever
// its end).
func dropShards(ctx context.Context, t *jobs.Tracker) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := t.DropShards(dctx); err != nil {
		t.Warn("drop shards", "err", err)
	}
}
