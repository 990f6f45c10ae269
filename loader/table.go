package loader

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"strings"
	"unicode/utf8"
)

// TableOptions say how to read a table and where each row's image is.
// Exactly one of ImageURLTemplate and ImageURLColumn must be set.
type TableOptions struct {
	IDColumn         string // default "id"
	ImageURLTemplate string // e.g. "https://host/img/{id}.jpg"; {id} is escaped
	ImageURLColumn   string // a column of absolute or table-relative URLs
	Limit            int    // keep only the first Limit kept rows; 0 = all
	// ImagesOptional allows neither template nor column (the rows' vectors
	// come from a features file; every ImageURL is then "").
	ImagesOptional bool
	// Validators, when set, makes the fetch conditional (a table that is
	// followed): see Validators.
	Validators *Validators
}

// Validators make a table's fetch conditional (RFC 9110 §13.1): ETag and
// LastModified from the last fetch are sent as If-None-Match and
// If-Modified-Since, and replaced by the answer's. A 304 answer makes
// FetchTable return ErrNotModified.
type Validators struct {
	ETag         string
	LastModified string
}

// ErrNotModified is returned by a conditional FetchTable when the server
// answers 304 Not Modified.
var ErrNotModified = errors.New("table not modified")

// Table is a parsed table: the original header and every kept row with its
// original values, so that the service can write the same table back with
// coordinates appended.
type Table struct {
	URL       string   // where it was fetched from
	Header    []string // the original column names, as UTF-8
	Delimiter rune     // '\t' or ','
	Rows      []Row    // kept rows, in file order
	Dropped   int      // rows dropped for an empty or NaN-like id
	Truncated bool     // Limit stopped reading before the end
}

// Row is one kept row of a Table.
type Row struct {
	Index    int      // 0-based position among the file's data rows (header excluded)
	Values   []string // the original values as UTF-8 text; a short row has fewer than len(Header)
	ID       string   // the value of the id column
	ImageURL string   // resolved absolute URL of its image ("" if its URL cell was empty)
}

// droppedIDs are the values pandas reads as missing, which the original
// script therefore dropped.
var droppedIDs = map[string]bool{"": true, "nan": true, "NaN": true, "null": true, "None": true, "NA": true}

// FetchTable downloads and parses the table at rawURL. Errors wrap
// ErrDatasetUnreachable or ErrDatasetInvalid.
func (l *Loader) FetchTable(ctx context.Context, rawURL string, opts TableOptions) (*Table, error) {
	base, err := ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDatasetUnreachable, err)
	}
	var tmpl *urlTemplate
	switch {
	case opts.ImageURLTemplate != "" && opts.ImageURLColumn != "":
		return nil, fmt.Errorf("%w: give an image URL template or an image URL column, not both", ErrDatasetInvalid)
	case opts.ImageURLTemplate != "":
		if tmpl, err = parseTemplate(opts.ImageURLTemplate); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrDatasetInvalid, err)
		}
	case opts.ImageURLColumn == "" && !opts.ImagesOptional:
		return nil, fmt.Errorf("%w: give an image URL template (with {id}) or an image URL column", ErrDatasetInvalid)
	}
	data, err := l.fetch(ctx, opts.Validators, rawURL, l.cfg.MaxTableBytes, "text/tab-separated-values, text/csv, text/plain;q=0.9, */*;q=0.5")
	if errors.Is(err, ErrNotModified) {
		return nil, ErrNotModified
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("fetch table %s: %w", rawURL, err)
		}
		return nil, fmt.Errorf("%w: fetch %s: %w", ErrDatasetUnreachable, rawURL, err)
	}
	t, err := parseTable(ctx, data, base.Path, opts, tableLimits{rows: l.cfg.MaxRows, columns: l.cfg.MaxColumns,
		cell: l.cfg.MaxCellBytes, line: l.cfg.MaxLineBytes})
	l.mem.release(int64(cap(data))) // the table holds copies of what it keeps
	if err != nil {
		return nil, err
	}
	t.URL = rawURL
	for i := range t.Rows {
		r := &t.Rows[i]
		if tmpl == nil && opts.ImageURLColumn == "" {
			break // images optional, and none given
		}
		if tmpl != nil {
			r.ImageURL = tmpl.expand(r.ID)
			continue
		}
		r.ImageURL = resolveURL(base, r.Value(t.columnIndex(opts.ImageURLColumn)))
	}
	return t, nil
}

// Value is the row's value in column i, "" where the row is shorter.
func (r *Row) Value(i int) string {
	if i < 0 || i >= len(r.Values) {
		return ""
	}
	return r.Values[i]
}

// tableLimits bound what one table may hold, each checked before the
// parser allocates for it; zero fields take the defaults of Config.
type tableLimits struct {
	rows, columns, cell, line int
}

func (tl tableLimits) withDefaults() tableLimits {
	for _, f := range []struct {
		v *int
		d int
	}{{&tl.rows, defaultMaxRows}, {&tl.columns, defaultMaxColumns}, {&tl.cell, defaultMaxCellBytes}, {&tl.line, defaultMaxLineBytes}} {
		if *f.v <= 0 {
			*f.v = f.d
		}
	}
	return tl
}

// checkLines refuses a table with a line longer than max bytes, before
// the CSV reader buffers it.
func checkLines(text string, maxLen int) error {
	for n := 1; len(text) > 0; n++ {
		i := strings.IndexByte(text, '\n')
		if i < 0 {
			i = len(text)
		}
		if i > maxLen {
			return fmt.Errorf("%w: %w: %w: line %d is longer than %d bytes", ErrDatasetInvalid, ErrTooLarge, ErrLineTooLong, n, maxLen)
		}
		text = text[min(i+1, len(text)):]
	}
	return nil
}

