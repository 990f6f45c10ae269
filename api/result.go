package api

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/tsnemap/tsnemap/jobs"
	"github.com/tsnemap/tsnemap/openapi"
)

const (
	mimeTSV = "text/tab-separated-values"
	mimeCSV = "text/csv"
)

func (s *Server) GetJobResult(c echo.Context, id openapi.JobID, params openapi.GetJobResultParams) error {
	format := "tsv"
	if params.Format != nil {
		format = string(*params.Format)
	} else {
		format = formatFromAccept(c.Request().Header.Get(echo.HeaderAccept))
	}
	release, err := s.heavyRead(c)
	if err != nil {
		return err
	}
	defer release()
	res, err := s.cfg.Jobs.Result(c.Request().Context(), id)
	if err != nil {
		return jobError(id, err)
	}
	c.Response().Header().Set("Vary", "Accept")
	opts := TableOptions{NeutralizeFormulas: params.NeutralizeFormulas != nil && *params.NeutralizeFormulas}
	mime, delim, ext := mimeTSV, byte('\t'), "tab"
	switch format {
	case "json":
		return c.JSON(http.StatusOK, ResultJSON(res))
	case "csv":
		mime, delim, ext = mimeCSV, ',', "csv"
	}
	// Written as it is made, not built whole first.
	w := c.Response()
	w.Header().Set("Content-Disposition", `attachment; filename="tsnemap-`+id+`.`+ext+`"`)
	w.Header().Set(echo.HeaderContentType, mime+"; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	if err := WriteTableTo(w, res, delim, opts); err != nil {
		s.log.Debug("result: client left", "job", id, "err", err)
	}
	return nil
}

// TableOptions change how WriteTableTo writes values.
type TableOptions struct {
	// NeutralizeFormulas writes a value that a spreadsheet would run as a
	// formula with a ' before it (see neutralize).
	NeutralizeFormulas bool
}

// neutralize returns v as a spreadsheet shows it but never runs it: a
// value starting with =, +, -, @, a tab or a carriage return gets a '
// before it, unless it is a plain number (-3.5 stays a number).
func neutralize(v string) string {
	if v == "" || !strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return v
	}
	if _, err := strconv.ParseFloat(v, 64); err == nil {
		return v
	}
	return "'" + v
}

// formatFromAccept picks the first of our formats the Accept header names
// (in the client's order of preference, ignoring q-values of 0), TSV when
// none.
func formatFromAccept(accept string) string {
	best, bestQ := "tsv", -1.0
	for _, part := range strings.Split(accept, ",") {
		fields := strings.Split(part, ";")
		mt := strings.ToLower(strings.TrimSpace(fields[0]))
		q := 1.0
		for _, f := range fields[1:] {
			if v, ok := strings.CutPrefix(strings.TrimSpace(f), "q="); ok {
				if x, err := strconv.ParseFloat(v, 64); err == nil {
					q = x
				}
			}
		}
		var f string
		switch mt {
		case mimeTSV:
			f = "tsv"
		case mimeCSV:
			f = "csv"
		case "application/json":
			f = "json"
		default:
			continue
		}
		if q > 0 && q > bestQ {
			best, bestQ = f, q
		}
	}
	return best
}

// WriteTable writes the result as the museum script's table: the original
// header and values, then x, y (and z), then cluster when the hotspots were
// computed, grid_x, grid_y when a grid was asked for, and removed ("1" for
// a row gone from a followed table) when the job follows its table; rows whose image
// failed keep these empty, as does a row in no hotspot. A value is quoted only when it holds the delimiter, a quote
// or a line break, so every other value comes out byte for byte.
func WriteTable(res *jobs.Result, delim byte) []byte {
	var b bytes.Buffer
	_ = WriteTableTo(&b, res, delim, TableOptions{})
	return b.Bytes()
}

