package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Submit records a new queued job and puts it on the work queue.
func (s *Store) Submit(ctx context.Context, req Request) (Job, error) {
	now := s.now().UTC()
	job := Job{
		ID:        NewID(now),
		Status:    StatusQueued,
		Stage:     StageQueued,
		Progress:  Progress{Iterations: req.Iterations},
		Request:   req,
		CreatedAt: now,
		Owner:     req.Owner,
	}
	job.Request.Owner = ""
	job.record(now, EventQueued, 0, "")
	if req.Method == "pca" {
		job.Progress.Iterations = 0
	}
	b, err := json.Marshal(job)
	if err != nil {
		return Job{}, fmt.Errorf("submit job: %w", err)
	}
	// The message goes first, the record second: when the store is full
	// the first write fails and nothing is left behind. (The other order
	// left a record whose message could not be written, and whose removal
	// failed too, for want of space: a job queued for ever.) A message
	// whose record is not written is removed here, or else dropped by the
	// worker that finds no record (see Worker.handle). The message id
	// makes a retried publish harmless (JetStream drops duplicates within
	// the stream's window).
	ack, err := s.js.Publish(ctx, workSubject, []byte(job.ID), jetstream.WithMsgID(job.ID))
	if err != nil {
		return Job{}, fmt.Errorf("submit job %s: enqueue: %w", job.ID, storeErr(err))
	}
	// Once the message is in, the record is written to the end, whatever
	// becomes of the request, and an error is checked before the message
	// is removed: the write may have been stored even so (a reply lost, a
	// deadline passed after the server took it), and removing the message
	// of a stored record would leave a job queued for ever.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), submitWriteTimeout)
	defer cancel()
	if _, err := s.kv.Create(wctx, job.ID, b); err != nil {
		_, gerr := s.Get(wctx, job.ID)
		switch {
		case gerr == nil: // stored after all
		case errors.Is(gerr, ErrNotFound):
			_ = s.stream.DeleteMsg(wctx, ack.Sequence)
			return Job{}, fmt.Errorf("submit job %s: record: %w", job.ID, storeErr(err))
		default:
			// Unknown: leave the message. If the record was stored the
			// job runs; if not, a worker drops the message (see orphan).
			return Job{}, fmt.Errorf("submit job %s: record (it may have been stored: the job then runs): %w", job.ID, storeErr(err))
		}
	}
	s.index.put(job.ID, job.Owner, job.Status)
	return job, nil
}

// submitWriteTimeout bounds Submit's write of a record and its check.
const submitWriteTimeout = 10 * time.Second

// Get returns the job with this id, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (Job, error) {
	job, _, err := s.get(ctx, id)
	return job, err
}

func (s *Store) get(ctx context.Context, id string) (Job, uint64, error) {
	if !ValidID(id) {
		return Job{}, 0, fmt.Errorf("job %q: %w", id, ErrNotFound)
	}
	e, err := s.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Job{}, 0, fmt.Errorf("job %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Job{}, 0, fmt.Errorf("get job %s: %w", id, err)
	}
	var job Job
	if err := json.Unmarshal(e.Value(), &job); err != nil {
		return Job{}, 0, fmt.Errorf("get job %s: decode: %w", id, err)
	}
	return job, e.Revision(), nil
}

// errNoChange lets an Update function leave the record as it is.
var errNoChange = errors.New("no change")

// Update applies fn to the latest version of the job and writes it back if
// nobody wrote in between (compare-and-set on the KV revision), retrying
// otherwise. fn may return errNoChange to write nothing.
func (s *Store) Update(ctx context.Context, id string, fn func(*Job) error) (Job, error) {
	for attempt := 0; ; attempt++ {
		job, rev, err := s.get(ctx, id)
		if err != nil {
			return Job{}, err
		}
		if err := fn(&job); errors.Is(err, errNoChange) {
			return job, nil
		} else if err != nil {
			return job, err
		}
		b, err := json.Marshal(job)
		if err != nil {
			return Job{}, fmt.Errorf("update job %s: %w", id, err)
		}
		_, err = s.kv.Update(ctx, id, b, rev)
		if err == nil {
			s.index.put(id, job.Owner, job.Status)
			return job, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return Job{}, fmt.Errorf("update job %s: %w", id, storeErr(err))
		}
		if attempt >= 100 {
			return Job{}, fmt.Errorf("update job %s: still conflicting after %d attempts: %w", id, attempt, err)
		}
		if err := ctx.Err(); err != nil {
			return Job{}, fmt.Errorf("update job %s: %w", id, err)
		}
	}
}

