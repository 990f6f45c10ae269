package loader

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// ErrOverBudget: a job, a download or a decode needs more memory than the
// Loader's memory budget can ever give it. It is wrapped together with
// ErrTooLarge (and, for a job, ErrDatasetInvalid).
var ErrOverBudget = errors.New("over the memory budget")

// RowOverhead is what the engine holds per row besides the row's pixels,
// estimated from above: PCA projections, neighbours and affinities, and
// coordinates (about 4 KB at the default perplexity), with room to spare.
const RowOverhead = 8 << 10

// memBudget is the memory a Loader's jobs may hold at once: the pixel
// arrays of jobs, the bodies being downloaded and the images being
// decoded, all jobs of the process together. Nothing is taken before it
// is needed: a download takes memory as its bytes arrive, never for a
// length a server announced.
//
// Three layers keep it from deadlocking: jobs' pixel arrays never take the
// last quarter (keepJobs), so downloads and decodes always have room;
// downloads never take the last eighth (keepDownloads), which only
// decodes use, and no decode needs more than that eighth. A decode holds
// its memory only while it runs, so every decode eventually gets its
// memory, decoded bodies are freed, and downloads waiting for memory go
// on (or run into their request timeout and let go of what they hold).
type memBudget struct {
	total                   int64
	keepJobs, keepDownloads int64

	mu      sync.Mutex
	used    int64
	waiting int           // acquires waiting for memory now
	wake    chan struct{} // closed (and replaced) when memory is released
}

func newMemBudget(total int64) *memBudget {
	return &memBudget{total: total, keepJobs: total / 4, keepDownloads: total / 8, wake: make(chan struct{})}
}

// maxDecode is the most one decode may need.
func (b *memBudget) maxDecode() int64 { return b.keepDownloads }

// acquire takes n bytes, waiting for others to release memory while the
// budget (less keep, which this use may not take) has no room. It fails at once, with ErrOverBudget,
// when n could never fit, and with ctx's cause when ctx ends first.
func (b *memBudget) acquire(ctx context.Context, n, keep int64) error {
	if n <= 0 {
		return nil
	}
	if n > b.total-keep {
		return ErrOverBudget
	}
	for {
		b.mu.Lock()
		if b.used+n <= b.total-keep {
			b.used += n
			b.mu.Unlock()
			return nil
		}
		wake := b.wake
		b.waiting++
		b.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
		}
		b.mu.Lock()
		b.waiting--
		b.mu.Unlock()
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
	}
}

// waiters is how many acquires wait for memory now.
func (b *memBudget) waiters() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.waiting
}

func (b *memBudget) release(n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	close(b.wake)
	b.wake = make(chan struct{})
	b.mu.Unlock()
}

// inUse is the memory held now.
func (b *memBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// DefaultMemoryBudget is half of the memory this process may use: the
// smaller of the machine's memory and the cgroup's limit (a container's),
// or 4 GB when neither can be read.
func DefaultMemoryBudget() int64 {
	limit := int64(0)
	for _, f := range []func() int64{memTotal, cgroupLimit} {
		if v := f(); v > 0 && (limit == 0 || v < limit) {
			limit = v
		}
	}
	if limit == 0 {
		return 4 << 30
	}
	return limit / 2
}

func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}

// cgroupLimit reads the memory limit of the cgroup (v2, then v1); 0 when
// there is none.
func cgroupLimit() int64 {
	for _, p := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		// v1 reports "no limit" as a huge number.
		if err == nil && v > 0 && v < 1<<60 {
			return v
		}
	}
	return 0
}

// FormatBytes writes n as a human size: "786 GB", "30 MB", "512 bytes".
func FormatBytes(n int64) string {
	const k = 1 << 10
	switch {
	case n >= k*k*k*k:
		return fmt.Sprintf("%.1f TB", float64(n)/(k*k*k*k))
	case n >= k*k*k:
		return fmt.Sprintf("%.1f GB", float64(n)/(k*k*k))
	case n >= k*k:
		return fmt.Sprintf("%.1f MB", float64(n)/(k*k))
	case n >= k:
		return fmt.Sprintf("%.1f KB", float64(n)/k)
	}
	return fmt.Sprintf("%d bytes", n)
}
