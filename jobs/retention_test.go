package jobs

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tsnemap/tsnemap/internal/testkit"
)

// finishedJob submits a job, ends it (canceled) and gives it a result,
// failures and an atlas of two sheets.
func finishedJob(t *testing.T, st *Store) string {
	t.Helper()
	ctx := context.Background()
	j, err := st.Submit(ctx, req())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Cancel(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	res, _ := succeed(ctx, j, nil)
	if err := st.PutResult(ctx, j.ID, 0, res); err != nil {
		t.Fatal(err)
	}
	if err := st.PutFailures(ctx, j.ID, 0, []Failure{{Row: 1, ID: "b", URL: "http://x/b", Error: strings.Repeat("e", 64<<10)}}); err != nil {
		t.Fatal(err)
	}
	if err := st.PutAtlas(ctx, j.ID, testkit.AtlasOfSheets(2)); err != nil {
		t.Fatal(err)
	}
	return j.ID
}

// streamSubjects lists the subjects holding messages in a stream.
func streamSubjects(t *testing.T, s jetstream.Stream, filter string) []string {
	t.Helper()
	info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(filter))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for subj := range info.State.Subjects {
		out = append(out, subj)
	}
	return out
}

// TestDeleteLeavesNothing: a deleted job leaves no record, no marker and
// no object message; it is not listed.
func TestDeleteLeavesNothing(t *testing.T) {
	n := startNATS(t, t.TempDir(), Config{})
	st := n.store
	ctx := context.Background()
	id := finishedJob(t, st)
	if err := st.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	ids, err := st.ids(ctx)
	if err != nil || slices.Contains(ids, id) {
		t.Errorf("ids after delete: %v, %v", ids, err)
	}
	if subj := streamSubjects(t, st.kvStream, ">"); len(subj) != 0 {
		t.Errorf("the jobs bucket keeps %v", subj)
	}
	if subj := streamSubjects(t, st.objStream, ">"); len(subj) != 0 {
		t.Errorf("the results bucket keeps %v", subj)
	}
}

// TestDeleteFindsSheetsWithoutIndex: a stop between writing the atlas
// sheets and its index leaves sheets no index names; deleting the job
// removes them all the same.
func TestDeleteFindsSheetsWithoutIndex(t *testing.T) {
	n := startNATS(t, t.TempDir(), Config{})
	st := n.store
	ctx := context.Background()
	j, _ := st.Submit(ctx, req())
	for k := range 3 {
		if err := st.putObject(ctx, atlasSheetName(j.ID, k), []byte{0xFF, 0xD8, byte(k)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := st.Cancel(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	if subj := streamSubjects(t, st.objStream, ">"); len(subj) != 0 {
		t.Errorf("the results bucket keeps %v", subj)
	}
}

// TestSweepFreesAFullStore: on a store too full to take a job, the sweep
// of expired jobs frees space (it writes nothing to do so), going on past
// a record it cannot read; then submits are taken again.
func TestSweepFreesAFullStore(t *testing.T) {
	n := startNATSLimited(t, t.TempDir(), 1<<20, Config{Retention: time.Hour})
	st := n.store
	ctx := context.Background()
	var old []string
	for range 4 {
		old = append(old, finishedJob(t, st))
	}
	// A record that cannot be read (no job of this version wrote it).
	if _, err := st.kv.Put(ctx, "0BROKEN", []byte("{")); err != nil {
		t.Fatal(err)
	}
	fillStore(t, n)
	st.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	count, err := st.Sweep(ctx)
	if count != len(old) || err == nil || !strings.Contains(err.Error(), "0BROKEN") {
		t.Fatalf("Sweep = %d, %v; want %d and an error naming 0BROKEN", count, err, len(old))
	}
	for _, id := range old {
		if _, err := st.Get(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("swept job %s: %v", id, err)
		}
	}
	if _, err := st.Submit(ctx, req()); err != nil {
		t.Fatalf("submit after the sweep: %v", err)
	}
}

// TestSweepRemovesOrphanObjects: objects of no job, and chunks of no
// object (a kill mid-write), are removed by the second sweep that finds
// them unreferenced (not the first: they may be mid-write); the objects of
// a live job stay.
func TestSweepRemovesOrphanObjects(t *testing.T) {
	n := startNATS(t, t.TempDir(), Config{})
	st := n.store
	ctx := context.Background()
	live, _ := st.Submit(ctx, req())
	res, _ := succeed(ctx, live, nil)
	if err := st.PutResult(ctx, live.ID, 1, res); err != nil {
		t.Fatal(err)
	}
	if err := st.PutResult(ctx, "01GONEGONEGONEGONEGONEGONE", 1, res); err != nil {
		t.Fatal(err)
	}
	if _, err := st.js.Publish(ctx, objChunkPrefix+"HALFWRITTENOBJECT", []byte("chunk")); err != nil {
		t.Fatal(err)
	}
	orphaned := func() []string {
		var out []string
		for _, s := range streamSubjects(t, st.objStream, ">") {
			if strings.HasSuffix(s, "HALFWRITTENOBJECT") {
				out = append(out, s)
			}
		}
		if ok, _ := st.hasObject(ctx, resultName("01GONEGONEGONEGONEGONEGONE", 1)); ok {
			out = append(out, "result of a deleted job")
		}
		return out
	}
	if _, err := st.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if len(orphaned()) != 2 {
		t.Fatalf("the first sweep removed what it had just found: left %v", orphaned())
	}
	if _, err := st.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if left := orphaned(); len(left) != 0 {
		t.Errorf("after two sweeps: %v", left)
	}
	if _, err := st.Result(ctx, live.ID); !errors.Is(err, ErrConflict) {
		t.Errorf("live job's result: %v (want ErrConflict: it has not succeeded)", err)
	}
	if ok, err := st.hasObject(ctx, resultName(live.ID, 1)); !ok || err != nil {
		t.Errorf("the live job's object was swept: %v", err)
	}
}
