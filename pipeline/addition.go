package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/tsnemap/tsnemap/atlas"
	"github.com/tsnemap/tsnemap/embed"
	"github.com/tsnemap/tsnemap/explore"
	"github.com/tsnemap/tsnemap/jobs"
	"github.com/tsnemap/tsnemap/loader"
)

// runAddition is the work of an addition (docs/growing.md): the base's
// rows keep their coordinates and are not reloaded; the table's rows
// whose id the base lacks are loaded and placed into the base map with
// embed.Add. The result is the base's rows, unchanged, then the new rows.
func (p *Pipeline) runAddition(ctx context.Context, job jobs.Job, table *loader.Table, t *jobs.Tracker) (*jobs.Result, error) {
	base, err := t.Base(ctx, job.Request.BaseJobID)
	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case errors.Is(err, jobs.ErrNotFound), errors.Is(err, jobs.ErrConflict):
		return nil, jobErr(jobs.CodeDatasetInvalid, "the base job %s can no longer be added to: %v", job.Request.BaseJobID, err)
	case err != nil:
		return nil, fmt.Errorf("read base job: %w", err)
	}
	// An addition's heavy steps (neighbours among the base, the steps
	// against its tree) run on the host; the projection is small. So it
	// runs on the CPU whatever the job asked, holding no device memory.
	t.SetBackend(p.CPU.Name())
	g, err := p.Grow(ctx, job.Request, p.CPU, table, base, t)
	if err != nil {
		return nil, err
	}
	if g.Atlas != nil {
		t.SetAtlas(ctx, g.Atlas)
	}
	if err := t.PutState(ctx, g.State); err != nil && ctx.Err() == nil {
		t.Warn("store addition state", "err", err)
	}
	return g.Result, nil
}

// Grown is a map grown by an addition: its result (the base's rows, then
// the new ones), its state (for the next addition), its thumbnails (nil
// when the base had none and nothing loaded) and the new rows' positions
// in the result.
type Grown struct {
	Result  *jobs.Result
	State   []byte
	Atlas   *atlas.Atlas
	NewRows []int
}

// Grow places the rows of table whose id base lacks into base's map (an
// addition, or a followed job's check). Nothing of base is changed.
func (p *Pipeline) Grow(ctx context.Context, req jobs.Request, be embed.Backend, table *loader.Table, base *jobs.Base, t *jobs.Tracker) (*Grown, error) {
	st, err := DecodeState(bytes.NewReader(base.State))
	if err != nil {
		return nil, fmt.Errorf("base job %s: %w", base.Job.ID, err)
	}
	known := make(map[string]bool, len(base.Result.Rows))
	for _, r := range base.Result.Rows {
		known[r.ID] = true
	}
	fresh := &loader.Table{URL: table.URL, Header: table.Header, Delimiter: table.Delimiter, Dropped: table.Dropped}
	for _, r := range table.Rows {
		if !known[r.ID] {
			known[r.ID] = true // a repeated new id is placed once
			fresh.Rows = append(fresh.Rows, r)
		}
	}
	out := baseRows(base.Result)
	if base.Result.Columns == nil {
		valuesFromTable(out, table)
	}
	t.UpdateProgress(func(pr *jobs.Progress) { pr.RowsDropped = table.Dropped })
	if len(fresh.Rows) == 0 {
		return &Grown{Result: out, State: base.State, Atlas: base.Atlas}, annotate(ctx, out, req, t)
	}
	images, err := p.loadImages(ctx, req, fresh, t)
	if err != nil {
		return nil, err
	}
	defer images.Release()
	data := imageData(images)
	opts := embed.DefaultAddOptions()
	if th, ok := be.(interface{ Threads() int }); ok {
		opts.Threads = th.Threads() // the service's --threads
	}
	add, err := embed.Add(ctx, be, &st.Base, data, opts, addObserver(t))
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("addition: %w", err)
	}
	first := len(out.Rows)
	appendRows(out, fresh, images, add)
	g := &Grown{Result: out, Atlas: mergedThumbnails(ctx, t, base.Atlas, first, fresh, images)}
	for i := first; i < len(out.Rows); i++ {
		g.NewRows = append(g.NewRows, i)
	}
	ids := make([]string, len(images.Rows))
	for k, r := range images.Rows {
		ids[k] = fresh.Rows[r].ID
	}
	var buf bytes.Buffer
	if err := EncodeState(&buf, st.Extend(ids, add)); err != nil {
		return nil, fmt.Errorf("addition state: %w", err)
	}
	g.State = buf.Bytes()
	return g, annotate(ctx, out, req, t)
}

// baseRows copies the base's result: its rows with their coordinates,
// without the base's hotspots and grid (the addition's map gets its own).
func baseRows(r *jobs.Result) *jobs.Result {
	out := &jobs.Result{Columns: slices.Clone(r.Columns), Dimensions: r.Dimensions, Failures: slices.Clone(r.Failures),
		Rows: make([]jobs.ResultRow, len(r.Rows)), Followed: r.Followed}
	for i, row := range r.Rows {
		out.Rows[i] = jobs.ResultRow{ID: row.ID, Values: row.Values, Coords: row.Coords, Removed: row.Removed}
	}
	if out.Failures == nil {
		out.Failures = []jobs.Failure{}
	}
	return out
}

