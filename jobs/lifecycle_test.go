package jobs

import (
	"errors"
	"testing"
	"time"
)

// TestTransitions checks every pair of statuses: the allowed changes are
// exactly those of the state machine, and each method that changes a
// status refuses (ErrConflict, record untouched) any other.
func TestTransitions(t *testing.T) {
	all := []Status{StatusQueued, StatusRunning, StatusSucceeded, StatusFailed, StatusCanceled}
	allowed := map[[2]Status]bool{
		{StatusQueued, StatusRunning}:    true,
		{StatusQueued, StatusCanceled}:   true,
		{StatusQueued, StatusFailed}:     true,
		{StatusRunning, StatusRunning}:   true,
		{StatusRunning, StatusQueued}:    true,
		{StatusRunning, StatusSucceeded}: true,
		{StatusRunning, StatusFailed}:    true,
		{StatusRunning, StatusCanceled}:  true,
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// Each target status is reached by one method.
	via := map[Status]func(j *Job) error{
		StatusRunning:   func(j *Job) error { return j.start(now) },
		StatusQueued:    func(j *Job) error { return j.handBack(now, "test") },
		StatusSucceeded: func(j *Job) error { return j.finish(now, StatusSucceeded, nil, "") },
		StatusFailed:    func(j *Job) error { return j.finish(now, StatusFailed, &Error{Code: CodeInternal, Message: "x"}, "") },
		StatusCanceled:  func(j *Job) error { return j.finish(now, StatusCanceled, nil, "") },
	}
	for _, from := range all {
		for _, to := range all {
			t.Run(string(from)+"→"+string(to), func(t *testing.T) {
				want := allowed[[2]Status{from, to}]
				if got := CanMove(from, to); got != want {
					t.Fatalf("CanMove = %v, want %v", got, want)
				}
				j := Job{ID: "J", Status: from, Attempts: 1}
				before := len(j.History)
				err := via[to](&j)
				switch {
				case want && err != nil:
					t.Fatalf("refused an allowed change: %v", err)
				case want && j.Status != to:
					t.Fatalf("status %s after the change, want %s", j.Status, to)
				case want && len(j.History) == before:
					t.Fatal("the change left no history")
				case !want && !errors.Is(err, ErrConflict):
					t.Fatalf("allowed a forbidden change (err %v)", err)
				case !want && (j.Status != from || len(j.History) != before):
					t.Fatalf("a refused change altered the job: %+v", j)
				}
			})
		}
	}
}

func TestFinishRefusesANonFinalStatus(t *testing.T) {
	j := Job{ID: "J", Status: StatusRunning}
	for _, s := range []Status{StatusQueued, StatusRunning} {
		if err := j.finish(time.Now(), s, nil, ""); !errors.Is(err, ErrConflict) || j.Status != StatusRunning {
			t.Errorf("finish(%s) = %v, status %s", s, err, j.Status)
		}
	}
}
