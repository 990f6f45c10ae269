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
	// handled, if set (by tests), is called with the job's id when the
	// worker is done with one of its messages: every write made, the
	// message settled.
	handled func(id string)
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

// attempt is one message's run of a job, from begin to settle.
type attempt struct {
	msg jetstream.Msg
	id  string
	job Job // the record as this attempt started it
	n   int // the attempt's number (Job.Attempts)
	log *slog.Logger
	// cancels end the bookkeeping contexts made by book.
	cancels []context.CancelFunc
	// workerCtx ends when the worker stops.
	workerCtx context.Context
}

// book returns a context for one bookkeeping write: it must finish even
// while the worker stops, each within its own deadline (a job may run for
// hours in between).
func (w *Worker) book(a *attempt) context.Context {
	bctx, cancel := context.WithTimeout(context.WithoutCancel(a.workerCtx), w.bookTimeout)
	a.cancels = append(a.cancels, cancel)
	return bctx
}

// handle runs the job of one message in three steps: begin (take the
// message and start the job's record, or settle the message at once when
// there is nothing to run), run (the Runner, under the job's deadline and
// cancel), and settle (write the outcome, then Ack; or hand back and Nak).
func (w *Worker) handle(ctx context.Context, msg jetstream.Msg) {
	a := &attempt{msg: msg, id: string(msg.Data()), workerCtx: ctx}
	a.log = w.log.With("job", a.id)
	defer func() {
		for _, c := range a.cancels {
			c()
		}
		if w.handled != nil {
			w.handled(a.id)
		}
	}()
	if !w.begin(a) {
		return
	}
	jctx, res, runErr := w.run(a)
	w.settle(a, jctx, res, runErr)
}

// begin applies the attempt rules to the job's record and starts it. It
// reports whether there is a job to run; when there is not, it has
// settled the message already.
func (w *Worker) begin(a *attempt) bool {
	delivered := uint64(1)
	if meta, err := a.msg.Metadata(); err == nil {
		delivered = meta.NumDelivered
	}
	var gaveUp bool
	job, err := w.store.Update(w.book(a), a.id, func(j *Job) error {
		gaveUp = false
		now := w.store.now().UTC()
		switch {
		case j.Status.Terminal():
			return errNoChange
		case j.CancelRequested:
			return j.finish(now, StatusCanceled, nil, "")
		case int(delivered) > w.store.cfg.MaxDeliveries:
			gaveUp = true
			msg := fmt.Sprintf("the job was started %d times and never finished (its worker stopped each time)", delivered-1)
			return j.finish(now, StatusFailed, &Error{Code: CodeInternal, Message: msg}, msg)
		default:
			return j.start(now)
		}
	})
	switch {
	case errors.Is(err, ErrNotFound):
		// Submit writes the message before the record: a young message
		// may find its record about to appear. An old one's job was
		// deleted, or its record never written (the store was full).
		if meta, merr := a.msg.Metadata(); merr == nil && w.store.now().Sub(meta.Timestamp) < orphanAfter {
			_ = a.msg.NakWithDelay(250 * time.Millisecond)
			return false
		}
		_ = a.msg.Ack()
		return false
	case err != nil:
		a.log.Error("start job", "err", err)
		_ = a.msg.NakWithDelay(time.Second)
		return false
	case job.Status != StatusRunning:
		if gaveUp {
			a.log.Error("job failed: too many deliveries", "deliveries", delivered)
			w.cfg.Metrics.finished(job.Status)
		}
		_ = a.msg.Ack()
		return false
	}
	a.job, a.n = job, job.Attempts
	a.log.Info("job started", "attempt", a.n)
	w.cfg.Metrics.started()
	return true
}

