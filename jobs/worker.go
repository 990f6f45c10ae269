package jobs

import (
	"context"
	"encoding/json"
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
	// Shards, if set, loads shards of large jobs (any job's, not only
	// those this worker runs), ShardConcurrency at a time (default 1).
	Shards           ShardLoader
	ShardConcurrency int
	// Name names this worker in the history of the shards it loads
	// (default host name and process id).
	Name string
	// GPU: this worker has a GPU. Workers advertise it; a sharded job
	// whose worker has none hands its embedding to one that has.
	GPU bool
}

// A work message without a job record is delivered again orphanDeliveries
// times, orphanDelay apart, before it is dropped: Submit writes the record
// just after the message (within submitWriteTimeout), so a record that has
// not appeared by then never will. Counting deliveries, rather than
// comparing the message's time (the server's clock) with this worker's,
// keeps a worker whose clock is off from dropping new jobs.
const (
	orphanDeliveries = 30
	orphanDelay      = time.Second
)

// Worker pulls jobs from the work queue and runs them.
type Worker struct {
	store  *Store
	runner Runner
	cfg    WorkerConfig
	log    *slog.Logger
	// bookTimeout bounds each write of the job record.
	bookTimeout time.Duration
	// settleFor bounds how long settle retries the writes of an outcome
	// before it hands the message back.
	settleFor time.Duration
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
	if cfg.ShardConcurrency < 1 {
		cfg.ShardConcurrency = 1
	}
	if cfg.Name == "" {
		cfg.Name = defaultWorkerName()
	}
	return &Worker{store: store, runner: runner, cfg: cfg, log: cfg.Logger, bookTimeout: 10 * time.Second, settleFor: 5 * time.Minute}
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
	if w.cfg.Shards != nil {
		wg.Go(func() { w.runShards(ctx) })
	}
	wg.Go(func() {
		if err := w.store.Advertise(ctx, Advert{Name: w.cfg.Name, GPU: w.cfg.GPU}); err != nil {
			w.log.Warn("advertise this worker", "err", err)
		}
	})
	wg.Wait()
	return nil
}

// slot runs one job at a time, pulling the next only when free, so a busy
// worker never holds messages another worker could run.
func (w *Worker) slot(ctx context.Context, cons jetstream.Consumer) {
	w.pull(ctx, cons, "fetch work", w.handle)
}

