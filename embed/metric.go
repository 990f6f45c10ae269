package embed

import (
	"context"
	"fmt"
	"math"
)

// Metric is the distance between input vectors.
type Metric string

const (
	// MetricEuclidean is the distance between the vectors as given.
	MetricEuclidean Metric = "euclidean"
	// MetricCosine is 1 − cos(a, b): the angle between vectors, whatever
	// their lengths, as embedding models (CLIP, sentence encoders) mean
	// their vectors to be compared.
	MetricCosine Metric = "cosine"
)

// UnitRows returns data with every row scaled to unit Euclidean length,
// as float32. It is how a run honours MetricCosine: for unit vectors
// ‖a − b‖² = ‖a‖² + ‖b‖² − 2·a·b = 2 − 2·cos(a, b), so the squared
// Euclidean distance is a strictly increasing function of the cosine
// distance and the nearest neighbours, their order and (with the
// perplexity calibrated per point) the affinities are those of the cosine
// metric (the identity of Manning, Raghavan & Schütze 2008, "Introduction
// to Information Retrieval", §6.3.1 and §14.1; openTSNE and scikit-learn's
// TSNE offer metric="cosine" the same way for their Euclidean-only
// neighbour searches). PCA then centres and rotates the unit vectors, which
// keeps their distances. A row of zeros has no direction: the error wraps
// ErrInvalidInput and names it.
func UnitRows(ctx context.Context, data Data) (Data, error) {
	if err := data.Validate(); err != nil {
		return Data{}, err
	}
	out := Data{N: data.N, D: data.D, F32: make([]float32, data.N*data.D)}
	if data.Rows != nil {
		// the rows are read block by block; the result is in memory, as
		// for any input (N×D float32)
		err := eachBlock(ctx, data, blockRows(data.D), func(lo int, blk Data) error {
			return unitRows(blk, out.F32[lo*data.D:(lo+blk.N)*data.D], lo)
		})
		if err != nil {
			return Data{}, err
		}
		return out, nil
	}
	if err := unitRows(data, out.F32, 0); err != nil {
		return Data{}, err
	}
	return out, nil
}

// unitView is how Run and project honour MetricCosine: UnitRows for
// float32 features (a copy the size of the input), but pixels are not
// copied: their float32 rows would be four times the pixels (12 GB for
// 100,000 images of 100×100 RGB), so they are scaled a block at a time
// whenever a pass reads them (eachBlock), and a row of zeros fails the
// first pass with the same error.
func unitView(ctx context.Context, data Data) (Data, error) {
	if data.F32 != nil {
		return UnitRows(ctx, data)
	}
	if err := data.Validate(); err != nil {
		return Data{}, err
	}
	data.unit = true
	return data, nil
}

// unitRows writes the rows of data (U8 or F32), scaled to unit length, into
// dst; first is the number of the first row, for the error.
func unitRows(data Data, dst []float32, first int) error {
	for i := range data.N {
		row := dst[i*data.D : (i+1)*data.D]
		var sq float64
		if data.U8 != nil {
			for j, v := range data.U8[i*data.D : (i+1)*data.D] {
				row[j] = float32(v)
				sq += float64(v) * float64(v)
			}
		} else {
			for j, v := range data.F32[i*data.D : (i+1)*data.D] {
				row[j] = v
				sq += float64(v) * float64(v)
			}
		}
		if !(sq > 0) || math.IsInf(sq, 0) {
			return &FieldError{Field: "data", Err: ErrInvalidInput,
				Message: fmt.Sprintf("row %d has length %v; the cosine metric needs every row to be a finite non-zero vector", first+i, math.Sqrt(sq))}
		}
		inv := 1 / math.Sqrt(sq)
		for j, v := range row {
			row[j] = float32(float64(v) * inv)
		}
	}
	return nil
}
