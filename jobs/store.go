package jobs

import (
	"cmp"
	"context"
	"errors"
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
	followBucket   = "tsnemap_follow"
	addedTopic     = "tsnemap.added." // + job id; core NATS, not persisted
)

// Config configures a Store.
type Config struct {
	// Replicas of the stream and buckets on a NATS cluster. They are
	// shared by every node: 0 takes them as they are (1 when this node
	// creates them); a different number than the shared one is refused
	// (ErrSharedConfig) unless Reconfigure is set.
	Replicas int
	// AckWait is how long a delivered job may go without a sign of life
	// before JetStream hands it to another worker; workers send
	// in-progress acks well within it. Shared like Replicas: 0 takes it as
	// it is (30 s when this node creates the consumer).
	AckWait time.Duration
	// Reconfigure lets Open change the shared Replicas and AckWait to this
	// Config's: an operator's explicit act (tsnemap nats-config), never a
	// side effect of starting a node.
	Reconfigure bool
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
	if c.MaxDeliveries < 1 {
		c.MaxDeliveries = 3
	}
	if c.Retention <= 0 {
		c.Retention = 7 * 24 * time.Hour
	}
	return c
}

// Defaults of the shared settings, used by the node that creates them.
const (
	defaultReplicas = 1
	defaultAckWait  = 30 * time.Second
)

// shared resolves the settings every node shares (Replicas, AckWait)
// against what the NATS account holds: unset ones are taken from it, and
// a set one that differs is refused unless cfg.Reconfigure. One node's
// flags must not scale a replicated store down, or reset the consumer
// every worker pulls from.
func shared(ctx context.Context, js jetstream.JetStream, cfg Config) (Config, error) {
	type asset struct {
		name     string
		replicas int
	}
	var have []asset
	var ackWait time.Duration
	for _, name := range []string{workStream, "KV_" + jobsBucket, "OBJ_" + resultsBucket} {
		st, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return cfg, fmt.Errorf("open job store: %s: %w", name, err)
		}
		have = append(have, asset{name, st.CachedInfo().Config.Replicas})
		if name != workStream {
			continue
		}
		c, err := st.Consumer(ctx, workConsumer)
		if err == nil {
			ackWait = c.CachedInfo().Config.AckWait
		} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return cfg, fmt.Errorf("open job store: %s: %w", workConsumer, err)
		}
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = defaultReplicas
		if len(have) > 0 {
			cfg.Replicas = have[0].replicas
		}
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = cmp.Or(ackWait, defaultAckWait)
	}
	if cfg.Reconfigure {
		return cfg, nil
	}
	for _, a := range have {
		if a.replicas != cfg.Replicas {
			return cfg, fmt.Errorf("open job store: %s has %d replicas, this node asks for %d: %w", a.name, a.replicas, cfg.Replicas, ErrSharedConfig)
		}
	}
	if ackWait > 0 && ackWait != cfg.AckWait {
		return cfg, fmt.Errorf("open job store: the work consumer's ack wait is %v, this node asks for %v: %w", ackWait, cfg.AckWait, ErrSharedConfig)
	}
	return cfg, nil
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
	// follow holds the catalogues being followed: id → Follow JSON.
	follow jetstream.KeyValue
	// objStream is the stream under results, asked for its subjects and
	// purged by subject (see Delete and Sweep).
	objStream jetstream.Stream
	// orphans holds the object subjects the last Sweep found unreferenced:
	// the next Sweep removes those still unreferenced (see sweepObjects).
	orphans orphanSet
	// shardQueue carries the shards of large jobs (see shards.go).
	shardQueue jetstream.Stream
	now        func() time.Time
	index      index
}

// Open creates the stream, consumer and buckets (or opens them, as they
// are: see Config.Reconfigure) and returns a Store on them.
func Open(ctx context.Context, nc *nats.Conn, cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("open job store: %w", err)
	}
	if cfg, err = shared(ctx, js, cfg); err != nil {
		return nil, err
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
		MaxDeliver:    -1, // the worker counts crashed attempts itself (Job.Crashes) and fails the job, so none is left running for ever
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
	follow, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      followBucket,
		Description: "tsnemap followed catalogues: job id → Follow JSON",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open job store: follow bucket: %w", err)
	}
	kvStream, err := js.Stream(ctx, "KV_"+jobsBucket)
	if err != nil {
		return nil, fmt.Errorf("open job store: jobs bucket stream: %w", err)
	}
	objStream, err := js.Stream(ctx, "OBJ_"+resultsBucket)
	if err != nil {
		return nil, fmt.Errorf("open job store: results bucket stream: %w", err)
	}
	shardQueue, err := openShards(ctx, js, cfg)
	if err != nil {
		return nil, err
	}
	return &Store{cfg: cfg, nc: nc, js: js, stream: stream, kv: kv, kvStream: kvStream, results: obs, follow: follow, objStream: objStream, shardQueue: shardQueue, now: time.Now}, nil
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
