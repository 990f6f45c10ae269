package loader

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// tableServer serves body at every path.
func tableServer(t *testing.T, body []byte) string {
	t.Helper()
	s := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(body)
	}))
	return s.URL
}

func TestFetchTableFormats(t *testing.T) {
	tests := []struct {
		name      string
		path      string
		body      string
		opts      TableOptions
		header    []string
		ids       []string
		values    [][]string
		indexes   []int
		delimiter rune
		dropped   int
	}{
		{
			name: "utf8 tsv", path: "/t.tsv",
			body:   "id\ttitle\n1\tCafé\n2\tMünchen\n",
			header: []string{"id", "title"}, ids: []string{"1", "2"},
			values:  [][]string{{"1", "Café"}, {"2", "München"}},
			indexes: []int{0, 1}, delimiter: '\t',
		},
		{
			name: "latin-1 tsv", path: "/t.tab",
			body:   "id\ttitle\n1\tCaf\xe9\n2\tM\xfcnchen \xa9\n",
			header: []string{"id", "title"}, ids: []string{"1", "2"},
			values:  [][]string{{"1", "Café"}, {"2", "München ©"}},
			indexes: []int{0, 1}, delimiter: '\t',
		},
		{
			name: "quoted tabs and newlines", path: "/t.tsv",
			body:   "id\tnote\n1\t\"a\tb\"\n2\t\"line1\nline2 \"\"quoted\"\"\"\n3\tplain\n",
			header: []string{"id", "note"}, ids: []string{"1", "2", "3"},
			values:  [][]string{{"1", "a\tb"}, {"2", "line1\nline2 \"quoted\""}, {"3", "plain"}},
			indexes: []int{0, 1, 2}, delimiter: '\t',
		},
		{
			name: "BOM and CRLF csv", path: "/data",
			body:   "\xef\xbb\xbfid,title\r\n1,\"x, y\"\r\n2,z\r\n",
			header: []string{"id", "title"}, ids: []string{"1", "2"},
			values:  [][]string{{"1", "x, y"}, {"2", "z"}},
			indexes: []int{0, 1}, delimiter: ',',
		},
		{
			name: "csv suffix is only a hint", path: "/t.csv",
			body:   "id\tname, with comma\n7\ta,b\n",
			header: []string{"id", "name, with comma"}, ids: []string{"7"},
			values:  [][]string{{"7", "a,b"}},
			indexes: []int{0}, delimiter: '\t',
		},
		{
			name: "single column takes the suffix", path: "/t.csv",
			body:   "id\n5\n",
			header: []string{"id"}, ids: []string{"5"}, values: [][]string{{"5"}},
			indexes: []int{0}, delimiter: ',',
		},
		{
			name: "NaN-like ids dropped, duplicates kept, values untouched", path: "/t.tsv",
			body:   "n\tid\n0\t\n1\tnan\n2\tNaN\n3\tnull\n4\tNone\n5\tNA\n6\t007\n7\t007\n8\t1e3\n9\tNAN\n",
			header: []string{"n", "id"}, ids: []string{"007", "007", "1e3", "NAN"},
			values:  [][]string{{"6", "007"}, {"7", "007"}, {"8", "1e3"}, {"9", "NAN"}},
			indexes: []int{6, 7, 8, 9}, delimiter: '\t', dropped: 6,
		},
		{
			name: "limit counts kept rows", path: "/t.tsv",
			body:   "id\nnan\na\nb\nc\n",
			opts:   TableOptions{Limit: 2},
			header: []string{"id"}, ids: []string{"a", "b"}, values: [][]string{{"a"}, {"b"}},
			indexes: []int{1, 2}, delimiter: '\t', dropped: 1,
		},
		{
			name: "other id column, short rows kept short (never padded), long rows kept", path: "/t.tsv",
			body:   "a\tobject\tb\nx\tO1\ty\tEXTRA\nx\tO2\n",
			opts:   TableOptions{IDColumn: "object"},
			header: []string{"a", "object", "b"}, ids: []string{"O1", "O2"},
			values:  [][]string{{"x", "O1", "y", "EXTRA"}, {"x", "O2"}},
			indexes: []int{0, 1}, delimiter: '\t',
		},
	}
	l := newTestLoader(t, nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := tableServer(t, []byte(tc.body))
			opts := tc.opts
			opts.ImageURLTemplate = "http://img.example/{id}.jpg"
			tab, err := l.FetchTable(ctxT(t), base+tc.path, opts)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(tab.Header, tc.header) {
				t.Errorf("header %q, want %q", tab.Header, tc.header)
			}
			if tab.Delimiter != tc.delimiter {
				t.Errorf("delimiter %q, want %q", tab.Delimiter, tc.delimiter)
			}
			if tab.Dropped != tc.dropped {
				t.Errorf("dropped %d, want %d", tab.Dropped, tc.dropped)
			}
			var ids []string
			var values [][]string
			var idx []int
			for _, r := range tab.Rows {
				ids = append(ids, r.ID)
				values = append(values, r.Values)
				idx = append(idx, r.Index)
				if want := "http://img.example/" + strings.ReplaceAll(r.ID, " ", "%20") + ".jpg"; r.ImageURL != want {
					t.Errorf("image URL %q, want %q", r.ImageURL, want)
				}
			}
			if !reflect.DeepEqual(ids, tc.ids) || !reflect.DeepEqual(values, tc.values) || !reflect.DeepEqual(idx, tc.indexes) {
				t.Errorf("rows\n ids %q values %q indexes %v\nwant ids %q values %q indexes %v", ids, values, idx, tc.ids, tc.values, tc.indexes)
			}
		})
	}
}

