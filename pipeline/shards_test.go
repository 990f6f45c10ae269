package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/cpu"
	"github.com/tsnemap/tsnemap/internal/testkit"
	"github.com/tsnemap/tsnemap/jobs"
	"github.com/tsnemap/tsnemap/loader"
)

// cluster is an embedded NATS JetStream with workers in this process,
// each with its own connection, store and pipeline, all taking shards.
type cluster struct {
	emb    *jobs.Embedded
	stores []*jobs.Store
	mods   []func(*loader.Config) // of every worker's loader
}

func startCluster(t *testing.T, n int, mods ...func(*loader.Config)) *cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	emb, err := jobs.StartEmbedded(ctx, jobs.EmbeddedConfig{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	c := &cluster{emb: emb, mods: mods}
	for k := range n {
		c.add(t, fmt.Sprintf("w%d", k), false)
	}
	return c
}

// add starts a worker; with gpu it says it has a GPU, whose backend is
// a CPU one here (so its results are the CPU's).
func (c *cluster) add(t *testing.T, name string, gpu bool) {
	t.Helper()
	nc, err := c.emb.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := jobs.Open(ctx, nc, jobs.Config{})
	if err != nil {
		t.Fatal(err)
	}
	c.stores = append(c.stores, st)
	p := newPipeline(t, c.mods...)
	if gpu {
		p.GPU = cpu.New(1)
	}
	wctx, stop := context.WithCancel(context.Background())
	w := jobs.NewWorker(st, p, jobs.WorkerConfig{Logger: testkit.QuietLogger(), Shards: p, Name: name, GPU: gpu})
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(wctx) }()
	t.Cleanup(func() { stop(); <-done })
}

