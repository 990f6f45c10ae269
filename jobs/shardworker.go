package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ShardLoader loads the images of one shard of a large job (package
// pipeline). It must return soon after ctx is cancelled; a returned
// *Error fails the whole job with its code; one wrapping ErrShardBusy
// hands the shard back for another worker (or this one, later).
type ShardLoader interface {
	LoadShard(ctx context.Context, req Request, task ShardTask, rows []ShardRow) (*ShardOutput, error)
}

// ErrShardBusy: this worker cannot load the shard now (its memory is
// taken by other jobs); another worker may.
var ErrShardBusy = errors.New("this worker is busy")

// defaultWorkerName names a worker in the history of the shards it loads.
func defaultWorkerName() string {
	h, err := os.Hostname()
	if err != nil {
		h = "worker"
	}
	return h + "-" + strconv.Itoa(os.Getpid())
}

// shardWanted reports whether shard t of job still needs loading.
func shardWanted(j Job, t ShardTask) bool {
	return j.Status == StatusRunning && j.Attempts == t.Attempt && !j.CancelRequested &&
		j.Shards != nil && j.Shards.Attempt == t.Attempt && j.Shards.Error == nil && !j.Shards.has(t.Shard)
}

// runShards takes shards and loads them until ctx ends, one at a time per
// slot. Shards are pulled only when a slot is free, so a busy worker never
// holds a shard another could load.
func (w *Worker) runShards(ctx context.Context) {
	cons, err := w.store.shardMsgs(ctx)
	if err != nil {
		w.log.Error("shard consumer", "err", err)
		return
	}
	var wg sync.WaitGroup
	for range w.cfg.ShardConcurrency {
		wg.Go(func() { w.pull(ctx, cons, "fetch shards", w.handleShard) })
	}
	wg.Wait()
}

// handleShard loads one shard: unless its job no longer wants it, it loads
// the images (in-progress acks meanwhile; a cancel, the job's end or the
// worker's stop ends the load), stores the output, counts the shard in
// the record (once) and acks. A stopping worker hands the shard back.
func (w *Worker) handleShard(ctx context.Context, msg jetstream.Msg) {
	var t ShardTask
	if err := json.Unmarshal(msg.Data(), &t); err != nil || !ValidID(t.Job) {
		w.log.Error("dropping a malformed shard message", "err", err)
		_ = msg.Term()
		return
	}
	log := w.log.With("job", t.Job, "shard", t.Shard)
	book := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), w.bookTimeout)
	}
	bctx, bcancel := book()
	job, err := w.store.Get(bctx, t.Job)
	bcancel()
	switch {
	case errors.Is(err, ErrNotFound) || err == nil && !shardWanted(job, t):
		_ = msg.Ack()
		return
	case err != nil:
		log.Warn("read the job of a shard", "err", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	aliveCtx, aliveStop := context.WithCancel(context.WithoutCancel(ctx))
	var side sync.WaitGroup
	side.Go(func() { w.keepAlive(aliveCtx, msg) })
	defer func() { aliveStop(); side.Wait() }()

	sctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancel(nil)
	side.Go(func() { w.watchShard(sctx, ctx, t, cancel) })
	log.Info("shard started", "rows", t.Count, "worker", w.cfg.Name)
	out, err := w.loadShard(sctx, job.Request, t)
	cause := context.Cause(sctx)
	switch {
	case sctx.Err() != nil && errors.Is(cause, ErrShutdown):
		log.Info("shard handed back: the worker is stopping")
		aliveStop()
		_ = msg.Nak()
	case sctx.Err() != nil:
		log.Info("shard stopped", "why", cause)
		_ = msg.Ack()
	case errors.Is(err, ErrShardBusy):
		log.Info("shard handed back", "why", err)
		aliveStop()
		_ = msg.NakWithDelay(2 * time.Second)
	case err != nil:
		w.failShard(t, err, log)
		_ = msg.Ack()
	default:
		w.finishShard(ctx, msg, t, out, log)
	}
}

func (w *Worker) loadShard(ctx context.Context, req Request, t ShardTask) (*ShardOutput, error) {
	rows, err := w.store.ShardRows(ctx, t)
	if err != nil {
		return nil, fmt.Errorf("read the rows of shard %d: %w", t.Shard, err)
	}
	return w.cfg.Shards.LoadShard(ctx, req, t, rows)
}

// finishShard stores a loaded shard and counts it. A shard whose job
// ended meanwhile removes what it stored (the job's own clean-up may have
// run before); one counted by another worker first is left as it is (the
// same images, loaded again).
func (w *Worker) finishShard(ctx context.Context, msg jetstream.Msg, t ShardTask, out *ShardOutput, log *slog.Logger) {
	bctx, bcancel := context.WithTimeout(context.WithoutCancel(ctx), w.resultTimeout(len(out.Pix)))
	defer bcancel()
	if err := w.store.PutShardOutput(bctx, t, out); err != nil {
		log.Error("store shard; handing it back", "err", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	d := ShardDone{Shard: t.Shard, Worker: w.cfg.Name, Loaded: len(out.Rows), Failed: len(out.Failures)}
	counted, err := w.store.CompleteShard(bctx, t, d)
	if err != nil {
		log.Error("count shard; handing it back", "err", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if counted {
		w.cfg.Metrics.images(d.Loaded, d.Failed) // the loading worker's metrics count them
	} else if j, err := w.store.Get(bctx, t.Job); err != nil || j.Status.Terminal() || j.Attempts != t.Attempt {
		for _, part := range []string{"meta", "pix", "rows"} {
			_ = w.store.purgeObject(bctx, shardName(t.Job, t.Attempt, t.Shard, part))
		}
	}
	_ = msg.Ack()
	log.Info("shard loaded", "loaded", d.Loaded, "failed", d.Failed, "counted", counted, "worker", w.cfg.Name)
}

// failShard records a shard that cannot be loaded (its rows unreadable,
// more than this worker's memory budget): the job fails with its error.
func (w *Worker) failShard(t ShardTask, err error, log *slog.Logger) {
	log.Error("shard failed", "err", err)
	var je *Error
	if !errors.As(err, &je) {
		je = &Error{Code: CodeInternal, Message: fmt.Sprintf("loading shard %d: %v", t.Shard, err)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.bookTimeout)
	defer cancel()
	_, uerr := w.store.Update(ctx, t.Job, func(j *Job) error {
		if !shardWanted(*j, t) {
			return errNoChange
		}
		j.Shards.Error = je
		return nil
	})
	if uerr != nil {
		log.Error("record a failed shard", "err", uerr)
	}
}

// watchShard ends a shard's load when its job is canceled, ends, starts
// another attempt or has the shard counted by another worker (cause
// ErrCanceled), and when the worker stops (ErrShutdown).
func (w *Worker) watchShard(ctx, workerCtx context.Context, t ShardTask, cancel context.CancelCauseFunc) {
	w.watchJob(ctx, workerCtx, t.Job, cancel, func(j Job, ok bool) error {
		if !ok || !shardWanted(j, t) {
			return ErrCanceled
		}
		return nil
	})
}
