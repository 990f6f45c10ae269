package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
	// MaxDeliveries is how many attempts at one job may crash (start and
	// never end: the worker died or went silent) before the job is failed
	// instead of run again (default 3), so a job that kills its worker
	// cannot take down every worker in turn. Hand-backs by stopping
	// workers, and deliveries that could not start the job, do not count.
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
	// objStream is the stream under results, asked for its subjects and
	// purged by subject (see Delete and Sweep).
	objStream jetstream.Stream
	// orphans holds the object subjects the last Sweep found unreferenced:
	// the next Sweep removes those still unreferenced (see sweepObjects).
	orphans orphanSet
	now     func() time.Time
	index   index
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
	objStream, err := js.Stream(ctx, "OBJ_"+resultsBucket)
	if err != nil {
		return nil, fmt.Errorf("open job store: results bucket stream: %w", err)
	}
	return &Store{cfg: cfg, nc: nc, js: js, stream: stream, kv: kv, kvStream: kvStream, results: obs, objStream: objStream, now: time.Now}, nil
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
