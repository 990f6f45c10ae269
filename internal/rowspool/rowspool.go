// Package rowspool keeps fixed-width uint8 rows (an image set's pixels) in
// a temporary file instead of memory, and reads them back in blocks with
// pread (os.File.ReadAt): a run over 100,000 images of 100×100 RGB then
// holds a block of rows at a time, not 3 GB. A File is an embed.RowSource.
//
// The file is unlinked as soon as it is created (where the system allows
// it, as on Linux), so it disappears when the File is closed or the process
// ends, however it ends; its space shows in df, not in a directory listing.
package rowspool

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// writeBuffer is the size of the buffered writer in front of the file.
const writeBuffer = 1 << 20

// readChunk bounds one pread, so a cancel is seen within about 16 MB read.
const readChunk = 16 << 20

// File is a temporary file of rows of D bytes each, written either with
// Append (in order, one goroutine) or with WriteRowsAt (at any row, from
// any number of goroutines), then read with ReadRows after Finish, which
// may be called concurrently.
type File struct {
	path          string
	f             *os.File
	w             *bufio.Writer // nil after Finish
	d             int
	removeOnClose bool // the file could not be unlinked while open

	mu     sync.Mutex
	n      int  // rows: appended, or up to the last written at
	placed bool // written with WriteRowsAt (Append would write over it)
}

// Create makes an empty spool of d-byte rows in dir ("" is os.TempDir()).
// The error names the directory when it cannot be written.
func Create(dir string, d int) (*File, error) {
	if d < 1 {
		return nil, fmt.Errorf("rowspool: rows of %d bytes", d)
	}
	if dir == "" {
		dir = os.TempDir()
	}
	f, err := os.CreateTemp(dir, "tsnemap-rows-*")
	if err != nil {
		return nil, fmt.Errorf("rowspool: create a temporary file in %s: %w", dir, err)
	}
	s := &File{path: f.Name(), f: f, w: bufio.NewWriterSize(f, writeBuffer), d: d}
	if err := os.Remove(s.path); err != nil {
		s.removeOnClose = true
	}
	return s, nil
}

// Path is where the file was created (already unlinked on Linux).
func (s *File) Path() string { return s.path }

// D is the width of a row in bytes.
func (s *File) D() int { return s.d }

// Len is the number of rows appended so far (or, with WriteRowsAt, one
// past the last row written).
func (s *File) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// Append writes rows (a whole number of D-byte rows) at the end. A failed
// write (disk full) is an error that names the file.
func (s *File) Append(rows []uint8) error {
	switch {
	case s.w == nil:
		return fmt.Errorf("rowspool %s: append after Finish", s.path)
	case len(rows)%s.d != 0:
		return fmt.Errorf("rowspool %s: append of %d bytes, not a whole number of %d-byte rows", s.path, len(rows), s.d)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.placed {
		return fmt.Errorf("rowspool %s: append after WriteRowsAt", s.path)
	}
	if _, err := s.w.Write(rows); err != nil {
		return fmt.Errorf("rowspool %s: write: %w", s.path, err)
	}
	s.n += len(rows) / s.d
	return nil
}

// WriteRowsAt writes rows (a whole number of D-byte rows) at row lo, with
// pwrite (os.File.WriteAt): rows may arrive in any order, from several
// goroutines at once, and rows never written stay holes of zeros (no disk
// space on Linux's file systems). Len becomes at least lo plus the rows
// written. A File written this way takes no Append. A failed write (disk
// full) is an error that names the file.
func (s *File) WriteRowsAt(lo int, rows []uint8) error {
	switch {
	case s.w == nil:
		return fmt.Errorf("rowspool %s: write after Finish", s.path)
	case len(rows)%s.d != 0 || lo < 0:
		return fmt.Errorf("rowspool %s: write of %d bytes at row %d, not a whole number of %d-byte rows", s.path, len(rows), lo, s.d)
	}
	s.mu.Lock()
	if s.n > 0 && !s.placed {
		s.mu.Unlock()
		return fmt.Errorf("rowspool %s: WriteRowsAt after Append", s.path)
	}
	s.placed = true
	s.mu.Unlock()
	if _, err := s.f.WriteAt(rows, int64(lo)*int64(s.d)); err != nil {
		return fmt.Errorf("rowspool %s: write: %w", s.path, err)
	}
	s.mu.Lock()
	s.n = max(s.n, lo+len(rows)/s.d)
	s.mu.Unlock()
	return nil
}

// Finish flushes what Append buffered; ReadRows works only after it.
func (s *File) Finish() error {
	if s.w == nil {
		return nil
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("rowspool %s: write: %w", s.path, err)
	}
	s.w = nil
	return nil
}

// ReadRows implements embed.RowSource: it copies rows lo, lo+1, … into dst
// (a whole number of rows, all appended).
func (s *File) ReadRows(ctx context.Context, lo int, dst []uint8) error {
	rows := len(dst) / s.d
	switch n := s.Len(); {
	case s.w != nil:
		return fmt.Errorf("rowspool %s: read before Finish", s.path)
	case len(dst)%s.d != 0 || lo < 0 || lo+rows > n:
		return fmt.Errorf("rowspool %s: read of %d bytes at row %d: the file has %d rows of %d bytes", s.path, len(dst), lo, n, s.d)
	}
	off := int64(lo) * int64(s.d)
	for len(dst) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		c := min(len(dst), readChunk)
		if _, err := s.f.ReadAt(dst[:c], off); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("rowspool %s: read: %w", s.path, err)
		}
		dst, off = dst[c:], off+int64(c)
	}
	return nil
}

// Close closes the file, which removes it; it is safe to call more than
// once.
func (s *File) Close() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f, s.w = nil, nil
	if s.removeOnClose {
		if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
	}
	if err != nil {
		return fmt.Errorf("rowspool %s: close: %w", s.path, err)
	}
	return nil
}
