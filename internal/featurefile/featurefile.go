// Package featurefile writes feature files (vectors keyed by id) in the
// formats a job's features_url takes, for tests and examples: NumPy .npy
// with its .ids.txt, TSV or CSV with an id column, and Parquet with a list
// or fixed-size-list column (written by Apache Arrow's Parquet writer, so
// the files are those other tools make).
package featurefile

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// NPY returns vecs (all of one length) as a 2-D C-order .npy of float32
// (double false) or float64 (double true), and the matching .ids.txt.
func NPY(ids []string, vecs [][]float32, double bool) (npy, idsTxt []byte) {
	n, d := len(vecs), 0
	if n > 0 {
		d = len(vecs[0])
	}
	descr := "<f4"
	if double {
		descr = "<f8"
	}
	h := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%d, %d), }", descr, n, d)
	h += strings.Repeat(" ", 63-(10+len(h))%64) + "\n" // pad to a multiple of 64, as numpy does
	var b bytes.Buffer
	b.WriteString("\x93NUMPY\x01\x00")
	_ = binary.Write(&b, binary.LittleEndian, uint16(len(h)))
	b.WriteString(h)
	for _, v := range vecs {
		for _, x := range v {
			if double {
				_ = binary.Write(&b, binary.LittleEndian, math.Float64bits(float64(x)))
			} else {
				_ = binary.Write(&b, binary.LittleEndian, math.Float32bits(x))
			}
		}
	}
	return b.Bytes(), []byte(strings.Join(ids, "\n") + "\n")
}

// Text returns a header row (idColumn, then v0, v1, …) and one row per
// vector, separated by delim ('\t' or ',').
func Text(ids []string, vecs [][]float32, delim byte, idColumn string) []byte {
	var b bytes.Buffer
	d := 0
	if len(vecs) > 0 {
		d = len(vecs[0])
	}
	b.WriteString(idColumn)
	for j := range d {
		fmt.Fprintf(&b, "%cv%d", delim, j)
	}
	b.WriteByte('\n')
	for i, v := range vecs {
		b.WriteString(ids[i])
		for _, x := range v {
			b.WriteByte(delim)
			b.WriteString(strconv.FormatFloat(float64(x), 'g', -1, 32))
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// Parquet returns a Parquet file with a string column idColumn and a
// column vecColumn of float32 vectors: a list (fixed false; vectors may
// then differ in length) or a fixed-size list. A nil vector is written as
// null.
func Parquet(ids []string, vecs [][]float32, idColumn, vecColumn string, fixed bool) ([]byte, error) {
	mem := memory.NewGoAllocator()
	var vecType arrow.DataType = arrow.ListOf(arrow.PrimitiveTypes.Float32)
	if fixed {
		vecType = arrow.FixedSizeListOf(int32(len(vecs[0])), arrow.PrimitiveTypes.Float32)
	}
	schema := arrow.NewSchema([]arrow.Field{
		{Name: idColumn, Type: arrow.BinaryTypes.String},
		{Name: vecColumn, Type: vecType, Nullable: true},
	}, nil)
	rb := array.NewRecordBuilder(mem, schema)
	defer rb.Release()
	idb := rb.Field(0).(*array.StringBuilder)
	lb := rb.Field(1).(array.ListLikeBuilder)
	vb := lb.ValueBuilder().(*array.Float32Builder)
	for i, v := range vecs {
		idb.Append(ids[i])
		if v == nil {
			lb.AppendNull()
			continue
		}
		if fl, ok := lb.(*array.ListBuilder); ok {
			fl.Append(true)
		} else {
			lb.(*array.FixedSizeListBuilder).Append(true)
		}
		vb.AppendValues(v, nil)
	}
	rec := rb.NewRecordBatch()
	defer rec.Release()
	tbl := array.NewTableFromRecords(schema, []arrow.RecordBatch{rec})
	defer tbl.Release()
	var b bytes.Buffer
	if err := pqarrow.WriteTable(tbl, &b, 4096, parquet.NewWriterProperties(), pqarrow.DefaultWriterProps()); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
