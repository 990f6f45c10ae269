// Package atlas packs a job's thumbnails into sprite sheets (for the map in
// the browser, which draws every point from one texture instead of
// thousands of images) and renders a map of thumbnails at their
// coordinates (map.png).
//
// Cell size and sheet size are bounded so a browser can hold the sheets:
//
//	images        cell     cells per sheet   sheet (at most)
//	≤ 4,096       64 px    4,096 (64 × 64)   4096 × 4096
//	≤ 65,536      32 px    16,384 (128²)     4096 × 4096
//	more          16 px    65,536 (256²)     4096 × 4096
//
// A sheet is JPEG (thumbnails are opaque RGB: smaller and much quicker to
// encode than PNG), trimmed to the rows of cells it uses; with one sheet the
// grid is roughly square.
package atlas

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"math"

	"golang.org/x/image/draw"
)

// MaxSheetSide is the largest side of a sheet in pixels.
const MaxSheetSide = 4096

// Index says where each row's thumbnail sits. Rows whose image did not
// load have no cell and are listed in Missing.
type Index struct {
	// Cell is the side of a (square) thumbnail in pixels.
	Cell int `json:"cell"`
	// Sheets lists each sheet's size in pixels, in order.
	Sheets []Sheet `json:"sheets"`
	// Rows is the number of rows of the table (loaded or not).
	Rows int `json:"rows"`
	// Cells, one per loaded image, in row order.
	Cells []Cell `json:"cells"`
	// Missing lists the rows whose image failed to load: no thumbnail.
	Missing []int `json:"missing"`
}

// Sheet is the size of one sprite sheet.
type Sheet struct {
	Width  int `json:"width"`
	Height int `json:"height"`
}

// Cell is where one row's thumbnail sits: sheet number and the top-left
// pixel of its cell there.
type Cell struct {
	Row   int    `json:"row"`
	ID    string `json:"id"`
	URL   string `json:"url"`
	Sheet int    `json:"sheet"`
	X     int    `json:"x"`
	Y     int    `json:"y"`
}

// Atlas is an index and its encoded (JPEG) sheets.
type Atlas struct {
	Index  Index
	Sheets [][]byte
}

// Source is what Build reads: n images of W×H RGB pixels, contiguous in
// Pix or read one at a time from Reader, and the row (and its id and image
// URL) each came from.
type Source struct {
	Width, Height int
	Pix           []uint8
	// Reader, when Pix is nil, reads images k, k+1, … into dst (pixels
	// spooled to disk: loader.Images, an embed.RowSource).
	Reader interface {
		ReadRows(ctx context.Context, lo int, dst []uint8) error
	}
	Rows []int
	IDs  []string // per image
	URLs []string // per image
	// TotalRows is the number of rows of the table; rows not in Rows are
	// listed as missing.
	TotalRows int
	// Cell, when > 0, is the thumbnail side to use instead of CellSize's
	// (an addition's thumbnails join its base's sheets at their size).
	Cell int
}

// CellSize is the thumbnail side used for n images (see the package doc).
func CellSize(n int) int {
	switch {
	case n <= 4096:
		return 64
	case n <= 65536:
		return 32
	}
	return 16
}

// Build makes the thumbnails and packs them into sheets.
func Build(ctx context.Context, src Source) (*Atlas, error) {
	n := len(src.Rows)
	sz := src.Width * src.Height * 3
	if src.Width <= 0 || src.Height <= 0 || (src.Reader == nil || src.Pix != nil) && len(src.Pix) != n*sz {
		return nil, fmt.Errorf("atlas: %d images of %d×%d need %d bytes, have %d", n, src.Width, src.Height, n*sz, len(src.Pix))
	}
	if len(src.IDs) != n || len(src.URLs) != n {
		return nil, errors.New("atlas: need an id and a URL per image")
	}
	cell := CellSize(n)
	if src.Cell > 0 {
		cell = src.Cell
	}
	perSide := MaxSheetSide / cell
	perSheet := perSide * perSide
	idx := Index{Cell: cell, Rows: src.TotalRows, Cells: make([]Cell, 0, n), Missing: []int{}}
	has := make([]bool, src.TotalRows)
	for _, r := range src.Rows {
		if r >= 0 && r < len(has) {
			has[r] = true
		}
	}
	for r, ok := range has {
		if !ok {
			idx.Missing = append(idx.Missing, r)
		}
	}
	out := &Atlas{}
	in := &image.RGBA{Stride: src.Width * 4, Rect: image.Rect(0, 0, src.Width, src.Height), Pix: make([]uint8, src.Width*src.Height*4)}
	one := make([]uint8, sz) // an image read from src.Reader
	for first := 0; first < n; first += perSheet {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		count := min(perSheet, n-first)
		cols := perSide
		if n <= perSheet {
			cols = int(math.Ceil(math.Sqrt(float64(count))))
		}
		rows := (count + cols - 1) / cols
		sheet := image.NewRGBA(image.Rect(0, 0, cols*cell, rows*cell))
		for k := first; k < first+count; k++ {
			rgb, err := src.image(ctx, k, one)
			if err != nil {
				return nil, fmt.Errorf("atlas: image %d: %w", k, err)
			}
			toRGBA(in, rgb)
			j := k - first
			x, y := (j%cols)*cell, (j/cols)*cell
			draw.ApproxBiLinear.Scale(sheet, image.Rect(x, y, x+cell, y+cell), in, in.Rect, draw.Src, nil)
			idx.Cells = append(idx.Cells, Cell{Row: src.Rows[k], ID: src.IDs[k], URL: src.URLs[k], Sheet: len(idx.Sheets), X: x, Y: y})
		}
		var b bytes.Buffer
		if err := jpeg.Encode(&b, sheet, &jpeg.Options{Quality: 85}); err != nil {
			return nil, fmt.Errorf("atlas: encode sheet %d: %w", len(idx.Sheets), err)
		}
		idx.Sheets = append(idx.Sheets, Sheet{Width: sheet.Rect.Dx(), Height: sheet.Rect.Dy()})
		out.Sheets = append(out.Sheets, b.Bytes())
	}
	if idx.Sheets == nil {
		idx.Sheets = []Sheet{}
	}
	out.Index = idx
	return out, nil
}

// image returns the pixels of image k: in Pix, or read into buf.
func (src *Source) image(ctx context.Context, k int, buf []uint8) ([]uint8, error) {
	sz := len(buf)
	if src.Pix != nil {
		return src.Pix[k*sz : (k+1)*sz], nil
	}
	return buf, src.Reader.ReadRows(ctx, k, buf)
}

// toRGBA copies packed RGB pixels into an opaque RGBA image.
func toRGBA(dst *image.RGBA, rgb []uint8) {
	p := dst.Pix
	for i, j := 0, 0; i+2 < len(rgb); i, j = i+3, j+4 {
		p[j], p[j+1], p[j+2], p[j+3] = rgb[i], rgb[i+1], rgb[i+2], 255
	}
}
