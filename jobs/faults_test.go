package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsnemap/tsnemap/internal/testkit"
)

// Faults that must neither fail nor strand an accepted job: a full store
// with a worker running, rolling restarts, crashes, ambiguous writes.
// Each runs on a real embedded NATS JetStream.

// startNATSLimited is startNATS with JetStream's storage capped at
// maxStore bytes (0: no cap).
func startNATSLimited(t *testing.T, dir string, maxStore int64, cfg Config) *testNATS {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	emb, err := StartEmbedded(ctx, EmbeddedConfig{DataDir: dir, MaxStore: maxStore})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := emb.Connect()
	if err != nil {
		emb.Shutdown()
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close(); emb.Shutdown() })
	st, err := Open(ctx, nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &testNATS{emb: emb, store: st}
}

// ballast fills the store with a stream of its own until JetStream refuses
// a write; free empties it (a purge, as an operator freeing the disk).
type ballast struct{ stream jetstream.Stream }

func fillStore(t testing.TB, n *testNATS) *ballast {
	t.Helper()
	ctx := context.Background()
	st, err := n.store.js.CreateStream(ctx, jetstream.StreamConfig{Name: "BALLAST", Subjects: []string{"ballast"}, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("x"), 32<<10)
	for i := 0; ; i++ {
		if _, err := n.store.js.Publish(ctx, "ballast", chunk); err != nil {
			if !errors.Is(storeErr(err), ErrStoreFull) {
				t.Fatalf("filling the store: %v", err)
			}
			break
		}
		if i > 10000 {
			t.Fatal("the store never filled")
		}
	}
	// Full for records too: a job's record cannot be written.
	if _, err := n.store.Submit(ctx, req()); !errors.Is(err, ErrStoreFull) {
		t.Fatalf("submit on a full store: %v, want ErrStoreFull", err)
	}
	return &ballast{stream: st}
}

func (b *ballast) free(t *testing.T) {
	t.Helper()
	if err := b.stream.Purge(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// logCounter is a slog handler that counts records by message.
type logCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func newLogCounter() *logCounter { return &logCounter{n: map[string]int{}} }

func (c *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *logCounter) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	c.n[r.Message]++
	c.mu.Unlock()
	return nil
}
func (c *logCounter) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *logCounter) WithGroup(string) slog.Handler      { return c }
func (c *logCounter) count(msg string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[msg]
}

func succeed(ctx context.Context, job Job, tr *Tracker) (*Result, error) {
	return &Result{Columns: []string{"id"}, Dimensions: 2, Rows: []ResultRow{{ID: "a", Values: []string{"a"}, Coords: []float32{1, 2}}}}, nil
}

// TestStoreFullWithWorkerRunning: jobs accepted before the store filled
// are delivered again and again to a running worker that cannot start
// them (the start write is refused). None of those deliveries started the
// job, so once space returns every one runs, once.
func TestStoreFullWithWorkerRunning(t *testing.T) {
	n := startNATSLimited(t, t.TempDir(), 1<<20, Config{MaxDeliveries: 2})
	ctx := context.Background()
	var ids []string
	for range 4 {
		j, err := n.store.Submit(ctx, req())
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	b := fillStore(t, n)
	logs := newLogCounter()
	startWorker(t, n.store, funcRunner(succeed), WorkerConfig{Logger: slog.New(logs)})
	// Each job refused more times than MaxDeliveries allows starts.
	testkit.Eventually(t, 30*time.Second, func() (bool, string) {
		c := logs.count("start job")
		return c >= len(ids)*4, fmt.Sprintf("%d refused starts", c)
	})
	b.free(t)
	for _, id := range ids {
		j := waitFor(t, n.store, id, 20*time.Second, func(j Job) bool { return j.Status.Terminal() })
		if j.Status != StatusSucceeded || j.Attempts != 1 {
			t.Errorf("job %s: %s after %d attempts (%+v)", id, j.Status, j.Attempts, j.Error)
		}
	}
}

// TestRollingRestartDuringLongJob: three workers are restarted in turn,
// twice round, while one long job runs. Each stop hands the job back
// (nothing crashed), so it is not failed however many times it moved; it
// ends succeeded on its seventh attempt.
func TestRollingRestartDuringLongJob(t *testing.T) {
	n := startNATS(t, t.TempDir(), Config{MaxDeliveries: 3})
	started := make(chan int, 10)
	var release sync.Once
	done := make(chan struct{})
	runner := func(k int) Runner {
		return funcRunner(func(ctx context.Context, job Job, tr *Tracker) (*Result, error) {
			started <- k
			select {
			case <-done:
				return succeed(ctx, job, tr)
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
	}
	var stops [3]func()
	for k := range stops {
		stops[k] = startWorker(t, n.store, runner(k), WorkerConfig{})
	}
	job, err := n.store.Submit(context.Background(), req())
	if err != nil {
		t.Fatal(err)
	}
	for restart := 0; restart < 6; restart++ {
		k := recv(t, started, 20*time.Second, fmt.Sprintf("start %d", restart+1))
		stops[k]() // graceful: the job is handed back
		stops[k] = startWorker(t, n.store, runner(k), WorkerConfig{})
	}
	recv(t, started, 20*time.Second, "the seventh start")
	release.Do(func() { close(done) })
	got := waitFor(t, n.store, job.ID, 20*time.Second, func(j Job) bool { return j.Status.Terminal() })
	handedBack := 0
	for _, e := range got.History {
		if e.Event == EventHandedBack {
			handedBack++
		}
	}
	if got.Status != StatusSucceeded || got.Attempts != 7 || handedBack != 6 {
		t.Fatalf("after six restarts: %s, attempts %d, %d hand-backs (%+v)", got.Status, got.Attempts, handedBack, got.Error)
	}
}

// recv waits for a value from ch, failing the test after within.
func recv[T any](t *testing.T, ch <-chan T, within time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(within):
		t.Fatalf("%s: nothing within %v", what, within)
		panic("unreachable")
	}
}

// TestWindingDownKeepsTheJob: a job times out and its runner takes three
// ack waits to wind down. In-progress acks go on until the outcome is
// written, so the job is not redelivered meanwhile (here: to the same
// worker's free slot) and ends once, as its one attempt's timeout.
func TestWindingDownKeepsTheJob(t *testing.T) {
	ackWait := time.Second
	n := startNATS(t, t.TempDir(), Config{AckWait: ackWait})
	starts := make(chan int, 4)
	startWorker(t, n.store, funcRunner(func(ctx context.Context, job Job, tr *Tracker) (*Result, error) {
		starts <- job.Attempts
		<-ctx.Done()
		<-time.After(3 * ackWait) // the work of winding down, deaf to everything
		return nil, ctx.Err()
	}), WorkerConfig{Concurrency: 2})
	r := req()
	r.TimeoutSeconds = 1
	job, _ := n.store.Submit(context.Background(), r)
	got := waitFor(t, n.store, job.ID, 30*time.Second, func(j Job) bool { return j.Status.Terminal() })
	if got.Status != StatusFailed || got.Error == nil || got.Error.Code != CodeTimeout || got.Attempts != 1 || len(starts) != 1 {
		t.Fatalf("job %s, attempts %d, %d starts, error %+v", got.Status, got.Attempts, len(starts), got.Error)
	}
}

// TestFinalWriteRetried: the store fills just as a job succeeds, so its
// result and outcome cannot be written. The worker keeps the job (acks in
// progress) and retries; once space returns the job is recorded as
// succeeded, on its one attempt, with its result.
func TestFinalWriteRetried(t *testing.T) {
	n := startNATSLimited(t, t.TempDir(), 1<<20, Config{AckWait: time.Second})
	filled := make(chan *ballast, 1)
	logs := newLogCounter()
	startWorker(t, n.store, funcRunner(func(ctx context.Context, job Job, tr *Tracker) (*Result, error) {
		filled <- fillStore(t, n) // fails the test (not the job) if it cannot
		return succeed(ctx, job, tr)
	}), WorkerConfig{Logger: slog.New(logs)}, func(w *Worker) { w.settleFor = time.Minute })
	job, err := n.store.Submit(context.Background(), req())
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, func() (bool, string) {
		return logs.count("store result: will retry") >= 2, "no retried result write yet"
	})
	recv(t, filled, time.Second, "the filled store").free(t)
	got := waitFor(t, n.store, job.ID, 20*time.Second, func(j Job) bool { return j.Status.Terminal() })
	if got.Status != StatusSucceeded || got.Attempts != 1 {
		t.Fatalf("job %s after %d attempts (%+v)", got.Status, got.Attempts, got.Error)
	}
	if _, err := n.store.Result(context.Background(), job.ID); err != nil {
		t.Fatal(err)
	}
}

// TestTimeoutSpansAttempts: timeout_seconds is the job's, not each
// attempt's. The first attempt runs 1.5 s of a 2 s limit (on the store's
// clock) and is handed back; the second gets what is left.
func TestTimeoutSpansAttempts(t *testing.T) {
	n := startNATS(t, t.TempDir(), Config{})
	var offset atomic.Int64
	n.store.now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	started, causes := make(chan string, 1), make(chan error, 1)
	stop := startWorker(t, n.store, blockingRunner(started, causes), WorkerConfig{})
	r := req()
	r.TimeoutSeconds = 2
	job, _ := n.store.Submit(context.Background(), r)
	recv(t, started, 10*time.Second, "first start")
	offset.Store(int64(1500 * time.Millisecond))
	stop()
	<-causes
	left := make(chan time.Duration, 1)
	startWorker(t, n.store, funcRunner(func(ctx context.Context, job Job, tr *Tracker) (*Result, error) {
		d, _ := ctx.Deadline()
		left <- time.Until(d)
		<-ctx.Done()
		return nil, ctx.Err()
	}), WorkerConfig{})
	got := waitFor(t, n.store, job.ID, 10*time.Second, func(j Job) bool { return j.Status.Terminal() })
	if got.Status != StatusFailed || got.Error == nil || got.Error.Code != CodeTimeout {
		t.Fatalf("job %s (%+v)", got.Status, got.Error)
	}
	// At most 0.5 s was left (less if the first attempt took real time to
	// start and stop; none at all on a slow machine, and then the job
	// fails at its second start without running).
	select {
	case d := <-left:
		if d > 500*time.Millisecond {
			t.Errorf("the second attempt could run %v; at most 0.5 s of the limit was left", d)
		}
	default:
		if got.Attempts != 1 {
			t.Errorf("a second attempt started (%d) but never ran", got.Attempts)
		}
	}
}

// TestStoredResultOfACrashedAttemptStands: a worker dies after storing
// its result but before recording the outcome. The next delivery records
// the job as succeeded with that result, without running it again.
func TestStoredResultOfACrashedAttemptStands(t *testing.T) {
	cfg := Config{AckWait: time.Second}
	n := startNATS(t, t.TempDir(), cfg)
	started, causes := make(chan string, 1), make(chan error, 1)
	crash := crashableWorker(t, n, blockingRunner(started, causes), cfg)
	ctx := context.Background()
	job, _ := n.store.Submit(ctx, req())
	recv(t, started, 10*time.Second, "start")
	res, _ := succeed(ctx, job, nil)
	if err := n.store.PutResult(ctx, job.ID, 1, res); err != nil {
		t.Fatal(err)
	}
	crash()
	startWorker(t, n.store, funcRunner(func(ctx context.Context, job Job, tr *Tracker) (*Result, error) {
		t.Error("the job was run again")
		return nil, errors.New("run again")
	}), WorkerConfig{})
	got := waitFor(t, n.store, job.ID, 10*time.Second, func(j Job) bool { return j.Status.Terminal() })
	if got.Status != StatusSucceeded || got.Attempts != 1 {
		t.Fatalf("job %s after %d attempts (%+v)", got.Status, got.Attempts, got.Error)
	}
	if r, err := n.store.Result(ctx, job.ID); err != nil || r.Rows[0].ID != "a" {
		t.Fatalf("result %+v, %v", r, err)
	}
}

// TestSubmitNeverStrandsAJob submits under request deadlines so short
// that they pass at every point of Submit, the record's write included.
// Whatever Submit answers, no record may be left queued without its work
// message (it would be queued for ever, holding a quota slot).
func TestSubmitNeverStrandsAJob(t *testing.T) {
	n := startNATS(t, t.TempDir(), Config{})
	st := n.store
	ok, failed := 0, 0
	for i := range 400 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(20+i*5)*time.Microsecond)
		if _, err := st.Submit(ctx, req()); err == nil {
			ok++
		} else {
			failed++
		}
		cancel()
	}
	t.Logf("%d submits answered, %d refused", ok, failed)
	ctx := context.Background()
	queued := map[string]bool{}
	ids, err := st.ids(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if j, err := st.Get(ctx, id); err == nil && j.Status == StatusQueued {
			queued[id] = true
		}
	}
	info, err := st.stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		if m, err := st.stream.GetMsg(ctx, seq); err == nil {
			delete(queued, string(m.Data))
		}
	}
	if len(queued) > 0 {
		t.Errorf("%d queued jobs have no work message: stranded", len(queued))
	}
}