// run runs the job under its deadline, with in-progress acks, a watch for
// cancels and progress writes alongside. jctx's cause says why it ended
// early, if it did.
func (w *Worker) run(a *attempt) (jctx context.Context, res *Result, runErr error) {
	jctx, cancel := context.WithCancelCause(context.WithoutCancel(a.workerCtx))
	a.cancels = append(a.cancels, func() { cancel(nil) })
	timeout := w.cfg.MaxTimeout
	if t := time.Duration(a.job.Request.TimeoutSeconds) * time.Second; t > 0 && t < timeout {
		timeout = t
	}
	jctx, tcancel := context.WithTimeoutCause(jctx, timeout, ErrTimeout)
	a.cancels = append(a.cancels, tcancel)

	var side sync.WaitGroup
	sideCtx, sideStop := context.WithCancel(jctx)
	side.Go(func() { w.keepAlive(sideCtx, a.msg) })
	side.Go(func() { w.watchCancel(sideCtx, a.workerCtx, a.id, a.n, cancel) })

	tracker := newTracker(w.store, a.job, w.cfg.Metrics, a.log)
	tracker.start(sideCtx)
	res, runErr = w.runner.Run(jctx, a.job, tracker)
	sideStop()
	side.Wait()
	tracker.flush(w.book(a))
	if runErr == nil && res != nil {
		tracker.setStage(StageWritingResult)
		tracker.flush(w.book(a))
	}
	return jctx, res, runErr
}

// settle records the attempt's outcome and settles the message: Ack once
// the outcome is written, Nak to hand the job back. Only the newest attempt
// may change the record: a worker that went silent past the ack wait (a
// long GC pause, a stopped process) finds the job started again elsewhere
// and leaves it alone.
func (w *Worker) settle(a *attempt, jctx context.Context, res *Result, runErr error) {
	defer w.cfg.Metrics.stopped()
	status, jobErr := w.outcome(jctx, a.job, res, runErr)
	lost := errors.Is(context.Cause(jctx), ErrLost)
	if cur, err := w.store.Get(w.book(a), a.id); err == nil && cur.Attempts != a.n {
		lost = true
	}
	if lost {
		a.log.Warn("job lost to another worker: this worker went silent longer than the ack wait; writing nothing", "attempt", a.n)
		return
	}
	mine := func(j *Job) error {
		if j.Attempts != a.n {
			lost = true
			return errNoChange
		}
		if j.Status.Terminal() {
			return errNoChange
		}
		return nil
	}
	if status == StatusQueued {
		_, err := w.store.Update(w.book(a), a.id, func(j *Job) error {
			if err := mine(j); err != nil {
				return err
			}
			return j.handBack(w.store.now().UTC(), "the worker stopped")
		})
		if err != nil {
			a.log.Error("hand job back", "err", err)
		}
		_ = a.msg.Nak()
		a.log.Info("job handed back for redelivery")
		return
	}
	if status == StatusSucceeded {
		if err := w.store.PutResult(w.book(a), a.id, a.n, res); err != nil {
			status, jobErr = StatusFailed, &Error{Code: CodeInternal, Message: "storing the result: " + err.Error()}
		}
	}
	final, err := w.store.Update(w.book(a), a.id, func(j *Job) error {
		if err := mine(j); err != nil {
			return err
		}
		j.HasResult = status == StatusSucceeded
		detail := ""
		if jobErr != nil {
			detail = jobErr.Code
		}
		return j.finish(w.store.now().UTC(), status, jobErr, detail)
	})
	switch {
	case err == nil && lost:
		// Another worker started the job between our check and this
		// write; its result (under its own attempt's name) stands.
		a.log.Warn("job lost to another worker before its outcome was recorded; writing nothing", "attempt", a.n)
	case err != nil:
		a.log.Error("record job outcome", "err", err)
		_ = a.msg.NakWithDelay(time.Second)
	default:
		_ = a.msg.Ack()
		w.cfg.Metrics.finished(final.Status)
		if jobErr != nil {
			a.log.Info("job ended", "status", final.Status, "code", jobErr.Code, "error", jobErr.Message)
		} else {
			a.log.Info("job ended", "status", final.Status, "seconds", final.Progress.ElapsedSeconds)
		}
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
