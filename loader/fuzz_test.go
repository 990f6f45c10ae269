package loader

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseTable: any bytes either parse into a consistent table or give
// an error; never a panic, never invalid UTF-8, never a dropped id kept.
// Seed corpus: testdata/fuzz/FuzzParseTable.
func FuzzParseTable(f *testing.F) {
	f.Add([]byte("id\ttitle\n1\tx\n"), "t.tsv", 0)
	f.Fuzz(func(t *testing.T, data []byte, hint string, limit int) {
		limit %= 50
		tab, err := parseTable(context.Background(), data, hint, TableOptions{Limit: limit}, tableLimits{rows: 1000})
		if err != nil {
			return
		}
		if len(tab.Rows) == 0 {
			t.Fatal("a table with no rows was accepted")
		}
		if limit > 0 && len(tab.Rows) > limit {
			t.Fatalf("%d rows, limit %d", len(tab.Rows), limit)
		}
		idIdx := tab.columnIndex("id")
		prev := -1
		for _, h := range tab.Header {
			if !utf8.ValidString(h) {
				t.Fatalf("header %q is not UTF-8", h)
			}
		}
		for _, r := range tab.Rows {
			if r.Index <= prev {
				t.Fatalf("row index %d after %d", r.Index, prev)
			}
			prev = r.Index
			// Short rows are not padded to the header (a padded table of
			// many columns and short rows was a memory attack), but a kept
			// row has its id.
			if idIdx >= len(r.Values) {
				t.Fatalf("row has %d values, its id is column %d", len(r.Values), idIdx)
			}
			if r.ID != r.Values[idIdx] || droppedIDs[r.ID] {
				t.Fatalf("row id %q kept", r.ID)
			}
			for _, v := range r.Values {
				if !utf8.ValidString(v) {
					t.Fatalf("value %q is not UTF-8", v)
				}
			}
		}
	})
}

// FuzzTemplate: whatever the id, the expanded URL parses, keeps the
// template's host, and gives the id back intact from its path or query.
// Seed corpus: testdata/fuzz/FuzzTemplate.
func FuzzTemplate(f *testing.F) {
	f.Add("A.1.2/3 ?#&%")
	f.Fuzz(func(t *testing.T, id string) {
		pt, err := parseTemplate("https://img.example/col/{id}.jpg")
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(pt.expand(id))
		if err != nil {
			t.Fatalf("expand(%q) does not parse: %v", id, err)
		}
		if u.Host != "img.example" || u.RawQuery != "" || u.Fragment != "" {
			t.Fatalf("expand(%q) = %s: the id escaped its place", id, u)
		}
		if want := "/col/" + id + ".jpg"; u.Path != want {
			t.Fatalf("path %q, want %q", u.Path, want)
		}
		qt, err := parseTemplate("http://img.example/get?id={id}&w=100")
		if err != nil {
			t.Fatal(err)
		}
		u, err = url.Parse(qt.expand(id))
		if err != nil {
			t.Fatalf("expand(%q) does not parse: %v", id, err)
		}
		q := u.Query()
		if q.Get("id") != id || q.Get("w") != "100" || len(q) != 2 || strings.Contains(u.Path, id+"x") {
			t.Fatalf("query %v from id %q", q, id)
		}
	})
}

// FuzzDecodeScaled: the JPEG fast path reads untrusted bytes; whatever they
// are it must return an image of the promised size or refuse, never panic.
// Seed corpus: the JPEG fixtures in testdata/. Run with
// -fuzzminimizetime 1x: minimising 8 KB inputs otherwise stalls the engine.
func FuzzDecodeScaled(f *testing.F) {
	for _, name := range []string{"scaled-444.jpg", "scaled-422-restart.jpg", "scaled-420-optimized.jpg", "scaled-lowq.jpg", "scaled-gray.jpg", "scaled-440.jpg"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, 8, 8)
	}
	f.Fuzz(func(t *testing.T, data []byte, minW, minH int) {
		minW, minH = 1+abs(minW)%64, 1+abs(minH)%64
		img, n, err := decodeScaled(data, minW, minH)
		if err != nil {
			return
		}
		b := img.Bounds()
		if b.Dx() < minW || b.Dy() < minH || (n != 1 && n != 2 && n != 4) {
			t.Fatalf("got %v at 1/%d for at least %d×%d", b, 8/n, minW, minH)
		}
	})
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}
