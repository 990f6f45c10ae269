package jobs

import (
	"context"
	"errors"
	"time"
)

// Sweep deletes the finished jobs (and results) that ended longer than the
// retention period ago, and returns how many it deleted.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	ids, err := s.ids(ctx)
	if err != nil {
		return 0, err
	}
	cutoff := s.now().Add(-s.cfg.Retention)
	n := 0
	for _, id := range ids {
		job, err := s.Get(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return n, err
		}
		if job.Status.Terminal() && job.FinishedAt != nil && job.FinishedAt.Before(cutoff) {
			if err := s.Delete(ctx, id); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// SweepEvery runs Sweep now and then every interval until ctx ends.
func (s *Store) SweepEvery(ctx context.Context, interval time.Duration, log func(n int, err error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := s.Sweep(ctx)
		if log != nil && (n > 0 || err != nil) && ctx.Err() == nil {
			log(n, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
