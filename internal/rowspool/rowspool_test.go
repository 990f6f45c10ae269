package rowspool

import (
	"bufio"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// rows returns n rows of d bytes, row i filled with a pattern of i.
func rows(n, d int) []uint8 {
	out := make([]uint8, n*d)
	for i := range out {
		out[i] = uint8(i/d*7 + i%d)
	}
	return out
}

func TestReadRowsReturnsWhatWasAppended(t *testing.T) {
	const n, d = 50, 13
	want := rows(n, d)
	s, err := Create(t.TempDir(), d)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for lo := 0; lo < n; lo += 7 { // appends of several rows, the last short
		if err := s.Append(want[lo*d : min(n, lo+7)*d]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Finish(); err != nil {
		t.Fatal(err)
	}
	if s.Len() != n {
		t.Fatalf("Len = %d, want %d", s.Len(), n)
	}
	tests := []struct{ lo, rows int }{{0, n}, {0, 1}, {49, 1}, {10, 17}}
	for _, tc := range tests {
		got := make([]uint8, tc.rows*d)
		if err := s.ReadRows(context.Background(), tc.lo, got); err != nil {
			t.Fatalf("rows %d+%d: %v", tc.lo, tc.rows, err)
		}
		if !slices.Equal(got, want[tc.lo*d:(tc.lo+tc.rows)*d]) {
			t.Errorf("rows %d+%d differ from what was appended", tc.lo, tc.rows)
		}
	}
}

func TestMisuseIsAnErrorNamingTheFile(t *testing.T) {
	s, err := Create(t.TempDir(), 4)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Append(make([]uint8, 8)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func() error
	}{
		{"read before Finish", func() error { return s.ReadRows(context.Background(), 0, make([]uint8, 4)) }},
		{"part of a row", func() error { return s.Append(make([]uint8, 3)) }},
		{"read past the end", func() error { s.Finish(); return s.ReadRows(context.Background(), 1, make([]uint8, 8)) }},
		{"append after Finish", func() error { return s.Append(make([]uint8, 4)) }},
	}
	for _, tc := range tests {
		err := tc.call()
		if err == nil || !strings.Contains(err.Error(), s.Path()) {
			t.Errorf("%s: error %v, want one naming %s", tc.name, err, s.Path())
		}
	}
}

func TestNothingIsLeftInTheDirectory(t *testing.T) {
	dir := t.TempDir()
	s, err := Create(dir, 8)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(rows(10, 8)); err != nil {
		t.Fatal(err)
	}
	// Unlinked at once (Linux): nothing to clean up however the process
	// ends; elsewhere Close removes it.
	if !s.removeOnClose {
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Errorf("after Create the directory holds %v", left)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("after Close the directory holds %v", left)
	}
	if err := s.ReadRows(context.Background(), 0, make([]uint8, 8)); err == nil {
		t.Error("ReadRows after Close succeeded")
	}
}

func TestCreateInAnUnusableDirectoryNamesIt(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no", "such")
	readOnly := t.TempDir()
	if err := os.Chmod(readOnly, 0o500); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, dir string }{{"missing", missing}, {"read-only", readOnly}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "read-only" && os.Geteuid() == 0 {
				t.Skip("root writes into a read-only directory")
			}
			s, err := Create(tc.dir, 8)
			if err == nil {
				s.Close()
				t.Fatalf("Create in %s succeeded", tc.dir)
			}
			if !strings.Contains(err.Error(), tc.dir) {
				t.Errorf("error %q does not name %s", err, tc.dir)
			}
		})
	}
}

// A full disk: /dev/full answers every write with ENOSPC.
func TestDiskFullIsAnErrorNamingTheFile(t *testing.T) {
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	s := &File{path: "/dev/full", f: full, w: bufio.NewWriterSize(full, writeBuffer), d: 4}
	defer s.Close()
	err = s.Append(make([]uint8, 2*writeBuffer))
	if err == nil {
		err = s.Finish()
	}
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "/dev/full") {
		t.Errorf("error %v, want ENOSPC naming /dev/full", err)
	}
}

func TestReadRowsStopsWhenCancelled(t *testing.T) {
	s, err := Create(t.TempDir(), 4)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := errors.Join(s.Append(rows(4, 4)), s.Finish()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.ReadRows(ctx, 0, make([]uint8, 16)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled read: %v, want context.Canceled", err)
	}
}

// Rows written at their place, out of order and from several goroutines,
// read back as written; a row never written reads as zeros.
func TestWriteRowsAtPlacesRowsInAnyOrder(t *testing.T) {
	const n, d, hole = 40, 9, 17
	want := rows(n, d)
	clear(want[hole*d : (hole+1)*d])
	s, err := Create(t.TempDir(), d)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := n - 1 - g; i >= 0; i -= 4 {
				if i == hole {
					continue
				}
				if err := s.WriteRowsAt(i, want[i*d:(i+1)*d]); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := s.Finish(); err != nil {
		t.Fatal(err)
	}
	if s.Len() != n {
		t.Fatalf("Len = %d, want %d", s.Len(), n)
	}
	got := make([]uint8, n*d)
	if err := s.ReadRows(context.Background(), 0, got); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Error("rows read back differ from those written at their place")
	}
}

// Append and WriteRowsAt do not mix: the buffered appends would land over
// the placed rows. Either order is an error naming the file.
func TestAppendAndWriteRowsAtDoNotMix(t *testing.T) {
	tests := []struct {
		name          string
		first, second func(*File) error
	}{
		{"append, then write at", func(s *File) error { return s.Append(make([]uint8, 4)) }, func(s *File) error { return s.WriteRowsAt(3, make([]uint8, 4)) }},
		{"write at, then append", func(s *File) error { return s.WriteRowsAt(3, make([]uint8, 4)) }, func(s *File) error { return s.Append(make([]uint8, 4)) }},
		{"write at after Finish", func(s *File) error { return s.Finish() }, func(s *File) error { return s.WriteRowsAt(0, make([]uint8, 4)) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Create(t.TempDir(), 4)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := tc.first(s); err != nil {
				t.Fatal(err)
			}
			if err := tc.second(s); err == nil || !strings.Contains(err.Error(), s.Path()) {
				t.Errorf("error %v, want one naming %s", err, s.Path())
			}
		})
	}
}
