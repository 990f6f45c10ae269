package embed

import (
	"errors"
	"fmt"
	"math"
)

// Method is what a run computes.
type Method string

const (
	MethodTSNE Method = "tsne"
	MethodPCA  Method = "pca"
)

// Init is how t-SNE coordinates start.
type Init string

const (
	InitPCA    Init = "pca"
	InitRandom Init = "random"
)

// Repulsion is the method for the repulsive forces of the gradient.
type Repulsion string

const (
	RepulsionAuto      Repulsion = "auto"
	RepulsionExact     Repulsion = "exact"
	RepulsionBarnesHut Repulsion = "barnes-hut"
	RepulsionFFT       Repulsion = "fft"
)

// NeighborMethod is the nearest-neighbour search method.
type NeighborMethod string

const (
	NeighborsAuto   NeighborMethod = "auto"
	NeighborsExact  NeighborMethod = "exact"
	NeighborsApprox NeighborMethod = "approximate"
)

// LearningRateAuto asks for max(N / early_exaggeration / 4, 50)
// (Belkina et al. 2019; the rule scikit-learn adopted).
const LearningRateAuto = 0

// Options are a run's parameters. Start from DefaultOptions.
type Options struct {
	Method                 Method         `json:"method"`
	Dimensions             int            `json:"dimensions"`
	Perplexity             float64        `json:"perplexity"`
	Iterations             int            `json:"iterations"`
	EarlyExaggeration      float64        `json:"early_exaggeration"`
	ExaggerationIterations int            `json:"exaggeration_iterations"`
	LearningRate           float64        `json:"learning_rate"` // LearningRateAuto (0) or > 0
	Init                   Init           `json:"init"`
	Seed                   int64          `json:"seed"`
	PCAComponents          int            `json:"pca_components"`
	Repulsion              Repulsion      `json:"repulsion"`
	Theta                  float64        `json:"theta"`
	Neighbors              NeighborMethod `json:"neighbors"`
	Metric                 Metric         `json:"metric"`
}

// DefaultOptions returns the defaults of scikit-learn's TSNE (perplexity 30,
// early exaggeration 12 for 250 of 1000 iterations, learning rate "auto",
// PCA initialisation) and of openTSNE/FIt-SNE for the rest (50 PCA
// components before the neighbour search, Barnes-Hut θ = 0.5).
func DefaultOptions() Options {
	return Options{
		Method:                 MethodTSNE,
		Dimensions:             2,
		Perplexity:             30,
		Iterations:             1000,
		EarlyExaggeration:      12,
		ExaggerationIterations: 250,
		LearningRate:           LearningRateAuto,
		Init:                   InitPCA,
		PCAComponents:          50,
		Repulsion:              RepulsionAuto,
		Theta:                  0.5,
		Neighbors:              NeighborsAuto,
		Metric:                 MetricEuclidean,
	}
}

// ErrInvalidOption is wrapped by every FieldError about an option.
var ErrInvalidOption = errors.New("invalid option")

// ErrInvalidInput is wrapped by every error about the input data.
var ErrInvalidInput = errors.New("invalid input")

// ErrPerplexityTooLarge is wrapped when the perplexity does not fit the
// number of points: it needs perplexity < (N − 1) / 3, because each point
// takes its ⌊3·perplexity⌋ nearest neighbours.
var ErrPerplexityTooLarge = errors.New("perplexity too large for the number of points")

// FieldError names the option (or input property) that is wrong and why.
type FieldError struct {
	Field   string
	Message string
	Err     error // ErrInvalidOption, ErrInvalidInput or ErrPerplexityTooLarge
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }
func (e *FieldError) Unwrap() error { return e.Err }

func optErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...), Err: ErrInvalidOption}
}

