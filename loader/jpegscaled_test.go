package loader

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"math/rand/v2"
	"sort"
	"testing"
)

// boxReference decodes with image/jpeg and averages every (8/n)² block of
// pixels: what the reduced inverse DCT approximates.
func boxReference(t *testing.T, data []byte, n int) *image.NRGBA {
	t.Helper()
	full, err := jpeg.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	b := full.Bounds()
	f := 8 / n
	w, h := (b.Dx()*n+7)/8, (b.Dy()*n+7)/8
	out := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			var r, g, bl, cnt uint32
			for yy := y * f; yy < min((y+1)*f, b.Dy()); yy++ {
				for xx := x * f; xx < min((x+1)*f, b.Dx()); xx++ {
					c := color.NRGBAModel.Convert(full.At(b.Min.X+xx, b.Min.Y+yy)).(color.NRGBA)
					r, g, bl, cnt = r+uint32(c.R), g+uint32(c.G), bl+uint32(c.B), cnt+1
				}
			}
			out.SetNRGBA(x, y, color.NRGBA{uint8(r / cnt), uint8(g / cnt), uint8(bl / cnt), 255})
		}
	}
	return out
}

// compareLuma is compare on luma only: chroma subsampled 2:1 is decoded at
// its own resolution by both decoders but averaged differently.
func compareLuma(a, b *image.NRGBA, r image.Rectangle) (mean float64, p99 int) {
	la, lb := image.NewNRGBA(a.Bounds()), image.NewNRGBA(b.Bounds())
	for i := 0; i+3 < len(a.Pix); i += 4 {
		y := (299*int(a.Pix[i]) + 587*int(a.Pix[i+1]) + 114*int(a.Pix[i+2])) / 1000
		la.Pix[i], la.Pix[i+1], la.Pix[i+2] = uint8(y), uint8(y), uint8(y)
	}
	for i := 0; i+3 < len(b.Pix); i += 4 {
		y := (299*int(b.Pix[i]) + 587*int(b.Pix[i+1]) + 114*int(b.Pix[i+2])) / 1000
		lb.Pix[i], lb.Pix[i+1], lb.Pix[i+2] = uint8(y), uint8(y), uint8(y)
	}
	return compareIn(la, lb, r)
}

// compare returns the mean and 99th percentile absolute channel difference.
func compare(a, b *image.NRGBA) (mean float64, p99 int) {
	return compareIn(a, b, a.Bounds())
}

func compareIn(a, b *image.NRGBA, r image.Rectangle) (mean float64, p99 int) {
	var diffs []int
	sum := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			i, j := a.PixOffset(x, y), b.PixOffset(x, y)
			for c := 0; c < 3; c++ {
				d := int(a.Pix[i+c]) - int(b.Pix[j+c])
				if d < 0 {
					d = -d
				}
				diffs = append(diffs, d)
				sum += d
			}
		}
	}
	sort.Ints(diffs)
	return float64(sum) / float64(len(diffs)), diffs[len(diffs)*99/100]
}

func scaledFixtures(t *testing.T) map[string][]byte {
	files := map[string][]byte{}
	for _, name := range []string{"scaled-444.jpg", "scaled-422-restart.jpg", "scaled-420-optimized.jpg",
		"scaled-lowq.jpg", "scaled-gray.jpg", "scaled-440.jpg"} {
		files[name] = readTestdata(t, name)
	}
	// Go's encoder: 4:2:0, sizes that are and are not multiples of 16.
	r := rand.New(rand.NewPCG(1, 2))
	for _, sz := range [][2]int{{64, 48}, {97, 131}, {800, 600}, {250, 190}} {
		img := image.NewRGBA(image.Rect(0, 0, sz[0], sz[1]))
		for y := 0; y < sz[1]; y++ {
			for x := 0; x < sz[0]; x++ {
				img.Set(x, y, color.RGBA{uint8(x * 255 / sz[0]), uint8(y*200/sz[1] + r.IntN(20)), uint8(255 - (x+y)*255/(sz[0]+sz[1])), 255})
			}
		}
		files[fmt.Sprintf("go-%dx%d.jpg", sz[0], sz[1])] = encJPEG(t, img, 90)
	}
	return files
}

