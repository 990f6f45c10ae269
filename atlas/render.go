package atlas

import (
	"context"
	"image"
	"image/color"
	"math"

	"golang.org/x/image/draw"
)

// Point is one row's coordinates in the map (x, y of the embedding).
type Point struct {
	Row  int
	X, Y float64
}

// Layout maps embedding coordinates to pixels of a width × height picture:
// the points' bounding box scaled uniformly to fit inside a margin, centred,
// y pointing up (as on a chart).
type Layout struct {
	Width, Height int
	// Thumb is the side of each thumbnail in the picture.
	Thumb          int
	scale, ox, oy  float64
	minX, maxY     float64
	single         bool
	singleX, singY float64
}

// NewLayout fits the points into a width × height picture, with
// thumbnails of a side that lets n of them cover about half of it, between
// 4 pixels and maxThumb.
func NewLayout(points []Point, width, height, maxThumb int) Layout {
	l := Layout{Width: width, Height: height}
	n := max(len(points), 1)
	t := int(math.Round(0.7 * math.Sqrt(float64(width*height)/float64(n))))
	l.Thumb = max(4, min(t, maxThumb, width/4, height/4))
	if len(points) == 0 {
		return l
	}
	minX, maxX, minY, maxY := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, p := range points {
		minX, maxX = min(minX, p.X), max(maxX, p.X)
		minY, maxY = min(minY, p.Y), max(maxY, p.Y)
	}
	margin := float64(l.Thumb)/2 + 4
	dx, dy := maxX-minX, maxY-minY
	if dx == 0 && dy == 0 {
		l.single, l.singleX, l.singY = true, float64(width)/2, float64(height)/2
		return l
	}
	sx, sy := math.Inf(1), math.Inf(1)
	if dx > 0 {
		sx = (float64(width) - 2*margin) / dx
	}
	if dy > 0 {
		sy = (float64(height) - 2*margin) / dy
	}
	l.scale = max(min(sx, sy), 0)
	l.minX, l.maxY = minX, maxY
	l.ox = (float64(width) - dx*l.scale) / 2
	l.oy = (float64(height) - dy*l.scale) / 2
	return l
}

// Place returns the pixel at the centre of the point (x, y).
func (l Layout) Place(x, y float64) (float64, float64) {
	if l.single {
		return l.singleX, l.singY
	}
	return l.ox + (x-l.minX)*l.scale, l.oy + (l.maxY-y)*l.scale
}

// Render draws the map: a white picture with each point's thumbnail
// centred at its place (a grey dot for a point without one). sheets are the
// atlas's decoded sheets; idx may be nil (no thumbnails).
func Render(ctx context.Context, idx *Index, sheets []image.Image, points []Point, width, height int) (*image.RGBA, error) {
	dst := image.NewRGBA(image.Rect(0, 0, width, height))
	draw.Draw(dst, dst.Rect, image.White, image.Point{}, draw.Src)
	maxThumb := 64
	cells := map[int]Cell{}
	if idx != nil {
		maxThumb = idx.Cell
		for _, c := range idx.Cells {
			cells[c.Row] = c
		}
	}
	l := NewLayout(points, width, height, maxThumb)
	half := l.Thumb / 2
	grey := image.NewUniform(color.RGBA{120, 120, 120, 255})
	for i, p := range points {
		if i%1024 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		px, py := l.Place(p.X, p.Y)
		x0, y0 := int(math.Round(px))-half, int(math.Round(py))-half
		r := image.Rect(x0, y0, x0+l.Thumb, y0+l.Thumb)
		c, ok := cells[p.Row]
		if !ok || c.Sheet < 0 || c.Sheet >= len(sheets) || sheets[c.Sheet] == nil {
			d := max(l.Thumb/3, 2)
			cx, cy := int(math.Round(px)), int(math.Round(py))
			draw.Draw(dst, image.Rect(cx-d/2, cy-d/2, cx-d/2+d, cy-d/2+d), grey, image.Point{}, draw.Src)
			continue
		}
		src := image.Rect(c.X, c.Y, c.X+idx.Cell, c.Y+idx.Cell)
		draw.ApproxBiLinear.Scale(dst, r, sheets[c.Sheet], src, draw.Src, nil)
	}
	return dst, nil
}
