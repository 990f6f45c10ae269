package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/tsnemap/tsnemap/jobs"
	"github.com/tsnemap/tsnemap/loader"
)

// Follower re-reads the tables of jobs that follow theirs
// (follow_interval_seconds) and grows their maps (docs/growing.md). Its
// state is the store's follow records, so any process running a Follower
// on the store carries on where another stopped; a check is claimed by a
// compare-and-set on the record, so two Followers never run the same one.
type Follower struct {
	Store    *jobs.Store
	Pipeline *Pipeline
	// MaxFollow is how long a job follows its table after its first check.
	MaxFollow time.Duration
	// Poll is how often the records are looked at for due checks.
	Poll time.Duration
	Log  *slog.Logger
}

// Run checks due tables every Poll until ctx ends.
func (f *Follower) Run(ctx context.Context) {
	poll := f.Poll
	if poll <= 0 {
		poll = 5 * time.Second
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		if err := f.CheckDue(ctx); err != nil && ctx.Err() == nil {
			f.Log.Warn("follow: look for due checks", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// CheckDue runs every check that is due now.
func (f *Follower) CheckDue(ctx context.Context) error {
	entries, err := f.Store.Follows(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	for _, e := range entries {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if now.Before(e.Next) {
			continue
		}
		job, err := f.Store.Get(ctx, e.JobID)
		switch {
		case errors.Is(err, jobs.ErrNotFound):
			_ = f.Store.StopFollow(ctx, e.JobID) // deleted: stop
			continue
		case err != nil:
			return err
		case job.Status != jobs.StatusSucceeded:
			if job.Status.Terminal() {
				_ = f.Store.StopFollow(ctx, e.JobID)
			}
			continue // not finished yet
		}
		if e.Until.IsZero() {
			longest := f.MaxFollow
			if longest <= 0 {
				longest = 30 * 24 * time.Hour
			}
			e.Until = now.Add(longest)
		}
		if now.After(e.Until) {
			_ = f.Store.StopFollow(ctx, e.JobID)
			f.Log.Info("follow: stopped, the longest following allowed is over", "job", e.JobID)
			continue
		}
		e.Next = now.Add(e.Interval)
		e.Checks++
		rev, err := f.Store.UpdateFollow(ctx, e.Follow, e.Revision)
		if errors.Is(err, jobs.ErrClaimed) {
			continue
		}
		if err != nil {
			return err
		}
		if err := f.check(ctx, job, &e.Follow); err != nil && ctx.Err() == nil {
			f.Log.Warn("follow: check", "job", e.JobID, "err", err)
		}
		if _, err := f.Store.UpdateFollow(ctx, e.Follow, rev); err != nil && !errors.Is(err, jobs.ErrClaimed) {
			return err
		}
	}
	return nil
}

// Added is the data of an `event: added` (the contract's AddedEvent).
type Added struct {
	Rows    []AddedRow `json:"rows"`
	Removed []string   `json:"removed"`
}

// AddedRow is one row a check placed.
type AddedRow struct {
	Row    int       `json:"row"`
	ID     string    `json:"id"`
	Coords []float32 `json:"coords,omitempty"`
}

// check re-reads one job's table (conditionally) and grows its map by the
// new ids, marking ids gone from the table removed.
func (f *Follower) check(ctx context.Context, job jobs.Job, fl *jobs.Follow) error {
	req := job.Request
	v := &loader.Validators{ETag: fl.ETag, LastModified: fl.LastModified}
	table, err := f.Pipeline.Loader.FetchTable(ctx, req.DatasetURL, loader.TableOptions{IDColumn: req.IDColumn,
		ImageURLTemplate: req.ImageURLTemplate, ImageURLColumn: req.ImageURLColumn, Limit: req.Limit, Validators: v})
	if errors.Is(err, loader.ErrNotModified) {
		return nil
	}
	if err != nil {
		return err
	}
	fl.ETag, fl.LastModified = v.ETag, v.LastModified
	base, err := f.Store.Base(ctx, job.ID)
	if err != nil {
		return err
	}
	be, err := f.Pipeline.backend("cpu")
	if err != nil {
		return err
	}
	t := jobs.NewLocalTracker(ctx, job, f.Log, func(jobs.Job) {})
	defer t.Close()
	g, err := f.Pipeline.Grow(ctx, req, be, table, base, t)
	if err != nil {
		return err
	}
	ev := Added{Rows: []AddedRow{}, Removed: []string{}}
	present := make(map[string]bool, len(table.Rows))
	for _, r := range table.Rows {
		present[r.ID] = true
	}
	g.Result.Followed = true
	for i := range g.Result.Rows {
		r := &g.Result.Rows[i]
		gone := !present[r.ID]
		if gone && !r.Removed {
			ev.Removed = append(ev.Removed, r.ID)
		}
		r.Removed = gone
	}
	for _, i := range g.NewRows {
		r := g.Result.Rows[i]
		ev.Rows = append(ev.Rows, AddedRow{Row: i, ID: r.ID, Coords: r.Coords})
	}
	if len(ev.Rows) == 0 && len(ev.Removed) == 0 {
		return nil
	}
	var putAtlas func(context.Context) error
	if g.Atlas != nil && len(g.NewRows) > 0 {
		putAtlas = func(ctx context.Context) error { return f.Store.PutAtlas(ctx, job.ID, g.Atlas) }
	}
	if err := f.Store.Grown(ctx, job.ID, g.Result, g.State, putAtlas); err != nil {
		return err
	}
	fl.Added += len(ev.Rows)
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	f.Log.Info("follow: table changed", "job", job.ID, "added", len(ev.Rows), "removed", len(ev.Removed))
	return f.Store.PublishAdded(job.ID, b)
}
