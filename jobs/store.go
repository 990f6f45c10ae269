package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsnemap/tsnemap/atlas"
)

// Names of the JetStream assets. One NATS account holds one tsnemap
// installation; every node (serve or worker) opens the same names.
const (
	workStream     = "TSNEMAP_WORK"
	workSubject    = "tsnemap.work"
	workConsumer   = "tsnemap-workers"
	jobsBucket     = "tsnemap_jobs"
	resultsBucket  = "tsnemap_results"
	embeddingTopic = "tsnemap.embedding." // + job id; core NATS, not persisted
)

// Config configures a Store.
type Config struct {
	// Replicas of the stream and buckets on a NATS cluster (default 1).
	Replicas int
	// AckWait is how long a delivered job may go without a sign of life
	// before JetStream hands it to another worker (default 30 s); workers
	// send in-progress acks well within it.
	AckWait time.Duration
	// MaxDeliveries is how many times one job may be started before it is
	// failed instead of run again (default 3), so a job that kills its
	// worker cannot take down every worker in turn.
	MaxDeliveries int
	// Retention is how long finished jobs and their results are kept
	// (default 7 days).
	Retention time.Duration
}

func (c Config) withDefaults() Config {
	if c.Replicas < 1 {
		c.Replicas = 1
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.MaxDeliveries < 1 {
		c.MaxDeliveries = 3
	}
	if c.Retention <= 0 {
		c.Retention = 7 * 24 * time.Hour
	}
	return c
}

// Store keeps jobs, the work queue and results on NATS JetStream. It is safe
// for concurrent use; any number of Stores (on any number of machines) may
// share one NATS.
type Store struct {
	cfg    Config
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	kv     jetstream.KeyValue
	// kvStream is the stream under kv, asked for its keys (see ids).
	kvStream jetstream.Stream
	results  jetstream.ObjectStore
	now      func() time.Time
	index    index
}

// Open creates (or updates) the stream, consumer and buckets and returns a
// Store on them.
func Open(ctx context.Context, nc *nats.Conn, cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("open job store: %w", err)
	}
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        workStream,
		Description: "tsnemap work queue: one message (the job id) per job",
		Subjects:    []string{workSubject},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		Duplicates:  2 * time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("open job store: work stream: %w", err)
	}
	if _, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       workConsumer,
		Description:   "tsnemap workers (shared pull consumer)",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    -1, // the worker counts deliveries itself and fails the job, so none is left running for ever
		MaxAckPending: 10000,
		Replicas:      cfg.Replicas,
	}); err != nil {
		return nil, fmt.Errorf("open job store: work consumer: %w", err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      jobsBucket,
		Description: "tsnemap jobs: id → Job JSON",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open job store: jobs bucket: %w", err)
	}
	obs, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      resultsBucket,
		Description: "tsnemap results and failures",
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		Compression: true,
	})
	if err != nil {
		return nil, fmt.Errorf("open job store: results bucket: %w", err)
	}
	kvStream, err := js.Stream(ctx, "KV_"+jobsBucket)
	if err != nil {
		return nil, fmt.Errorf("open job store: jobs bucket stream: %w", err)
	}
	return &Store{cfg: cfg, nc: nc, js: js, stream: stream, kv: kv, kvStream: kvStream, results: obs, now: time.Now}, nil
}

// Config returns the store's configuration, defaults filled in.
func (s *Store) Config() Config { return s.cfg }

// Ready checks that NATS is connected and the work stream answers.
func (s *Store) Ready(ctx context.Context) error {
	if !s.nc.IsConnected() {
		return fmt.Errorf("job store: NATS %s", s.nc.Status())
	}
	if _, err := s.stream.Info(ctx); err != nil {
		return fmt.Errorf("job store: work stream: %w", err)
	}
	return nil
}

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
	if _, err := s.kv.Create(ctx, job.ID, b); err != nil {
		_ = s.stream.DeleteMsg(context.WithoutCancel(ctx), ack.Sequence)
		return Job{}, fmt.Errorf("submit job %s: record: %w", job.ID, storeErr(err))
	}
	s.index.put(job.ID, job.Owner, job.Status)
	return job, nil
}

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
// the walk's end), and jobs are written all the time. A deleted job's key
// may still be listed (its delete marker); Get then answers ErrNotFound.
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
			s.finish(j, StatusCanceled, nil)
			j.record(s.now().UTC(), EventFinished, j.Attempts, string(StatusCanceled)+": canceled while queued")
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

// Delete removes a job's record and its result objects (those of every
// attempt: a worker that lost the job may have written its own).
func (s *Store) Delete(ctx context.Context, id string) error {
	job, err := s.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete job %s: %w", id, err)
	}
	var names []string
	for a := 0; a <= job.Attempts; a++ {
		names = append(names, resultName(id, a), failuresName(id, a))
	}
	var idx atlas.Index
	if err := s.getJSON(ctx, atlasIndexName(id), &idx); err == nil {
		for k := range idx.Sheets {
			names = append(names, atlasSheetName(id, k))
		}
	}
	names = append(names, atlasIndexName(id))
	for _, name := range names {
		if err := s.results.Delete(ctx, name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			return fmt.Errorf("delete job %s: %s: %w", id, name, storeErr(err))
		}
	}
	if err := s.kv.Purge(ctx, id); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete job %s: %w", id, storeErr(err))
	}
	s.index.remove(id)
	return nil
}

func (s *Store) finish(j *Job, status Status, jobErr *Error) {
	now := s.now().UTC()
	j.Status = status
	j.Stage = StageFinished
	j.FinishedAt = &now
	j.Error = jobErr
	if j.StartedAt != nil {
		j.Progress.ElapsedSeconds = now.Sub(*j.StartedAt).Seconds()
	}
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
			if err := s.results.Delete(ctx, atlasSheetName(id, k)); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
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
	var r Result
	if err := s.getJSON(ctx, resultName(id, job.Attempts), &r); err != nil {
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
	if _, err := s.results.PutBytes(ctx, name, b); err != nil {
		return fmt.Errorf("store %s: %w", name, storeErr(err))
	}
	return nil
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
