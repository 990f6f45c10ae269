package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Follow is the state of a followed catalogue (docs/growing.md), kept in
// JetStream (bucket tsnemap_follow) so that it outlives the process that
// checks it: when its next check is due, until when, and the validators of
// the table's last answer.
type Follow struct {
	JobID        string        `json:"job_id"`
	Interval     time.Duration `json:"interval"`
	Next         time.Time     `json:"next"`
	Until        time.Time     `json:"until"`
	ETag         string        `json:"etag,omitempty"`
	LastModified string        `json:"last_modified,omitempty"`
	Checks       int           `json:"checks"`
	Added        int           `json:"added"`
}

// FollowEntry is a Follow with the revision a claim must match.
type FollowEntry struct {
	Follow
	Revision uint64
}

// StartFollow records that a job's catalogue is followed (a first check
// after one interval). It replaces a previous record of the job.
func (s *Store) StartFollow(ctx context.Context, f Follow) error {
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("follow %s: %w", f.JobID, err)
	}
	if _, err := s.follow.Put(ctx, f.JobID, b); err != nil {
		return fmt.Errorf("follow %s: %w", f.JobID, storeErr(err))
	}
	return nil
}

// Follows lists the followed catalogues.
func (s *Store) Follows(ctx context.Context) ([]FollowEntry, error) {
	lister, err := s.follow.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list follows: %w", err)
	}
	var out []FollowEntry
	for key := range lister.Keys() {
		e, err := s.follow.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read follow %s: %w", key, err)
		}
		var f FollowEntry
		if err := json.Unmarshal(e.Value(), &f.Follow); err != nil {
			return nil, fmt.Errorf("decode follow %s: %w", key, err)
		}
		f.Revision = e.Revision()
		out = append(out, f)
	}
	return out, nil
}

// ErrClaimed is returned by UpdateFollow when another process changed the
// record first (it claimed the same check).
var ErrClaimed = errors.New("follow record changed by another process")

// UpdateFollow writes f if the record is still at rev: the way one process
// (of several sharing the store) claims a check.
func (s *Store) UpdateFollow(ctx context.Context, f Follow, rev uint64) (uint64, error) {
	b, err := json.Marshal(f)
	if err != nil {
		return 0, fmt.Errorf("follow %s: %w", f.JobID, err)
	}
	r, err := s.follow.Update(ctx, f.JobID, b, rev)
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, ErrClaimed
	}
	if err != nil {
		return 0, fmt.Errorf("follow %s: %w", f.JobID, storeErr(err))
	}
	return r, nil
}

// StopFollow forgets a followed catalogue.
func (s *Store) StopFollow(ctx context.Context, id string) error {
	if err := s.follow.Purge(ctx, id); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("stop following %s: %w", id, storeErr(err))
	}
	return nil
}

// Grown is what a followed job's check leaves: the grown map's result,
// state and thumbnails replace the job's (base rows unchanged).
func (s *Store) Grown(ctx context.Context, id string, r *Result, state []byte, putAtlas func(ctx context.Context) error) error {
	job, err := s.Get(ctx, id)
	if err != nil {
		return err
	}
	if err := s.PutResult(ctx, id, job.Attempts, r); err != nil {
		return err
	}
	if state != nil {
		if err := s.putObject(ctx, stateName(id, job.Attempts), state); err != nil {
			return err
		}
	}
	if putAtlas != nil {
		return putAtlas(ctx)
	}
	return nil
}

// PublishAdded sends the rows a followed job's check placed (JSON) to the
// job's event streams open now (core NATS: not stored).
func (s *Store) PublishAdded(id string, b []byte) error {
	if err := s.nc.Publish(addedTopic+id, b); err != nil {
		return fmt.Errorf("publish additions of %s: %w", id, err)
	}
	return nil
}

// Additions receives a followed job's additions (JSON) until ctx ends.
func (s *Store) Additions(ctx context.Context, id string) (<-chan []byte, error) {
	ch := make(chan []byte, 16)
	sub, err := s.nc.Subscribe(addedTopic+id, func(m *nats.Msg) {
		select {
		case ch <- m.Data:
		default:
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to additions of %s: %w", id, err)
	}
	go func() {
		<-ctx.Done()
		_ = sub.Unsubscribe()
	}()
	return ch, nil
}

// StartFollow records that the tracker's job follows its table, its first
// check one interval from now (a job run without a service follows
// nothing).
func (t *Tracker) StartFollow(ctx context.Context, interval time.Duration) error {
	if t.store == nil {
		return nil
	}
	return t.store.StartFollow(ctx, Follow{JobID: t.id, Interval: interval, Next: t.store.now().Add(interval)})
}
