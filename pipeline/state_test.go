package pipeline_test

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/tsnemap/tsnemap/embed"
	"github.com/tsnemap/tsnemap/pipeline"
)

func sampleState() *pipeline.State {
	return &pipeline.State{Width: 8, Height: 6, IDs: []string{"a", "b", "c"}, Base: embed.Base{
		Method: embed.MethodTSNE, N: 3, Dims: 2,
		Basis:  embed.Basis{D: 4, K: 2, Mean: []float32{1, 2, 3, 4}, Axes: []float32{1, 0, 0, 1, 0.5, 0.5, -1, 2}, Metric: embed.MetricCosine},
		Scores: []float32{1, 2, 3, 4, 5, 6},
		Y:      []float32{-1.5, 2.25, 3, 4, 1e-7, -0},
	}}
}

func TestStateRoundTrip(t *testing.T) {
	st := sampleState()
	var buf bytes.Buffer
	if err := pipeline.EncodeState(&buf, st); err != nil {
		t.Fatal(err)
	}
	got, err := pipeline.DecodeState(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, st) {
		t.Errorf("decoded %+v, want %+v", got, st)
	}
}

// A truncated, foreign or inconsistent state is an error wrapping
// ErrBadState, never a panic.
func TestStateRejectsDamage(t *testing.T) {
	var buf bytes.Buffer
	if err := pipeline.EncodeState(&buf, sampleState()); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	for name, b := range map[string][]byte{
		"empty":     nil,
		"foreign":   []byte("id\tx\ty\n"),
		"truncated": good[:len(good)-3],
		"header":    append([]byte(nil), good[:20]...),
	} {
		if _, err := pipeline.DecodeState(bytes.NewReader(b)); !errors.Is(err, pipeline.ErrBadState) {
			t.Errorf("%s: %v, want ErrBadState", name, err)
		}
	}
	bad := sampleState()
	bad.IDs = bad.IDs[:2]
	if err := pipeline.EncodeState(&bytes.Buffer{}, bad); err == nil {
		t.Error("a state with fewer ids than rows was encoded")
	}
}
