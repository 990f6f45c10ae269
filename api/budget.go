package api

import (
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"
)

// submitBudget is a token bucket per key (per client address without keys)
// on every POST under /v1 that creates a job: a submit is let through while
// the bucket holds a token, and only a job created (a 2xx answer) takes
// one. A request refused with a 4xx or 5xx costs nothing, so a client
// fixing its request, or waiting out a full store, does not drain its own
// budget. Concurrent submits may take the bucket below zero by at most
// their number; the debt is paid back before the next one passes.
type submitBudget struct {
	rate  rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

// budgetIdle is how long an unused bucket is kept (it is full again by
// then at any rate worth setting).
const budgetIdle = 10 * time.Minute

func newSubmitBudget(perSecond float64, burst int) *submitBudget {
	return &submitBudget{rate: rate.Limit(perSecond), burst: max(burst, 1), buckets: map[string]*bucket{}}
}

func (b *submitBudget) limiter(id string, now time.Time) *rate.Limiter {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Sub(b.swept) > budgetIdle {
		for k, v := range b.buckets {
			if now.Sub(v.used) > budgetIdle {
				delete(b.buckets, k)
			}
		}
		b.swept = now
	}
	e, ok := b.buckets[id]
	if !ok {
		e = &bucket{lim: rate.NewLimiter(b.rate, b.burst)}
		b.buckets[id] = e
	}
	e.used = now
	return e.lim
}

// wait is how long until the bucket of id holds a whole token; 0: now.
func (b *submitBudget) wait(id string, now time.Time) time.Duration {
	tokens := b.limiter(id, now).TokensAt(now)
	if tokens >= 1 {
		return 0
	}
	return time.Duration((1 - tokens) / float64(b.rate) * float64(time.Second))
}

// spend takes one token from the bucket of id, into debt if need be.
func (b *submitBudget) spend(id string, now time.Time) {
	b.limiter(id, now).ReserveN(now, 1)
}

// submitRateLimit applies the submit budget (Config.SubmitRate and
// SubmitBurst) to the POSTs under /v1.
func (s *Server) submitRateLimit() echo.MiddlewareFunc {
	r := s.cfg.SubmitRate
	if r <= 0 {
		return func(next echo.HandlerFunc) echo.HandlerFunc { return next }
	}
	b := newSubmitBudget(r, s.cfg.SubmitBurst)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if c.Request().Method != http.MethodPost || !isV1(c.Request().URL.Path) {
				return next(c)
			}
			id := s.submitterID(c)
			if d := b.wait(id, time.Now()); d > 0 {
				return tooMany(c, time.Duration(math.Max(float64(d), float64(time.Second))),
					fmt.Sprintf("at most %g jobs a second (bursts of %d) per key may be created (--submit-rate, --submit-burst); wait and try again", r, b.burst))
			}
			err := next(c)
			if err == nil && c.Response().Status < 300 {
				b.spend(id, time.Now())
			}
			return err
		}
	}
}
