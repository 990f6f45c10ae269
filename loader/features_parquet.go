package loader

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// parseFeaturesParquet reads the id column and a list or fixed-size-list
// column of float or double (Apache Arrow's Parquet reader) into Features.
// The reader is not trusted with hostile bytes: a panic in it is a file
// that cannot be read, not a crash.
func parseFeaturesParquet(ctx context.Context, data []byte, opts FeaturesOptions) (f *Features, err error) {
	defer func() {
		if p := recover(); p != nil {
			f, err = nil, fmt.Errorf("not a readable Parquet file: %v", p)
		}
	}()
	pf, err := file.NewParquetReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("not a readable Parquet file: %w", err)
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 64 << 10}, memory.DefaultAllocator)
	if err != nil {
		return nil, fmt.Errorf("not a readable Parquet file: %w", err)
	}
	sc, err := fr.Schema()
	if err != nil {
		return nil, fmt.Errorf("not a readable Parquet file: %w", err)
	}
	idIdx, vecIdx, err := parquetColumns(sc, opts)
	if err != nil {
		return nil, err
	}
	tbl, err := fr.ReadTable(ctx)
	if err != nil {
		return nil, fmt.Errorf("read Parquet: %w", err)
	}
	defer tbl.Release()
	f = &Features{}
	if f.IDs, err = parquetIDs(tbl.Column(idIdx)); err != nil {
		return nil, err
	}
	if err := parquetVectors(tbl.Column(vecIdx), f); err != nil {
		return nil, err
	}
	return f, nil
}

// parquetColumns finds the id column and the vector column: the one
// named, or the only list of float or double.
func parquetColumns(sc *arrow.Schema, opts FeaturesOptions) (idIdx, vecIdx int, err error) {
	var names, vectors []string
	idIdx, vecIdx = -1, -1
	for i, fl := range sc.Fields() {
		names = append(names, fl.Name)
		if fl.Name == opts.IDColumn && idIdx < 0 {
			idIdx = i
		}
		if isVectorType(fl.Type) {
			vectors = append(vectors, fl.Name)
			if opts.Column == "" || fl.Name == opts.Column {
				vecIdx = i
			}
		}
		if opts.Column != "" && fl.Name == opts.Column && !isVectorType(fl.Type) {
			return 0, 0, fmt.Errorf("column %q (features_column) is %s, not a list or fixed-size list of float or double", fl.Name, fl.Type)
		}
	}
	switch {
	case idIdx < 0:
		return 0, 0, fmt.Errorf("id column %q not found (id_column); the file has columns %s", opts.IDColumn, columnList(names))
	case opts.Column != "" && vecIdx < 0:
		return 0, 0, fmt.Errorf("column %q not found (features_column); the file has columns %s", opts.Column, columnList(names))
	case len(vectors) == 0:
		return 0, 0, fmt.Errorf("no column is a list or fixed-size list of float or double; the file has columns %s", columnList(names))
	case opts.Column == "" && len(vectors) > 1:
		return 0, 0, fmt.Errorf("%d columns hold vectors (%s); name one with features_column", len(vectors), columnList(vectors))
	}
	return idIdx, vecIdx, nil
}

func isVectorType(t arrow.DataType) bool {
	var elem arrow.DataType
	switch lt := t.(type) {
	case *arrow.ListType:
		elem = lt.Elem()
	case *arrow.LargeListType:
		elem = lt.Elem()
	case *arrow.FixedSizeListType:
		elem = lt.Elem()
	default:
		return false
	}
	return elem.ID() == arrow.FLOAT32 || elem.ID() == arrow.FLOAT64
}

// parquetIDs reads the id column as text (integers in decimal).
func parquetIDs(col *arrow.Column) ([]string, error) {
	ids := make([]string, 0, col.Len())
	for _, ch := range col.Data().Chunks() {
		for i := range ch.Len() {
			if ch.IsNull(i) {
				return nil, fmt.Errorf("row %d: id column %q is null", len(ids), col.Name())
			}
			ids = append(ids, ch.ValueStr(i))
		}
	}
	return ids, nil
}

// parquetVectors reads the vector column into f.Values; every vector must
// have the length of the first, with no null vector or value.
func parquetVectors(col *arrow.Column, f *Features) error {
	row := 0
	for _, ch := range col.Data().Chunks() {
		ll, ok := ch.(array.ListLike)
		if !ok {
			return fmt.Errorf("column %q is %s, not a list", col.Name(), ch.DataType())
		}
		get, err := floatGetter(ll.ListValues())
		if err != nil {
			return fmt.Errorf("column %q: %w", col.Name(), err)
		}
		vals := ll.ListValues()
		for i := range ll.Len() {
			id := f.IDs[row]
			if ll.IsNull(i) {
				return fmt.Errorf("row %d (id %q): column %q is null; give every id a vector, or leave the id out", row, id, col.Name())
			}
			start, end := ll.ValueOffsets(i)
			n := int(end - start)
			if row == 0 {
				f.Dim = n
				f.Values = make([]float32, 0, n*len(f.IDs))
			}
			if n != f.Dim {
				return fmt.Errorf("row %d (id %q): column %q has %d values, row 0 has %d; every vector must have the same length", row, id, col.Name(), n, f.Dim)
			}
			for j := int(start); j < int(end); j++ {
				if vals.IsNull(j) {
					return fmt.Errorf("row %d (id %q), column %q, component %d is null", row, id, col.Name(), j-int(start))
				}
				f.Values = append(f.Values, get(j))
			}
			row++
		}
	}
	if row != len(f.IDs) {
		return errors.New("the id and vector columns have different lengths")
	}
	return nil
}

func floatGetter(a arrow.Array) (func(int) float32, error) {
	switch v := a.(type) {
	case *array.Float32:
		return v.Value, nil
	case *array.Float64:
		return func(i int) float32 { return float32(v.Value(i)) }, nil
	}
	return nil, fmt.Errorf("values are %s, not float or double", a.DataType())
}
