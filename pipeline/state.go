package pipeline

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/tsnemap/tsnemap/embed"
)

// State is what an addition to a finished map needs (docs/growing.md):
// the engine's Base (PCA mean and axes, the rows' scores and coordinates)
// with the ids of its rows (those with coordinates, in result order) and
// the image size the pixels were resized to. The service keeps one with
// every succeeded image job; `tsnemap run` writes it beside its result.
type State struct {
	Width, Height int
	IDs           []string
	Base          embed.Base
}

// stateMagic starts every encoded State; the number is the format version.
const stateMagic = "TSNEMAP-STATE 1\n"

// stateHeader is the JSON part of an encoded State; the float32 arrays
// (mean, axes, scores, coordinates) follow it, little-endian.
type stateHeader struct {
	Width  int      `json:"width"`
	Height int      `json:"height"`
	Method string   `json:"method"`
	Metric string   `json:"metric"`
	N      int      `json:"n"`
	Dims   int      `json:"dims"`
	D      int      `json:"d"`
	K      int      `json:"k"`
	IDs    []string `json:"ids"`
}

// maxStateHeader bounds the JSON header (ids included) a decoder accepts.
const maxStateHeader = 1 << 30

// EncodeState writes st in the state format.
func EncodeState(w io.Writer, st *State) error {
	b := &st.Base
	if err := b.Check(); err != nil {
		return err
	}
	if len(st.IDs) != b.N {
		return fmt.Errorf("state: %d ids for %d rows", len(st.IDs), b.N)
	}
	h, err := json.Marshal(stateHeader{Width: st.Width, Height: st.Height, Method: string(b.Method), Metric: string(b.Basis.Metric),
		N: b.N, Dims: b.Dims, D: b.Basis.D, K: b.Basis.K, IDs: st.IDs})
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	var hdr [4]byte
	binary.LittleEndian.PutUint32(hdr[:], uint32(len(h)))
	for _, part := range [][]byte{[]byte(stateMagic), hdr[:], h} {
		if _, err := w.Write(part); err != nil {
			return fmt.Errorf("state: %w", err)
		}
	}
	for _, a := range [][]float32{b.Basis.Mean, b.Basis.Axes, b.Scores, b.Y} {
		if err := binary.Write(w, binary.LittleEndian, a); err != nil {
			return fmt.Errorf("state: %w", err)
		}
	}
	return nil
}

// ErrBadState is wrapped by every error about an encoded State's contents.
var ErrBadState = errors.New("not a tsnemap state")

// DecodeState reads a State written by EncodeState.
func DecodeState(r io.Reader) (*State, error) {
	magic := make([]byte, len(stateMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != stateMagic {
		return nil, fmt.Errorf("%w: it does not start with %q", ErrBadState, stateMagic[:len(stateMagic)-1])
	}
	var n uint32
	if err := binary.Read(r, binary.LittleEndian, &n); err != nil || n > maxStateHeader {
		return nil, fmt.Errorf("%w: bad header length", ErrBadState)
	}
	hb := make([]byte, n)
	if _, err := io.ReadFull(r, hb); err != nil {
		return nil, fmt.Errorf("%w: short header: %v", ErrBadState, err)
	}
	var h stateHeader
	if err := json.NewDecoder(bytes.NewReader(hb)).Decode(&h); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrBadState, err)
	}
	if h.N < 1 || h.D < 1 || h.K < 1 || h.Dims < 1 || h.N > math.MaxInt32 || h.D > 1<<28 || h.K > 4096 || h.Dims > 3 ||
		h.N*(h.K+h.Dims)+h.D*(h.K+1) > 1<<31 {
		return nil, fmt.Errorf("%w: sizes n=%d d=%d k=%d dims=%d", ErrBadState, h.N, h.D, h.K, h.Dims)
	}
	st := &State{Width: h.Width, Height: h.Height, IDs: h.IDs, Base: embed.Base{Method: embed.Method(h.Method), N: h.N, Dims: h.Dims,
		Basis: embed.Basis{D: h.D, K: h.K, Metric: embed.Metric(h.Metric)}}}
	b := &st.Base
	for _, a := range []*[]float32{&b.Basis.Mean, &b.Basis.Axes, &b.Scores, &b.Y} {
		size := map[*[]float32]int{&b.Basis.Mean: h.D, &b.Basis.Axes: h.D * h.K, &b.Scores: h.N * h.K, &b.Y: h.N * h.Dims}[a]
		*a = make([]float32, size)
		if err := binary.Read(r, binary.LittleEndian, *a); err != nil {
			return nil, fmt.Errorf("%w: short data: %v", ErrBadState, err)
		}
	}
	if err := b.Check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadState, err)
	}
	if len(st.IDs) != b.N {
		return nil, fmt.Errorf("%w: %d ids for %d rows", ErrBadState, len(st.IDs), b.N)
	}
	return st, nil
}

// Extend returns the state of the map st plus the rows of an addition:
// a chain's next base.
func (st *State) Extend(ids []string, add *embed.AddResult) *State {
	b := st.Base
	b.N += add.M
	b.Scores = append(append([]float32(nil), st.Base.Scores...), add.Scores...)
	b.Y = append(append([]float32(nil), st.Base.Y...), add.Y...)
	return &State{Width: st.Width, Height: st.Height, IDs: append(append([]string(nil), st.IDs...), ids...), Base: b}
}
