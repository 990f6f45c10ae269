package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/tsnemap/tsnemap/atlas"
	"github.com/tsnemap/tsnemap/jobs"
	"github.com/tsnemap/tsnemap/openapi"
)

func (s *Server) GetJobAtlas(c echo.Context, id openapi.JobID) error {
	idx, err := s.cfg.Jobs.AtlasIndex(c.Request().Context(), id)
	if err != nil {
		return atlasError(id, err)
	}
	out := openapi.AtlasIndex{Cell: idx.Cell, Rows: idx.Rows, Missing: idx.Missing,
		Sheets: make([]openapi.AtlasSheet, len(idx.Sheets)), Cells: make([]openapi.AtlasCell, len(idx.Cells))}
	if out.Missing == nil {
		out.Missing = []int{}
	}
	for k, sh := range idx.Sheets {
		out.Sheets[k] = openapi.AtlasSheet{Url: "/v1/jobs/" + id + "/atlas/" + strconv.Itoa(k), Width: sh.Width, Height: sh.Height}
	}
	for k, cell := range idx.Cells {
		out.Cells[k] = openapi.AtlasCell{Row: cell.Row, Id: cell.ID, Url: cell.URL, Sheet: cell.Sheet, X: cell.X, Y: cell.Y}
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "private, no-cache")
	return c.JSON(http.StatusOK, out)
}

func (s *Server) GetJobAtlasSheet(c echo.Context, id openapi.JobID, sheet int) error {
	b, err := s.cfg.Jobs.AtlasSheet(c.Request().Context(), id, sheet)
	if errors.Is(err, jobs.ErrNotFound) {
		if _, gerr := s.cfg.Jobs.Get(c.Request().Context(), id); gerr == nil {
			return newProblem(http.StatusNotFound, "not-found", "Sheet not found",
				fmt.Sprintf("job %s has no thumbnail sheet %d; GET /v1/jobs/%s/atlas lists its sheets", id, sheet, id))
		}
	}
	if err != nil {
		return jobError(id, err)
	}
	// A sheet is rewritten only if its job is run again (after a worker
	// stopped), so it is revalidated, not refetched.
	sum := sha256.Sum256(b)
	etag := `"` + hex.EncodeToString(sum[:12]) + `"`
	h := c.Response().Header()
	h.Set("ETag", etag)
	h.Set(echo.HeaderCacheControl, "private, no-cache")
	if c.Request().Header.Get("If-None-Match") == etag {
		return c.NoContent(http.StatusNotModified)
	}
	return c.Blob(http.StatusOK, "image/jpeg", b)
}

func (s *Server) GetJobMap(c echo.Context, id openapi.JobID, params openapi.GetJobMapParams) error {
	ctx := c.Request().Context()
	width, height := 1200, 900
	if params.Width != nil {
		width = *params.Width
	}
	if params.Height != nil {
		height = *params.Height
	}
	// A succeeded job's map does not change (a re-run finishes anew), so
	// a map rendered once is served from the cache; the job is looked up
	// first, so a deleted job's map is never served.
	job, err := s.cfg.Jobs.Get(ctx, id)
	if err != nil {
		return jobError(id, err)
	}
	key := fmt.Sprintf("%s/%d/%d/%d/%v", id, job.Attempts, width, height, job.FinishedAt)
	c.Response().Header().Set(echo.HeaderCacheControl, "private, no-cache")
	if b, ok := s.maps.get(key); ok && job.Status == jobs.StatusSucceeded {
		return c.Blob(http.StatusOK, "image/png", b)
	}
	release, err := s.heavyRead(c)
	if err != nil {
		return err
	}
	defer release()
	res, err := s.cfg.Jobs.Result(ctx, id)
	if err != nil {
		return jobError(id, err)
	}
	var points []atlas.Point
	for row, r := range res.Rows {
		if len(r.Coords) >= 2 {
			points = append(points, atlas.Point{Row: row, X: float64(r.Coords[0]), Y: float64(r.Coords[1])})
		}
	}
	// Without thumbnails (a job run before they were kept) the map still
	// shows every point, as a dot.
	var sheets []image.Image
	idx, err := s.cfg.Jobs.AtlasIndex(ctx, id)
	switch {
	case errors.Is(err, jobs.ErrConflict) || errors.Is(err, jobs.ErrNotFound):
		idx = nil
	case err != nil:
		return err
	default:
		for k := range idx.Sheets {
			b, err := s.cfg.Jobs.AtlasSheet(ctx, id, k)
			if err != nil {
				return fmt.Errorf("map of %s: %w", id, err)
			}
			img, err := jpeg.Decode(bytes.NewReader(b))
			if err != nil {
				return fmt.Errorf("map of %s: decode sheet %d: %w", id, k, err)
			}
			sheets = append(sheets, img)
		}
	}
	img, err := atlas.Render(ctx, idx, sheets, points, width, height)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&b, img); err != nil {
		return fmt.Errorf("map of %s: encode: %w", id, err)
	}
	if job.Status == jobs.StatusSucceeded {
		s.maps.put(key, b.Bytes())
	}
	return c.Blob(http.StatusOK, "image/png", b.Bytes())
}

// atlasError maps the store's errors for the thumbnails.
func atlasError(id string, err error) error {
	if errors.Is(err, jobs.ErrConflict) {
		return newProblem(http.StatusConflict, "not-ready", "Thumbnails not available",
			"the thumbnails are stored once the job's images have loaded: "+err.Error())
	}
	return jobError(id, err)
}
