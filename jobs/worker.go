package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Runner does one job's work: fetch, load, embed. It reports through the
// Tracker and must return soon after ctx is cancelled. A returned *Error
// (possibly wrapped) chooses the job's error code.
type Runner interface {
	Run(ctx context.Context, job Job, t *Tracker) (*Result, error)
}

// WorkerConfig configures a Worker.
type WorkerConfig struct {
	// Concurrency is how many jobs run at once (default 1).
	Concurrency int
	// MaxTimeout caps (and is the default of) a job's timeout_seconds.
	// Default 24 hours.
	MaxTimeout time.Duration
	// Logger, default slog.Default().
	Logger *slog.Logger
	// Metrics, optional.
	Metrics *Metrics
}

// orphanAfter is how long a work message without a job record is kept
// (Submit writes the record just after the message) before it is dropped.
const orphanAfter = 10 * time.Second

// Worker pulls jobs from the work queue and runs them.
type Worker struct {
	store  *Store
	runner Runner
	cfg    WorkerConfig
	log    *slog.Logger
	// bookTimeout bounds each write of the job record.
	bookTimeout time.Duration
}

// NewWorker returns a worker taking jobs from store and running them with
// runner.
func NewWorker(store *Store, runner Runner, cfg WorkerConfig) *Worker {
	if cfg.Concurrency < 1 {
		cfg.Concurrency = 1
	}
	if cfg.MaxTimeout <= 0 {
		cfg.MaxTimeout = 24 * time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Worker{store: store, runner: runner, cfg: cfg, log: cfg.Logger, bookTimeout: 10 * time.Second}
}

// Run takes and runs jobs until ctx ends. Then it stops taking work, cancels
// the jobs it is running, hands each back to the queue (queued again, to be
// redelivered to any worker), and returns.
func (w *Worker) Run(ctx context.Context) error {
	cons, err := w.store.stream.Consumer(ctx, workConsumer)
	if err != nil {
		return fmt.Errorf("worker: work consumer: %w", err)
	}
	var wg sync.WaitGroup
	for range w.cfg.Concurrency {
		wg.Go(func() { w.slot(ctx, cons) })
	}
	wg.Wait()
	return nil
}

// slot runs one job at a time, pulling the next only when free, so a busy
// worker never holds messages another worker could run.
func (w *Worker) slot(ctx context.Context, cons jetstream.Consumer) {
	for ctx.Err() == nil {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			w.log.Warn("fetch work", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		for msg := range batch.Messages() {
			w.handle(ctx, msg)
		}
	}
}

// handle runs the job of one message and settles the message: Ack once the
// job's outcome is recorded, Nak to hand it back.
func (w *Worker) handle(ctx context.Context, msg jetstream.Msg) {
	id := string(msg.Data())
	log := w.log.With("job", id)
	// Book-keeping writes must finish even while shutting down, each
	// within its own deadline (a job may run for hours in between).
	var cancels []context.CancelFunc
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	book := func() context.Context {
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.bookTimeout)
		cancels = append(cancels, cancel)
		return bctx
	}

	delivered := uint64(1)
	if meta, err := msg.Metadata(); err == nil {
		delivered = meta.NumDelivered
	}
	var gaveUp bool
	job, err := w.store.Update(book(), id, func(j *Job) error {
		gaveUp = false
		switch {
		case j.Status.Terminal():
			return errNoChange
		case j.CancelRequested:
			w.store.finish(j, StatusCanceled, nil)
		case int(delivered) > w.store.cfg.MaxDeliveries:
			gaveUp = true
			msg := fmt.Sprintf("the job was started %d times and never finished (its worker stopped each time)", delivered-1)
			w.store.finish(j, StatusFailed, &Error{Code: CodeInternal, Message: msg})
			j.record(w.store.now().UTC(), EventFinished, j.Attempts, string(StatusFailed)+": "+msg)
		default:
			now := w.store.now().UTC()
			if j.Status == StatusRunning {
				// Still marked running: its worker died or went silent
				// past the ack wait, and JetStream redelivered the job.
				j.record(now, EventRetried, j.Attempts+1, fmt.Sprintf("attempt %d did not finish: its worker stopped or went silent for longer than the ack wait", j.Attempts))
			} else if j.Attempts > 0 {
				j.record(now, EventRetried, j.Attempts+1, fmt.Sprintf("attempt %d was handed back", j.Attempts))
			}
			j.Status = StatusRunning
			j.Stage = StageFetchingDataset
			j.StartedAt = &now
			j.Attempts++
			j.Error = nil
			j.HasAtlas = false
			j.Progress = Progress{Iterations: j.Progress.Iterations}
			j.record(now, EventStarted, j.Attempts, "")
		}
		return nil
	})
	switch {
	case errors.Is(err, ErrNotFound):
		// Submit writes the message before the record: a young message
		// may find its record about to appear. An old one's job was
		// deleted, or its record never written (the store was full).
		if meta, merr := msg.Metadata(); merr == nil && time.Since(meta.Timestamp) < orphanAfter {
			_ = msg.NakWithDelay(250 * time.Millisecond)
			return
		}
		_ = msg.Ack()
		return
	case err != nil:
		log.Error("start job", "err", err)
		_ = msg.NakWithDelay(time.Second)
		return
	case job.Status != StatusRunning:
		if gaveUp {
			log.Error("job failed: too many deliveries", "deliveries", delivered)
			w.cfg.Metrics.finished(job.Status)
		}
		_ = msg.Ack()
		return
	}
	attempt := job.Attempts
	log.Info("job started", "attempt", attempt)
	w.cfg.Metrics.started()

	jctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancel(nil)
	timeout := w.cfg.MaxTimeout
	if t := time.Duration(job.Request.TimeoutSeconds) * time.Second; t > 0 && t < timeout {
		timeout = t
	}
	jctx, tcancel := context.WithTimeoutCause(jctx, timeout, ErrTimeout)
	defer tcancel()

	var side sync.WaitGroup
	sideCtx, sideStop := context.WithCancel(jctx)
	side.Go(func() { w.keepAlive(sideCtx, msg) })
	side.Go(func() { w.watchCancel(sideCtx, ctx, id, attempt, cancel) })

	tracker := newTracker(w.store, job, w.cfg.Metrics, log)
	tracker.start(sideCtx)
	res, runErr := w.runner.Run(jctx, job, tracker)
	sideStop()
	side.Wait()
	tracker.flush(book())

	status, jobErr := w.outcome(jctx, job, res, runErr)
	// mine guards every write from here on: only the newest attempt may
	// change the record. A worker that went silent past the ack wait (a
	// long GC pause, a stopped process) finds the job started again
	// elsewhere and leaves it alone.
	lost := false
	mine := func(j *Job) error {
		if j.Attempts != attempt {
			lost = true
			return errNoChange
		}
		if j.Status.Terminal() {
			return errNoChange
		}
		return nil
	}
	if errors.Is(context.Cause(jctx), ErrLost) {
		lost = true
	} else if cur, err := w.store.Get(book(), id); err == nil && cur.Attempts != attempt {
		lost = true
	}
	if lost {
		log.Warn("job lost to another worker: this worker went silent longer than the ack wait; writing nothing", "attempt", attempt)
		w.cfg.Metrics.stopped()
		return
	}
	if status == StatusQueued {
		// Hand the job back: another worker (or this one, restarted)
		// runs it again from the start.
		_, err := w.store.Update(book(), id, func(j *Job) error {
			if err := mine(j); err != nil {
				return err
			}
			j.Status = StatusQueued
			j.Stage = StageQueued
			j.StartedAt = nil
			j.record(w.store.now().UTC(), EventHandedBack, attempt, "the worker stopped")
			return nil
		})
		if err != nil {
			log.Error("hand job back", "err", err)
		}
		_ = msg.Nak()
		log.Info("job handed back for redelivery")
		w.cfg.Metrics.stopped()
		return
	}
	if status == StatusSucceeded {
		tracker.setStage(StageWritingResult)
		tracker.flush(book())
		if err := w.store.PutResult(book(), id, attempt, res); err != nil {
			status, jobErr = StatusFailed, &Error{Code: CodeInternal, Message: "storing the result: " + err.Error()}
		}
	}
	final, err := w.store.Update(book(), id, func(j *Job) error {
		if err := mine(j); err != nil {
			return err
		}
		w.store.finish(j, status, jobErr)
		j.HasResult = status == StatusSucceeded
		detail := string(status)
		if jobErr != nil {
			detail += ": " + jobErr.Code
		}
		j.record(w.store.now().UTC(), EventFinished, attempt, detail)
		return nil
	})
	if err == nil && lost {
		// Another worker started the job between our check and this
		// write; its result (under its own attempt's name) stands.
		log.Warn("job lost to another worker before its outcome was recorded; writing nothing", "attempt", attempt)
		w.cfg.Metrics.stopped()
		return
	}
	if err != nil {
		log.Error("record job outcome", "err", err)
		_ = msg.NakWithDelay(time.Second)
		w.cfg.Metrics.stopped()
		return
	}
	_ = msg.Ack()
	w.cfg.Metrics.stopped()
	w.cfg.Metrics.finished(final.Status)
	if jobErr != nil {
		log.Info("job ended", "status", final.Status, "code", jobErr.Code, "error", jobErr.Message)
	} else {
		log.Info("job ended", "status", final.Status, "seconds", final.Progress.ElapsedSeconds)
	}
}

// outcome turns what Run returned into the job's next status. StatusQueued
// means: hand back for redelivery.
func (w *Worker) outcome(jctx context.Context, job Job, res *Result, runErr error) (Status, *Error) {
	cause := context.Cause(jctx)
	switch {
	case runErr == nil && res != nil:
		return StatusSucceeded, nil
	case jctx.Err() != nil && (errors.Is(cause, ErrShutdown) || errors.Is(cause, ErrLost)):
		return StatusQueued, nil
	case jctx.Err() != nil && errors.Is(cause, ErrCanceled):
		return StatusCanceled, nil
	case jctx.Err() != nil && errors.Is(cause, ErrTimeout):
		limit := job.Request.TimeoutSeconds
		if limit <= 0 {
			limit = int(w.cfg.MaxTimeout / time.Second)
		}
		return StatusFailed, &Error{Code: CodeTimeout, Message: fmt.Sprintf("the job ran longer than its time limit of %d s and was stopped", limit)}
	}
	var je *Error
	if errors.As(runErr, &je) {
		return StatusFailed, je
	}
	if runErr == nil {
		runErr = errors.New("the runner returned no result")
	}
	return StatusFailed, &Error{Code: CodeInternal, Message: runErr.Error()}
}

// keepAlive tells JetStream the job is still being worked on, well within
// AckWait, so it is not redelivered to another worker meanwhile.
func (w *Worker) keepAlive(ctx context.Context, msg jetstream.Msg) {
	t := time.NewTicker(w.store.cfg.AckWait / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := msg.InProgress(); err != nil {
				w.log.Warn("in-progress ack", "err", err)
			}
		}
	}
}

// watchCancel cancels the job's context when DELETE marks the job (or
// deletes it), when another worker has started it again (this one went
// silent too long), and when the worker itself is stopping.
func (w *Worker) watchCancel(ctx, workerCtx context.Context, id string, attempt int, cancel context.CancelCauseFunc) {
	updates, err := w.store.Watch(ctx, id)
	if err != nil && ctx.Err() == nil {
		w.log.Error("watch job for cancel", "job", id, "err", err)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-workerCtx.Done():
			cancel(ErrShutdown)
			return
		case j, ok := <-updates:
			if !ok {
				if ctx.Err() == nil {
					cancel(ErrCanceled) // the record is gone
				}
				return
			}
			if j.Attempts != attempt {
				cancel(ErrLost) // another worker runs the job now
				return
			}
			if j.CancelRequested {
				cancel(ErrCanceled)
				return
			}
		}
	}
}