// TestWorkerClockAheadKeepsNewJobs: a worker whose clock runs 15 s ahead
// of the NATS server gets a work message before its record exists (as
// Submit writes them, message first). It must wait for the record, not
// take the message for an orphan.
func TestWorkerClockAheadKeepsNewJobs(t *testing.T) {
	n := startNATS(t, t.TempDir(), Config{})
	st := n.store
	st.now = func() time.Time { return time.Now().Add(15 * time.Second) }
	logs := newLogCounter()
	ran := make(chan string, 1)
	startWorker(t, st, funcRunner(func(ctx context.Context, job Job, tr *Tracker) (*Result, error) {
		ran <- job.ID
		return succeed(ctx, job, tr)
	}), WorkerConfig{Logger: slog.New(logs)})
	ctx := context.Background()
	id := NewID(time.Now())
	if _, err := st.js.Publish(ctx, workSubject, []byte(id), jetstream.WithMsgID(id)); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, func() (bool, string) {
		c := logs.count("no record for the job yet")
		return c >= 2, fmt.Sprintf("the worker saw the message %d times without its record", c)
	})
	b, _ := json.Marshal(Job{ID: id, Status: StatusQueued, Stage: StageQueued, Request: req(), CreatedAt: time.Now().UTC()})
	if _, err := st.kv.Create(ctx, id, b); err != nil {
		t.Fatal(err)
	}
	recv(t, ran, 20*time.Second, "the job's run")
	waitFor(t, st, id, 10*time.Second, isStatus(StatusSucceeded))
}

