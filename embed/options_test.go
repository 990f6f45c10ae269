package embed

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestValidateNamesTheField(t *testing.T) {
	cases := []struct {
		field string
		edit  func(*Options)
	}{
		{"method", func(o *Options) { o.Method = "umap" }},
		{"dimensions", func(o *Options) { o.Dimensions = 4 }},
		{"perplexity", func(o *Options) { o.Perplexity = 0 }},
		{"perplexity", func(o *Options) { o.Perplexity = -3 }},
		{"perplexity", func(o *Options) { o.Perplexity = math.NaN() }},
		{"iterations", func(o *Options) { o.Iterations = 0 }},
		{"early_exaggeration", func(o *Options) { o.EarlyExaggeration = 0.5 }},
		{"exaggeration_iterations", func(o *Options) { o.ExaggerationIterations = -1 }},
		{"learning_rate", func(o *Options) { o.LearningRate = -1 }},
		{"learning_rate", func(o *Options) { o.LearningRate = math.Inf(1) }},
		{"init", func(o *Options) { o.Init = "spectral" }},
		{"pca_components", func(o *Options) { o.PCAComponents = 0 }},
		{"repulsion", func(o *Options) { o.Repulsion = "fmm" }},
		{"repulsion", func(o *Options) { o.Repulsion, o.Dimensions = RepulsionFFT, 3 }},
		{"theta", func(o *Options) { o.Theta = -0.1 }},
		{"neighbors", func(o *Options) { o.Neighbors = "lsh" }},
	}
	for _, c := range cases {
		o := DefaultOptions()
		c.edit(&o)
		err := o.Validate()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field || !errors.Is(err, ErrInvalidOption) {
			t.Errorf("%s: got %v, want a FieldError for %q", c.field, err, c.field)
		}
	}
	if err := DefaultOptions().Validate(); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
}

func TestCheckPerplexityTooLarge(t *testing.T) {
	o := DefaultOptions()
	err := o.Check(91) // (91 − 1) / 3 = 30: 30 is not < 30
	if !errors.Is(err, ErrPerplexityTooLarge) {
		t.Fatalf("got %v, want ErrPerplexityTooLarge", err)
	}
	if !strings.Contains(err.Error(), "perplexity") {
		t.Errorf("error %q does not name the field", err)
	}
	if err := o.Check(92); err != nil {
		t.Errorf("92 points: %v", err)
	}
	if err := o.Check(3); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("3 points: got %v, want ErrInvalidInput", err)
	}
	o.Method = MethodPCA // PCA has no perplexity
	if err := o.Check(10); err != nil {
		t.Errorf("pca on 10 points: %v", err)
	}
}

func TestDataValidate(t *testing.T) {
	bad := []Data{
		{},
		{N: 2, D: 2},
		{N: 2, D: 2, U8: make([]uint8, 3)},
		{N: 2, D: 2, F32: make([]float32, 4), U8: make([]uint8, 4)},
		{N: 2, D: 2, F32: []float32{1, 2, float32(math.NaN()), 4}},
		{N: 2, D: 2, F32: []float32{1, float32(math.Inf(-1)), 3, 4}},
	}
	for i, d := range bad {
		if err := d.Validate(); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("case %d: got %v, want ErrInvalidInput", i, err)
		}
	}
	if err := (Data{N: 2, D: 2, U8: make([]uint8, 4)}).Validate(); err != nil {
		t.Error(err)
	}
}

func TestEffectiveLearningRate(t *testing.T) {
	o := DefaultOptions()
	if got := o.EffectiveLearningRate(1000); got != 50 {
		t.Errorf("N=1000: %v, want 50", got)
	}
	if got := o.EffectiveLearningRate(70000); math.Abs(got-70000.0/48) > 1e-9 {
		t.Errorf("N=70000: %v, want %v", got, 70000.0/48)
	}
	o.LearningRate = 200
	if got := o.EffectiveLearningRate(70000); got != 200 {
		t.Errorf("explicit: %v", got)
	}
	if k := o.NeighborCount(50); k != 49 {
		t.Errorf("k for N=50: %d", k)
	}
	if k := o.NeighborCount(5000); k != 90 {
		t.Errorf("k for N=5000: %d", k)
	}
}
