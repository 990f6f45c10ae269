package embed_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/tsnemap/tsnemap/embed"
)

// TestNPYForgedShape: a header claiming 2³⁴ float64 values (128 GiB) over
// a few bytes of data is an error about the data, found without
// allocating what the header claims (features files come from the
// network).
func TestNPYForgedShape(t *testing.T) {
	h := "{'descr': '<f8', 'fortran_order': False, 'shape': (131072, 131072), }"
	h += strings.Repeat(" ", 63-(10+len(h))%64) + "\n"
	var b bytes.Buffer
	b.WriteString("\x93NUMPY\x01\x00")
	b.WriteByte(byte(len(h)))
	b.WriteByte(byte(len(h) >> 8))
	b.WriteString(h)
	b.Write(make([]byte, 64))
	_, err := embed.ReadMatrix(&b, "npy")
	if !errors.Is(err, embed.ErrInvalidInput) || !strings.Contains(err.Error(), "shorter than its shape") {
		t.Fatalf("err = %v", err)
	}
}
