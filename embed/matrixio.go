package embed

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// Matrix is a numeric table read from a file: one row per point, with an
// id for each row (the file's id column, or the row number from 0).
type Matrix struct {
	IDs  []string
	Data Data
}

// ReadMatrix reads a numeric matrix in the given format: "tsv" or "csv"
// (delimiter detected from the first line; an optional header row and an
// optional leading non-numeric id column), or "npy" (NumPy's format:
// 2-D, C or Fortran order, integer or floating dtype; uint8 stays uint8).
// Errors wrap ErrInvalidInput and say where the problem is.
func ReadMatrix(r io.Reader, format string) (*Matrix, error) {
	switch strings.ToLower(format) {
	case "npy":
		return readNPY(r)
	case "tsv", "csv", "tab", "txt":
		return readText(r)
	}
	return nil, fmt.Errorf("%w: unknown matrix format %q (want tsv, csv or npy)", ErrInvalidInput, format)
}

func inputErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidInput, fmt.Sprintf(format, args...))
}

func readText(r io.Reader) (*Matrix, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	first, err := br.Peek(64 << 10)
	if len(first) == 0 {
		if errors.Is(err, io.EOF) {
			return nil, inputErr("the file is empty")
		}
		return nil, fmt.Errorf("read matrix: %w", err)
	}
	line := first
	if i := bytes.IndexByte(first, '\n'); i >= 0 {
		line = first[:i]
	}
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1 // ragged rows get our own error, with the line
	cr.ReuseRecord = true
	cr.Comma = ','
	if bytes.IndexByte(line, '\t') >= 0 {
		cr.Comma = '\t'
	}
	m := &Matrix{}
	var vals []float32
	width, idCol, row := -1, false, 0
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, inputErr("%v", err)
		}
		lineNo, _ := cr.FieldPos(0)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue // blank line
		}
		if width < 0 {
			// The first row is a header if any field other than the first
			// is not a number; the first column holds ids if its first
			// data value is not a number (or the header calls it "id").
			header := false
			for _, f := range rec[1:] {
				if _, err := parseFloat(f); err != nil {
					header = true
					break
				}
			}
			if _, err := parseFloat(rec[0]); err != nil {
				if !header && len(rec) > 1 {
					idCol = true
				} else {
					header = true
				}
			}
			width = len(rec)
			if header {
				idCol = idCol || strings.EqualFold(strings.TrimSpace(rec[0]), "id")
				continue
			}
		}
		if len(rec) != width {
			return nil, inputErr("line %d has %d fields, the first row has %d (every row needs the same number of columns)", lineNo, len(rec), width)
		}
		fields := rec
		id := strconv.Itoa(row)
		if idCol {
			id, fields = rec[0], rec[1:]
			if row == 0 && width == 1 {
				return nil, inputErr("the file has an id column but no numeric columns")
			}
		}
		for c, f := range fields {
			v, err := parseFloat(f)
			if err != nil {
				return nil, inputErr("line %d column %d: %q is not a number", lineNo, c+1+boolInt(idCol), f)
			}
			vals = append(vals, v)
		}
		m.IDs = append(m.IDs, id)
		row++
	}
	if row == 0 {
		return nil, inputErr("the file has no data rows")
	}
	m.Data = Data{N: row, D: len(vals) / row, F32: vals}
	if err := m.Data.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func parseFloat(s string) (float32, error) {
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 32)
	if err != nil {
		return 0, err
	}
	return float32(v), nil
}

var npyDescr = regexp.MustCompile(`'descr'\s*:\s*'([<>|=])([a-z])(\d+)'`)
var npyOrder = regexp.MustCompile(`'fortran_order'\s*:\s*(True|False)`)
var npyShape = regexp.MustCompile(`'shape'\s*:\s*\(\s*(\d+)\s*,\s*(\d+)\s*,?\s*\)`)

