package loader

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"strconv"
	"strings"

	"github.com/tsnemap/tsnemap/embed"
)

// FeaturesOptions say how to read a features file.
type FeaturesOptions struct {
	IDColumn string // the column of ids (TSV, CSV, Parquet); default "id"
	Column   string // Parquet: the list column of vectors; default the file's only one
}

// Features are vectors computed elsewhere (CLIP, a CNN, a text model), one
// per id, in file order. They are matched to a table's rows by id.
type Features struct {
	URL    string
	IDs    []string
	Dim    int
	Values []float32 // len(IDs)×Dim, row-major
}

// Vector returns the i-th vector.
func (f *Features) Vector(i int) []float32 { return f.Values[i*f.Dim : (i+1)*f.Dim] }

// FetchFeatures downloads and parses the features file at rawURL, through
// the same guard, retries and byte limit (MaxFeaturesBytes) as tables. The
// format is told by the file's first bytes: Parquet ("PAR1"), NumPy
// ("\x93NUMPY"; its ids are one a line in the sibling file whose URL ends
// .ids.txt in place of .npy), else TSV or CSV with a header row. Errors
// wrap ErrDatasetUnreachable (the file could not be fetched) or
// ErrDatasetInvalid (it was fetched and cannot be used: empty, too large,
// a missing column, duplicate ids, ragged vectors, NaN or ±Inf), and name
// the file, the row or id and the column.
func (l *Loader) FetchFeatures(ctx context.Context, rawURL string, opts FeaturesOptions) (*Features, error) {
	if opts.IDColumn == "" {
		opts.IDColumn = "id"
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: features_url %q: %w", ErrDatasetUnreachable, rawURL, err)
	}
	data, err := l.fetchFeaturesFile(ctx, rawURL)
	if err != nil {
		return nil, err
	}
	var f *Features
	switch {
	case len(data) == 0:
		return nil, featuresErr(rawURL, "the file is empty")
	case bytes.HasPrefix(data, []byte("PAR1")):
		f, err = parseFeaturesParquet(ctx, data, opts)
	case bytes.HasPrefix(data, []byte("\x93NUMPY")):
		f, err = l.npyFeatures(ctx, data, u)
	default:
		f, err = parseFeaturesText(ctx, data, u.Path, opts.IDColumn)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		if errors.Is(err, ErrDatasetInvalid) || errors.Is(err, ErrDatasetUnreachable) {
			return nil, err
		}
		return nil, featuresErr(rawURL, "%v", err)
	}
	f.URL = rawURL
	if err := f.check(); err != nil {
		return nil, featuresErr(rawURL, "%v", err)
	}
	return f, nil
}

func featuresErr(rawURL, format string, args ...any) error {
	return fmt.Errorf("%w: features file %s: %s", ErrDatasetInvalid, rawURL, fmt.Sprintf(format, args...))
}

// fetchFeaturesFile fetches a features file; one over the size limit was
// reachable but cannot be used (dataset_invalid), as a table's is.
func (l *Loader) fetchFeaturesFile(ctx context.Context, rawURL string) ([]byte, error) {
	data, err := l.fetch(ctx, nil, rawURL, l.cfg.MaxFeaturesBytes, "application/vnd.apache.parquet, application/octet-stream, text/tab-separated-values, text/csv;q=0.9, */*;q=0.5")
	switch {
	case err == nil:
		return data, nil
	case ctx.Err() != nil:
		return nil, fmt.Errorf("fetch features %s: %w", rawURL, err)
	case errors.Is(err, ErrTooLarge):
		return nil, featuresErr(rawURL, "%v (the server's limit on a features file); send fewer or shorter vectors, e.g. float32 instead of float64", err)
	}
	return nil, fmt.Errorf("%w: fetch features %s: %w", ErrDatasetUnreachable, rawURL, err)
}

