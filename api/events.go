package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tsnemap/tsnemap/jobs"
	"github.com/tsnemap/tsnemap/openapi"
)

// SSE pacing of the contract: progress at most 10 a second, coordinates at
// most 1 a second; a comment line keeps idle proxies from closing the
// stream.
const (
	progressEvery  = 100 * time.Millisecond
	embeddingEvery = time.Second
	keepAliveEvery = 15 * time.Second
)

func (s *Server) GetJobEvents(c echo.Context, id openapi.JobID, params openapi.GetJobEventsParams) error {
	ctx := c.Request().Context()
	job, err := s.cfg.Jobs.Get(ctx, id)
	if err != nil {
		return jobError(id, err)
	}
	who := s.caller(c)
	if !s.streams.enter(who) {
		return s.tooManyStreams(c)
	}
	defer s.streams.leave(who)
	updates, err := s.cfg.Jobs.Watch(ctx, id)
	if err != nil {
		return err
	}
	// A job that follows its table keeps its stream after done, for its
	// additions.
	var added <-chan []byte
	if job.Request.FollowIntervalSeconds > 0 && (job.Status == jobs.StatusSucceeded || !job.Status.Terminal()) {
		if added, err = s.cfg.Jobs.Additions(ctx, id); err != nil {
			return err
		}
	}
	var coords <-chan []byte
	if params.Embedding != nil && *params.Embedding && !job.Status.Terminal() {
		if coords, err = s.cfg.Jobs.Embeddings(ctx, id); err != nil {
			return err
		}
	}
	w := c.Response()
	h := w.Header()
	h.Set(echo.HeaderContentType, "text/event-stream")
	h.Set(echo.HeaderCacheControl, "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)

	send := func(event string, data []byte) error {
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, data); err != nil {
			return err
		}
		w.Flush()
		return nil
	}
	sendJob := func(event string, j jobs.Job) error {
		b, err := json.Marshal(toAPI(j))
		if err != nil {
			return err
		}
		return send(event, b)
	}
	follow := func(j jobs.Job) error {
		if added == nil || j.Status != jobs.StatusSucceeded {
			return nil
		}
		return followStream(ctx, w, added, updates, send)
	}
	if job.Status.Terminal() {
		if err := sendJob("done", job); err != nil {
			return nil
		}
		return follow(job)
	}
	if err := sendJob("progress", job); err != nil {
		return nil // the client left
	}
	last := job
	var pending *jobs.Job
	var lastProgress, lastCoords time.Time
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	alive := time.NewTicker(keepAliveEvery)
	defer alive.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case j, ok := <-updates:
			if !ok {
				// Deleted while we watched: end with the last state known.
				_ = sendJob("done", last)
				return nil
			}
			last = j
			if j.Status.Terminal() {
				if err := sendJob("done", j); err != nil {
					return nil
				}
				return follow(j)
			}
			if time.Since(lastProgress) >= progressEvery {
				lastProgress, pending = time.Now(), nil
				if err := sendJob("progress", j); err != nil {
					return nil
				}
			} else {
				pending = &j
			}
		case <-tick.C:
			if pending != nil {
				lastProgress = time.Now()
				if err := sendJob("progress", *pending); err != nil {
					return nil
				}
				pending = nil
			}
		case b := <-coords:
			if time.Since(lastCoords) >= embeddingEvery {
				lastCoords = time.Now()
				if err := send("embedding", b); err != nil {
					return nil
				}
			}
		case <-alive.C:
			if keepAlive(w) != nil {
				return nil
			}
		}
	}
}

// followStream sends a followed job's additions (`event: added`) until the
// client leaves or the job is deleted.
func followStream(ctx context.Context, w *echo.Response, added <-chan []byte, updates <-chan jobs.Job, send func(string, []byte) error) error {
	alive := time.NewTicker(keepAliveEvery)
	defer alive.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-updates:
			if !ok {
				return nil // deleted: following stopped
			}
		case b := <-added:
			if err := send("added", b); err != nil {
				return nil
			}
		case <-alive.C:
			if keepAlive(w) != nil {
				return nil
			}
		}
	}
}

// keepAlive writes an SSE comment so that proxies and clients keep an idle
// stream open; an error means the client has gone.
func keepAlive(w *echo.Response) error {
	if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
		return fmt.Errorf("keep-alive: %w", err)
	}
	w.Flush()
	return nil
}
