package jobs

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsnemap/tsnemap/atlas"
)

// stateName names the addition state of one attempt at a job: what a job
// that names it as base_job_id needs (package pipeline writes and reads
// its contents; the store keeps it as bytes).
func stateName(id string, attempt int) string { return fmt.Sprintf("state/%s/%d", id, attempt) }

// ErrNoState is wrapped when a job has no addition state: it has not
// succeeded, finished before additions existed, or was made from features.
var ErrNoState = errors.New("no addition state")

// PutState stores the addition state of one attempt at a job and marks
// the job as having it.
func (s *Store) PutState(ctx context.Context, id string, attempt int, b []byte) error {
	if err := s.putObject(ctx, stateName(id, attempt), b); err != nil {
		return err
	}
	_, err := s.Update(ctx, id, func(j *Job) error {
		if j.HasState {
			return errNoChange
		}
		j.HasState = true
		return nil
	})
	return err
}

// BaseOf checks that a job can be the base of an addition and returns it:
// ErrNotFound when there is no such job, ErrConflict (wrapping ErrNoState
// when it succeeded without state) when it cannot be one.
func (s *Store) BaseOf(ctx context.Context, id string) (Job, error) {
	job, err := s.Get(ctx, id)
	if err != nil {
		return Job{}, err
	}
	if job.Status != StatusSucceeded {
		return job, fmt.Errorf("job %s is %s, not succeeded: %w", id, job.Status, ErrConflict)
	}
	if !job.HasState {
		return job, fmt.Errorf("job %s has %w (it finished before additions existed, or was made from features_url): %w", id, ErrNoState, ErrConflict)
	}
	return job, nil
}

// State returns the addition state of a job that can be a base.
func (s *Store) State(ctx context.Context, id string) ([]byte, error) {
	job, err := s.BaseOf(ctx, id)
	if err != nil {
		return nil, err
	}
	b, err := s.getBytes(ctx, stateName(id, job.Attempts))
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, fmt.Errorf("state of job %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read state of job %s: %w", id, err)
	}
	return b, nil
}

// A Base is what a job's runner reads of the job it adds to.
type Base struct {
	Job    Job
	State  []byte
	Result *Result
	Atlas  *atlas.Atlas // nil when the base has no thumbnails
}

// PutState stores the job's addition state (a job run without a service
// keeps it in Local, for its caller to write where it likes).
func (t *Tracker) PutState(ctx context.Context, b []byte) error {
	if t.store == nil {
		t.mu.Lock()
		t.localState = b
		t.mu.Unlock()
		return nil
	}
	return t.store.PutState(ctx, t.id, t.attempt, b)
}

// SetLocalBase gives a job run without a service the base it adds to
// (tsnemap run --base): Base returns it whatever the id.
func (t *Tracker) SetLocalBase(b *Base) { t.localBase = b }

// LocalState is what PutState kept for a job run without a service.
func (t *Tracker) LocalState() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.localState
}

// Base reads the base job of an addition: its record, state, result and
// atlas (nil when it has none). A job run without a service has no store
// to read from: ErrNotFound.
func (t *Tracker) Base(ctx context.Context, id string) (*Base, error) {
	if t.store == nil && t.localBase != nil {
		return t.localBase, nil
	}
	if t.store == nil {
		return nil, fmt.Errorf("base job %s: no job store: %w", id, ErrNotFound)
	}
	return t.store.Base(ctx, id)
}

// Base reads a job that can be a base: its record, state, result and
// atlas (nil when it has none).
func (s *Store) Base(ctx context.Context, id string) (*Base, error) {
	b, err := s.State(ctx, id)
	if err != nil {
		return nil, err
	}
	job, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	res, err := s.Result(ctx, id)
	if err != nil {
		return nil, err
	}
	base := &Base{Job: job, State: b, Result: res}
	if job.HasAtlas {
		idx, err := s.AtlasIndex(ctx, id)
		if err != nil {
			return nil, err
		}
		base.Atlas = &atlas.Atlas{Index: *idx}
		for k := range idx.Sheets {
			sheet, err := s.AtlasSheet(ctx, id, k)
			if err != nil {
				return nil, err
			}
			base.Atlas.Sheets = append(base.Atlas.Sheets, sheet)
		}
	}
	return base, nil
}
