package jobs

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsnemap/tsnemap/atlas"
)

// Deleting leaves nothing behind. JetStream's own deletes (KeyValue.Purge,
// ObjectStore.Delete) write a marker first: a full store refuses that
// write, so nothing could be freed when it is most needed, and the markers
// stay for ever (every list, sweep and index replay reads them). Here a
// job's messages are removed by purging their subjects from the streams
// under the buckets: no write, no marker.

const (
	kvSubjectPrefix    = "$KV." + jobsBucket + "."
	objMetaPrefix      = "$O." + resultsBucket + ".M."
	objChunkPrefix     = "$O." + resultsBucket + ".C."
	deleteObjectsBatch = 64
)

// Delete removes a job's record and every object of the job: the result
// and failures of each attempt (a worker that lost the job may have
// written its own) and the atlas, whose sheets are found by looking for
// them, not through its index (a stop between the sheets and the index
// leaves sheets no index names).
func (s *Store) Delete(ctx context.Context, id string) error {
	if !ValidID(id) {
		return nil
	}
	attempts, sharded := 0, false
	if job, err := s.Get(ctx, id); err == nil {
		attempts, sharded = job.Attempts, job.Shards != nil
	} else if !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("delete job %s: %w", id, err)
	}
	names, err := s.objectsOf(ctx, id, attempts)
	if err != nil {
		return fmt.Errorf("delete job %s: %w", id, err)
	}
	for _, name := range names {
		if err := s.purgeObject(ctx, name); err != nil {
			return fmt.Errorf("delete job %s: %w", id, err)
		}
	}
	// Stop following its catalogue.
	if err := s.follow.Purge(ctx, id); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete job %s: stop following: %w", id, storeErr(err))
	}
	// Shards left by a job loaded in shards (the sweep finds any others:
	// objects of no job, shards of ended jobs).
	if sharded {
		if err := s.DropShards(ctx, id); err != nil {
			return fmt.Errorf("delete job %s: %w", id, err)
		}
	}
	// Tell watchers (other nodes' indexes, event streams) the job is gone;
	// a full store refuses this marker, and the purge below does without.
	_ = s.kv.Purge(ctx, id)
	if err := s.kvStream.Purge(ctx, jetstream.WithPurgeSubject(kvSubjectPrefix+id)); err != nil {
		return fmt.Errorf("delete job %s: %w", id, storeErr(err))
	}
	s.index.remove(id)
	return nil
}

// objectsOf names the objects a job may have: those of each attempt, and
// the atlas sheets found by looking for sheet 0, 1, … (they are written
// in order) and through the atlas index, whichever names more.
func (s *Store) objectsOf(ctx context.Context, id string, attempts int) ([]string, error) {
	var names []string
	for a := 0; a <= attempts; a++ {
		names = append(names, resultName(id, a), failuresName(id, a), stateName(id, a))
	}
	sheets := 0
	var idx atlas.Index
	if err := s.getJSON(ctx, atlasIndexName(id), &idx); err == nil {
		sheets = len(idx.Sheets)
	}
	for k := 0; ; k++ {
		ok, err := s.hasObject(ctx, atlasSheetName(id, k))
		if err != nil {
			return nil, err
		}
		if !ok {
			sheets = max(sheets, k)
			break
		}
	}
	for k := range sheets {
		names = append(names, atlasSheetName(id, k))
	}
	return append(names, atlasIndexName(id)), nil
}

// purgeObject removes an object's chunks and its meta message (or the
// delete marker left by an older version) without writing anything.
func (s *Store) purgeObject(ctx context.Context, name string) error {
	info, err := s.results.GetInfo(ctx, name, jetstream.GetObjectInfoShowDeleted())
	if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err == nil && info.NUID != "" {
		if err := s.objStream.Purge(ctx, jetstream.WithPurgeSubject(objChunkPrefix+info.NUID)); err != nil {
			return fmt.Errorf("%s: %w", name, storeErr(err))
		}
	}
	if err := s.objStream.Purge(ctx, jetstream.WithPurgeSubject(objMetaPrefix+base64.URLEncoding.EncodeToString([]byte(name)))); err != nil {
		return fmt.Errorf("%s: %w", name, storeErr(err))
	}
	return nil
}

