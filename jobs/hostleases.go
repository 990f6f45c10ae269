package jobs

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Per-host politeness across a cluster: at most Limit requests to one
// host at once from all workers together. Each request holds a lease: a
// key "h.HOST.SLOT" (SLOT < Limit) of a key-value bucket, created only if
// absent, so no two holders share a slot. A lease is renewed every TTL/3
// while held and removed when its worker is done with the host; a worker
// that dies holding leases holds them until they expire, TTL after their
// last renewal (the bucket's age limit), so the cluster's concurrency
// towards that host drops for at most TTL, never rises above Limit.
//
// Leases are reused: a worker keeps one it released for up to leaseIdle,
// for its next request to the same host, and gives it back after holdFor
// in any case, so a worker under load does not write twice per image, and
// a waiting worker gets a slot within about holdFor.

const (
	hostsBucket     = "tsnemap_hosts"
	defaultLeaseTTL = 10 * time.Second
	holdFor         = time.Second
	leaseIdle       = 100 * time.Millisecond
)

// HostLeasesConfig configures HostLeases.
type HostLeasesConfig struct {
	// Limit is the most requests to one host at once, cluster-wide.
	Limit int
	// TTL is how long a lease outlives its holder's last renewal (a dead
	// worker's leases free after it). Shared: set by the node that
	// creates the bucket; default 10 s.
	TTL time.Duration
	// Owner names the holder in the lease's value (a worker's name).
	Owner  string
	Logger *slog.Logger
}

// HostLeases limits the requests to each host cluster-wide. It implements
// the loader's HostLimiter. Run it (Run) to renew and give back leases.
type HostLeases struct {
	kv  jetstream.KeyValue
	cfg HostLeasesConfig

	mu   sync.Mutex
	held map[string]*lease   // key → a lease this process holds
	idle map[string][]*lease // host → leases held but not in use
}

type lease struct {
	key, host string
	rev       uint64
	since     time.Time // taken
	renewed   time.Time
	freed     time.Time // last released (while idle)
	lost      bool      // not renewed in time: no longer ours
}

// NewHostLeases opens (or creates) the lease bucket on s's NATS.
func NewHostLeases(ctx context.Context, s *Store, cfg HostLeasesConfig) (*HostLeases, error) {
	if cfg.Limit < 1 {
		return nil, fmt.Errorf("host leases: limit %d: want ≥ 1", cfg.Limit)
	}
	if cfg.TTL <= 0 {
		cfg.TTL = defaultLeaseTTL
	}
	if cfg.Owner == "" {
		cfg.Owner = defaultWorkerName()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	kv, err := s.js.KeyValue(ctx, hostsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = s.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      hostsBucket,
			Description: "tsnemap per-host request leases (cluster-wide politeness)",
			History:     1,
			TTL:         cfg.TTL,
			Storage:     jetstream.MemoryStorage,
			Replicas:    s.cfg.Replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = s.js.KeyValue(ctx, hostsBucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("host leases: %w", err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("host leases: %w", err)
	}
	cfg.TTL = st.TTL()
	return &HostLeases{kv: kv, cfg: cfg, held: map[string]*lease{}, idle: map[string][]*lease{}}, nil
}

func leaseKey(host string, slot int) string {
	return "h." + hex.EncodeToString([]byte(host)) + "." + strconv.Itoa(slot)
}

// Acquire waits for a lease on host and returns its release.
func (h *HostLeases) Acquire(ctx context.Context, host string) (func(), error) {
	if l := h.reuse(host); l != nil {
		return h.releaser(l), nil
	}
	wait := 10 * time.Millisecond
	for {
		l, err := h.take(ctx, host)
		if err != nil {
			return nil, err
		}
		if l != nil {
			return h.releaser(l), nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait/2 + rand.N(wait)):
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// reuse returns a lease on host this process holds and is not using.
func (h *HostLeases) reuse(host string) *lease {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ls := h.idle[host]; len(ls) > 0; ls = h.idle[host] {
		l := ls[len(ls)-1]
		h.idle[host] = ls[:len(ls)-1]
		if !l.lost {
			return l
		}
	}
	return nil
}

// take tries each slot of host once, in random order; nil when all are
// held.
func (h *HostLeases) take(ctx context.Context, host string) (*lease, error) {
	start := rand.N(h.cfg.Limit)
	for i := range h.cfg.Limit {
		key := leaseKey(host, (start+i)%h.cfg.Limit)
		rev, err := h.kv.Create(ctx, key, []byte(h.cfg.Owner))
		if errors.Is(err, jetstream.ErrKeyExists) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("host lease %s: %w", host, err)
		}
		now := time.Now()
		l := &lease{key: key, host: host, rev: rev, since: now, renewed: now}
		h.mu.Lock()
		h.held[key] = l
		h.mu.Unlock()
		return l, nil
	}
	return nil, nil
}

// releaser puts a lease back in the idle pool, or gives it back to the
// cluster once held for holdFor.
func (h *HostLeases) releaser(l *lease) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			if time.Since(l.since) >= holdFor {
				h.giveBack(l)
				return
			}
			h.mu.Lock()
			l.freed = time.Now()
			h.idle[l.host] = append(h.idle[l.host], l)
			h.mu.Unlock()
		})
	}
}

func (h *HostLeases) giveBack(l *lease) {
	h.mu.Lock()
	delete(h.held, l.key)
	rev := l.rev
	h.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.kv.Delete(ctx, l.key, jetstream.LastRevision(rev)); err != nil {
		h.cfg.Logger.Debug("give back host lease", "key", l.key, "err", err)
	}
}

// Run renews the leases in use and gives back idle ones until ctx ends,
// then gives back every lease held.
func (h *HostLeases) Run(ctx context.Context) {
	t := time.NewTicker(leaseIdle / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			h.mu.Lock()
			all := make([]*lease, 0, len(h.held))
			for _, l := range h.held {
				all = append(all, l)
			}
			h.mu.Unlock()
			for _, l := range all {
				h.giveBack(l)
			}
			return
		case <-t.C:
			h.tend(ctx)
		}
	}
}

// tend gives back the idle leases unused for leaseIdle (or held for
// holdFor), and renews those in use whose last renewal is TTL/3 old.
func (h *HostLeases) tend(ctx context.Context) {
	now := time.Now()
	var free, renew []*lease
	h.mu.Lock()
	for host, ls := range h.idle {
		keep := ls[:0]
		for _, l := range ls {
			if now.Sub(l.freed) >= leaseIdle || now.Sub(l.since) >= holdFor {
				free = append(free, l)
			} else {
				keep = append(keep, l)
			}
		}
		h.idle[host] = keep
	}
	for _, l := range h.held {
		if now.Sub(l.renewed) >= h.cfg.TTL/3 {
			renew = append(renew, l)
		}
	}
	h.mu.Unlock()
	for _, l := range free {
		h.giveBack(l)
	}
	for _, l := range renew {
		rev, err := h.kv.Update(ctx, l.key, []byte(h.cfg.Owner), l.rev)
		h.mu.Lock()
		if err == nil {
			l.rev, l.renewed = rev, time.Now()
		} else if ctx.Err() == nil {
			// Expired and perhaps taken by another: this request finishes,
			// the slot is no longer ours.
			h.cfg.Logger.Warn("host lease lost (not renewed within its TTL)", "key", l.key, "err", err)
			delete(h.held, l.key)
			l.lost = true
		}
		h.mu.Unlock()
	}
}
