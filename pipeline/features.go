package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/tsnemap/tsnemap/embed"
	"github.com/tsnemap/tsnemap/jobs"
	"github.com/tsnemap/tsnemap/loader"
)

// runFeatures is a job with features_url: the map is made of the vectors
// of the features file, matched to the table's rows by id; the images,
// when the request says where they are, make only the thumbnails.
func (p *Pipeline) runFeatures(ctx context.Context, job jobs.Job, be embed.Backend, table *loader.Table, t *jobs.Tracker) (*jobs.Result, error) {
	req := job.Request
	feats, err := p.fetchFeatures(ctx, req)
	if err != nil {
		return nil, err
	}
	m := matchFeatures(table, feats, embed.Metric(req.Metric) == embed.MetricCosine)
	t.UpdateProgress(func(pr *jobs.Progress) { pr.VectorsMatched, pr.VectorsIgnored = len(m.rows), m.ignored })
	if m.ignored > 0 {
		p.log().Info("features without a row in the table ignored", "job", job.ID, "ignored", m.ignored, "file", feats.URL)
	}
	if err := t.SetFailures(ctx, m.failures); err != nil {
		return nil, fmt.Errorf("record failures: %w", err)
	}
	if len(m.rows) == 0 {
		return nil, jobErr(jobs.CodeDatasetInvalid, "features file %s: no row of the table has a vector: none of its %d ids is in column %q of the table (the file's first id is %q, the table's %q)",
			feats.URL, len(feats.IDs), req.IDColumn, feats.IDs[0], table.Rows[0].ID)
	}
	var thumbs sync.WaitGroup
	defer thumbs.Wait()
	if req.ImageURLTemplate != "" || req.ImageURLColumn != "" {
		images, err := p.loadThumbnailImages(ctx, req, table, t)
		if err != nil {
			return nil, err
		}
		if images != nil && t.KeepsThumbnails() {
			thumbs.Go(func() { storeThumbnails(ctx, t, table, images) })
		}
	}
	data := embed.Data{N: len(m.rows), D: feats.Dim, F32: m.values}
	res, err := p.embedFeatures(ctx, job, be, data, m.rows, len(table.Rows), t)
	if err != nil {
		return nil, err
	}
	out := Assemble(table, &loader.Images{Rows: m.rows}, res)
	out.Failures = m.failures
	return out, nil
}

// fetchFeatures fetches and parses the features file, its failures in
// the contract's codes.
func (p *Pipeline) fetchFeatures(ctx context.Context, req jobs.Request) (*loader.Features, error) {
	f, err := p.Loader.FetchFeatures(ctx, req.FeaturesURL, loader.FeaturesOptions{IDColumn: req.IDColumn, Column: req.FeaturesColumn})
	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case errors.Is(err, loader.ErrDatasetInvalid):
		return nil, jobErr(jobs.CodeDatasetInvalid, "%v", err)
	case err != nil:
		return nil, jobErr(jobs.CodeDatasetUnreachable, "%v", err)
	}
	return f, nil
}

// matched is the table's rows joined with their vectors.
type matched struct {
	rows     []int     // table rows with a vector, in table order
	values   []float32 // their vectors, len(rows)×Dim
	failures []jobs.Failure
	ignored  int // vectors whose id is not in the table
}

// matchFeatures joins rows and vectors by id. A row without a vector fails
// (a Failure naming the file); with cosine, so does a row whose vector is
// all zeros (it has no direction). Vectors of ids not in the table are
// counted and ignored.
func matchFeatures(table *loader.Table, f *loader.Features, cosine bool) matched {
	byID := make(map[string]int, len(f.IDs))
	for i, id := range f.IDs {
		byID[id] = i
	}
	m := matched{values: make([]float32, 0, min(len(table.Rows), len(f.IDs))*f.Dim)}
	inTable := make(map[string]bool, len(table.Rows))
	for r, row := range table.Rows {
		inTable[row.ID] = true
		i, ok := byID[row.ID]
		fail := func(reason string) {
			m.failures = append(m.failures, jobs.Failure{Row: r, ID: row.ID, URL: row.ImageURL, Error: reason})
		}
		switch {
		case !ok:
			fail(fmt.Sprintf("no vector: id %q is not in the features file %s", row.ID, f.URL))
			continue
		case cosine && zero(f.Vector(i)):
			fail(fmt.Sprintf("its vector in %s is all zeros, which has no direction for the cosine metric", f.URL))
			continue
		}
		m.rows = append(m.rows, r)
		m.values = append(m.values, f.Vector(i)...)
	}
	for _, id := range f.IDs {
		if !inTable[id] {
			m.ignored++
		}
	}
	return m
}

func zero(v []float32) bool {
	for _, x := range v {
		if x != 0 {
			return false
		}
	}
	return true
}

// loadThumbnailImages loads the rows' images for the thumbnails and the
// map only: a broken image leaves its point a dot and fails nothing, and
// a job whose images all fail still has its map. Nil when none loaded.
func (p *Pipeline) loadThumbnailImages(ctx context.Context, req jobs.Request, table *loader.Table, t *jobs.Tracker) (*loader.Images, error) {
	t.SetStage(jobs.StageLoadingImages)
	t.UpdateProgress(func(pr *jobs.Progress) { pr.ImagesTotal = len(table.Rows) })
	pub := &loadReporter{ctx: ctx, t: t}
	images, err := p.Loader.LoadImages(ctx, table.Rows, loader.ImageOptions{Width: req.ImageSize.Width, Height: req.ImageSize.Height}, func(lp loader.Progress) {
		lp.NewFailures = nil // images make thumbnails here; their rows do not fail
		pub.report(lp)
	})
	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case errors.Is(err, loader.ErrNoImages):
		t.Warn("no image loaded; the map is points only", "err", err)
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("load images: %w", err)
	}
	return images, nil
}

// embedFeatures embeds the matched vectors, on the GPU when they fit it.
func (p *Pipeline) embedFeatures(ctx context.Context, job jobs.Job, be embed.Backend, data embed.Data, rows []int, tableRows int, t *jobs.Tracker) (*embed.Result, error) {
	req := job.Request
	opts := Options(req)
	be, release, err := p.fit(job, be, data, false, fmt.Sprintf("%d vectors of %d values", data.N, data.D), opts, t)
	if err != nil {
		return nil, err
	}
	defer release()
	res, err := embed.Run(ctx, be, data, opts, observer(t, opts, &loader.Images{Rows: rows}))
	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case errors.Is(err, embed.ErrPerplexityTooLarge):
		return nil, jobErr(jobs.CodePerplexityTooLarge, "perplexity %v is too large for the %d rows with a vector: it must be < (N − 1) / 3 = %.4g; send a smaller perplexity",
			req.Perplexity, data.N, embed.MaxPerplexity(data.N))
	case errors.Is(err, embed.ErrInvalidInput):
		return nil, jobErr(jobs.CodeDatasetInvalid, "too few rows with a vector to make a map (%d of %d): %v", data.N, tableRows, err)
	case err != nil:
		return nil, fmt.Errorf("embed: %w", err)
	}
	recordKL(t, res.KL)
	return res, nil
}
