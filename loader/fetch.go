package loader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// fetchError is a download failure with a short human reason ("http 404",
// "timeout after 30s") and the error beneath it.
type fetchError struct {
	reason     string
	err        error
	retry      bool
	retryAfter time.Duration
}

func (e *fetchError) Error() string { return e.reason }
func (e *fetchError) Unwrap() error { return e.err }

// fetch GETs rawURL with retries and returns at most limit bytes of body;
// a larger body is an error found while streaming, so it costs at most
// limit+1 bytes of memory and transfer.
func (l *Loader) fetch(ctx context.Context, v *Validators, rawURL string, limit int64, accept string) ([]byte, error) {
	u, err := ParseURL(rawURL)
	if err != nil {
		return nil, &fetchError{reason: err.Error(), err: err}
	}
	if err := l.checkURL(u); err != nil {
		return nil, &fetchError{reason: err.Error(), err: err}
	}
	for attempt := 1; ; attempt++ {
		body, ferr := l.fetchOnce(ctx, v, u.String(), limit, accept)
		if ferr == nil {
			return body, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w", context.Cause(ctx))
		}
		if !ferr.retry || attempt >= l.cfg.MaxAttempts {
			if attempt > 1 {
				ferr.reason = fmt.Sprintf("%s (after %d attempts)", ferr.reason, attempt)
			}
			return nil, ferr
		}
		// Exponential backoff with full jitter, so that many rows failing
		// together against one host do not retry in lock-step.
		d := l.cfg.RetryBaseDelay << (attempt - 1)
		d = d/2 + rand.N(d/2+1)
		if ferr.retryAfter > 0 {
			d = min(ferr.retryAfter, l.cfg.MaxRetryAfter)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w", context.Cause(ctx))
		case <-t.C:
		}
	}
}

func (l *Loader) fetchOnce(ctx context.Context, v *Validators, rawURL string, limit int64, accept string) ([]byte, *fetchError) {
	actx, cancel := context.WithTimeout(ctx, l.cfg.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, &fetchError{reason: "invalid URL", err: err}
	}
	req.Header.Set("User-Agent", l.cfg.UserAgent)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if v != nil && v.ETag != "" {
		req.Header.Set("If-None-Match", v.ETag)
	}
	if v != nil && v.LastModified != "" {
		req.Header.Set("If-Modified-Since", v.LastModified)
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return nil, l.classify(ctx, actx, err)
	}
	defer resp.Body.Close()
	if v != nil && resp.StatusCode == http.StatusNotModified {
		return nil, &fetchError{reason: "not modified", err: ErrNotModified}
	}
	if v != nil && resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		v.ETag, v.LastModified = resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		fe := &fetchError{reason: "http " + strconv.Itoa(resp.StatusCode), err: fmt.Errorf("http status %s", resp.Status)}
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
			fe.retry = true
			fe.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"))
		}
		// Drain a little so the connection can be reused.
		_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
		return nil, fe
	}
	if resp.ContentLength > limit {
		return nil, &fetchError{reason: tooLargeBytes(limit), err: ErrTooLarge}
	}
	body, err := l.readBody(actx, resp.Body, limit)
	switch {
	case errors.Is(err, ErrOverBudget):
		return nil, &fetchError{reason: fmt.Sprintf("too large: more than this server's memory budget of %s holds", FormatBytes(l.mem.total-l.mem.keepDownloads)),
			err: fmt.Errorf("%w: %w", ErrTooLarge, err)}
	case err != nil:
		return nil, l.classify(ctx, actx, err)
	case int64(len(body)) > limit:
		l.mem.release(int64(cap(body)))
		return nil, &fetchError{reason: tooLargeBytes(limit), err: ErrTooLarge}
	}
	return body, nil
}

// readBody reads at most limit+1 bytes of r, taking memory from the budget
// as the bytes arrive (never for a length the server announced): the
// buffer starts small and doubles, each new one taken before the old is
// given back. The returned body holds cap(body) bytes of the budget, which
// the caller gives back with l.mem.release; on an error nothing is held.
func (l *Loader) readBody(ctx context.Context, r io.Reader, limit int64) ([]byte, error) {
	var buf []byte
	grow := func(c int64) error {
		if err := l.mem.acquire(ctx, c, l.mem.keepDownloads); err != nil {
			return err
		}
		nb := make([]byte, len(buf), c)
		copy(nb, buf)
		l.mem.release(int64(cap(buf)))
		buf = nb
		return nil
	}
	fail := func(err error) ([]byte, error) {
		l.mem.release(int64(cap(buf)))
		return nil, err
	}
	if err := grow(min(32<<10, limit+1)); err != nil {
		return nil, err
	}
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) > limit {
				return buf, nil // the caller says it is too large
			}
			if err := grow(min(2*int64(cap(buf)), limit+1)); err != nil {
				return fail(err)
			}
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return fail(err)
		}
	}
}

func tooLargeBytes(limit int64) string {
	return "too large: more than " + formatBytes(limit)
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// classify turns a transport error into a reason and says whether trying
// again could help.
func (l *Loader) classify(ctx, actx context.Context, err error) *fetchError {
	var ae *AddressError
	switch {
	case errors.As(err, &ae):
		return &fetchError{reason: ae.Error(), err: err}
	case errors.Is(err, ErrForbiddenAddress):
		return &fetchError{reason: unwrapURLError(err).Error(), err: err}
	case errors.Is(err, errTooManyRedirects):
		return &fetchError{reason: unwrapURLError(err).Error(), err: err}
	case ctx.Err() != nil:
		return &fetchError{reason: "cancelled", err: context.Cause(ctx)}
	case errors.Is(actx.Err(), context.DeadlineExceeded) || isTimeout(err):
		return &fetchError{reason: "timeout after " + l.cfg.RequestTimeout.String(), err: err, retry: true}
	}
	return &fetchError{reason: "connection error: " + unwrapURLError(err).Error(), err: err, retry: true}
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// parseRetryAfter reads delta-seconds or an HTTP date; 0 if absent or bad.
func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}
