package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/internal/testkit"
	"github.com/tsnemap/tsnemap/jobs"
	"github.com/tsnemap/tsnemap/loader"
)

// TestSpooledJobIsTheSame maps one table with its pixels in memory (a
// local run) and on a cluster whose loaders spool any job's pixels above
// 1 KB (40 images of 8×8 are 7.5 KB; a shard of 7, 1.3 KB), loaded whole
// and in shards: the coordinates and failures are the same to the bit,
// the thumbnails are built from the spool, and no spool file is left
// open once the jobs are done.
func TestSpooledJobIsTheSame(t *testing.T) {
	srv := newImageServer(t, 40, map[string]string{"R03": "404", "R17": "truncated", "R30": "html"})
	r := request(srv.srv.URL)
	r.Iterations = 300
	want, err := run(context.Background(), newPipeline(t, func(c *loader.Config) { c.SpoolAbove = -1 }), r, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := startCluster(t, 2, func(c *loader.Config) { c.SpoolAbove, c.SpoolDir = 1<<10, dir })

	// The images wait until the job's spool file is seen open.
	srv.imageGate = make(chan struct{})
	job, err := c.stores[0].Submit(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, func() (bool, string) {
		n := testkit.OpenFilesIn(t, dir)
		return n == 1, fmt.Sprintf("%d spool files open", n)
	}, "the job's spool file")
	close(srv.imageGate)
	whole, got := c.wait(t, job)
	if whole.Shards != nil {
		t.Fatalf("a 40-row job loaded in shards: %+v", whole.Shards)
	}
	r.ShardSize = 7
	sharded, gotSharded := c.run(t, r)
	if sharded.Shards == nil || sharded.Shards.Count != 6 {
		t.Fatalf("shards %+v, want 6", sharded.Shards)
	}

	wb, _ := json.Marshal(struct{ Rows, Failures any }{want.Rows, want.Failures})
	for name, res := range map[string]*jobs.Result{"whole": got, "sharded": gotSharded} {
		gb, _ := json.Marshal(struct{ Rows, Failures any }{res.Rows, res.Failures})
		if string(wb) != string(gb) {
			t.Errorf("%s, spooled: rows and failures differ from the job's in memory:\nmemory  %.400s\nspooled %.400s", name, wb, gb)
		}
	}
	for _, j := range []jobs.Job{whole, sharded} {
		idx, err := c.stores[0].AtlasIndex(context.Background(), j.ID)
		if err != nil {
			t.Fatalf("thumbnails of %s: %v", j.ID, err)
		}
		if len(idx.Cells) != 37 || len(idx.Missing) != 3 {
			t.Errorf("thumbnails of %s: %d cells, %d missing; want 37 and 3", j.ID, len(idx.Cells), len(idx.Missing))
		}
	}
	if n := testkit.OpenFilesIn(t, dir); n != 0 {
		t.Errorf("%d spool files open after the jobs", n)
	}
}