func TestFetchTableURLColumn(t *testing.T) {
	body := "id\timage\n1\timages/1.jpg\n2\t/abs/2.jpg\n3\thttps://other.example/3.png\n4\t\n5\t../up/5.jpg\n"
	base := tableServer(t, []byte(body))
	l := newTestLoader(t, nil)
	tab, err := l.FetchTable(ctxT(t), base+"/cat/list.tsv", TableOptions{ImageURLColumn: "image"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{base + "/cat/images/1.jpg", base + "/abs/2.jpg", "https://other.example/3.png", "", base + "/up/5.jpg"}
	for i, r := range tab.Rows {
		if r.ImageURL != want[i] {
			t.Errorf("row %d: %q, want %q", i, r.ImageURL, want[i])
		}
	}
}

func TestTemplateEscapesID(t *testing.T) {
	tm, err := parseTemplate("https://h.example/a/{id}.jpg?size=big&k={id}")
	if err != nil {
		t.Fatal(err)
	}
	got := tm.expand("a/b?c#d&e f")
	want := "https://h.example/a/a%2Fb%3Fc%23d&e%20f.jpg?size=big&k=a%2Fb%3Fc%23d%26e+f"
	if got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

func TestFetchTableErrors(t *testing.T) {
	l := newTestLoader(t, nil)
	good := tableServer(t, []byte("id\ttitle\n1\tx\n"))
	tmpl := TableOptions{ImageURLTemplate: "http://h.example/{id}"}
	tests := []struct {
		name     string
		url      string
		opts     TableOptions
		sentinel error
		contains string
	}{
		{"unknown id column", good, TableOptions{IDColumn: "object", ImageURLTemplate: "http://h.example/{id}"}, ErrDatasetInvalid, `id column "object" not found; the table has 2 columns: "id", "title"`},
		{"unknown URL column", good, TableOptions{ImageURLColumn: "url"}, ErrUnknownColumn, `image URL column "url" not found; the table has 2 columns: "id", "title"`},
		{"template without id", good, TableOptions{ImageURLTemplate: "http://h.example/x.jpg"}, ErrDatasetInvalid, "no {id}"},
		{"template not http", good, TableOptions{ImageURLTemplate: "file:///{id}"}, ErrDatasetInvalid, "absolute http or https"},
		{"id in host", good, TableOptions{ImageURLTemplate: "http://{id}.example/x"}, ErrDatasetInvalid, "host"},
		{"both", good, TableOptions{ImageURLTemplate: "http://h/{id}", ImageURLColumn: "title"}, ErrDatasetInvalid, "not both"},
		{"neither", good, TableOptions{}, ErrDatasetInvalid, "template"},
		{"no rows left", tableServer(t, []byte("id\tx\nnan\t1\n\t2\n")), tmpl, ErrDatasetInvalid, "no rows left"},
		{"empty file", tableServer(t, nil), tmpl, ErrDatasetInvalid, "header"},
		{"http 404", serve(t, http.NotFoundHandler()).URL, tmpl, ErrDatasetUnreachable, "http 404"},
		{"not http", "ftp://h.example/t.tsv", tmpl, ErrDatasetUnreachable, "scheme"},
		{"connection refused", "http://127.0.0.1:1/t.tsv", tmpl, ErrDatasetUnreachable, "connection"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := l.FetchTable(ctxT(t), tc.url, tc.opts)
			if !errors.Is(err, tc.sentinel) {
				t.Fatalf("error %v, want %v", err, tc.sentinel)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error %q does not contain %q", err, tc.contains)
			}
		})
	}
}

func TestFetchTableLimits(t *testing.T) {
	body := []byte("id\n" + strings.Repeat("x\n", 100))
	base := tableServer(t, body)
	tmpl := TableOptions{ImageURLTemplate: "http://h.example/{id}"}

	small := newTestLoader(t, func(c *Config) { c.MaxTableBytes = 64 })
	_, err := small.FetchTable(ctxT(t), base, tmpl)
	if !errors.Is(err, ErrDatasetUnreachable) || !errors.Is(err, ErrTooLarge) {
		t.Errorf("size cap: %v", err)
	}
	// Streamed without Content-Length, the cap still holds.
	chunked := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 100; i++ {
			_, _ = w.Write([]byte("x\n"))
			w.(http.Flusher).Flush()
		}
	}))
	_, err = small.FetchTable(ctxT(t), chunked.URL, TableOptions{IDColumn: "x", ImageURLTemplate: "http://h.example/{id}"})
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("size cap while streaming: %v", err)
	}

	rows := newTestLoader(t, func(c *Config) { c.MaxRows = 50 })
	_, err = rows.FetchTable(ctxT(t), base, tmpl)
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("row cap: %v", err)
	}
	// A limit under the cap reads only what it keeps.
	tab, err := rows.FetchTable(ctxT(t), base, TableOptions{ImageURLTemplate: "http://h.example/{id}", Limit: 10})
	if err != nil || len(tab.Rows) != 10 || !tab.Truncated {
		t.Errorf("limit under row cap: %v", err)
	}
}