// List returns up to limit jobs, newest first, whose id sorts before after
// ("" = from the newest), and whose status is status ("" = any). next is the
// token for the following page, "" at the end.
func (s *Store) List(ctx context.Context, status Status, limit int, after string) (jobs []Job, next string, err error) {
	return s.list(ctx, nil, status, limit, after)
}

// ListOwned is List of the jobs of one owner only.
func (s *Store) ListOwned(ctx context.Context, owner string, status Status, limit int, after string) ([]Job, string, error) {
	return s.list(ctx, &owner, status, limit, after)
}

func (s *Store) list(ctx context.Context, owner *string, status Status, limit int, after string) (jobs []Job, next string, err error) {
	ids, err := s.ids(ctx)
	if err != nil {
		return nil, "", err
	}
	slices.Sort(ids)
	slices.Reverse(ids)
	for _, id := range ids {
		if after != "" && id >= after {
			continue
		}
		if len(jobs) == limit {
			return jobs, jobs[len(jobs)-1].ID, nil
		}
		// A job's owner never changes: the index may skip another
		// owner's job without reading it (one key's list stays cheap
		// however many jobs the others have).
		if owner != nil {
			if o, known := s.index.ownerOf(id); known && o != *owner {
				continue
			}
		}
		job, err := s.Get(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue // deleted while we listed
		}
		if err != nil {
			return nil, "", err
		}
		if (status == "" || job.Status == status) && (owner == nil || job.Owner == *owner) {
			jobs = append(jobs, job)
		}
	}
	return jobs, "", nil
}

// ids lists the keys of the jobs bucket. It asks the server for the
// bucket stream's subjects, a snapshot taken at once, rather than walking
// the bucket with KeyValue.ListKeys: that walk can miss a key written while
// it runs (the key's old message is removed and its new one comes after
// the walk's end), and jobs are written all the time. Delete leaves no
// marker behind, so a deleted job is not listed; one deleted while the
// caller reads the list is answered ErrNotFound by Get.
func (s *Store) ids(ctx context.Context) ([]string, error) {
	prefix := "$KV." + jobsBucket + "."
	info, err := s.kvStream.Info(ctx, jetstream.WithSubjectFilter(prefix+">"))
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	ids := make([]string, 0, len(info.State.Subjects))
	for subj := range info.State.Subjects {
		ids = append(ids, strings.TrimPrefix(subj, prefix))
	}
	return ids, nil
}

// CountByStatus counts the jobs in each status (for metrics).
func (s *Store) CountByStatus(ctx context.Context) (map[Status]int, error) {
	if n, ok := s.index.countByStatus(); ok {
		return n, nil
	}
	ids, err := s.ids(ctx)
	if err != nil {
		return nil, err
	}
	n := map[Status]int{}
	for _, id := range ids {
		job, err := s.Get(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		n[job.Status]++
	}
	return n, nil
}

// Cancel cancels a queued or running job, or deletes a finished one (and
// its result). deleted says which happened. A queued job becomes canceled
// at once; a running one is marked, and its worker stops it and records it
// as canceled.
func (s *Store) Cancel(ctx context.Context, id string) (job Job, deleted bool, err error) {
	var wasFinished bool
	job, err = s.Update(ctx, id, func(j *Job) error {
		wasFinished = j.Status.Terminal()
		switch {
		case wasFinished:
			return errNoChange
		case j.Status == StatusQueued:
			j.CancelRequested = true
			return j.finish(s.now().UTC(), StatusCanceled, nil, "canceled while queued")
		default:
			if j.CancelRequested {
				return errNoChange
			}
			j.CancelRequested = true
		}
		return nil
	})
	if err != nil {
		return Job{}, false, err
	}
	if !wasFinished {
		return job, false, nil
	}
	return job, true, s.Delete(ctx, id)
}

// Watch sends the job each time it changes, starting with its current
// version, until ctx ends or the job is deleted (then the channel closes).
func (s *Store) Watch(ctx context.Context, id string) (<-chan Job, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("job %q: %w", id, ErrNotFound)
	}
	w, err := s.kv.Watch(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("watch job %s: %w", id, err)
	}
	out := make(chan Job, 1)
	go func() {
		defer close(out)
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					continue // the end of the initial values
				}
				if e.Operation() != jetstream.KeyValuePut {
					return
				}
				var job Job
				if json.Unmarshal(e.Value(), &job) != nil {
					continue
				}
				// Keep only the newest version for a slow reader: drop the
				// unread one rather than block the watcher.
				select {
				case out <- job:
				default:
					select {
					case <-out:
					default:
					}
					out <- job
				}
			}
		}
	}()
	return out, nil
}
