package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Workers advertise themselves, with whether they have a GPU, in a
// key-value bucket whose entries expire: a worker puts its entry every
// advertEvery, and a dead worker's entry is gone advertTTL after its last
// put. A sharded job whose worker has no GPU hands the embedding to a
// worker that has one (see Tracker.HandOff), when the job allows it.

const (
	workersBucket = "tsnemap_workers"
	advertTTL     = 15 * time.Second
	advertEvery   = 5 * time.Second
)

// ErrHandOff is the error of a runner that hands its job to another
// worker (named in the record): the job is queued again, no crash.
var ErrHandOff = errors.New("job handed to another worker")

// Advert is what a worker says of itself.
type Advert struct {
	Name string `json:"name"`
	GPU  bool   `json:"gpu"`
}

// advertKey is a worker's name as a key: the characters a key may not
// hold become '_'.
func advertKey(name string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, name)
}

func (s *Store) adverts(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := s.js.KeyValue(ctx, workersBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = s.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: workersBucket, Description: "tsnemap workers: name → what each has (expiring adverts)",
			History: 1, TTL: advertTTL, Storage: jetstream.MemoryStorage, Replicas: s.cfg.Replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = s.js.KeyValue(ctx, workersBucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("worker adverts: %w", err)
	}
	return kv, nil
}

// Advertise puts a's entry now and every advertEvery until ctx ends, then
// removes it.
func (s *Store) Advertise(ctx context.Context, a Advert) error {
	kv, err := s.adverts(ctx)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(a)
	key := advertKey(a.Name)
	t := time.NewTicker(advertEvery)
	defer t.Stop()
	for {
		if _, err := kv.Put(ctx, key, b); err != nil && ctx.Err() == nil {
			return fmt.Errorf("advertise worker: %w", err)
		}
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			defer cancel()
			_ = kv.Purge(dctx, key)
			return nil
		case <-t.C:
		}
	}
}

// GPUWorker names a live worker with a GPU ("" if none).
func (s *Store) GPUWorker(ctx context.Context) (string, error) {
	for _, a := range s.liveAdverts(ctx) {
		if a.GPU {
			return a.Name, nil
		}
	}
	return "", nil
}

// alive reports whether the worker named name advertises itself.
func (s *Store) alive(ctx context.Context, name string) bool {
	for _, a := range s.liveAdverts(ctx) {
		if a.Name == name {
			return true
		}
	}
	return false
}

func (s *Store) liveAdverts(ctx context.Context) []Advert {
	kv, err := s.adverts(ctx)
	if err != nil {
		return nil
	}
	keys, err := kv.Keys(ctx)
	if err != nil {
		return nil
	}
	var out []Advert
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue
		}
		var a Advert
		if json.Unmarshal(e.Value(), &a) == nil {
			out = append(out, a)
		}
	}
	return out
}
