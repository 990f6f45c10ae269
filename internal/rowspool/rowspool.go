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
)

// writeBuffer is the size of the buffered writer in front of the file.
const writeBuffer = 1 << 20

// readChunk bounds one pread, so a cancel is seen within about 16 MB read.
const readChunk = 16 << 20

// File is a temporary file of rows of D bytes each, written with Append,
// then read with ReadRows after Finish. It is not safe for concurrent use
// while writing; after Finish, ReadRows may be called concurrently.
type File struct {
	path          string
	f             *os.File
	w             *bufio.Writer // nil after Finish
	d, n          int
	removeOnClose bool // the file could not be unlinked while open
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

// Len is the number of rows appended so far.
func (s *File) Len() int { return s.n }

// Append writes rows (a whole number of D-byte rows) at the end. A failed
// write (disk full) is an error that names the file.
func (s *File) Append(rows []uint8) error {
	switch {
	case s.w == nil:
		return fmt.Errorf("rowspool %s: append after Finish", s.path)
	case len(rows)%s.d != 0:
		return fmt.Errorf("rowspool %s: append of %d bytes, not a whole number of %d-byte rows", s.path, len(rows), s.d)
	}
	if _, err := s.w.Write(rows); err != nil {
		return fmt.Errorf("rowspool %s: write: %w", s.path, err)
	}
	s.n += len(rows) / s.d
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
	switch {
	case s.w != nil:
		return fmt.Errorf("rowspool %s: read before Finish", s.path)
	case len(dst)%s.d != 0 || lo < 0 || lo+rows > s.n:
		return fmt.Errorf("rowspool %s: read of %d bytes at row %d: the file has %d rows of %d bytes", s.path, len(dst), lo, s.n, s.d)
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