func TestFetchTableCancelled(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	s := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	l := newTestLoader(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := l.FetchTable(ctx, s.URL, TableOptions{ImageURLTemplate: "http://h/{id}"})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

// TestTableCaps: columns, values and lines over the limits are refused with
// named errors before they are held; short rows under a wide header are
// not padded; an unknown column in a huge header gets a short message.
func TestTableCaps(t *testing.T) {
	l := newTestLoader(t, nil)
	tmpl := TableOptions{ImageURLTemplate: "http://h.example/{id}"}
	wide := "id" + strings.Repeat("\tc", 1000) + "\n1\n"
	longCell := "id\ttitle\n1\t" + strings.Repeat("x", 65<<10) + "\n"
	longLine := "id" + strings.Repeat("\t"+strings.Repeat("y", 60<<10), 18) + "\n"
	for _, tc := range []struct {
		name, body string
		sentinel   error
		contains   string
	}{
		{"too many columns", wide, ErrTooManyColumns, "line 1 has 1001 columns, more than 1000"},
		{"value too long", longCell, ErrCellTooLong, "line 2, column 2 holds 66560 bytes, more than 65536"},
		{"line too long", longLine, ErrLineTooLong, "line 1 is longer than 1048576 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := l.FetchTable(ctxT(t), tableServer(t, []byte(tc.body)), tmpl)
			if !errors.Is(err, tc.sentinel) || !errors.Is(err, ErrDatasetInvalid) || !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error %v, want %v saying %q", err, tc.sentinel, tc.contains)
			}
		})
	}

	// 999 columns of 400 bytes (a 400 KB header), 200 short rows: rows
	// hold only their own values, and the unknown-column error is short.
	var b strings.Builder
	b.WriteString("id")
	for i := range 998 {
		fmt.Fprintf(&b, "\t%03d%s", i, strings.Repeat("h", 397))
	}
	b.WriteString("\n")
	for i := range 200 {
		fmt.Fprintf(&b, "%d\n", i)
	}
	url := tableServer(t, []byte(b.String()))
	tab, err := l.FetchTable(ctxT(t), url, tmpl)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range tab.Rows {
		if len(r.Values) != 1 {
			t.Fatalf("row %d has %d values: padded", r.Index, len(r.Values))
		}
	}
	_, err = l.FetchTable(ctxT(t), url, TableOptions{ImageURLColumn: "nope"})
	if !errors.Is(err, ErrUnknownColumn) || len(err.Error()) > 2000 || !strings.Contains(err.Error(), "and 979 more") {
		t.Errorf("unknown column in a 400 KB header: %d bytes: %.300v", len(err.Error()), err)
	}
}
