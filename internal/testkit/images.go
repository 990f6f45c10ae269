package testkit

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"net/http"
	"testing"
)

// Swatch is a side×side image of colour c with a little texture: the
// pixels where (x + y + variant) % period == 0 are at half brightness, so
// swatches of one colour differ (by variant) yet stay alike.
func Swatch(c color.RGBA, side, period, variant int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, side, side))
	for y := range side {
		for x := range side {
			v := c
			if (x+y+variant)%period == 0 {
				v = color.RGBA{c.R / 2, c.G / 2, c.B / 2, 255}
			}
			img.SetRGBA(x, y, v)
		}
	}
	return img
}

// EncodePNG encodes img as PNG.
func EncodePNG(tb testing.TB, img image.Image) []byte {
	tb.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// EncodeJPEG encodes img as JPEG of the given quality (1–100).
func EncodeJPEG(tb testing.TB, img image.Image, quality int) []byte {
	tb.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: quality}); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// Files serves each file at its path and 404 for any other, as the host of
// a catalogue and its images does.
type Files map[string][]byte

func (f Files) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, ok := f[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	_, _ = w.Write(b)
}
