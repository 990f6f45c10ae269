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

// A large job's images are loaded in shards, by every worker of the
// cluster at once. The worker running the job (its coordinator) cuts the
// table's rows into shards, stores each shard's rows as an object and
// publishes one message per shard on the shard work queue. Any worker
// (the coordinator too) takes a shard, loads its images, stores the
// shard's pixels, rows and failures as objects and records the shard as
// done in the job record, counting its images there once. When every
// shard is done, the coordinator reads the shards' pixels in order and
// embeds them as if it had loaded them itself: the result is the same.
// Every shard object and message of a job is removed when the job ends
// (and by the retention sweep when a worker stopped at the wrong moment).

const (
	shardStream       = "TSNEMAP_SHARDS"
	shardSubject      = "tsnemap.shard." // + job id
	shardConsumer     = "tsnemap-shard-workers"
	shardObjectPrefix = "shard/" // shard/ID/ATTEMPT/K/{rows,pix,meta}
)

// Sharding is a sharded attempt's state, kept in the job record.
type Sharding struct {
	Attempt int `json:"attempt"`
	Size    int `json:"size"`
	Count   int `json:"count"`
	// Done lists the shards loaded, each once, in the order they finished.
	Done []ShardDone `json:"done,omitempty"`
	// Error, once set, fails the job: a shard could not be loaded.
	Error *Error `json:"error,omitempty"`
	// Embedder names the worker (one with a GPU) the job was handed to
	// once its shards were in: it runs the next attempt, from the shards
	// of this one.
	Embedder string `json:"embedder,omitempty"`
}

// ShardDone is one loaded shard: who loaded it and what it counted.
type ShardDone struct {
	Shard  int    `json:"shard"`
	Worker string `json:"worker"`
	Loaded int    `json:"loaded"`
	Failed int    `json:"failed"`
}

// has reports whether shard k is done.
func (s *Sharding) has(k int) bool {
	return slices.ContainsFunc(s.Done, func(d ShardDone) bool { return d.Shard == k })
}

// Complete reports whether every shard is done.
func (s *Sharding) Complete() bool { return s != nil && len(s.Done) >= s.Count }

// ShardTask is the message of one shard on the shard work queue.
type ShardTask struct {
	Job     string `json:"job"`
	Attempt int    `json:"attempt"`
	Shard   int    `json:"shard"`
	// First is the index, among the job's kept rows, of the shard's first
	// row; the shard has Count rows.
	First int `json:"first"`
	Count int `json:"count"`
}

// ShardRow is a row as a shard loads it.
type ShardRow struct {
	ID       string `json:"id"`
	ImageURL string `json:"url"`
}

// ShardOutput is what loading a shard produced: the pixels of the images
// that loaded (Width·Height·3 bytes each, in row order), the index of each
// among the job's kept rows, and the failures (Row also among the job's
// kept rows).
type ShardOutput struct {
	Width    int       `json:"width"`
	Height   int       `json:"height"`
	Rows     []int     `json:"rows"`
	Failures []Failure `json:"failures"`
	Pix      []byte    `json:"-"`
}

// EventShardLoaded is a history entry: which worker loaded which shard.
const EventShardLoaded = "shard_loaded"

func shardPrefix(id string) string { return shardObjectPrefix + id + "/" }
func shardName(id string, attempt, k int, part string) string {
	return fmt.Sprintf("%s%s/%d/%d/%s", shardObjectPrefix, id, attempt, k, part)
}

// openShards creates (or opens) the shard work queue and its consumer.
// Its ack wait is the work consumer's: a shard whose worker went silent
// that long goes to another worker.
func openShards(ctx context.Context, js jetstream.JetStream, cfg Config) (jetstream.Stream, error) {
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        shardStream,
		Description: "tsnemap shard queue: one message per shard of a large job",
		Subjects:    []string{shardSubject + ">"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		Duplicates:  2 * time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("open job store: shard stream: %w", err)
	}
	if _, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       shardConsumer,
		Description:   "tsnemap shard loaders (shared pull consumer)",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: 10000,
		Replicas:      cfg.Replicas,
	}); err != nil {
		return nil, fmt.Errorf("open job store: shard consumer: %w", err)
	}
	return st, nil
}