// readNPY reads NumPy's .npy format (version 1, 2 or 3).
func readNPY(r io.Reader) (*Matrix, error) {
	var pre [8]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return nil, inputErr("not a .npy file: %v", err)
	}
	if string(pre[:6]) != "\x93NUMPY" {
		return nil, inputErr("not a .npy file (bad magic)")
	}
	var hlen int
	switch pre[6] {
	case 1:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, inputErr("truncated .npy header")
		}
		hlen = int(binary.LittleEndian.Uint16(b[:]))
	case 2, 3:
		var b [4]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, inputErr("truncated .npy header")
		}
		hlen = int(binary.LittleEndian.Uint32(b[:]))
	default:
		return nil, inputErr(".npy version %d is not supported", pre[6])
	}
	if hlen > 1<<20 {
		return nil, inputErr(".npy header of %d bytes is too long", hlen)
	}
	h := make([]byte, hlen)
	if _, err := io.ReadFull(r, h); err != nil {
		return nil, inputErr("truncated .npy header")
	}
	d := npyDescr.FindSubmatch(h)
	o := npyOrder.FindSubmatch(h)
	s := npyShape.FindSubmatch(h)
	if d == nil || o == nil || s == nil {
		return nil, inputErr(".npy header %q: need a 2-D array of numbers", strings.TrimSpace(string(h)))
	}
	n, _ := strconv.Atoi(string(s[1]))
	cols, _ := strconv.Atoi(string(s[2]))
	size, _ := strconv.Atoi(string(d[3]))
	kind := string(d[2])
	var order binary.ByteOrder = binary.LittleEndian
	if d[1][0] == '>' {
		order = binary.BigEndian
	}
	if n < 1 || cols < 1 || n > math.MaxInt32 || cols > math.MaxInt32 || int64(n)*int64(cols) > 1<<34 {
		return nil, inputErr(".npy shape (%d, %d) is empty or too large", n, cols)
	}
	supported := (kind == "f" && (size == 4 || size == 8)) || ((kind == "i" || kind == "u") && (size == 1 || size == 2 || size == 4 || size == 8))
	if !supported {
		return nil, inputErr(".npy dtype %s%d is not supported (want float, int or uint)", kind, size)
	}
	// Read what is there, up to what the shape says, before trusting the
	// shape: a header is cheap to forge, and the buffer grows with the data
	// actually read rather than with the size the header claims.
	raw, err := io.ReadAll(io.LimitReader(r, int64(n)*int64(cols)*int64(size)))
	if err != nil {
		return nil, fmt.Errorf("read .npy data: %w", err)
	}
	if len(raw) != n*cols*size {
		return nil, inputErr(".npy data is shorter than its shape (%d, %d) says", n, cols)
	}
	m := &Matrix{IDs: make([]string, n), Data: Data{N: n, D: cols}}
	for i := range m.IDs {
		m.IDs[i] = strconv.Itoa(i)
	}
	fortran := string(o[1]) == "True"
	at := func(i, c int) int { // element index in the file
		if fortran {
			return c*n + i
		}
		return i*cols + c
	}
	if kind == "u" && size == 1 {
		m.Data.U8 = make([]uint8, n*cols)
		for i := range n {
			for c := range cols {
				m.Data.U8[i*cols+c] = raw[at(i, c)]
			}
		}
		return m, nil
	}
	m.Data.F32 = make([]float32, n*cols)
	for i := range n {
		for c := range cols {
			b := raw[at(i, c)*size:]
			var v float64
			switch {
			case kind == "f" && size == 4:
				v = float64(math.Float32frombits(order.Uint32(b)))
			case kind == "f":
				v = math.Float64frombits(order.Uint64(b))
			case size == 1 && kind == "i":
				v = float64(int8(b[0]))
			case size == 2:
				u := order.Uint16(b)
				v = float64(u)
				if kind == "i" {
					v = float64(int16(u))
				}
			case size == 4:
				u := order.Uint32(b)
				v = float64(u)
				if kind == "i" {
					v = float64(int32(u))
				}
			default:
				u := order.Uint64(b)
				v = float64(u)
				if kind == "i" {
					v = float64(int64(u))
				}
			}
			m.Data.F32[i*cols+c] = float32(v)
		}
	}
	if err := m.Data.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// WriteCoordinates writes "id, x, y (, z)" as TSV with a header.
func WriteCoordinates(w io.Writer, ids []string, y []float32, dims int) error {
	bw := bufio.NewWriter(w)
	names := []string{"id", "x", "y", "z"}[:1+dims]
	bw.WriteString(strings.Join(names, "\t") + "\n")
	for i, id := range ids {
		bw.WriteString(strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(id))
		for c := range dims {
			bw.WriteByte('\t')
			bw.WriteString(strconv.FormatFloat(float64(y[i*dims+c]), 'g', -1, 32))
		}
		bw.WriteByte('\n')
	}
	return bw.Flush()
}