// TestScaledJPEGMatchesFullDecode: the fast path at 1/2, 1/4, 1/8 against
// image/jpeg's full decode averaged down to the same size.
func TestScaledJPEGMatchesFullDecode(t *testing.T) {
	for name, data := range scaledFixtures(t) {
		cfg, err := jpeg.DecodeConfig(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{1, 2, 4} {
			minW, minH := (cfg.Width*n+7)/8, (cfg.Height*n+7)/8
			got, _, err := decodeScaled(data, minW, minH)
			if err != nil {
				t.Errorf("%s 1/%d: fast path refused: %v", name, 8/n, err)
				continue
			}
			if got.Bounds().Dx() != minW || got.Bounds().Dy() != minH {
				t.Errorf("%s 1/%d: size %v, want %d×%d", name, 8/n, got.Bounds(), minW, minH)
				continue
			}
			ref := boxReference(t, data, n)
			// A last column or row that stands for part of a block is
			// averaged over the encoder's padding by the DCT, over the
			// real pixels only by the reference: leave it out.
			r := image.Rect(0, 0, cfg.Width*n/8, cfg.Height*n/8)
			if r.Empty() {
				continue
			}
			mean, p99 := compareIn(got, ref, r)
			lmean, lp99 := compareLuma(got, ref, r)
			t.Logf("%s 1/%d: RGB mean |Δ| %.2f, p99 %d; luma mean %.2f, p99 %d", name, 8/n, mean, p99, lmean, lp99)
			if lmean > 2 || lp99 > 12 || mean > 4 || p99 > 30 {
				t.Errorf("%s 1/%d: too far from the full decode", name, 8/n)
			}
		}
	}
}

// TestScaledJPEGFallsBack: what the fast path does not handle goes to
// image/jpeg, and a broken file is never half-decoded.
func TestScaledJPEGFallsBack(t *testing.T) {
	good := readTestdata(t, "scaled-444.jpg")
	for name, data := range map[string][]byte{
		"progressive":  readTestdata(t, "progressive.jpg"),
		"cmyk":         readTestdata(t, "cmyk.jpg"),
		"truncated":    good[:len(good)/2],
		"no reduction": good, // asked for more pixels than 1/2 scale gives
		"not jpeg":     []byte("GIF89a"),
	} {
		minW, minH := 8, 8
		if name == "no reduction" {
			minW, minH = 150, 100
		}
		if img, _, err := decodeScaled(data, minW, minH); err == nil {
			t.Errorf("%s: fast path decoded it (%v)", name, img.Bounds())
		}
	}
}

// TestPipelineFastPathAgrees: the whole decode+resize with and without the
// fast path give nearly the same thumbnail.
func TestPipelineFastPathAgrees(t *testing.T) {
	fast := newTestLoader(t, nil)
	full := newTestLoader(t, nil)
	full.fullJPEG = true
	for name, data := range scaledFixtures(t) {
		a, b := make([]byte, 24*16*3), make([]byte, 24*16*3)
		if err := fast.decodeInto(data, 24, 16, a); err != nil {
			t.Fatal(err)
		}
		if err := full.decodeInto(data, 24, 16, b); err != nil {
			t.Fatal(err)
		}
		ia, ib := image.NewNRGBA(image.Rect(0, 0, 24, 16)), image.NewNRGBA(image.Rect(0, 0, 24, 16))
		for i := 0; i < 24*16; i++ {
			copy(ia.Pix[4*i:], a[3*i:3*i+3])
			copy(ib.Pix[4*i:], b[3*i:3*i+3])
		}
		mean, p99 := compare(ia, ib)
		t.Logf("%s: mean |Δ| %.2f, p99 %d", name, mean, p99)
		// Not equal by construction: the full path's tent filter spans
		// twice the scale ratio of source pixels, the fast path's DCT
		// reduction averages 8/n × 8/n first, so sharp edges blur a
		// little differently (the 203×157 fixtures, scaled 1/8 then
		// ~1.04×, show it most). Photos at 800×600 agree within 1.
		if mean > 7.5 || p99 > 45 {
			t.Errorf("%s: mean |Δ| %.2f, p99 %d between fast and full pipelines", name, mean, p99)
		}
	}
}