// checkRecord refuses a record (line n of the file, header = 1) with more
// than the allowed columns or a value longer than the allowed bytes.
func checkRecord(rec []string, line int, tl tableLimits) error {
	if len(rec) > tl.columns {
		return fmt.Errorf("%w: %w: %w: line %d has %d columns, more than %d", ErrDatasetInvalid, ErrTooLarge, ErrTooManyColumns, line, len(rec), tl.columns)
	}
	for i, v := range rec {
		if len(v) > tl.cell {
			return fmt.Errorf("%w: %w: %w: line %d, column %d holds %d bytes, more than %d", ErrDatasetInvalid, ErrTooLarge, ErrCellTooLong, line, i+1, len(v), tl.cell)
		}
	}
	return nil
}

func (t *Table) columnIndex(name string) int {
	for i, h := range t.Header {
		if h == name {
			return i
		}
	}
	return -1
}

func resolveURL(base *url.URL, v string) string {
	v = strings.TrimSpace(v)
	if v == "" {
		return ""
	}
	ref, err := url.Parse(v)
	if err != nil {
		// Keep it; loading it will fail with a clear reason.
		return v
	}
	return base.ResolveReference(ref).String()
}

// parseTable parses table bytes. pathHint is the URL path, whose suffix
// breaks a tie when the header has neither tabs nor commas.
func parseTable(ctx context.Context, data []byte, pathHint string, opts TableOptions, tl tableLimits) (*Table, error) {
	tl = tl.withDefaults()
	idCol := opts.IDColumn
	if idCol == "" {
		idCol = "id"
	}
	text := decodeText(data)
	if err := checkLines(text, tl.line); err != nil {
		return nil, err
	}
	delim := detectDelimiter(text, pathHint)
	r := csv.NewReader(strings.NewReader(text))
	r.Comma = delim
	r.LazyQuotes = true // stray quotes inside unquoted fields are common in real catalogues
	r.FieldsPerRecord = -1
	header, err := r.Read()
	if errors.Is(err, io.EOF) || (err == nil && len(header) == 1 && header[0] == "") {
		return nil, fmt.Errorf("%w: the table is empty; a header row is required", ErrDatasetInvalid)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrDatasetInvalid, err)
	}
	if err := checkRecord(header, 1, tl); err != nil {
		return nil, err
	}
	t := &Table{Header: header, Delimiter: delim}
	idIdx := t.columnIndex(idCol)
	if idIdx < 0 {
		return nil, &ColumnError{Role: "id", Column: idCol, Available: header}
	}
	if opts.ImageURLColumn != "" && t.columnIndex(opts.ImageURLColumn) < 0 {
		return nil, &ColumnError{Role: "image URL", Column: opts.ImageURLColumn, Available: header}
	}
	for n := 0; ; n++ {
		if n%4096 == 0 && ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrDatasetInvalid, err)
		}
		if opts.Limit > 0 && len(t.Rows) >= opts.Limit {
			t.Truncated = true
			break
		}
		line, _ := r.FieldPos(0)
		if err := checkRecord(rec, line, tl); err != nil {
			return nil, err
		}
		// Short rows are kept as they are (never padded: a wide header
		// must not multiply the memory of short rows; Row.Value reads a
		// missing value as ""); long rows keep their extra values, so
		// nothing is lost on write-back.
		row := Row{Index: n, Values: rec}
		id := row.Value(idIdx)
		if droppedIDs[id] {
			t.Dropped++
			continue
		}
		// The cap counts the rows kept (each is an image to load); the
		// byte cap bounds the rest. The table was fetched: it is the
		// table, not its server, that cannot be served (dataset_invalid).
		if len(t.Rows) >= tl.rows {
			return nil, fmt.Errorf("%w: %w: more than %d rows, the most one job may have; set limit to map the first rows", ErrDatasetInvalid, ErrTooLarge, tl.rows)
		}
		row.ID = id
		t.Rows = append(t.Rows, row)
	}
	if len(t.Rows) == 0 {
		return nil, fmt.Errorf("%w: no rows left (%d dropped for an empty or missing %q)", ErrDatasetInvalid, t.Dropped, idCol)
	}
	return t, nil
}

// decodeText returns data as UTF-8: a BOM is removed, valid UTF-8 is kept,
// and every byte that is not part of valid UTF-8 is read as Latin-1 (the
// museum's file was Latin-1; mixed files keep what they can).
func decodeText(data []byte) string {
	if len(data) >= 3 && data[0] == 0xEF && data[1] == 0xBB && data[2] == 0xBF {
		data = data[3:]
	}
	if utf8.Valid(data) {
		return string(data)
	}
	var b strings.Builder
	b.Grow(len(data) + len(data)/8)
	for len(data) > 0 {
		r, size := utf8.DecodeRune(data)
		if r == utf8.RuneError && size <= 1 {
			b.WriteRune(rune(data[0]))
			data = data[1:]
			continue
		}
		b.Write(data[:size])
		data = data[size:]
	}
	return b.String()
}

// detectDelimiter looks at the header line only (outside quotes): tabs win
// over commas, since a tab in a CSV header is rarer than a comma in a TSV
// header; with neither, the URL suffix decides.
func detectDelimiter(text, pathHint string) rune {
	tabs, commas := 0, 0
	inQuote := false
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c == '"' {
			inQuote = !inQuote
			continue
		}
		if inQuote {
			continue
		}
		if c == '\n' || c == '\r' {
			break
		}
		switch c {
		case '\t':
			tabs++
		case ',':
			commas++
		}
	}
	switch {
	case tabs > 0 && tabs >= commas:
		return '\t'
	case commas > 0:
		return ','
	}
	if strings.EqualFold(path.Ext(pathHint), ".csv") {
		return ','
	}
	return '\t'
}
