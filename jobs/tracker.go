package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tsnemap/tsnemap/atlas"
)

// flushEvery bounds the writes of progress to the job record: a few per
// second keep polls and SSE lively without loading NATS.
const flushEvery = 250 * time.Millisecond

// Tracker is how a Runner reports a running job's stage and progress. Its
// methods are cheap and safe for concurrent use; changes are written to the
// job record at most every flushEvery.
type Tracker struct {
	store   *Store
	id      string
	attempt int // the attempt this tracker writes for; see Worker.handle
	metrics *Metrics
	log     *slog.Logger
	started time.Time

	// report, set instead of store for a job run without a service
	// (tsnemap run), receives each flushed state.
	report func(Job)
	job    Job

	mu         sync.Mutex
	stage      Stage
	stageSince time.Time
	progress   Progress
	backend    string
	dirty      bool
	lastEmbed  time.Time
	lastIter   int
	lastIterAt time.Time
	localState []byte
	localBase  *Base
	// sharded: StartShards ran, so the worker removes the shards when the
	// attempt ends.
	sharded bool
}

func newTracker(s *Store, job Job, m *Metrics, log *slog.Logger) *Tracker {
	now := s.now()
	return &Tracker{store: s, id: job.ID, attempt: job.Attempts, metrics: m, log: log, started: now,
		stage: job.Stage, stageSince: now, progress: job.Progress, backend: job.Backend}
}

// NewLocalTracker returns a Tracker for a job run in this process without a
// store: report receives the job's state at most every 250 ms while ctx
// lasts, and once more when Close is called.
func NewLocalTracker(ctx context.Context, job Job, log *slog.Logger, report func(Job)) *Tracker {
	now := time.Now()
	t := &Tracker{id: job.ID, log: log, started: now, report: report, job: job,
		stage: job.Stage, stageSince: now, progress: job.Progress, backend: job.Backend}
	t.start(ctx)
	return t
}

// Close flushes a local tracker's last state to its report function.
func (t *Tracker) Close() { t.flush(context.Background()) }

func (t *Tracker) now() time.Time {
	if t.store == nil {
		return time.Now()
	}
	return t.store.now()
}

// SetBackend names the compute backend the job runs on.
func (t *Tracker) SetBackend(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.backend != name {
		t.backend, t.dirty = name, true
	}
}

// SetStage moves the job to a new stage.
func (t *Tracker) SetStage(s Stage) { t.setStage(s) }

func (t *Tracker) setStage(s Stage) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stage == s {
		return
	}
	now := t.now()
	t.metrics.stageDone(t.stage, now.Sub(t.stageSince))
	t.stage, t.stageSince, t.dirty = s, now, true
}

// UpdateProgress changes the job's progress counters.
func (t *Tracker) UpdateProgress(fn func(p *Progress)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	before := t.progress
	fn(&t.progress)
	t.metrics.images(t.progress.ImagesLoaded-before.ImagesLoaded, t.progress.ImagesFailed-before.ImagesFailed)
	if t.progress.Iteration != t.lastIter {
		now := t.now()
		if !t.lastIterAt.IsZero() && t.progress.Iteration > t.lastIter {
			if dt := now.Sub(t.lastIterAt).Seconds(); dt > 0 {
				t.metrics.iterationRate(float64(t.progress.Iteration-t.lastIter) / dt)
			}
		}
		t.lastIter, t.lastIterAt = t.progress.Iteration, now
	}
	t.dirty = true
}

// AddBytes counts bytes downloaded for the job (a metric only).
func (t *Tracker) AddBytes(n int64) { t.metrics.bytes(n) }

// SetFailures records the images that failed to load so far; they are
// served by /v1/jobs/{id}/failures at once.
func (t *Tracker) SetFailures(ctx context.Context, f []Failure) error {
	if t.store == nil {
		return nil
	}
	return t.store.PutFailures(ctx, t.id, t.attempt, f)
}

// PublishFailures is SetFailures for the interim lists written while
// images still load: a failed write is logged, not returned, because the
// final SetFailures after loading will carry the whole list anyway.
func (t *Tracker) PublishFailures(ctx context.Context, f []Failure) {
	if err := t.SetFailures(ctx, f); err != nil && ctx.Err() == nil {
		t.log.Warn("record failures while loading", "job", t.id, "err", err)
	}
}

// KeepsThumbnails reports whether SetAtlas stores anything (a job run
// without a service keeps none), so a Runner can skip building them.
func (t *Tracker) KeepsThumbnails() bool { return t.store != nil }

// SetAtlas stores the job's thumbnails: GET /v1/jobs/{id}/atlas serves
// them from then on, while the job still runs.
// Thumbnails are a convenience: a failure is logged, and the job goes on.
func (t *Tracker) SetAtlas(ctx context.Context, a *atlas.Atlas) {
	if t.store == nil {
		return
	}
	if err := t.store.PutAtlas(ctx, t.id, a); err != nil && ctx.Err() == nil {
		t.log.Warn("store thumbnails", "job", t.id, "err", err)
	}
}

