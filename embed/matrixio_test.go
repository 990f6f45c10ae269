package embed

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestReadMatrixText(t *testing.T) {
	cases := []struct {
		name, in, format string
		ids              []string
		n, d             int
		first            float32
	}{
		{"plain tsv", "1\t2\t3\n4\t5\t6\n", "tsv", []string{"0", "1"}, 2, 3, 1},
		{"header csv", "a,b\n1.5,2\n3,4\n", "csv", []string{"0", "1"}, 2, 2, 1.5},
		{"id column", "img7\t1\t2\nimg8\t3\t4\n", "tsv", []string{"img7", "img8"}, 2, 2, 1},
		{"header and id", "id,f1,f2\n10,1,2\n11,3,4\n", "csv", []string{"10", "11"}, 2, 2, 1},
		{"crlf, blank line, exponent", "x,y\r\n1e-3,2\r\n\r\n3,4\r\n", "csv", []string{"0", "1"}, 2, 2, 1e-3},
	}
	for _, c := range cases {
		m, err := ReadMatrix(strings.NewReader(c.in), c.format)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if m.Data.N != c.n || m.Data.D != c.d || m.Data.F32[0] != c.first || strings.Join(m.IDs, ",") != strings.Join(c.ids, ",") {
			t.Errorf("%s: got N=%d D=%d first=%v ids=%v", c.name, m.Data.N, m.Data.D, m.Data.F32[0], m.IDs)
		}
	}
}

func TestReadMatrixErrors(t *testing.T) {
	cases := map[string]string{
		"empty":        "",
		"header only":  "a\tb\n",
		"ragged":       "1\t2\n3\n",
		"nan":          "1,2\nnan,4\n",
		"inf":          "1,2\n3,+Inf\n",
		"text in data": "1,2\n3,x\n",
	}
	for name, in := range cases {
		_, err := ReadMatrix(strings.NewReader(in), "csv")
		if !errors.Is(err, ErrInvalidInput) {
			t.Errorf("%s: got %v, want ErrInvalidInput", name, err)
		}
	}
	if _, err := ReadMatrix(strings.NewReader("1\t2\n3\n"), "tsv"); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("ragged row error should name line 2: %v", err)
	}
	if _, err := ReadMatrix(strings.NewReader("x"), "parquet"); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("unknown format: %v", err)
	}
}

func npy(descr string, fortran bool, shape string, data []byte) []byte {
	order := "False"
	if fortran {
		order = "True"
	}
	h := "{'descr': '" + descr + "', 'fortran_order': " + order + ", 'shape': " + shape + ", }"
	for (10+len(h)+1)%64 != 0 {
		h += " "
	}
	h += "\n"
	var b bytes.Buffer
	b.WriteString("\x93NUMPY\x01\x00")
	binary.Write(&b, binary.LittleEndian, uint16(len(h)))
	b.WriteString(h)
	b.Write(data)
	return b.Bytes()
}

func TestReadMatrixNPY(t *testing.T) {
	var f4 bytes.Buffer
	for _, v := range []float32{1, 2, 3, 4, 5, 6} {
		binary.Write(&f4, binary.LittleEndian, math.Float32bits(v))
	}
	m, err := ReadMatrix(bytes.NewReader(npy("<f4", false, "(2, 3)", f4.Bytes())), "npy")
	if err != nil || m.Data.N != 2 || m.Data.D != 3 || m.Data.F32[3] != 4 {
		t.Fatalf("f4: %v %+v", err, m)
	}
	m, err = ReadMatrix(bytes.NewReader(npy("<f4", true, "(2, 3)", f4.Bytes())), "npy")
	if err != nil || m.Data.F32[1] != 3 { // column-major: row 0 is 1, 3, 5
		t.Fatalf("fortran: %v %+v", err, m)
	}
	m, err = ReadMatrix(bytes.NewReader(npy("|u1", false, "(2, 2)", []byte{0, 255, 7, 9})), "npy")
	if err != nil || m.Data.U8 == nil || m.Data.U8[1] != 255 {
		t.Fatalf("u1: %v %+v", err, m)
	}
	var i8 bytes.Buffer
	binary.Write(&i8, binary.BigEndian, []int64{-1, 2})
	m, err = ReadMatrix(bytes.NewReader(npy(">i8", false, "(1, 2)", i8.Bytes())), "npy")
	if err != nil || m.Data.F32[0] != -1 {
		t.Fatalf("i8 big-endian: %v %+v", err, m)
	}
	for name, b := range map[string][]byte{
		"truncated": npy("<f4", false, "(2, 3)", f4.Bytes()[:10]),
		"1-D":       npy("<f4", false, "(6,)", f4.Bytes()),
		"complex":   npy("<c8", false, "(2, 3)", f4.Bytes()),
		"magic":     []byte("PK\x03\x04 not numpy"),
	} {
		if _, err := ReadMatrix(bytes.NewReader(b), "npy"); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("%s: got %v, want ErrInvalidInput", name, err)
		}
	}
}

func TestWriteCoordinates(t *testing.T) {
	var b bytes.Buffer
	if err := WriteCoordinates(&b, []string{"a", "b\tc"}, []float32{1, 2, 3, 4.5}, 2); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "id\tx\ty\na\t1\t2\nb c\t3\t4.5\n"; got != want {
		t.Errorf("got %q want %q", got, want)
	}
}