// valuesFromTable gives the rows of a base known only by its state (ids
// and coordinates: tsnemap run --base) the table's columns and each row's
// values there (none for a base row gone from the table).
func valuesFromTable(out *jobs.Result, table *loader.Table) {
	out.Columns = slices.Clone(table.Header)
	byID := make(map[string][]string, len(table.Rows))
	for _, r := range table.Rows {
		if _, dup := byID[r.ID]; !dup {
			byID[r.ID] = r.Values
		}
	}
	for i := range out.Rows {
		vals := make([]string, len(out.Columns))
		copy(vals, byID[out.Rows[i].ID])
		out.Rows[i].Values = vals
	}
}

// BaseFromState is the base of an addition known only by its state (a
// file tsnemap run wrote): its rows are the state's, ids and coordinates,
// their values taken from the addition's table.
func BaseFromState(b []byte) (*jobs.Base, *State, error) {
	st, err := DecodeState(bytes.NewReader(b))
	if err != nil {
		return nil, nil, err
	}
	res := &jobs.Result{Dimensions: st.Base.Dims, Failures: []jobs.Failure{}, Rows: make([]jobs.ResultRow, st.Base.N)}
	d := st.Base.Dims
	for i, id := range st.IDs {
		res.Rows[i] = jobs.ResultRow{ID: id, Coords: st.Base.Y[i*d : (i+1)*d : (i+1)*d]}
	}
	return &jobs.Base{Job: jobs.Job{ID: "local", Status: jobs.StatusSucceeded}, State: b, Result: res}, st, nil
}

// appendRows adds the new rows after the base's: their values under the
// base's columns (by name; a column the new table lacks is empty), their
// coordinates where the image loaded, their failures.
func appendRows(out *jobs.Result, fresh *loader.Table, images *loader.Images, add *embed.AddResult) {
	col := make(map[string]int, len(fresh.Header))
	for i, h := range fresh.Header {
		col[h] = i
	}
	first := len(out.Rows)
	for _, r := range fresh.Rows {
		vals := make([]string, len(out.Columns))
		for i, h := range out.Columns {
			if j, ok := col[h]; ok && j < len(r.Values) {
				vals[i] = r.Values[j]
			}
		}
		out.Rows = append(out.Rows, jobs.ResultRow{ID: r.ID, Values: vals})
	}
	for k, row := range images.Rows {
		out.Rows[first+row].Coords = add.Y[k*add.Dims : (k+1)*add.Dims : (k+1)*add.Dims]
	}
	for _, f := range toJobFailures(images.Failures) {
		f.Row += first
		out.Failures = append(out.Failures, f)
	}
}

func annotate(ctx context.Context, out *jobs.Result, req jobs.Request, t *jobs.Tracker) error {
	if err := explore.Annotate(ctx, out, req.Grid); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		t.Warn("explore the map", "err", err)
	}
	return nil
}

// addObserver reports the addition's steps as the job's optimizing stage.
func addObserver(t *jobs.Tracker) *embed.Observer {
	return &embed.Observer{Progress: func(ep embed.Progress) {
		t.SetStage(jobs.StageOptimizing)
		t.UpdateProgress(func(pr *jobs.Progress) { pr.Iteration, pr.Iterations = ep.Iteration, ep.Iterations })
	}}
}

// mergedThumbnails returns the atlas of base and new rows: the base's
// sheets as they are, then sheets of the new images at the base's cell
// size, their rows numbered after the base's. It is nil (and the failure
// logged) when the new thumbnails cannot be made: the map stands without.
func mergedThumbnails(ctx context.Context, t *jobs.Tracker, base *atlas.Atlas, baseRows int, fresh *loader.Table, images *loader.Images) *atlas.Atlas {
	src := atlas.Source{Width: images.Width, Height: images.Height, Pix: images.Pix, Reader: images, TotalRows: len(fresh.Rows),
		Rows: images.Rows, IDs: make([]string, len(images.Rows)), URLs: make([]string, len(images.Rows))}
	for k, r := range images.Rows {
		src.IDs[k], src.URLs[k] = fresh.Rows[r].ID, fresh.Rows[r].ImageURL
	}
	if base != nil {
		src.Cell = base.Index.Cell
	}
	a, err := atlas.Build(ctx, src)
	if err != nil {
		if ctx.Err() == nil {
			t.Warn("build thumbnails", "err", err)
		}
		return nil
	}
	return mergeAtlas(base, baseRows, a)
}

// mergeAtlas appends add's sheets and cells (rows after baseRows) to base
// (nil: the base had no thumbnails, so its rows are missing).
func mergeAtlas(base *atlas.Atlas, baseRows int, add *atlas.Atlas) *atlas.Atlas {
	out := &atlas.Atlas{Index: atlas.Index{Cell: add.Index.Cell, Rows: baseRows + add.Index.Rows, Missing: []int{}}}
	if base != nil {
		out.Index.Sheets = slices.Clone(base.Index.Sheets)
		out.Index.Cells = slices.Clone(base.Index.Cells)
		out.Index.Missing = slices.Clone(base.Index.Missing)
		out.Sheets = slices.Clone(base.Sheets)
	} else {
		for r := range baseRows {
			out.Index.Missing = append(out.Index.Missing, r)
		}
	}
	shift := len(out.Sheets)
	out.Sheets = append(out.Sheets, add.Sheets...)
	out.Index.Sheets = append(out.Index.Sheets, add.Index.Sheets...)
	for _, c := range add.Index.Cells {
		c.Row += baseRows
		c.Sheet += shift
		out.Index.Cells = append(out.Index.Cells, c)
	}
	for _, r := range add.Index.Missing {
		out.Index.Missing = append(out.Index.Missing, r+baseRows)
	}
	return out
}
