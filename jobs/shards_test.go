package jobs

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// shardingRunner queues the job's rows in shards and then returns: with
// wait, once they are all loaded (a result); without, at once, leaving
// its shards behind (as a worker stopped at the wrong moment would).
func shardingRunner(rows, size int, wait bool, release <-chan struct{}) funcRunner {
	return func(ctx context.Context, job Job, t *Tracker) (*Result, error) {
		r := make([]ShardRow, rows)
		for i := range r {
			r[i] = ShardRow{ID: fmt.Sprint(i), ImageURL: fmt.Sprintf("http://example.invalid/%d.png", i)}
		}
		if _, err := t.StartShards(ctx, size, r); err != nil {
			return nil, err
		}
		if wait {
			if _, err := t.WaitShards(ctx); err != nil {
				return nil, err
			}
		}
		if release != nil {
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return &Result{Columns: []string{"id"}}, nil
	}
}

// countingShards loads a shard by making one 4×4 image per row, and counts
// the loads.
type countingShards struct{ loads chan ShardTask }

func (c countingShards) LoadShard(ctx context.Context, req Request, task ShardTask, rows []ShardRow) (*ShardOutput, error) {
	c.loads <- task
	out := &ShardOutput{Width: 4, Height: 4, Pix: make([]byte, len(rows)*48), Failures: []Failure{}}
	for i := range rows {
		out.Rows = append(out.Rows, task.First+i)
	}
	return out, nil
}

// TestShardsCountedOnce: a job of 25 rows in shards of 10 is loaded by
// two workers; each shard is counted once, even when counted again (a
// redelivered shard), and its shards are gone once it ends.
func TestShardsCountedOnce(t *testing.T) {
	n := startNATS(t, t.TempDir(), Config{})
	loads := make(chan ShardTask, 100)
	for k := range 2 {
		startWorker(t, n.store, shardingRunner(25, 10, true, nil), WorkerConfig{Shards: countingShards{loads}, Name: fmt.Sprintf("w%d", k)})
	}
	ctx := context.Background()
	job, err := n.store.Submit(ctx, req())
	if err != nil {
		t.Fatal(err)
	}
	job = waitFor(t, n.store, job.ID, 20*time.Second, func(j Job) bool { return j.Status.Terminal() })
	if job.Status != StatusSucceeded || job.Progress.ImagesLoaded != 25 || job.Shards == nil || len(job.Shards.Done) != 3 {
		t.Fatalf("job %s: progress %+v, shards %+v", job.Status, job.Progress, job.Shards)
	}
	if len(loads) != 3 {
		t.Errorf("%d shard loads, want 3", len(loads))
	}
	task := <-loads
	if counted, err := n.store.CompleteShard(ctx, task, ShardDone{Shard: task.Shard, Worker: "late", Loaded: 10}); err != nil || counted {
		t.Errorf("a shard counted again after its job ended: %v, %v", counted, err)
	}
	if left, err := n.store.ShardObjects(ctx); err != nil || left != 0 {
		t.Errorf("%d shard objects left (%v)", left, err)
	}
}

// TestCompleteShardIsIdempotent counts one shard twice while its job runs:
// the second changes nothing.
func TestCompleteShardIsIdempotent(t *testing.T) {
	n := startNATS(t, t.TempDir(), Config{})
	release := make(chan struct{})
	startWorker(t, n.store, shardingRunner(30, 10, false, release), WorkerConfig{})
	ctx := context.Background()
	job, _ := n.store.Submit(ctx, req())
	job = waitFor(t, n.store, job.ID, 20*time.Second, func(j Job) bool { return j.Shards != nil })
	task := ShardTask{Job: job.ID, Attempt: job.Attempts, Shard: 1, First: 10, Count: 10}
	for try, want := range []bool{true, false} {
		counted, err := n.store.CompleteShard(ctx, task, ShardDone{Shard: 1, Worker: fmt.Sprint("w", try), Loaded: 9, Failed: 1})
		if err != nil || counted != want {
			t.Fatalf("count %d: %v, %v; want %v", try, counted, err, want)
		}
	}
	job, _ = n.store.Get(ctx, job.ID)
	if job.Progress.ImagesLoaded != 9 || job.Progress.ImagesFailed != 1 || len(job.Shards.Done) != 1 || job.Shards.Done[0].Worker != "w0" {
		t.Errorf("progress %+v, shards %+v", job.Progress, job.Shards)
	}
	close(release)
}

// TestSweepRemovesShardsOfEndedJobs: shard objects written after their
// job ended (a shard's worker wrote late, or stopped before removing
// them) go at the second retention sweep; a running job keeps its own.
func TestSweepRemovesShardsOfEndedJobs(t *testing.T) {
	n := startNATS(t, t.TempDir(), Config{})
	ctx := context.Background()
	hold := make(chan struct{})
	defer close(hold)
	keep := shardingRunner(20, 10, false, hold)
	startWorker(t, n.store, funcRunner(func(ctx context.Context, job Job, t *Tracker) (*Result, error) {
		if job.Request.Limit == 1 {
			return &Result{Columns: []string{"id"}}, nil
		}
		return keep(ctx, job, t)
	}), WorkerConfig{Concurrency: 2})
	r := req()
	r.Limit = 1
	ended, _ := n.store.Submit(ctx, r)
	waitFor(t, n.store, ended.ID, 20*time.Second, isStatus(StatusSucceeded))
	for k := range 2 {
		if err := n.store.putJSON(ctx, shardName(ended.ID, 1, k, "meta"), ShardOutput{}); err != nil {
			t.Fatal(err)
		}
	}
	running, _ := n.store.Submit(ctx, req())
	waitFor(t, n.store, running.ID, 20*time.Second, func(j Job) bool { return j.Shards != nil })
	for sweep, want := range []int{2, 0} {
		if _, err := n.store.Sweep(ctx); err != nil {
			t.Fatalf("sweep %d: %v", sweep, err)
		}
		names, err := n.store.shardObjects(ctx, ended.ID)
		if err != nil || len(names) != want {
			t.Errorf("shards of the ended job after sweep %d: %v (%v), want %d", sweep+1, names, err, want)
		}
		if names, err := n.store.shardObjects(ctx, running.ID); err != nil || len(names) != 2 {
			t.Errorf("shards of the running job after sweep %d: %v (%v)", sweep+1, names, err)
		}
	}
}
