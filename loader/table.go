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
}

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
	Values   []string // the original values as UTF-8 text, at least len(Header) of them
	ID       string   // the value of the id column
	ImageURL string   // resolved absolute URL of its image ("" if its URL cell was empty)
}

// droppedIDs are the values pandas reads as missing, which the original
// script therefore dropped.
var droppedIDs = map[string]bool{"": true, "nan": true, "NaN": true, "null": true, "None": true, "NA": true}

// FetchTable downloads and parses the table at rawURL. Errors wrap
// ErrDatasetUnreachable or ErrDatasetInvalid.
func (l *Loader) FetchTable(ctx context.Context, rawURL string, opts TableOptions) (*Table, error) {
	base, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: invalid URL %q: %w", ErrDatasetUnreachable, rawURL, err)
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
	data, err := l.fetch(ctx, rawURL, l.cfg.MaxTableBytes, "text/tab-separated-values, text/csv, text/plain;q=0.9, */*;q=0.5")
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("fetch table %s: %w", rawURL, err)
		}
		return nil, fmt.Errorf("%w: fetch %s: %w", ErrDatasetUnreachable, rawURL, err)
	}
	t, err := parseTable(ctx, data, base.Path, opts, l.cfg.MaxRows)
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
		r.ImageURL = resolveURL(base, r.Values[t.columnIndex(opts.ImageURLColumn)])
	}
	return t, nil
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
func parseTable(ctx context.Context, data []byte, pathHint string, opts TableOptions, maxRows int) (*Table, error) {
	idCol := opts.IDColumn
	if idCol == "" {
		idCol = "id"
	}
	text := decodeText(data)
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
		// Short rows are padded so that every column can be indexed; long
		// rows keep their extra values, so nothing is lost on write-back.
		for len(rec) < len(header) {
			rec = append(rec, "")
		}
		id := rec[idIdx]
		if droppedIDs[id] {
			t.Dropped++
			continue
		}
		// The cap counts the rows kept (each is an image to load); the
		// byte cap bounds the rest. The table was fetched: it is the
		// table, not its server, that cannot be served (dataset_invalid).
		if len(t.Rows) >= maxRows {
			return nil, fmt.Errorf("%w: %w: more than %d rows, the most one job may have; set limit to map the first rows", ErrDatasetInvalid, ErrTooLarge, maxRows)
		}
		t.Rows = append(t.Rows, Row{Index: n, Values: rec, ID: id})
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