func (c *cluster) run(t *testing.T, r jobs.Request) (jobs.Job, *jobs.Result) {
	t.Helper()
	job, err := c.stores[0].Submit(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	return c.wait(t, job)
}

func (c *cluster) wait(t *testing.T, job jobs.Job) (jobs.Job, *jobs.Result) {
	t.Helper()
	ctx := context.Background()
	st := c.stores[0]
	var err error
	testkit.Eventually(t, 60*time.Second, func() (bool, string) {
		if job, err = st.Get(ctx, job.ID); err != nil {
			t.Fatal(err)
		}
		return job.Status.Terminal(), fmt.Sprintf("job %s/%s", job.Status, job.Stage)
	})
	if job.Status != jobs.StatusSucceeded {
		t.Fatalf("job %s: %+v, history %+v", job.Status, job.Error, job.History)
	}
	res, err := st.Result(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	return job, res
}

// TestShardedResultIsTheSame maps one table twice on a cluster of three
// workers, loaded whole and in shards of 7 rows (some images broken):
// the results are the same to the bit, every image is counted once, the
// history names the worker of every shard, and no shard object is left.
func TestShardedResultIsTheSame(t *testing.T) {
	srv := newImageServer(t, 40, map[string]string{"R03": "404", "R17": "truncated", "R30": "html"})
	c := startCluster(t, 3)
	r := request(srv.srv.URL)
	r.Iterations = 300
	whole, want := c.run(t, r)
	if whole.Shards != nil {
		t.Fatalf("a 40-row job loaded in shards: %+v", whole.Shards)
	}
	r.ShardSize = 7
	sharded, got := c.run(t, r)

	wb, _ := json.Marshal(want)
	gb, _ := json.Marshal(got)
	if string(wb) != string(gb) {
		t.Fatalf("sharded result differs:\nwhole   %.400s\nsharded %.400s", wb, gb)
	}
	for i, row := range want.Rows {
		for d, v := range row.Coords {
			if got.Rows[i].Coords[d] != v {
				t.Fatalf("row %d coordinate %d: %v sharded, %v whole", i, d, got.Rows[i].Coords[d], v)
			}
		}
	}
	p := sharded.Progress
	if p.ImagesLoaded != 37 || p.ImagesFailed != 3 || p.ImagesTotal != 40 {
		t.Errorf("progress %+v, want 37 loaded, 3 failed of 40", p)
	}
	if sharded.Shards == nil || sharded.Shards.Count != 6 || len(sharded.Shards.Done) != 6 {
		t.Fatalf("shards %+v, want 6 done", sharded.Shards)
	}
	events := 0
	for _, e := range sharded.History {
		if e.Event == jobs.EventShardLoaded {
			events++
			if !strings.Contains(e.Detail, " by w") {
				t.Errorf("shard event %q names no worker", e.Detail)
			}
		}
	}
	if events != 6 {
		t.Errorf("%d shard_loaded events, want 6: %+v", events, sharded.History)
	}
	testkit.Eventually(t, 10*time.Second, func() (bool, string) {
		n, err := c.stores[0].ShardObjects(context.Background())
		return err == nil && n == 0, fmt.Sprintf("%d shard objects left (%v)", n, err)
	})
}

// TestShardedJobHandedToAGPUWorker: a sharded job (backend auto) run by a
// worker without a GPU hands its embedding, once its shards are in, to
// the worker that advertises one; that worker embeds the shards loaded
// (nothing is loaded again) and its result is the one of the job loaded
// whole.
func TestShardedJobHandedToAGPUWorker(t *testing.T) {
	whole := newImageServer(t, 40, nil)
	gated := newImageServer(t, 40, nil)
	gated.imageGate = make(chan struct{})
	c := startCluster(t, 2)
	r := request(whole.srv.URL)
	r.Iterations = 200
	_, want := c.run(t, r)

	r = request(gated.srv.URL)
	r.Iterations, r.ShardSize = 200, 10
	job, err := c.stores[0].Submit(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, func() (bool, string) {
		j, err := c.stores[0].Get(context.Background(), job.ID)
		if err != nil {
			t.Fatal(err)
		}
		return j.Shards != nil, "no shards yet"
	})
	c.add(t, "gpu", true) // after a worker without one took the job
	testkit.Eventually(t, 10*time.Second, func() (bool, string) {
		name, err := c.stores[0].GPUWorker(context.Background())
		return name == "gpu", fmt.Sprintf("GPU worker %q (%v)", name, err)
	})
	close(gated.imageGate)
	job, got := c.wait(t, job)
	handed := 0
	for _, e := range job.History {
		if e.Event == jobs.EventHandedBack && strings.Contains(e.Detail, "gpu (it has a GPU)") {
			handed++
		}
	}
	if handed != 1 || job.Attempts != 2 || job.Progress.ImagesLoaded != 40 {
		t.Fatalf("attempts %d, hand-offs %d, progress %+v: %+v", job.Attempts, handed, job.Progress, job.History)
	}
	wb, _ := json.Marshal(want)
	gb, _ := json.Marshal(got)
	if string(wb) != string(gb) {
		t.Errorf("result after the hand-off differs from the whole job's")
	}
	if n := gated.imagesSeen.Load(); n != 40 {
		t.Errorf("%d image requests for 40 images: loaded again after the hand-off", n)
	}
	testkit.Eventually(t, 10*time.Second, func() (bool, string) {
		n, err := c.stores[0].ShardObjects(context.Background())
		return err == nil && n == 0, fmt.Sprintf("%d shard objects left (%v)", n, err)
	})
}

// TestLoadShardLeavesABusyWorker: a worker whose memory is taken by
// another job hands a shard back (ErrShardBusy) instead of waiting with
// it; once the memory is back it loads the shard, rows and failures
// numbered among the job's rows.
func TestLoadShardLeavesABusyWorker(t *testing.T) {
	srv := newImageServer(t, 12, map[string]string{"R05": "404"})
	l, err := loader.New(loader.Config{AllowPrivateNetworks: true, MaxAttempts: 1, MemoryBudget: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	p := &Pipeline{Loader: l, CPU: cpu.New(1), Log: testkit.QuietLogger()}
	t.Cleanup(p.Close)
	r := request(srv.srv.URL)
	rows := make([]jobs.ShardRow, 4)
	for i := range rows {
		id := fmt.Sprintf("R%02d", 4+i)
		rows[i] = jobs.ShardRow{ID: id, ImageURL: srv.srv.URL + "/img/" + id}
	}
	task := jobs.ShardTask{Job: "J", Attempt: 1, Shard: 1, First: 4, Count: 4}
	per := 8*8*3 + loader.RowOverhead
	other, err := l.ReserveImages(context.Background(), (64<<20)*3/4/per-2, imageOptions(r))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.LoadShard(context.Background(), r, task, rows); !errors.Is(err, jobs.ErrShardBusy) {
		t.Fatalf("with the memory taken: %v, want ErrShardBusy", err)
	}
	other.Release()
	out, err := p.LoadShard(context.Background(), r, task, rows)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(out.Rows) != "[4 6 7]" || len(out.Failures) != 1 || out.Failures[0].Row != 5 || len(out.Pix) != 3*192 {
		t.Errorf("rows %v, failures %+v, %d bytes", out.Rows, out.Failures, len(out.Pix))
	}
}