// TestOpenNeverChangesSharedSettings: a node asking for other replicas or
// another ack wait than the shared ones is refused with a message naming
// both; a node asking for nothing takes them as they are; only an explicit
// Reconfigure changes them.
func TestOpenNeverChangesSharedSettings(t *testing.T) {
	n := startNATS(t, t.TempDir(), Config{AckWait: 2 * time.Second})
	ctx := context.Background()
	nc, err := n.emb.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ackWait := func() time.Duration {
		c, err := n.store.stream.Consumer(ctx, workConsumer)
		if err != nil {
			t.Fatal(err)
		}
		return c.CachedInfo().Config.AckWait
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{AckWait: 5 * time.Second}, "ack wait is 2s, this node asks for 5s"},
		{Config{Replicas: 3}, "has 1 replicas, this node asks for 3"},
	} {
		if _, err := Open(ctx, nc, tc.cfg); !errors.Is(err, ErrSharedConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%+v) = %v, want ErrSharedConfig saying %q", tc.cfg, err, tc.want)
		}
		if got := ackWait(); got != 2*time.Second {
			t.Fatalf("a refused node changed the ack wait to %v", got)
		}
	}
	st, err := Open(ctx, nc, Config{})
	if err != nil || st.Config().AckWait != 2*time.Second || st.Config().Replicas != 1 {
		t.Fatalf("Open with nothing set: %+v, %v", st, err)
	}
	if _, err := Open(ctx, nc, Config{AckWait: 5 * time.Second, Reconfigure: true}); err != nil {
		t.Fatal(err)
	}
	if got := ackWait(); got != 5*time.Second {
		t.Errorf("after Reconfigure the ack wait is %v, want 5s", got)
	}
}

// TestResultWriteBoundGrowsWithSize: the bound on writing a result is the
// bookkeeping bound plus a second per 256 KiB, so a large result on a slow
// store is not cut off (and redone) at a fixed 10 s.
func TestResultWriteBoundGrowsWithSize(t *testing.T) {
	w := NewWorker(nil, nil, WorkerConfig{})
	for _, tc := range []struct {
		bytes int
		want  time.Duration
	}{
		{0, 10 * time.Second},
		{256 << 10, 11 * time.Second},
		{100 << 20, 410 * time.Second},
	} {
		if got := w.resultTimeout(tc.bytes); got != tc.want {
			t.Errorf("resultTimeout(%d) = %v, want %v", tc.bytes, got, tc.want)
		}
	}
}
