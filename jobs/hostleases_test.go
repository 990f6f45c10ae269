package jobs

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/internal/testkit"
)

func newLeases(t *testing.T, st *Store, limit int, ttl time.Duration, owner string) (*HostLeases, context.CancelFunc) {
	t.Helper()
	hl, err := NewHostLeases(context.Background(), st, HostLeasesConfig{Limit: limit, TTL: ttl, Owner: owner, Logger: testkit.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); hl.Run(ctx) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return hl, stop
}

// TestHostLeasesBoundTheCluster: three holders of leases (three workers)
// with a limit of 3 per host, 30 requesters each: never more than 3
// requests to one host at once, and another host is not held back.
func TestHostLeasesBoundTheCluster(t *testing.T) {
	n := startNATS(t, t.TempDir(), Config{})
	var now, most atomic.Int64
	var wg sync.WaitGroup
	for k := range 3 {
		hl, _ := newLeases(t, n.store, 3, 0, fmt.Sprint("w", k))
		for range 30 {
			wg.Go(func() {
				for range 5 {
					release, err := hl.Acquire(context.Background(), "example.org:443")
					if err != nil {
						t.Error(err)
						return
					}
					c := now.Add(1)
					for m := most.Load(); c > m && !most.CompareAndSwap(m, c); m = most.Load() {
					}
					time.Sleep(2 * time.Millisecond) // a request in flight
					now.Add(-1)
					release()
				}
			})
		}
	}
	other, _ := newLeases(t, n.store, 3, 0, "other")
	release, err := other.Acquire(context.Background(), "example.net")
	if err != nil {
		t.Fatal(err)
	}
	release()
	wg.Wait()
	if m := most.Load(); m > 3 || m < 2 {
		t.Errorf("at most %d requests at once, want 3 (≤ the limit, and the limit used)", m)
	}
}

// TestHostLeasesOfADeadWorkerExpire: a holder that stops renewing (its
// process died) keeps its slots until the TTL has passed, then another
// holder takes them.
func TestHostLeasesOfADeadWorkerExpire(t *testing.T) {
	n := startNATS(t, t.TempDir(), Config{})
	dead, stopDead := newLeases(t, n.store, 2, time.Second, "dead")
	for range 2 {
		if _, err := dead.Acquire(context.Background(), "h"); err != nil {
			t.Fatal(err)
		}
	}
	// Stop renewing without giving back: what a killed process leaves.
	dead.mu.Lock()
	dead.held = map[string]*lease{}
	dead.mu.Unlock()
	stopDead()
	alive, _ := newLeases(t, n.store, 2, time.Second, "alive")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	if _, err := alive.Acquire(ctx, "h"); err == nil {
		t.Error("took a slot of a live lease")
	}
	cancel()
	start := time.Now()
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 2 {
		if _, err := alive.Acquire(ctx, "h"); err != nil {
			t.Fatalf("the dead holder's leases did not expire: %v", err)
		}
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("waited %v for leases of TTL 1 s", waited)
	}
}
