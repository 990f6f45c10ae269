package jobs

import (
	"context"
	"testing"
	"time"
)

// TestSupersededAttemptWritesNothing: while a worker's attempt hangs (its
// runner ignores cancellation), the job is started again elsewhere and
// finishes — here the test plays that other worker on the store. When the
// hung runner returns, its worker must change nothing: not the record, not
// the result the newer attempt wrote.
func TestSupersededAttemptWritesNothing(t *testing.T) {
	n := startNATS(t, t.TempDir(), Config{})
	started, release := make(chan struct{}), make(chan struct{})
	returned := make(chan error, 1)
	handled := make(chan string, 1)
	startWorker(t, n.store, funcRunner(func(ctx context.Context, job Job, tr *Tracker) (*Result, error) {
		close(started)
		<-release // hung: deaf to ctx
		tr.SetStage(StageOptimizing)
		returned <- ctx.Err()
		return &Result{Columns: []string{"id"}, Dimensions: 2, Rows: []ResultRow{{ID: "stale", Values: []string{"stale"}, Coords: []float32{9, 9}}}}, nil
	}), WorkerConfig{}, func(w *Worker) { w.handled = func(id string) { handled <- id } })
	ctx := context.Background()
	job, err := n.store.Submit(ctx, req())
	if err != nil {
		t.Fatal(err)
	}
	<-started
	// The other worker: a redelivery starts attempt 2 and finishes it.
	newer := &Result{Columns: []string{"id"}, Dimensions: 2, Rows: []ResultRow{{ID: "fresh", Values: []string{"fresh"}, Coords: []float32{1, 1}}}}
	if _, err := n.store.Update(ctx, job.ID, func(j *Job) error {
		now := time.Now().UTC()
		j.record(now, EventRetried, j.Attempts+1, "test: the first worker went silent")
		j.Attempts++
		j.record(now, EventStarted, j.Attempts, "")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := n.store.PutResult(ctx, job.ID, 2, newer); err != nil {
		t.Fatal(err)
	}
	done, err := n.store.Update(ctx, job.ID, func(j *Job) error {
		j.HasResult = true
		return j.finish(time.Now().UTC(), StatusSucceeded, nil, "")
	})
	if err != nil {
		t.Fatal(err)
	}
	close(release)
	// The worker may or may not have seen the takeover (its watch) by
	// now; either way, once the runner returns it must find it and write
	// nothing.
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("the runner did not return")
	}
	// Once the stale worker is done with the message (every write it
	// would make is made), the record must be as the newer attempt left it.
	select {
	case <-handled:
	case <-time.After(10 * time.Second):
		t.Fatal("the worker did not finish with the message")
	}
	got, err := n.store.Get(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Attempts != 2 || got.Status != StatusSucceeded || len(got.History) != len(done.History) || got.Stage != StageFinished {
		t.Fatalf("the superseded attempt changed the record: %+v", got)
	}
	res, err := n.store.Result(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows[0].ID != "fresh" {
		t.Errorf("result is the superseded attempt's: %+v", res.Rows)
	}
}