// WriteTableTo writes the table as WriteTable does, to w as it goes.
func WriteTableTo(out io.Writer, res *jobs.Result, delim byte, opts TableOptions) error {
	b := bufio.NewWriterSize(out, 64<<10)
	field := func(v string) {
		if opts.NeutralizeFormulas {
			v = neutralize(v)
		}
		writeField(b, v, delim)
	}
	coordNames := []string{"x", "y", "z"}[:res.Dimensions]
	if res.Clustered {
		coordNames = append(coordNames, "cluster")
	}
	if res.Gridded {
		coordNames = append(coordNames, "grid_x", "grid_y")
	}
	if res.Followed {
		coordNames = append(coordNames, "removed")
	}
	writeRow := func(r jobs.ResultRow, width int) {
		values := r.Values
		for i := 0; i < width; i++ {
			if i > 0 {
				b.WriteByte(delim)
			}
			if i < len(values) {
				field(values[i])
			}
		}
		for d := range coordNames {
			if width > 0 || d > 0 {
				b.WriteByte(delim)
			}
			b.WriteString(derived(res, r, d))
		}
		b.WriteByte('\n')
	}
	for i, h := range res.Columns {
		if i > 0 {
			b.WriteByte(delim)
		}
		field(h)
	}
	for d, n := range coordNames {
		if len(res.Columns) > 0 || d > 0 {
			b.WriteByte(delim)
		}
		b.WriteString(n)
	}
	b.WriteByte('\n')
	for _, r := range res.Rows {
		writeRow(r, len(res.Columns))
	}
	return b.Flush()
}

// derived is the d-th value after a row's own: its coordinates, then its
// cluster (empty for none) and grid cell, empty where it has none.
func derived(res *jobs.Result, r jobs.ResultRow, d int) string {
	switch {
	case d < res.Dimensions:
		if r.Coords == nil {
			return ""
		}
		return formatCoord(r.Coords[d])
	case d == res.Dimensions && res.Clustered:
		if r.Cluster == 0 {
			return ""
		}
		return strconv.Itoa(r.Cluster)
	}
	g := d - res.Dimensions
	if res.Clustered {
		g--
	}
	if res.Followed && (g == 2 && res.Gridded || g == 0 && !res.Gridded) {
		if r.Removed {
			return "1"
		}
		return ""
	}
	if g < len(r.Grid) {
		return strconv.Itoa(r.Grid[g])
	}
	return ""
}

func writeField(b *bufio.Writer, v string, delim byte) {
	if !strings.ContainsAny(v, string(delim)+"\"\r\n") {
		b.WriteString(v)
		return
	}
	b.WriteByte('"')
	b.WriteString(strings.ReplaceAll(v, `"`, `""`))
	b.WriteByte('"')
}

// formatCoord writes a coordinate with the fewest digits that read back as
// the same float32 (the engine's precision).
func formatCoord(v float32) string { return strconv.FormatFloat(float64(v), 'g', -1, 32) }

// coord64 is v as the float64 that prints like formatCoord, so JSON shows
// 1.25, not 1.2500000476837158.
func coord64(v float32) *float64 {
	f, _ := strconv.ParseFloat(formatCoord(v), 64)
	return &f
}

// ResultJSON renders a result as the contract's JSON result.
func ResultJSON(res *jobs.Result) openapi.Result {
	out := openapi.Result{Columns: res.Columns, Points: make([]openapi.Point, 0, len(res.Rows)), Failures: toAPIFailures(res.Failures),
		Hotspots: make([]openapi.Hotspot, 0, len(res.Hotspots))}
	for _, h := range res.Hotspots {
		ids := make([]string, 0, len(h.Rows))
		for _, r := range h.Rows {
			if r >= 0 && r < len(res.Rows) {
				ids = append(ids, res.Rows[r].ID)
			}
		}
		out.Hotspots = append(out.Hotspots, openapi.Hotspot{Id: h.ID, Size: h.Size, X: h.X, Y: h.Y, Radius: h.Radius, Rows: h.Rows, Ids: ids})
	}
	if out.Columns == nil {
		out.Columns = []string{}
	}
	for i, r := range res.Rows {
		fields := make(map[string]string, len(res.Columns))
		for k, col := range res.Columns {
			fields[col] = ""
			if k < len(r.Values) {
				fields[col] = r.Values[k]
			}
		}
		p := openapi.Point{Row: i, Id: r.ID, Fields: fields}
		if r.Coords != nil {
			p.X, p.Y = coord64(r.Coords[0]), coord64(r.Coords[1])
			if res.Dimensions == 3 {
				p.Z = coord64(r.Coords[2])
			}
		}
		if r.Cluster > 0 {
			p.Cluster = &r.Cluster
		}
		if len(r.Grid) == 2 {
			p.GridX, p.GridY = &r.Grid[0], &r.Grid[1]
		}
		if r.Removed {
			p.Removed = &r.Removed
		}
		out.Points = append(out.Points, p)
	}
	return out
}
