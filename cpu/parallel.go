package cpu

import (
	"context"
	"sync"
	"sync/atomic"
)

// chunks splits [0, n) into at most 4·threads ranges of at least grain
// elements. The bounds depend only on n, grain and threads, so anything
// computed per chunk and combined in chunk order is deterministic.
func (b *Backend) chunks(n, grain int) [][2]int {
	if n <= 0 {
		return nil
	}
	grain = max(grain, 1)
	c := min(4*b.threads, (n+grain-1)/grain)
	c = max(c, 1)
	out := make([][2]int, c)
	for i := range c {
		out[i] = [2]int{i * n / c, (i + 1) * n / c}
	}
	return out
}

// parallelFor runs fn(chunk, lo, hi) over the chunks of [0, n) on the
// backend's threads. It stops handing out chunks once ctx is done and then
// returns ctx.Err(); fn should check ctx itself inside long chunks.
func (b *Backend) parallelFor(ctx context.Context, n, grain int, fn func(chunk, lo, hi int)) error {
	cs := b.chunks(n, grain)
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(cs) == 1 || b.threads == 1 {
		for i, c := range cs {
			if err := ctx.Err(); err != nil {
				return err
			}
			fn(i, c[0], c[1])
		}
		return ctx.Err()
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(b.threads, len(cs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(cs) || ctx.Err() != nil {
					return
				}
				fn(i, cs[i][0], cs[i][1])
			}
		}()
	}
	wg.Wait()
	return ctx.Err()
}
