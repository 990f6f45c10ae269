package loader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"math"
	"mime"
	"net/http"

	"github.com/disintegration/imaging"
	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"
	"golang.org/x/image/webp"
)

type format struct {
	name         string
	decode       func(io.Reader) (image.Image, error)
	decodeConfig func(io.Reader) (image.Config, error)
}

// formats are matched by magic bytes only: a server's Content-Type is never
// trusted (it is often wrong, and an attacker controls it).
var formats = []struct {
	magic func([]byte) bool
	format
}{
	{func(b []byte) bool { return bytes.HasPrefix(b, []byte{0xFF, 0xD8, 0xFF}) }, format{"jpeg", jpeg.Decode, jpeg.DecodeConfig}},
	{func(b []byte) bool { return bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) }, format{"png", png.Decode, png.DecodeConfig}},
	{func(b []byte) bool {
		return bytes.HasPrefix(b, []byte("GIF87a")) || bytes.HasPrefix(b, []byte("GIF89a"))
	},
		format{"gif", gif.Decode, gif.DecodeConfig}},
	{func(b []byte) bool { return len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP" },
		format{"webp", webp.Decode, webp.DecodeConfig}},
	{func(b []byte) bool { return bytes.HasPrefix(b, []byte("BM")) && len(b) > 26 }, format{"bmp", bmp.Decode, bmp.DecodeConfig}},
	{func(b []byte) bool {
		return bytes.HasPrefix(b, []byte("II*\x00")) || bytes.HasPrefix(b, []byte("MM\x00*"))
	}, format{"tiff", tiff.Decode, tiff.DecodeConfig}},
}

func sniff(data []byte) (*format, error) {
	if len(data) == 0 {
		return nil, errors.New("not an image (empty response)")
	}
	for i := range formats {
		if formats[i].magic(data) {
			return &formats[i].format, nil
		}
	}
	ct := http.DetectContentType(data)
	if mt, _, err := mime.ParseMediaType(ct); err == nil {
		ct = mt
	}
	return nil, fmt.Errorf("not an image (%s)", ct)
}

// decodeInto decodes data, applies its EXIF orientation, resizes it to
// exactly w×h and writes RGB bytes, composited on white, into dst.
func (l *Loader) decodeInto(data []byte, w, h int, dst []byte) (err error) {
	defer func() {
		// Decoders of untrusted bytes are not all proven panic-free; one
		// bad file must cost one row, not the process.
		if p := recover(); p != nil {
			err = fmt.Errorf("cannot decode image: decoder failed (%v)", p)
		}
	}()
	f, err := sniff(data)
	if err != nil {
		return err
	}
	cfg, err := f.decodeConfig(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("cannot decode %s: %w", f.name, err)
	}
	// Checked from the header alone, so a decompression bomb (a tiny file
	// declaring billions of pixels) is refused before any allocation.
	if px := int64(cfg.Width) * int64(cfg.Height); px > l.cfg.MaxImagePixels || cfg.Width <= 0 || cfg.Height <= 0 {
		if cfg.Width <= 0 || cfg.Height <= 0 {
			return fmt.Errorf("cannot decode %s: empty image %d×%d", f.name, cfg.Width, cfg.Height)
		}
		return fmt.Errorf("image too large: %d×%d pixels exceeds %s", cfg.Width, cfg.Height, megapixels(l.cfg.MaxImagePixels))
	}
	orient := 1
	switch f.name {
	case "jpeg":
		orient = jpegOrientation(data)
	case "tiff":
		orient = tiffOrientation(data)
	}
	// Orientations 5..8 turn the picture a quarter: resize to the swapped
	// size, then orient the small result (cheaper than orienting the big one).
	tw, th := w, h
	if orient >= 5 && orient <= 8 {
		tw, th = h, w
	}
	var small *image.NRGBA
	if f.name == "jpeg" && !l.fullJPEG {
		if fast, n := decodeJPEGScaled(data, tw, th); fast != nil {
			small = resizeScaled(fast, float64(cfg.Width*n)/8, float64(cfg.Height*n)/8, tw, th)
		}
	}
	if small == nil {
		img, err := f.decode(bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("cannot decode %s: %w", f.name, err)
		}
		small = resize(img, tw, th)
	}
	small = applyOrientation(small, orient)
	writeRGBOnWhite(small, dst)
	return nil
}

// decodeBudgeted decodes like decodeInto, holding the memory the decode
// needs (estimated from the header) from the budget while it runs. An
// image whose decode would need more than one decode may have fails (that
// row only).
func (l *Loader) decodeBudgeted(ctx context.Context, data []byte, w, h int, dst []byte) error {
	need := int64(0)
	if f, err := sniff(data); err == nil {
		if cfg, err := f.decodeConfig(bytes.NewReader(data)); err == nil && cfg.Width > 0 && cfg.Height > 0 &&
			int64(cfg.Width)*int64(cfg.Height) <= l.cfg.MaxImagePixels {
			need = decodeBytes(f.name, cfg, data, w, h)
		}
	}
	if need > l.mem.maxDecode() {
		return fmt.Errorf("image too large: decoding it needs about %s of memory, more than the %s this server gives one decode", FormatBytes(need), FormatBytes(l.mem.maxDecode()))
	}
	if err := l.mem.acquire(ctx, need, 0); err != nil {
		return fmt.Errorf("wait for memory to decode: %w", err)
	}
	defer l.mem.release(need)
	return l.decodeInto(data, w, h, dst)
}