// check is what every format must satisfy: vectors, no duplicate or empty
// id, every value finite.
func (f *Features) check() error {
	if len(f.IDs) == 0 || f.Dim == 0 {
		return errors.New("the file has no vectors")
	}
	seen := make(map[string]int, len(f.IDs))
	for i, id := range f.IDs {
		if id == "" {
			return fmt.Errorf("row %d has an empty id", i)
		}
		if j, dup := seen[id]; dup {
			return fmt.Errorf("id %q appears twice (rows %d and %d); every id must have one vector", id, j, i)
		}
		seen[id] = i
		for c, v := range f.Vector(i) {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("row %d (id %q), component %d is %v; every value must be finite", i, id, c, v)
			}
		}
	}
	return nil
}

// npyFeatures reads a NumPy array (float32 or float64, 2-D; integers are
// read too) and its ids from the sibling .ids.txt file, one id a line in
// the array's row order.
func (l *Loader) npyFeatures(ctx context.Context, data []byte, u *url.URL) (*Features, error) {
	m, err := embed.ReadMatrix(bytes.NewReader(data), "npy")
	if err != nil {
		return nil, err
	}
	f := &Features{Dim: m.Data.D, Values: m.Data.F32}
	if m.Data.U8 != nil {
		f.Values = make([]float32, len(m.Data.U8))
		for i, v := range m.Data.U8 {
			f.Values[i] = float32(v)
		}
	}
	if !strings.HasSuffix(strings.ToLower(u.Path), ".npy") {
		return nil, fmt.Errorf("an .npy file's ids are read from the file beside it ending .ids.txt, so its URL must end .npy; or send Parquet, TSV or CSV with an id column")
	}
	sib := *u
	sib.Path = u.Path[:len(u.Path)-len(".npy")] + ".ids.txt"
	sib.RawPath = ""
	raw, err := l.fetch(ctx, nil, sib.String(), l.cfg.MaxTableBytes, "text/plain")
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("its ids (one a line, in the array's row order) are read from %s: %w", sib.String(), err)
	}
	text := strings.TrimSuffix(strings.ReplaceAll(decodeText(raw), "\r\n", "\n"), "\n")
	f.IDs = strings.Split(text, "\n")
	if text == "" {
		f.IDs = nil
	}
	if len(f.IDs) != m.Data.N {
		return nil, fmt.Errorf("%s has %d ids for the array's %d rows; it needs one id a line for each row", sib.String(), len(f.IDs), m.Data.N)
	}
	return f, nil
}

// parseFeaturesText reads TSV or CSV with a header row: the id column and
// every other column a number (a component of the vector).
func parseFeaturesText(ctx context.Context, data []byte, pathHint, idCol string) (*Features, error) {
	text := decodeText(data)
	r := csv.NewReader(strings.NewReader(text))
	r.Comma = detectDelimiter(text, pathHint)
	r.FieldsPerRecord = -1 // a ragged row gets our own error, naming it
	r.ReuseRecord = true
	header, err := r.Read()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("the file is empty; a header row with an id column is required")
	}
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	header = append([]string(nil), header...)
	idIdx := -1
	for i, h := range header {
		if h == idCol {
			idIdx = i
		}
	}
	if idIdx < 0 {
		return nil, fmt.Errorf("id column %q not found (id_column); the header has %s", idCol, columnList(header))
	}
	f := &Features{Dim: len(header) - 1}
	for n := 0; ; n++ {
		if n%4096 == 0 && ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		line, _ := r.FieldPos(0)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		if len(rec) != len(header) {
			return nil, fmt.Errorf("line %d (id %q) has %d columns, the header %d; every vector must have the same length", line, at(rec, idIdx), len(rec), len(header))
		}
		id := rec[idIdx]
		f.IDs = append(f.IDs, id)
		for c, v := range rec {
			if c == idIdx {
				continue
			}
			x, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil && !errors.Is(err, strconv.ErrRange) {
				return nil, fmt.Errorf("line %d (id %q), column %q: %q is not a number", line, id, header[c], v)
			}
			if math.IsNaN(x) || math.IsInf(float64(float32(x)), 0) {
				return nil, fmt.Errorf("line %d (id %q), column %q is %s; every value must be finite", line, id, header[c], v)
			}
			f.Values = append(f.Values, float32(x))
		}
	}
	return f, nil
}

func at(rec []string, i int) string {
	if i < len(rec) {
		return rec[i]
	}
	return ""
}