// StartShards cuts rows into shards of size rows for attempt of job id,
// stores each shard's rows and publishes one message per shard; the
// record's Sharding says how many there are. Shards of earlier attempts
// are dropped first.
func (s *Store) StartShards(ctx context.Context, id string, attempt, size int, rows []ShardRow) (int, error) {
	if size < 1 {
		return 0, fmt.Errorf("shard job %s: shard size %d", id, size)
	}
	if err := s.DropShards(ctx, id); err != nil {
		return 0, err
	}
	count := (len(rows) + size - 1) / size
	if _, err := s.Update(ctx, id, func(j *Job) error {
		if j.Attempts != attempt || j.Status != StatusRunning {
			return fmt.Errorf("shard job %s: attempt %d is not running: %w", id, attempt, ErrConflict)
		}
		j.Shards = &Sharding{Attempt: attempt, Size: size, Count: count}
		j.Progress.ImagesLoaded, j.Progress.ImagesFailed = 0, 0
		return nil
	}); err != nil {
		return 0, err
	}
	for k := range count {
		first := k * size
		part := rows[first:min(first+size, len(rows))]
		if err := s.putJSON(ctx, shardName(id, attempt, k, "rows"), part); err != nil {
			return 0, err
		}
		task := ShardTask{Job: id, Attempt: attempt, Shard: k, First: first, Count: len(part)}
		b, _ := json.Marshal(task)
		msgID := fmt.Sprintf("%s/%d/%d", id, attempt, k)
		if _, err := s.js.Publish(ctx, shardSubject+id, b, jetstream.WithMsgID(msgID)); err != nil {
			return 0, fmt.Errorf("publish shard %d of %s: %w", k, id, storeErr(err))
		}
	}
	return count, nil
}

// ShardRows reads the rows of one shard.
func (s *Store) ShardRows(ctx context.Context, t ShardTask) ([]ShardRow, error) {
	var rows []ShardRow
	err := s.getJSON(ctx, shardName(t.Job, t.Attempt, t.Shard, "rows"), &rows)
	return rows, err
}

// PutShardOutput stores what a shard loaded: the pixels, then the rows and
// failures (whose presence says the shard's objects are whole).
func (s *Store) PutShardOutput(ctx context.Context, t ShardTask, out *ShardOutput) error {
	if err := s.putObject(ctx, shardName(t.Job, t.Attempt, t.Shard, "pix"), out.Pix); err != nil {
		return err
	}
	return s.putJSON(ctx, shardName(t.Job, t.Attempt, t.Shard, "meta"), out)
}

// ShardOutput reads shard k of attempt of job id.
func (s *Store) ShardOutput(ctx context.Context, id string, attempt, k int) (*ShardOutput, error) {
	var out ShardOutput
	if err := s.getJSON(ctx, shardName(id, attempt, k, "meta"), &out); err != nil {
		return nil, err
	}
	pix, err := s.getBytes(ctx, shardName(id, attempt, k, "pix"))
	if err != nil {
		return nil, fmt.Errorf("read pixels of shard %d of %s: %w", k, id, err)
	}
	if want := len(out.Rows) * out.Width * out.Height * 3; len(pix) != want {
		return nil, fmt.Errorf("shard %d of %s: %d bytes of pixels, want %d", k, id, len(pix), want)
	}
	out.Pix = pix
	return &out, nil
}

