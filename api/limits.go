package api

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

// heavyRead waits for one of the few places for reads that load a whole
// result or render a map (each may hold hundreds of MB), so that many at
// once queue instead of taking the memory together. Waiting ends with the
// request.
func (s *Server) heavyRead(c echo.Context) (func(), error) {
	select {
	case s.heavy <- struct{}{}:
		return func() { <-s.heavy }, nil
	case <-c.Request().Context().Done():
		return nil, newProblem(http.StatusServiceUnavailable, "busy", "Busy", "the request ended while waiting for other result reads to finish")
	}
}

// streams counts the open event streams of each caller (key name, or
// client address without keys).
type streams struct {
	mu   sync.Mutex
	open map[string]int
	max  int
}

// enter takes a place for who's stream; false when who has max open.
func (st *streams) enter(who string) bool {
	if st.max <= 0 {
		return true
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.open[who] >= st.max {
		return false
	}
	st.open[who]++
	return true
}

func (st *streams) leave(who string) {
	if st.max <= 0 {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.open[who]--; st.open[who] <= 0 {
		delete(st.open, who)
	}
}

// caller names who made a request, for per-caller limits: the key's name,
// or the client address without keys.
func (s *Server) caller(c echo.Context) string {
	if s.keys != nil {
		return "key:" + owner(c)
	}
	return "ip:" + c.RealIP()
}

func (s *Server) tooManyStreams(c echo.Context) error {
	return tooMany(c, 5*time.Second, fmt.Sprintf("at most %d event streams may be open at once per key (per client address without keys); close one first", s.streams.max))
}

// mapCache keeps rendered maps (PNG bytes) up to a total size, dropping
// the oldest first: a map is rendered from the stored result and sheets
// once, not on every request.
type mapCache struct {
	mu    sync.Mutex
	max   int
	size  int
	items map[string][]byte
	order []string
}

func newMapCache(max int) *mapCache { return &mapCache{max: max, items: map[string][]byte{}} }

func (m *mapCache) get(key string) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.items[key]
	return b, ok
}

func (m *mapCache) put(key string, b []byte) {
	if len(b) > m.max/4 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.items[key]; ok {
		return
	}
	for m.size+len(b) > m.max && len(m.order) > 0 {
		old := m.order[0]
		m.order = m.order[1:]
		m.size -= len(m.items[old])
		delete(m.items, old)
	}
	m.items[key] = b
	m.order = append(m.order, key)
	m.size += len(b)
}
