package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/internal/testkit"
	"github.com/tsnemap/tsnemap/jobs"
)

// cluster is an embedded NATS JetStream with n workers in this process,
// each with its own connection, store and pipeline, all taking shards.
type cluster struct {
	stores []*jobs.Store
}

func startCluster(t *testing.T, n int) *cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	emb, err := jobs.StartEmbedded(ctx, jobs.EmbeddedConfig{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	c := &cluster{}
	for k := range n {
		nc, err := emb.Connect()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		st, err := jobs.Open(ctx, nc, jobs.Config{})
		if err != nil {
			t.Fatal(err)
		}
		c.stores = append(c.stores, st)
		p := newPipeline(t)
		wctx, stop := context.WithCancel(context.Background())
		w := jobs.NewWorker(st, p, jobs.WorkerConfig{Logger: testkit.QuietLogger(), Shards: p, Name: fmt.Sprintf("w%d", k)})
		done := make(chan struct{})
		go func() { defer close(done); _ = w.Run(wctx) }()
		t.Cleanup(func() { stop(); <-done })
	}
	return c
}

func (c *cluster) run(t *testing.T, r jobs.Request) (jobs.Job, *jobs.Result) {
	t.Helper()
	ctx := context.Background()
	st := c.stores[0]
	job, err := st.Submit(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
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