// Validate checks the options on their own, without the data.
func (o Options) Validate() error {
	var errs []error
	switch o.Method {
	case MethodTSNE, MethodPCA:
	default:
		errs = append(errs, optErr("method", "must be %q or %q, not %q", MethodTSNE, MethodPCA, o.Method))
	}
	if o.Dimensions != 2 && o.Dimensions != 3 {
		errs = append(errs, optErr("dimensions", "must be 2 or 3, not %d", o.Dimensions))
	}
	if !(o.Perplexity > 0) || math.IsInf(o.Perplexity, 0) {
		errs = append(errs, optErr("perplexity", "must be a finite number > 0, not %v", o.Perplexity))
	}
	if o.Iterations < 1 || o.Iterations > 100000 {
		errs = append(errs, optErr("iterations", "must be between 1 and 100000, not %d", o.Iterations))
	}
	if !(o.EarlyExaggeration >= 1) || math.IsInf(o.EarlyExaggeration, 0) {
		errs = append(errs, optErr("early_exaggeration", "must be a finite number ≥ 1, not %v", o.EarlyExaggeration))
	}
	if o.ExaggerationIterations < 0 {
		errs = append(errs, optErr("exaggeration_iterations", "must be ≥ 0, not %d", o.ExaggerationIterations))
	}
	if o.LearningRate != LearningRateAuto && (!(o.LearningRate > 0) || math.IsInf(o.LearningRate, 0)) {
		errs = append(errs, optErr("learning_rate", "must be a finite number > 0 (or auto), not %v", o.LearningRate))
	}
	switch o.Init {
	case InitPCA, InitRandom:
	default:
		errs = append(errs, optErr("init", "must be %q or %q, not %q", InitPCA, InitRandom, o.Init))
	}
	if o.PCAComponents < 1 {
		errs = append(errs, optErr("pca_components", "must be ≥ 1, not %d", o.PCAComponents))
	}
	switch o.Repulsion {
	case RepulsionAuto, RepulsionExact, RepulsionBarnesHut:
	case RepulsionFFT:
		if o.Dimensions == 3 {
			errs = append(errs, optErr("repulsion", "fft interpolation is implemented for 2 dimensions; use barnes-hut or exact for 3"))
		}
	default:
		errs = append(errs, optErr("repulsion", "must be one of auto, exact, barnes-hut, fft, not %q", o.Repulsion))
	}
	if !(o.Theta >= 0) || o.Theta > 1.5 {
		errs = append(errs, optErr("theta", "must be between 0 and 1.5, not %v", o.Theta))
	}
	switch o.Neighbors {
	case NeighborsAuto, NeighborsExact, NeighborsApprox:
	default:
		errs = append(errs, optErr("neighbors", "must be auto, exact or approximate, not %q", o.Neighbors))
	}
	switch o.Metric {
	case MetricEuclidean, MetricCosine:
	default:
		errs = append(errs, optErr("metric", "must be %q or %q, not %q", MetricEuclidean, MetricCosine, o.Metric))
	}
	return errors.Join(errs...)
}

// MaxPerplexity is the largest perplexity allowed for n points (exclusive).
func MaxPerplexity(n int) float64 { return float64(n-1) / 3 }

// Check validates the options against n points.
func (o Options) Check(n int) error {
	if err := o.Validate(); err != nil {
		return err
	}
	if n < 4 {
		return &FieldError{Field: "rows", Message: fmt.Sprintf("need at least 4 points, got %d", n), Err: ErrInvalidInput}
	}
	if o.Method == MethodTSNE && o.Perplexity >= MaxPerplexity(n) {
		return &FieldError{Field: "perplexity", Err: ErrPerplexityTooLarge,
			Message: fmt.Sprintf("%v is too large for %d points: it must be < (N − 1) / 3 = %.4g", o.Perplexity, n, MaxPerplexity(n))}
	}
	return nil
}

// EffectiveLearningRate resolves LearningRateAuto for n points.
func (o Options) EffectiveLearningRate(n int) float64 {
	if o.LearningRate != LearningRateAuto {
		return o.LearningRate
	}
	return math.Max(float64(n)/o.EarlyExaggeration/4, 50)
}

// NeighborCount is k = min(N − 1, ⌊3·perplexity⌋), and at least 1.
func (o Options) NeighborCount(n int) int {
	return max(1, min(n-1, int(math.Floor(3*o.Perplexity))))
}

// Validate checks the shape and values of the input.
func (d Data) Validate() error {
	inErr := func(field, format string, args ...any) error {
		return &FieldError{Field: field, Message: fmt.Sprintf(format, args...), Err: ErrInvalidInput}
	}
	switch {
	case d.N < 1:
		return inErr("rows", "the input has no rows")
	case d.D < 1:
		return inErr("columns", "the input has no columns")
	case b2i(d.U8 != nil)+b2i(d.F32 != nil)+b2i(d.Rows != nil) != 1:
		return inErr("data", "exactly one of U8, F32 and Rows must be set")
	case d.U8 != nil && len(d.U8) != d.N*d.D:
		return inErr("data", "has %d values, want N×D = %d×%d = %d", len(d.U8), d.N, d.D, d.N*d.D)
	case d.F32 != nil && len(d.F32) != d.N*d.D:
		return inErr("data", "has %d values, want N×D = %d×%d = %d", len(d.F32), d.N, d.D, d.N*d.D)
	}
	for i, v := range d.F32 {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return inErr("data", "row %d column %d is %v; every value must be finite", i/d.D, i%d.D, v)
		}
	}
	return nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
