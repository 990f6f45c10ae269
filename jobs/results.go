package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsnemap/tsnemap/atlas"
)

// resultName and failuresName name a job's objects per attempt, so a worker
// that lost its job (it went silent and another took over) cannot overwrite
// the newer attempt's objects: readers follow the record's Attempts.
func resultName(id string, attempt int) string {
	if attempt <= 0 {
		return "result/" + id
	}
	return fmt.Sprintf("result/%s/%d", id, attempt)
}

// The atlas: an index and its sheets, "atlas/ID" and "atlas/ID/K".
func atlasIndexName(id string) string        { return "atlas/" + id }
func atlasSheetName(id string, k int) string { return "atlas/" + id + "/" + strconv.Itoa(k) }

// PutAtlas stores a job's thumbnails and marks the job as having them. The
// sheets are written before the index, so whoever reads an index finds its
// sheets.
func (s *Store) PutAtlas(ctx context.Context, id string, a *atlas.Atlas) error {
	// A job run again (after its worker stopped) may have made more sheets
	// the first time: drop those the new index will not name.
	var old atlas.Index
	if err := s.getJSON(ctx, atlasIndexName(id), &old); err == nil {
		for k := len(a.Sheets); k < len(old.Sheets); k++ {
			if err := s.purgeObject(ctx, atlasSheetName(id, k)); err != nil {
				return fmt.Errorf("drop old atlas sheet %d of %s: %w", k, id, err)
			}
		}
	}
	for k, b := range a.Sheets {
		if _, err := s.results.PutBytes(ctx, atlasSheetName(id, k), b); err != nil {
			return fmt.Errorf("store atlas sheet %d of %s: %w", k, id, err)
		}
	}
	if err := s.putJSON(ctx, atlasIndexName(id), a.Index); err != nil {
		return err
	}
	_, err := s.Update(ctx, id, func(j *Job) error {
		if j.HasAtlas {
			return errNoChange
		}
		j.HasAtlas = true
		return nil
	})
	return err
}

// AtlasIndex returns where each row's thumbnail sits: ErrConflict until the
// job's images have loaded.
func (s *Store) AtlasIndex(ctx context.Context, id string) (*atlas.Index, error) {
	job, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if !job.HasAtlas {
		return nil, fmt.Errorf("thumbnails of job %s: the job is %s (%s): %w", id, job.Status, job.Stage, ErrConflict)
	}
	var idx atlas.Index
	if err := s.getJSON(ctx, atlasIndexName(id), &idx); err != nil {
		return nil, err
	}
	return &idx, nil
}

// AtlasSheet returns sheet k of a job's atlas (JPEG): ErrNotFound when
// there is no such sheet.
func (s *Store) AtlasSheet(ctx context.Context, id string, k int) ([]byte, error) {
	if _, err := s.Get(ctx, id); err != nil {
		return nil, err
	}
	b, err := s.getBytes(ctx, atlasSheetName(id, k))
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, fmt.Errorf("atlas sheet %d of job %s: %w", k, id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read atlas sheet %d of job %s: %w", k, id, err)
	}
	return b, nil
}

func failuresName(id string, attempt int) string {
	if attempt <= 0 {
		return "failures/" + id
	}
	return fmt.Sprintf("failures/%s/%d", id, attempt)
}

// PutResult stores the result of one attempt at a job.
func (s *Store) PutResult(ctx context.Context, id string, attempt int, r *Result) error {
	return s.putJSON(ctx, resultName(id, attempt), r)
}

// Result returns a job's result: ErrConflict until it has succeeded.
func (s *Store) Result(ctx context.Context, id string) (*Result, error) {
	job, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if job.Status != StatusSucceeded || !job.HasResult {
		return nil, fmt.Errorf("result of job %s: the job is %s: %w", id, job.Status, ErrConflict)
	}
	// A followed job's check replaces the result object in place (Grown);
	// a read that took the old object's description while its chunks were
	// purged fails once and finds the new object when it reads again.
	var r Result
	for try := 1; ; try++ {
		err = s.getJSON(ctx, resultName(id, job.Attempts), &r)
		if err == nil || try == 3 || ctx.Err() != nil {
			break
		}
		r = Result{}
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// PutFailures stores the images of one attempt at a job that failed to
// load so far.
func (s *Store) PutFailures(ctx context.Context, id string, attempt int, f []Failure) error {
	if f == nil {
		f = []Failure{}
	}
	return s.putJSON(ctx, failuresName(id, attempt), f)
}

// Failures returns the images of a job that failed to load so far.
func (s *Store) Failures(ctx context.Context, id string) ([]Failure, error) {
	job, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	f := []Failure{}
	err = s.getJSON(ctx, failuresName(id, job.Attempts), &f)
	if errors.Is(err, ErrNotFound) {
		return []Failure{}, nil
	}
	return f, err
}

func (s *Store) putJSON(ctx context.Context, name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("store %s: %w", name, err)
	}
	return s.putObject(ctx, name, b)
}

func (s *Store) putObject(ctx context.Context, name string, b []byte) error {
	if _, err := s.results.PutBytes(ctx, name, b); err != nil {
		return fmt.Errorf("store %s: %w", name, storeErr(err))
	}
	return nil
}

// hasObject reports whether an object of this name is stored.
func (s *Store) hasObject(ctx context.Context, name string) (bool, error) {
	_, err := s.results.GetInfo(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look for %s: %w", name, err)
	}
	return true, nil
}

// objectReadTimeout bounds one read of a stored object.
const objectReadTimeout = 30 * time.Second

// getBytes reads a stored object whole. The read runs under a context that
// the caller's cancel does not reach, bounded by objectReadTimeout instead:
// nats.go's object reader, cancelled mid-read, stops its consumer but keeps
// waiting on its pipe until the context's deadline (a job's deadline may be
// hours away), which hung a cancelled job's worker. Objects are small and
// local, so finishing the read costs milliseconds; the caller sees its
// cancel right after.
func (s *Store) getBytes(ctx context.Context, name string) ([]byte, error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), objectReadTimeout)
	defer cancel()
	b, err := s.results.GetBytes(rctx, name)
	if err == nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
	}
	return b, err
}

func (s *Store) getJSON(ctx context.Context, name string, v any) error {
	b, err := s.getBytes(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", name, err)
	}
	return nil
}

// PublishEmbedding sends a snapshot of a job's coordinates to whoever is
// watching now (core NATS: not stored, lost if nobody listens).
func (s *Store) PublishEmbedding(id string, e Embedding) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("publish embedding of %s: %w", id, err)
	}
	if err := s.nc.Publish(embeddingTopic+id, b); err != nil {
		return fmt.Errorf("publish embedding of %s: %w", id, err)
	}
	return nil
}

// Embeddings receives a job's coordinate snapshots (as JSON) until ctx
// ends. A slow reader misses snapshots rather than delaying anyone.
func (s *Store) Embeddings(ctx context.Context, id string) (<-chan []byte, error) {
	ch := make(chan []byte, 1)
	sub, err := s.nc.Subscribe(embeddingTopic+id, func(m *nats.Msg) {
		select {
		case ch <- m.Data:
		default:
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to embedding of %s: %w", id, err)
	}
	go func() {
		<-ctx.Done()
		_ = sub.Unsubscribe()
	}()
	return ch, nil
}
