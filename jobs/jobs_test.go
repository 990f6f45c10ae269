package jobs

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/internal/testkit"
)

type testNATS struct {
	emb   *Embedded
	store *Store
}

func startNATS(t *testing.T, dir string, cfg Config) *testNATS {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	emb, err := StartEmbedded(ctx, EmbeddedConfig{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := emb.Connect()
	if err != nil {
		emb.Shutdown()
		t.Fatal(err)
	}
	st, err := Open(ctx, nc, cfg)
	if err != nil {
		nc.Close()
		emb.Shutdown()
		t.Fatal(err)
	}
	tn := &testNATS{emb: emb, store: st}
	t.Cleanup(func() { nc.Close(); emb.Shutdown() })
	return tn
}

// funcRunner runs a job by calling a function: the tests' stand-in for the
// real pipeline, which jobs does not know about.
type funcRunner func(ctx context.Context, job Job, t *Tracker) (*Result, error)

func (f funcRunner) Run(ctx context.Context, job Job, t *Tracker) (*Result, error) {
	return f(ctx, job, t)
}

func startWorker(t *testing.T, st *Store, r Runner, cfg WorkerConfig) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cfg.Logger = testkit.QuietLogger()
	w := NewWorker(st, r, cfg)
	// Short enough that a job outliving it shows whether the bookkeeping
	// deadlines are taken per write (as they must be) or per job.
	w.bookTimeout = 300 * time.Millisecond
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return stop
}

func waitFor(t *testing.T, st *Store, id string, within time.Duration, ok func(Job) bool) Job {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		job, err := st.Get(context.Background(), id)
		if err != nil {
			t.Fatalf("get %s: %v", id, err)
		}
		if ok(job) {
			return job
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s did not reach the expected state within %v; it is %s/%s", id, within, job.Status, job.Stage)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func isStatus(s Status) func(Job) bool { return func(j Job) bool { return j.Status == s } }

func req() Request {
	return Request{DatasetURL: "http://example.invalid/data.tab", IDColumn: "id", Method: "tsne", Dimensions: 2,
		Perplexity: 30, Iterations: 100, EarlyExaggeration: 12, Init: "pca", Backend: "auto"}
}

func TestSubmitRunSucceed(t *testing.T) {
	n := startNATS(t, t.TempDir(), Config{})
	var sawStage atomic.Bool
	startWorker(t, n.store, funcRunner(func(ctx context.Context, job Job, tr *Tracker) (*Result, error) {
		tr.SetBackend("test")
		tr.SetStage(StageOptimizing)
		tr.UpdateProgress(func(p *Progress) { p.Iteration = 7 })
		tr.flush(ctx)
		if j, _ := n.store.Get(ctx, job.ID); j.Stage == StageOptimizing && j.Progress.Iteration == 7 {
			sawStage.Store(true)
		}
		return &Result{Columns: []string{"id"}, Dimensions: 2,
			Rows: []ResultRow{{ID: "a", Values: []string{"a"}, Coords: []float32{1, 2}}}}, nil
	}), WorkerConfig{})

	ctx := context.Background()
	job, err := n.store.Submit(ctx, req())
	if err != nil {
		t.Fatal(err)
	}
	if job.Status != StatusQueued || !ValidID(job.ID) || len(job.ID) != 26 {
		t.Fatalf("submitted job = %+v", job)
	}
	got := waitFor(t, n.store, job.ID, 10*time.Second, isStatus(StatusSucceeded))
	if got.Stage != StageFinished || got.StartedAt == nil || got.FinishedAt == nil || got.Backend != "test" || got.Attempts != 1 {
		t.Errorf("finished job = %+v", got)
	}
	if !sawStage.Load() {
		t.Error("progress written by the tracker was not visible in the record")
	}
	res, err := n.store.Result(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 1 || res.Rows[0].Coords[1] != 2 {
		t.Errorf("result = %+v", res)
	}
}

func TestResultBeforeSuccessIsConflict(t *testing.T) {
	n := startNATS(t, t.TempDir(), Config{})
	job, err := n.store.Submit(context.Background(), req())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.store.Result(context.Background(), job.ID); !errors.Is(err, ErrConflict) {
		t.Fatalf("Result of a queued job: %v, want ErrConflict", err)
	}
	if _, err := n.store.Get(context.Background(), "NOPE"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get unknown: %v, want ErrNotFound", err)
	}
}

func TestRunnerErrorCodes(t *testing.T) {
	n := startNATS(t, t.TempDir(), Config{})
	startWorker(t, n.store, funcRunner(func(ctx context.Context, job Job, tr *Tracker) (*Result, error) {
		if job.Request.Perplexity == 99 {
			return nil, fmt.Errorf("embed: %w", &Error{Code: CodePerplexityTooLarge, Message: "too large"})
		}
		return nil, errors.New("disk on fire")
	}), WorkerConfig{})
	ctx := context.Background()
	r := req()
	r.Perplexity = 99
	a, _ := n.store.Submit(ctx, r)
	b, _ := n.store.Submit(ctx, req())
	ja := waitFor(t, n.store, a.ID, 10*time.Second, isStatus(StatusFailed))
	jb := waitFor(t, n.store, b.ID, 10*time.Second, isStatus(StatusFailed))
	if ja.Error == nil || ja.Error.Code != CodePerplexityTooLarge {
		t.Errorf("job a error = %+v", ja.Error)
	}
	if jb.Error == nil || jb.Error.Code != CodeInternal || jb.Error.Message != "disk on fire" {
		t.Errorf("job b error = %+v", jb.Error)
	}
}

// blockingRunner runs until its context ends and reports the cause.
func blockingRunner(started chan<- string, causes chan<- error) funcRunner {
	return func(ctx context.Context, job Job, tr *Tracker) (*Result, error) {
		started <- job.ID
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return nil, ctx.Err()
	}
}

func TestCancelRunningStopsWithinTwoSeconds(t *testing.T) {
	n := startNATS(t, t.TempDir(), Config{})
	started, causes := make(chan string, 1), make(chan error, 1)
	startWorker(t, n.store, blockingRunner(started, causes), WorkerConfig{})
	ctx := context.Background()
	job, _ := n.store.Submit(ctx, req())
	<-started
	t0 := time.Now()
	j, deleted, err := n.store.Cancel(ctx, job.ID)
	if err != nil || deleted || !j.CancelRequested {
		t.Fatalf("Cancel = %+v, %v, %v", j, deleted, err)
	}
	if cause := <-causes; !errors.Is(cause, ErrCanceled) {
		t.Errorf("runner's cause = %v", cause)
	}
	got := waitFor(t, n.store, job.ID, 2*time.Second, isStatus(StatusCanceled))
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("canceled after %v", d)
	}
	if got.Error != nil || got.FinishedAt == nil {
		t.Errorf("canceled job = %+v", got)
	}
	// A DELETE of the finished job deletes it; another finds nothing.
	if _, deleted, err := n.store.Cancel(ctx, job.ID); err != nil || !deleted {
		t.Fatalf("second Cancel: deleted=%v err=%v", deleted, err)
	}
	if _, _, err := n.store.Cancel(ctx, job.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("third Cancel: %v, want ErrNotFound", err)
	}
}

func TestCancelQueued(t *testing.T) {
	n := startNATS(t, t.TempDir(), Config{})
	ctx := context.Background()
	job, _ := n.store.Submit(ctx, req())
	j, deleted, err := n.store.Cancel(ctx, job.ID)
	if err != nil || deleted || j.Status != StatusCanceled {
		t.Fatalf("Cancel queued = %s, %v, %v", j.Status, deleted, err)
	}
	// A worker started afterwards takes the message and drops it.
	ran := make(chan string, 1)
	startWorker(t, n.store, funcRunner(func(ctx context.Context, job Job, tr *Tracker) (*Result, error) {
		ran <- job.ID
		return &Result{}, nil
	}), WorkerConfig{})
	deadline := time.Now().Add(5 * time.Second)
	for {
		info, err := n.store.stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the canceled job's message was not consumed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case id := <-ran:
		t.Fatalf("canceled job %s was run", id)
	default:
	}
}

func TestTimeout(t *testing.T) {
	n := startNATS(t, t.TempDir(), Config{})
	started, causes := make(chan string, 1), make(chan error, 1)
	startWorker(t, n.store, blockingRunner(started, causes), WorkerConfig{})
	r := req()
	r.TimeoutSeconds = 1
	job, _ := n.store.Submit(context.Background(), r)
	got := waitFor(t, n.store, job.ID, 5*time.Second, isStatus(StatusFailed))
	if got.Error == nil || got.Error.Code != CodeTimeout {
		t.Errorf("error = %+v", got.Error)
	}
	if cause := <-causes; !errors.Is(cause, ErrTimeout) {
		t.Errorf("cause = %v", cause)
	}
}

func TestShutdownHandsJobBack(t *testing.T) {
	n := startNATS(t, t.TempDir(), Config{})
	started, causes := make(chan string, 1), make(chan error, 1)
	stop := startWorker(t, n.store, blockingRunner(started, causes), WorkerConfig{})
	ctx := context.Background()
	job, _ := n.store.Submit(ctx, req())
	<-started
	stop()
	if cause := <-causes; !errors.Is(cause, ErrShutdown) {
		t.Errorf("cause = %v", cause)
	}
	if j, _ := n.store.Get(ctx, job.ID); j.Status != StatusQueued {
		t.Fatalf("after shutdown the job is %s, want queued", j.Status)
	}
	startWorker(t, n.store, funcRunner(func(ctx context.Context, job Job, tr *Tracker) (*Result, error) {
		return &Result{Columns: []string{"id"}}, nil
	}), WorkerConfig{})
	got := waitFor(t, n.store, job.ID, 10*time.Second, isStatus(StatusSucceeded))
	if got.Attempts != 2 {
		t.Errorf("attempts = %d, want 2", got.Attempts)
	}
}

func TestRestartKeepsQueuedJobs(t *testing.T) {
	dir := t.TempDir()
	n := startNATS(t, dir, Config{})
	ctx := context.Background()
	job, err := n.store.Submit(ctx, req())
	if err != nil {
		t.Fatal(err)
	}
	n.store.nc.Close()
	n.emb.Shutdown()

	n2 := startNATS(t, dir, Config{})
	startWorker(t, n2.store, funcRunner(func(ctx context.Context, job Job, tr *Tracker) (*Result, error) {
		return &Result{Columns: []string{"id"}}, nil
	}), WorkerConfig{})
	waitFor(t, n2.store, job.ID, 10*time.Second, isStatus(StatusSucceeded))
}

func TestMaxDeliveriesFailsTheJob(t *testing.T) {
	n := startNATS(t, t.TempDir(), Config{MaxDeliveries: 2})
	ctx := context.Background()
	job, _ := n.store.Submit(ctx, req())
	for i := 0; i < 2; i++ {
		started, causes := make(chan string, 1), make(chan error, 1)
		stop := startWorker(t, n.store, blockingRunner(started, causes), WorkerConfig{})
		<-started
		stop()
		<-causes
	}
	startWorker(t, n.store, funcRunner(func(ctx context.Context, job Job, tr *Tracker) (*Result, error) {
		t.Error("a job past its deliveries was run")
		return nil, nil
	}), WorkerConfig{})
	got := waitFor(t, n.store, job.ID, 10*time.Second, isStatus(StatusFailed))
	if got.Error == nil || got.Error.Code != CodeInternal {
		t.Errorf("error = %+v", got.Error)
	}
}

func TestListPagesNewestFirst(t *testing.T) {
	n := startNATS(t, t.TempDir(), Config{})
	ctx := context.Background()
	var ids []string
	for i := 0; i < 5; i++ {
		j, err := n.store.Submit(ctx, req())
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
		time.Sleep(2 * time.Millisecond) // distinct milliseconds, so the order is defined
	}
	if _, _, err := n.store.Cancel(ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	var got []string
	token := ""
	for pages := 0; ; pages++ {
		page, next, err := n.store.List(ctx, "", 2, token)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range page {
			got = append(got, j.ID)
		}
		if next == "" {
			break
		}
		token = next
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
	}
	want := []string{ids[4], ids[3], ids[2], ids[1], ids[0]}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("pages = %v, want %v", got, want)
	}
	canceled, _, err := n.store.List(ctx, StatusCanceled, 10, "")
	if err != nil || len(canceled) != 1 || canceled[0].ID != ids[1] {
		t.Errorf("canceled = %v, %v", canceled, err)
	}
}

func TestSweepDeletesOldFinishedJobs(t *testing.T) {
	n := startNATS(t, t.TempDir(), Config{Retention: time.Hour})
	ctx := context.Background()
	old, _ := n.store.Submit(ctx, req())
	keep, _ := n.store.Submit(ctx, req())
	if _, _, err := n.store.Cancel(ctx, old.ID); err != nil {
		t.Fatal(err)
	}
	n.store.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	count, err := n.store.Sweep(ctx)
	if err != nil || count != 1 {
		t.Fatalf("Sweep = %d, %v", count, err)
	}
	if _, err := n.store.Get(ctx, old.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("old job: %v", err)
	}
	if _, err := n.store.Get(ctx, keep.ID); err != nil {
		t.Errorf("queued job was swept: %v", err)
	}
}

func TestNewIDIsSortableAndUnique(t *testing.T) {
	seen := map[string]bool{}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	prev := ""
	for i := 0; i < 1000; i++ {
		id := NewID(base.Add(time.Duration(i) * time.Millisecond))
		if len(id) != 26 || !ValidID(id) || seen[id] {
			t.Fatalf("bad id %q", id)
		}
		if id <= prev {
			t.Fatalf("%q sorts before %q", id, prev)
		}
		seen[id], prev = true, id
	}
}

func TestJobLongerThanBookkeepingDeadlineSucceeds(t *testing.T) {
	n := startNATS(t, t.TempDir(), Config{})
	startWorker(t, n.store, funcRunner(func(ctx context.Context, job Job, tr *Tracker) (*Result, error) {
		select { // the work: longer than one bookkeeping deadline
		case <-time.After(time.Second):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return &Result{Columns: []string{"id"}}, nil
	}), WorkerConfig{})
	job, _ := n.store.Submit(context.Background(), req())
	got := waitFor(t, n.store, job.ID, 10*time.Second, func(j Job) bool { return j.Status.Terminal() })
	if got.Status != StatusSucceeded || got.Attempts != 1 {
		t.Errorf("job = %s after %d attempts (%+v)", got.Status, got.Attempts, got.Error)
	}
}
