package jobs

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A job's addition state and follow record go with it: Delete leaves no
// object and no follow record behind.
func TestDeleteRemovesStateAndFollow(t *testing.T) {
	n := startNATS(t, t.TempDir(), Config{})
	st := n.store
	ctx := context.Background()
	id := finishedJob(t, st)
	if err := st.PutState(ctx, id, 0, []byte("state")); err != nil {
		t.Fatal(err)
	}
	if err := st.StartFollow(ctx, Follow{JobID: id, Interval: time.Minute, Next: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if subj := streamSubjects(t, st.objStream, ">"); len(subj) != 0 {
		t.Errorf("the results bucket keeps %v", subj)
	}
	fs, err := st.Follows(ctx)
	if err != nil || len(fs) != 0 {
		t.Errorf("follows after delete: %v, %v", fs, err)
	}
	if _, err := st.BaseOf(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("a deleted base: %v, want ErrNotFound", err)
	}
}

// A base must have succeeded and kept its state: otherwise ErrConflict
// (with ErrNoState for a succeeded job without state).
func TestBaseOfNeedsSuccessAndState(t *testing.T) {
	n := startNATS(t, t.TempDir(), Config{})
	st := n.store
	ctx := context.Background()
	canceled := finishedJob(t, st) // canceled, with a result
	if _, err := st.BaseOf(ctx, canceled); !errors.Is(err, ErrConflict) || errors.Is(err, ErrNoState) {
		t.Errorf("a canceled base: %v, want ErrConflict", err)
	}
	j, err := st.Submit(ctx, req())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Update(ctx, j.ID, func(j *Job) error { j.Status = StatusSucceeded; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := st.BaseOf(ctx, j.ID); !errors.Is(err, ErrNoState) || !errors.Is(err, ErrConflict) {
		t.Errorf("a base without state: %v, want ErrNoState and ErrConflict", err)
	}
	if err := st.PutState(ctx, j.ID, 0, []byte("s")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.BaseOf(ctx, j.ID); err != nil {
		t.Errorf("a succeeded base with state: %v", err)
	}
	if b, err := st.State(ctx, j.ID); err != nil || string(b) != "s" {
		t.Errorf("state %q, %v", b, err)
	}
}

// Two processes that claim the same check: one wins, the other is told.
func TestFollowClaimIsExclusive(t *testing.T) {
	n := startNATS(t, t.TempDir(), Config{})
	st := n.store
	ctx := context.Background()
	f := Follow{JobID: "J1", Interval: time.Minute, Next: time.Now()}
	if err := st.StartFollow(ctx, f); err != nil {
		t.Fatal(err)
	}
	fs, err := st.Follows(ctx)
	if err != nil || len(fs) != 1 {
		t.Fatalf("follows: %v, %v", fs, err)
	}
	f.Checks = 1
	if _, err := st.UpdateFollow(ctx, f, fs[0].Revision); err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpdateFollow(ctx, f, fs[0].Revision); !errors.Is(err, ErrClaimed) {
		t.Errorf("second claim at the same revision: %v, want ErrClaimed", err)
	}
}