// pull takes one message at a time from cons and hands it to handle until
// ctx ends; a failed fetch is logged as what and retried a second later.
func (w *Worker) pull(ctx context.Context, cons jetstream.Consumer, what string, handle func(context.Context, jetstream.Msg)) {
	for ctx.Err() == nil {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			w.log.Warn(what, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		for msg := range batch.Messages() {
			handle(ctx, msg)
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
	// stopAlive ends the in-progress acks (see handle) and waits for them.
	stopAlive func()
}

// ack and nak settle the message, after the in-progress acks stop.
func (a *attempt) ack() { a.stopAlive(); _ = a.msg.Ack() }
func (a *attempt) nak(delay time.Duration) {
	a.stopAlive()
	if delay > 0 {
		_ = a.msg.NakWithDelay(delay)
	} else {
		_ = a.msg.Nak()
	}
}

// book returns a context for one bookkeeping write: it must finish even
// while the worker stops, each within its own deadline (a job may run for
// hours in between).
func (w *Worker) book(a *attempt) context.Context {
	return w.bookFor(a, w.bookTimeout)
}

func (w *Worker) bookFor(a *attempt, d time.Duration) context.Context {
	bctx, cancel := context.WithTimeout(context.WithoutCancel(a.workerCtx), d)
	a.cancels = append(a.cancels, cancel)
	return bctx
}

// handle runs the job of one message in three steps: begin (take the
// message and start the job's record, or settle the message at once when
// there is nothing to run), run (the Runner, under the job's deadline and
// cancel), and settle (write the outcome, then Ack; or hand back and Nak).
// In-progress acks run from the start until the message is settled:
// through the run, a runner's winding down after a cancel or timeout, and
// the writes of the outcome, so none of these is redelivered meanwhile.
func (w *Worker) handle(ctx context.Context, msg jetstream.Msg) {
	a := &attempt{msg: msg, id: string(msg.Data()), workerCtx: ctx}
	a.log = w.log.With("job", a.id)
	aliveCtx, aliveStop := context.WithCancel(context.WithoutCancel(ctx))
	var alive sync.WaitGroup
	a.stopAlive = func() { aliveStop(); alive.Wait() }
	defer func() {
		a.stopAlive()
		for _, c := range a.cancels {
			c()
		}
		if w.handled != nil {
			w.handled(a.id)
		}
	}()
	if w.leaveToEmbedder(a) || !w.begin(a) {
		return
	}
	alive.Go(func() { w.keepAlive(aliveCtx, msg) })
	jctx, res, runErr := w.run(a)
	w.settle(a, jctx, res, runErr)
}

// leaveToEmbedder hands back, for a moment, a job handed off to another
// worker that still lives (it takes the job when it has a free slot); it
// reports whether it did.
func (w *Worker) leaveToEmbedder(a *attempt) bool {
	j, err := w.store.Get(w.book(a), a.id)
	if err != nil || j.Status != StatusQueued || j.Shards == nil || j.Shards.Embedder == "" || j.Shards.Embedder == w.cfg.Name {
		return false
	}
	if !w.store.alive(w.book(a), j.Shards.Embedder) {
		return false
	}
	a.nak(time.Second)
	return true
}

// limit is the job's time limit: timeout_seconds, capped by the worker's
// MaxTimeout. It bounds the job's running time over all its attempts.
func (w *Worker) limit(j Job) time.Duration {
	if t := time.Duration(j.Request.TimeoutSeconds) * time.Second; t > 0 && t < w.cfg.MaxTimeout {
		return t
	}
	return w.cfg.MaxTimeout
}

// begin applies the attempt rules to the job's record and starts it. It
// reports whether there is a job to run; when there is not, it has
// settled the message already. Only attempts that started and crashed
// count towards giving up: a delivery that cannot write the start (a full
// store, a leader election) hands the message back uncounted.
func (w *Worker) begin(a *attempt) bool {
	token := NewID(time.Now())
	recovered := w.storedResult(a)
	var gaveUp bool
	job, err := w.store.Update(w.book(a), a.id, func(j *Job) error {
		var err error
		gaveUp, err = w.startRules(j, token, recovered)
		return err
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		// The write may have been stored all the same: read the record
		// again (the token tells) rather than guess.
		if cur, gerr := w.store.Get(w.book(a), a.id); gerr == nil && cur.Status == StatusRunning && cur.Token == token {
			job, err = cur, nil
		}
	}
	switch {
	case errors.Is(err, ErrNotFound):
		w.orphan(a)
		return false
	case err != nil:
		a.log.Error("start job", "err", err)
		a.nak(time.Second)
		return false
	case job.Status != StatusRunning || job.Token != token:
		if gaveUp {
			a.log.Error("job failed: its attempts crashed too often", "crashes", job.Crashes)
		}
		if job.Status.Terminal() && job.FinishedAt != nil && (gaveUp || recovered > 0) {
			w.cfg.Metrics.finished(job.Status)
		}
		a.ack()
		return false
	}
	a.job, a.n = job, job.Attempts
	a.log.Info("job started", "attempt", a.n)
	w.cfg.Metrics.started()
	return true
}

// storedResult returns the number of the attempt whose worker stopped
// after storing its result but before recording the outcome (0 if none):
// that attempt succeeded, and the job is not run again.
func (w *Worker) storedResult(a *attempt) int {
	cur, err := w.store.Get(w.book(a), a.id)
	if err != nil || cur.Status != StatusRunning || cur.Attempts == 0 {
		return 0
	}
	if ok, err := w.store.hasObject(w.book(a), resultName(a.id, cur.Attempts)); err != nil || !ok {
		return 0
	}
	return cur.Attempts
}

// startRules is begin's change to the record: start the job, or finish it
// (canceled, out of time, crashed too often, or recovered), or nothing.
func (w *Worker) startRules(j *Job, token string, recovered int) (gaveUp bool, err error) {
	now := w.store.now().UTC()
	crashed := j.Status == StatusRunning
	switch {
	case crashed && j.Token == token:
		return false, errNoChange // our own start, written by an earlier try
	case j.Status.Terminal():
		return false, errNoChange
	case j.CancelRequested:
		return false, j.finish(now, StatusCanceled, nil, "")
	case crashed && recovered == j.Attempts:
		j.HasResult = true
		return false, j.finish(now, StatusSucceeded, nil, "its result was stored before its worker stopped")
	case crashed && j.Crashes+1 >= w.store.cfg.MaxDeliveries:
		j.Crashes++
		msg := fmt.Sprintf("the job was started %d times and its worker stopped or went silent each time before it ended", j.Attempts)
		return true, j.finish(now, StatusFailed, &Error{Code: CodeInternal, Message: msg}, msg)
	}
	if crashed {
		j.SpentSeconds += j.Progress.ElapsedSeconds
	}
	if limit := w.limit(*j); time.Duration(j.SpentSeconds*float64(time.Second)) >= limit {
		e := timeoutError(limit, j.Attempts)
		return false, j.finish(now, StatusFailed, e, e.Code)
	}
	j.Token = token
	return false, j.start(now)
}

// orphan settles a message whose job has no record. Submit writes the
// message before the record: a young message may find its record about to
// appear. An old one's job was deleted, or its record never written.
func (w *Worker) orphan(a *attempt) {
	if meta, err := a.msg.Metadata(); err == nil && meta.NumDelivered < orphanDeliveries {
		a.log.Debug("no record for the job yet", "delivery", meta.NumDelivered)
		delay := orphanDelay
		if meta.NumDelivered < 4 {
			delay = orphanDelay / 4 // the record is usually a moment behind
		}
		a.nak(delay)
		return
	}
	a.log.Info("dropping a work message whose job has no record")
	a.ack()
}

// run runs the job until its deadline (the job's time limit less what its
// earlier attempts ran), with a watch for cancels and progress writes
// alongside. jctx's cause says why it ended early, if it did.
func (w *Worker) run(a *attempt) (jctx context.Context, res *Result, runErr error) {
	jctx, cancel := context.WithCancelCause(context.WithoutCancel(a.workerCtx))
	a.cancels = append(a.cancels, func() { cancel(nil) })
	left := w.limit(a.job) - time.Duration(a.job.SpentSeconds*float64(time.Second))
	jctx, tcancel := context.WithTimeoutCause(jctx, left, ErrTimeout)
	a.cancels = append(a.cancels, tcancel)

	var side sync.WaitGroup
	sideCtx, sideStop := context.WithCancel(jctx)
	side.Go(func() { w.watchCancel(sideCtx, a.workerCtx, a.id, a.n, cancel) })

	tracker := newTracker(w.store, a.job, w.cfg.Metrics, a.log)
	tracker.start(sideCtx)
	res, runErr = w.runner.Run(jctx, a.job, tracker)
	sideStop()
	side.Wait()
	tracker.mu.Lock()
	sharded := tracker.sharded
	tracker.mu.Unlock()
	if sharded && !errors.Is(runErr, ErrHandOff) {
		// Whatever the end (done, failed, canceled, handed back), no
		// shard of this attempt is wanted any more.
		if err := w.store.DropShards(w.bookFor(a, 30*time.Second), a.id); err != nil {
			a.log.Warn("drop shards", "err", err)
		}
	}
	tracker.flush(w.book(a))
	if runErr == nil && res != nil {
		tracker.setStage(StageWritingResult)
		tracker.flush(w.book(a))
	}
	return jctx, res, runErr
}

// retry runs write until it succeeds, the job turns out gone, settleFor
// has passed, or the worker stops: a store error at the end of a job (a
// leader election, a full disk) is usually brief, and the job's work is
// done. A stopping worker tries once: it hands the message back instead
// (a result already stored is found by the next delivery).
func (w *Worker) retry(a *attempt, what string, write func() error) error {
	deadline := time.Now().Add(w.settleFor)
	wait := 100 * time.Millisecond
	for {
		err := write()
		if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) || !time.Now().Before(deadline) || a.workerCtx.Err() != nil {
			return err
		}
		a.log.Warn(what+": will retry", "err", err, "in", wait)
		select {
		case <-time.After(wait):
		case <-a.workerCtx.Done():
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// resultTimeout bounds the write of a result of n bytes: the bookkeeping
// bound plus a second per 256 KiB (a slow disk or a replicated store).
func (w *Worker) resultTimeout(n int) time.Duration {
	return w.bookTimeout + time.Duration(n)*time.Second/(256<<10)
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
		return // the message is the other worker's now: leave it alone
	}
	if status == StatusQueued {
		detail := "the worker stopped"
		if errors.Is(runErr, ErrHandOff) {
			detail = runErr.Error()
		}
		err := w.retry(a, "hand job back", func() error {
			_, err := w.store.Update(w.book(a), a.id, w.mine(a, &lost, func(j *Job) error {
				return j.handBack(w.store.now().UTC(), detail)
			}))
			return err
		})
		if err != nil {
			a.log.Error("hand job back", "err", err)
		}
		a.nak(0)
		a.log.Info("job handed back for redelivery")
		return
	}
	if status == StatusSucceeded {
		b, err := json.Marshal(res)
		if err != nil {
			status, jobErr = StatusFailed, &Error{Code: CodeInternal, Message: "encoding the result: " + err.Error()}
		} else if err := w.retry(a, "store result", func() error {
			return w.store.putObject(w.bookFor(a, w.resultTimeout(len(b))), resultName(a.id, a.n), b)
		}); err != nil {
			a.log.Error("store result; handing the job back", "err", err)
			a.nak(time.Second)
			return
		}
	}
	w.record(a, status, jobErr, &lost)
}

// mine wraps a change of the record so that it applies only while the job
// is this attempt's and not finished (lost is set when it is another's).
func (w *Worker) mine(a *attempt, lost *bool, change func(j *Job) error) func(j *Job) error {
	return func(j *Job) error {
		if j.Attempts != a.n {
			*lost = true
			return errNoChange
		}
		if j.Status.Terminal() {
			return errNoChange
		}
		return change(j)
	}
}

// record writes the attempt's final status and settles the message.
func (w *Worker) record(a *attempt, status Status, jobErr *Error, lost *bool) {
	var final Job
	err := w.retry(a, "record job outcome", func() error {
		var err error
		final, err = w.store.Update(w.book(a), a.id, w.mine(a, lost, func(j *Job) error {
			j.HasResult = status == StatusSucceeded
			detail := ""
			if jobErr != nil {
				detail = jobErr.Code
			}
			return j.finish(w.store.now().UTC(), status, jobErr, detail)
		}))
		return err
	})
	switch {
	case err == nil && *lost:
		// Another worker started the job between our check and this
		// write; its result (under its own attempt's name) stands.
		a.log.Warn("job lost to another worker before its outcome was recorded; writing nothing", "attempt", a.n)
	case err != nil:
		a.log.Error("record job outcome", "err", err)
		a.nak(time.Second)
	default:
		a.ack()
		w.cfg.Metrics.finished(final.Status)
		if jobErr != nil {
			a.log.Info("job ended", "status", final.Status, "code", jobErr.Code, "error", jobErr.Message)
		} else {
			a.log.Info("job ended", "status", final.Status, "seconds", final.Progress.ElapsedSeconds)
		}
	}
}

// timeoutError is the error of a job stopped at its time limit.
func timeoutError(limit time.Duration, attempts int) *Error {
	msg := fmt.Sprintf("the job ran longer than its time limit of %d s and was stopped", int(limit/time.Second))
	if attempts > 1 {
		msg = fmt.Sprintf("the job ran longer than its time limit of %d s (over %d attempts) and was stopped", int(limit/time.Second), attempts)
	}
	return &Error{Code: CodeTimeout, Message: msg}
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
	case jctx.Err() == nil && errors.Is(runErr, ErrHandOff):
		return StatusQueued, nil
	case jctx.Err() != nil && errors.Is(cause, ErrCanceled):
		return StatusCanceled, nil
	case jctx.Err() != nil && errors.Is(cause, ErrTimeout):
		return StatusFailed, timeoutError(w.limit(job), job.Attempts)
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
	w.watchJob(ctx, workerCtx, id, cancel, func(j Job, ok bool) error {
		switch {
		case !ok:
			return ErrCanceled // the record is gone
		case j.Attempts != attempt:
			return ErrLost // another worker runs the job now
		case j.CancelRequested:
			return ErrCanceled
		}
		return nil
	})
}

// watchJob follows job id's record until ctx ends. It cancels with
// ErrShutdown when the worker stops, and with the cause stop returns for an
// update (ok false: the record is gone) once that cause is not nil.
func (w *Worker) watchJob(ctx, workerCtx context.Context, id string, cancel context.CancelCauseFunc, stop func(j Job, ok bool) error) {
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
			if cause := stop(j, ok); cause != nil {
				if ctx.Err() == nil {
					cancel(cause)
				}
				return
			}
		}
	}
}