// decodeBytes estimates from above the memory a full decode of an image
// and its resize to w×h take: the decoded picture (4 bytes a pixel, 8 at
// 16 bits a channel; a progressive JPEG also holds its coefficients, 4
// bytes a pixel and component), the decoder's row buffers and tables, the
// resizer's intermediate (w columns of the source's height) and the small
// results.
func decodeBytes(name string, cfg image.Config, data []byte, w, h int) int64 {
	px := int64(cfg.Width) * int64(cfg.Height)
	per := int64(4)
	switch cfg.ColorModel {
	case color.RGBA64Model, color.NRGBA64Model, color.Gray16Model, color.Alpha16Model:
		per = 8
	}
	if name == "jpeg" && progressiveJPEG(data) {
		per = 3 + 12
	}
	side := int64(max(w, h))
	return px*per + int64(cfg.Width)*16 + 1<<20 + int64(max(cfg.Height, cfg.Width))*side*4 + 4*side*side*4
}

// progressiveJPEG says whether the JPEG's frame header is progressive
// (SOF2), looking through the markers before the first scan.
func progressiveJPEG(data []byte) bool {
	for i := 2; i+3 < len(data); {
		if data[i] != 0xFF {
			return false
		}
		m := data[i+1]
		switch {
		case m == 0xFF:
			i++
			continue
		case m == 0xC2:
			return true
		case m == 0xDA || (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC):
			return false // another frame type, or the scan has begun
		}
		i += 2 + int(data[i+2])<<8 | int(data[i+3])
	}
	return false
}

func megapixels(n int64) string {
	if n%1_000_000 == 0 {
		return fmt.Sprintf("%d megapixels", n/1_000_000)
	}
	return fmt.Sprintf("%d pixels", n)
}

// resize scales img to exactly w×h, aspect not kept (as the original did).
//
// Filter: for shrinking by 2× or more we use imaging.Linear. imaging widens
// every filter's support by the scale ratio, so a tent filter then weights
// all source pixels under each output pixel — proper anti-aliasing, like
// area averaging but without the box filter's blockiness at fractional
// ratios — at 2 taps per unit of ratio, against Lanczos' 6 (three times the
// work for sharpness that a 100×100 feature vector cannot use, plus ringing).
// For mild scaling, where the taps are few anyway, CatmullRom (bicubic, what
// Pillow uses) keeps edges crisper.
func resize(img image.Image, w, h int) *image.NRGBA {
	b := img.Bounds()
	if b.Dx() == w && b.Dy() == h {
		return imaging.Clone(img)
	}
	filter := imaging.CatmullRom
	if b.Dx() >= 2*w && b.Dy() >= 2*h {
		filter = imaging.Linear
	}
	return imaging.Resize(img, w, h, filter)
}

// resizeScaled resizes a DCT-scaled decode whose true extent is exW×exH
// reduced pixels: when the width is not a multiple of 8 the last column
// stands for only part of one, so the picture is resized slightly larger
// and that overhang cropped off, to keep it aligned with a full decode.
func resizeScaled(img *image.NRGBA, exW, exH float64, w, h int) *image.NRGBA {
	rw, rh := img.Bounds().Dx(), img.Bounds().Dy()
	w2 := max(w, int(math.Round(float64(w)*float64(rw)/exW)))
	h2 := max(h, int(math.Round(float64(h)*float64(rh)/exH)))
	out := resize(img, w2, h2)
	if w2 != w || h2 != h {
		out = imaging.Crop(out, image.Rect(0, 0, w, h))
	}
	return out
}

func applyOrientation(img *image.NRGBA, orient int) *image.NRGBA {
	switch orient {
	case 2:
		return imaging.FlipH(img)
	case 3:
		return imaging.Rotate180(img)
	case 4:
		return imaging.FlipV(img)
	case 5:
		return imaging.Transpose(img)
	case 6:
		return imaging.Rotate270(img) // 90° clockwise
	case 7:
		return imaging.Transverse(img)
	case 8:
		return imaging.Rotate90(img) // 90° counter-clockwise
	}
	return img
}

// writeRGBOnWhite writes non-premultiplied RGBA as RGB over a white
// background: out = c·a + 255·(1−a).
func writeRGBOnWhite(img *image.NRGBA, dst []byte) {
	b := img.Bounds()
	k := 0
	for y := 0; y < b.Dy(); y++ {
		row := img.Pix[y*img.Stride : y*img.Stride+4*b.Dx()]
		for x := 0; x < len(row); x += 4 {
			a := uint32(row[x+3])
			if a == 255 {
				dst[k], dst[k+1], dst[k+2] = row[x], row[x+1], row[x+2]
			} else {
				bg := 255 * (255 - a)
				dst[k] = uint8((uint32(row[x])*a + bg + 127) / 255)
				dst[k+1] = uint8((uint32(row[x+1])*a + bg + 127) / 255)
				dst[k+2] = uint8((uint32(row[x+2])*a + bg + 127) / 255)
			}
			k += 3
		}
	}
}
