package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// index keeps, per job, its owner and status, fed by a watch of the jobs
// bucket (so it sees the writes of every node) and by this store's own
// writes (so a quota check sees a submit at once). It answers ActiveJobs
// without reading every record.
type index struct {
	mu    sync.Mutex
	ready bool
	jobs  map[string]indexEntry
}

type indexEntry struct {
	owner  string
	status Status
}

func (x *index) put(id, owner string, st Status) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.jobs != nil {
		x.jobs[id] = indexEntry{owner, st}
	}
}

func (x *index) remove(id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.jobs, id)
}

func (x *index) ownerOf(id string) (string, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e, ok := x.jobs[id]
	return e.owner, ok
}

// countByStatus counts the indexed jobs by status; ok is false until the
// index has been filled.
func (x *index) countByStatus() (map[Status]int, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.ready {
		return nil, false
	}
	n := map[Status]int{}
	for _, e := range x.jobs {
		n[e.status]++
	}
	return n, true
}

// WatchIndex keeps the store's index of owners and statuses current until
// ctx ends; ActiveJobs uses it once its first pass is done (and scans the
// records before that).
func (s *Store) WatchIndex(ctx context.Context) error {
	w, err := s.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch jobs: %w", err)
	}
	s.index.mu.Lock()
	s.index.jobs = map[string]indexEntry{}
	s.index.mu.Unlock()
	go func() {
		defer w.Stop()
		defer func() {
			s.index.mu.Lock()
			s.index.ready, s.index.jobs = false, nil
			s.index.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					s.index.mu.Lock()
					s.index.ready = true
					s.index.mu.Unlock()
					continue
				}
				if e.Operation() != jetstream.KeyValuePut {
					s.index.remove(e.Key())
					continue
				}
				var j struct {
					Owner  string `json:"owner"`
					Status Status `json:"status"`
				}
				if json.Unmarshal(e.Value(), &j) == nil {
					s.index.put(e.Key(), j.Owner, j.Status)
				}
			}
		}
	}()
	return nil
}

// ActiveJobs counts the queued and running jobs of owner.
func (s *Store) ActiveJobs(ctx context.Context, owner string) (int, error) {
	s.index.mu.Lock()
	if s.index.ready {
		n := 0
		for _, e := range s.index.jobs {
			if e.owner == owner && !e.status.Terminal() {
				n++
			}
		}
		s.index.mu.Unlock()
		return n, nil
	}
	s.index.mu.Unlock()
	ids, err := s.ids(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		job, err := s.Get(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, err
		}
		if job.Owner == owner && !job.Status.Terminal() {
			n++
		}
	}
	return n, nil
}