// CompleteShard records shard t as done by worker, counting its images,
// once: a shard loaded twice (redelivered after its first worker went
// silent) counts the first time only. done is false when the shard was
// not counted now (counted before, or its attempt is over).
func (s *Store) CompleteShard(ctx context.Context, t ShardTask, d ShardDone) (done bool, err error) {
	_, err = s.Update(ctx, t.Job, func(j *Job) error {
		done = false
		if j.Status != StatusRunning || j.Attempts != t.Attempt || j.Shards == nil || j.Shards.Attempt != t.Attempt || j.Shards.has(t.Shard) {
			return errNoChange
		}
		j.Shards.Done = append(j.Shards.Done, d)
		j.Progress.ImagesLoaded += d.Loaded
		j.Progress.ImagesFailed += d.Failed
		j.record(s.now().UTC(), EventShardLoaded, t.Attempt,
			fmt.Sprintf("shard %d (rows %d–%d): %d loaded, %d failed, by %s", t.Shard, t.First, t.First+t.Count-1, d.Loaded, d.Failed, d.Worker))
		done = true
		return nil
	})
	return done, err
}

// WaitShards waits until every shard of attempt of job id is done, and
// returns the record's Sharding then. progress, if set, is called with
// the record each time it changes.
func (s *Store) WaitShards(ctx context.Context, id string, attempt int, progress func(Job)) (*Sharding, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	updates, err := s.Watch(wctx, id)
	if err != nil {
		return nil, err
	}
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case j, ok := <-updates:
			switch {
			case !ok:
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, fmt.Errorf("wait for shards of %s: %w", id, ErrNotFound)
			case j.Attempts != attempt || j.Shards == nil || j.Shards.Attempt != attempt:
				return nil, fmt.Errorf("wait for shards of %s: attempt %d is over: %w", id, attempt, ErrLost)
			}
			if progress != nil {
				progress(j)
			}
			if j.Shards.Error != nil {
				return nil, j.Shards.Error
			}
			if j.Shards.Complete() {
				return j.Shards, nil
			}
		}
	}
}

// DropShards removes every shard message and object of job id, of every
// attempt, and forgets a hand-off (see Sharding.Embedder). Run when the
// job's pixels are assembled, when an attempt ends (unless it handed the
// job off), and before a new attempt shards again.
func (s *Store) DropShards(ctx context.Context, id string) error {
	// A job handed off with its shards in no longer has them to embed:
	// its next attempt loads them again.
	if _, err := s.Update(ctx, id, func(j *Job) error {
		if j.Shards == nil || j.Shards.Embedder == "" {
			return errNoChange
		}
		j.Shards.Embedder = ""
		return nil
	}); err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("drop shards of %s: %w", id, err)
	}
	if err := s.shardQueue.Purge(ctx, jetstream.WithPurgeSubject(shardSubject+id)); err != nil {
		return fmt.Errorf("drop shard messages of %s: %w", id, storeErr(err))
	}
	names, err := s.shardObjects(ctx, id)
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := s.purgeObject(ctx, name); err != nil {
			return fmt.Errorf("drop shards of %s: %w", id, err)
		}
	}
	return nil
}

// shardObjects names the shard objects of job id ("" names those of every
// job).
func (s *Store) shardObjects(ctx context.Context, id string) ([]string, error) {
	infos, err := s.results.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list shard objects: %w", err)
	}
	prefix := shardObjectPrefix
	if id != "" {
		prefix = shardPrefix(id)
	}
	var names []string
	for _, info := range infos {
		if strings.HasPrefix(info.Name, prefix) {
			names = append(names, info.Name)
		}
	}
	return names, nil
}

// ShardObjects counts the shard objects stored, of every job (for tests
// and operators: none should outlive their job).
func (s *Store) ShardObjects(ctx context.Context) (int, error) {
	names, err := s.shardObjects(ctx, "")
	return len(names), err
}

// shardMsgs is the shard consumer, for workers.
func (s *Store) shardMsgs(ctx context.Context) (jetstream.Consumer, error) {
	return s.shardQueue.Consumer(ctx, shardConsumer)
}