// Sweep deletes the finished jobs (and results) that ended longer than the
// retention period ago, removes what deleted jobs left behind (markers of
// older versions, objects of no job, chunks of no object), and returns how
// many jobs it deleted. A job it cannot delete does not stop it: it goes
// on with the others and returns the errors together.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	ids, err := s.ids(ctx)
	if err != nil {
		return 0, err
	}
	cutoff := s.now().Add(-s.cfg.Retention)
	n := 0
	var errs []error
	for _, id := range ids {
		job, err := s.Get(ctx, id)
		switch {
		case errors.Is(err, ErrNotFound):
			// A marker left by an older version's delete: remove it.
			if err := s.kvStream.Purge(ctx, jetstream.WithPurgeSubject(kvSubjectPrefix+id)); err != nil {
				errs = append(errs, fmt.Errorf("purge marker of %s: %w", id, err))
			}
			continue
		case err != nil:
			errs = append(errs, err)
			continue
		}
		if job.Status.Terminal() && job.FinishedAt != nil && job.FinishedAt.Before(cutoff) {
			if err := s.Delete(ctx, id); err != nil {
				errs = append(errs, err)
				continue
			}
			n++
		}
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
	}
	if err := s.sweepObjects(ctx); err != nil {
		errs = append(errs, err)
	}
	return n, errors.Join(errs...)
}

// orphanSet remembers the object subjects found unreferenced by one sweep.
type orphanSet struct {
	mu   sync.Mutex
	last map[string]bool
}

// sweepObjects removes objects whose job has no record, shard objects of
// jobs that ended (a shard's worker stopped, or wrote late, after its
// job removed its shards), and chunks no object refers to (a process
// killed mid-write leaves chunks without their meta message). Something unreferenced may be in the middle of being
// written, so it is removed only when the next sweep (an hour on) finds
// it still unreferenced: no clock is compared with another machine's.
func (s *Store) sweepObjects(ctx context.Context) error {
	ids, err := s.ids(ctx)
	if err != nil {
		return err
	}
	jobs := make(map[string]bool, len(ids))
	for _, id := range ids {
		jobs[id] = true
	}

	infos, err := s.results.List(ctx, jetstream.ListObjectsShowDeleted())
	if err != nil && !errors.Is(err, jetstream.ErrNoObjectsFound) {
		return fmt.Errorf("sweep objects: %w", err)
	}
	ended := s.endedWithShards(ctx, infos, jobs)
	referenced := map[string]bool{}
	now := map[string]bool{}
	for _, info := range infos {
		shardOfEnded := strings.HasPrefix(info.Name, shardObjectPrefix) && ended[objectJob(info.Name)]
		if !info.Deleted && jobs[objectJob(info.Name)] && !shardOfEnded {
			referenced[objChunkPrefix+info.NUID] = true
			continue
		}
		now["name:"+info.Name] = true
	}
	chunks, err := s.objStream.Info(ctx, jetstream.WithSubjectFilter(objChunkPrefix+">"))
	if err != nil {
		return fmt.Errorf("sweep objects: %w", err)
	}
	for subj := range chunks.State.Subjects {
		if !referenced[subj] {
			now["chunks:"+subj] = true
		}
	}
	return s.purgeOrphans(ctx, now)
}

// endedWithShards names the jobs that ended and still have shard objects.
func (s *Store) endedWithShards(ctx context.Context, infos []*jetstream.ObjectInfo, jobs map[string]bool) map[string]bool {
	ended := map[string]bool{}
	for _, info := range infos {
		id := objectJob(info.Name)
		if _, seen := ended[id]; seen || !jobs[id] || !strings.HasPrefix(info.Name, shardObjectPrefix) {
			continue
		}
		job, err := s.Get(ctx, id)
		ended[id] = err == nil && job.Status.Terminal()
	}
	return ended
}

// purgeOrphans removes what was unreferenced in the last sweep and still
// is, and keeps the rest for the next.
func (s *Store) purgeOrphans(ctx context.Context, now map[string]bool) error {
	s.orphans.mu.Lock()
	last := s.orphans.last
	s.orphans.last = now
	s.orphans.mu.Unlock()
	var errs []error
	for key := range now {
		if !last[key] {
			continue
		}
		var err error
		if name, ok := strings.CutPrefix(key, "name:"); ok {
			err = s.purgeObject(ctx, name)
		} else {
			err = s.objStream.Purge(ctx, jetstream.WithPurgeSubject(strings.TrimPrefix(key, "chunks:")))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("sweep objects: %w", err))
		}
	}
	return errors.Join(errs...)
}

// objectJob is the job id an object's name carries: "result/ID[/A]",
// "failures/ID[/A]", "atlas/ID[/K]".
func objectJob(name string) string {
	_, rest, _ := strings.Cut(name, "/")
	id, _, _ := strings.Cut(rest, "/")
	return id
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