// Warn logs a problem of the job that does not stop it.
func (t *Tracker) Warn(msg string, args ...any) {
	t.log.Warn(msg, append([]any{"job", t.id}, args...)...)
}

// Embedding offers a snapshot of the coordinates to live viewers, at most
// one a second.
func (t *Tracker) Embedding(e Embedding) {
	t.mu.Lock()
	now := t.now()
	due := now.Sub(t.lastEmbed) >= time.Second
	if due {
		t.lastEmbed = now
	}
	t.mu.Unlock()
	if due && t.store != nil {
		if err := t.store.PublishEmbedding(t.id, e); err != nil {
			t.log.Warn("publish embedding", "err", err)
		}
	}
}

// EmbeddingDue reports whether Embedding would publish now, so a Runner
// can skip copying coordinates nobody will see.
func (t *Tracker) EmbeddingDue() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.now().Sub(t.lastEmbed) >= time.Second
}

func (t *Tracker) start(ctx context.Context) {
	go func() {
		tick := time.NewTicker(flushEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				t.flush(ctx)
			}
		}
	}()
}

// flush writes pending changes to the job record.
func (t *Tracker) flush(ctx context.Context) {
	t.mu.Lock()
	if !t.dirty {
		t.mu.Unlock()
		return
	}
	stage, progress, backend := t.stage, t.progress, t.backend
	progress.ElapsedSeconds = t.now().Sub(t.started).Seconds()
	t.dirty = false
	t.mu.Unlock()
	if t.store == nil {
		j := t.job
		j.Stage, j.Progress, j.Backend = stage, progress, backend
		t.report(j)
		return
	}
	_, err := t.store.Update(ctx, t.id, func(j *Job) error {
		if j.Status != StatusRunning || j.Attempts != t.attempt {
			return errNoChange // finished, or taken over by another worker
		}
		if j.Shards != nil {
			// The shards count the images, in the record, each once.
			progress.ImagesLoaded, progress.ImagesFailed = j.Progress.ImagesLoaded, j.Progress.ImagesFailed
		}
		j.Stage, j.Progress, j.Backend = stage, progress, backend
		return nil
	})
	if err != nil && ctx.Err() == nil {
		t.log.Warn("record progress", "err", err)
		t.mu.Lock()
		t.dirty = true
		t.mu.Unlock()
	}
}

// CanShard reports whether the job may load its images in shards across
// the cluster (a job run without a service cannot).
func (t *Tracker) CanShard() bool { return t.store != nil }

// StartShards cuts the job's rows into shards of size and queues them for
// every worker; it returns the number of shards.
func (t *Tracker) StartShards(ctx context.Context, size int, rows []ShardRow) (int, error) {
	t.mu.Lock()
	t.sharded = true
	t.mu.Unlock()
	return t.store.StartShards(ctx, t.id, t.attempt, size, rows)
}

// WaitShards waits until every shard is loaded.
func (t *Tracker) WaitShards(ctx context.Context) (*Sharding, error) {
	return t.store.WaitShards(ctx, t.id, t.attempt, nil)
}

// ShardOutput reads what shard k of sh loaded.
func (t *Tracker) ShardOutput(ctx context.Context, sh *Sharding, k int) (*ShardOutput, error) {
	return t.store.ShardOutput(ctx, t.id, sh.Attempt, k)
}

// AdoptShards takes on the shards an earlier attempt loaded (the job was
// handed to this worker once they were in): they are removed when this
// attempt ends.
func (t *Tracker) AdoptShards() {
	t.mu.Lock()
	t.sharded = true
	t.mu.Unlock()
}

// GPUWorker names a live worker of the cluster with a GPU, "" if none.
func (t *Tracker) GPUWorker(ctx context.Context) string {
	if t.store == nil {
		return ""
	}
	name, _ := t.store.GPUWorker(ctx)
	return name
}

// HandOff hands the job, its shards all loaded, to the worker named
// name: it returns an error wrapping ErrHandOff for the Runner to return
// (the job is queued again, for that worker to take while it lives).
func (t *Tracker) HandOff(ctx context.Context, name string) error {
	_, err := t.store.Update(ctx, t.id, func(j *Job) error {
		if j.Attempts != t.attempt || j.Status != StatusRunning || !j.Shards.Complete() {
			return fmt.Errorf("hand job %s off: attempt %d is over: %w", t.id, t.attempt, ErrConflict)
		}
		j.Shards.Embedder = name
		return nil
	})
	if err != nil {
		return err
	}
	return fmt.Errorf("%w: %s (it has a GPU)", ErrHandOff, name)
}

// DropShards removes the job's shard messages and objects.
func (t *Tracker) DropShards(ctx context.Context) error { return t.store.DropShards(ctx, t.id) }

// ID is the job's id.
func (t *Tracker) ID() string { return t.id }
