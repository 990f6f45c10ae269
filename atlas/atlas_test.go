package atlas

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"reflect"
	"strings"
	"testing"

	"github.com/tsnemap/tsnemap/internal/rowspool"
)

// solid returns n images of w×h, image k filled with colours[k].
func solid(w, h int, colours [][3]uint8) []uint8 {
	var pix []uint8
	for _, c := range colours {
		for range w * h {
			pix = append(pix, c[0], c[1], c[2])
		}
	}
	return pix
}

func near(t *testing.T, what string, got [3]uint8, want [3]uint8) {
	t.Helper()
	for i := range 3 {
		d := int(got[i]) - int(want[i])
		if d < -12 || d > 12 {
			t.Errorf("%s: colour %v, want about %v", what, got, want)
			return
		}
	}
}

func rgbAt(img image.Image, x, y int) [3]uint8 {
	r, g, b, _ := img.At(x, y).RGBA()
	return [3]uint8{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8)}
}

var palette = [][3]uint8{{220, 20, 20}, {20, 200, 20}, {20, 20, 220}, {230, 220, 30}, {20, 20, 20}}

func TestBuildPlacesEveryLoadedRowAndListsMissing(t *testing.T) {
	// 7 rows; rows 2 and 5 failed to load.
	rows := []int{0, 1, 3, 4, 6}
	src := Source{Width: 10, Height: 8, Pix: solid(10, 8, palette), Rows: rows, TotalRows: 7}
	for _, r := range rows {
		src.IDs = append(src.IDs, fmt.Sprint("id", r))
		src.URLs = append(src.URLs, fmt.Sprintf("https://h/%d.png", r))
	}
	a, err := Build(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	idx := a.Index
	if idx.Cell != 64 || idx.Rows != 7 || len(idx.Sheets) != 1 || len(a.Sheets) != 1 {
		t.Fatalf("index %+v, %d sheets", idx, len(a.Sheets))
	}
	if fmt.Sprint(idx.Missing) != "[2 5]" {
		t.Errorf("missing %v, want [2 5]", idx.Missing)
	}
	// 5 images: a 3-column grid, 2 rows of cells.
	if s := idx.Sheets[0]; s.Width != 3*64 || s.Height != 2*64 {
		t.Errorf("sheet %dx%d, want 192x128", s.Width, s.Height)
	}
	sheet, err := jpeg.Decode(bytes.NewReader(a.Sheets[0]))
	if err != nil {
		t.Fatal(err)
	}
	if sheet.Bounds().Dx() != idx.Sheets[0].Width || sheet.Bounds().Dy() != idx.Sheets[0].Height {
		t.Errorf("decoded sheet %v, index says %+v", sheet.Bounds(), idx.Sheets[0])
	}
	if len(idx.Cells) != 5 {
		t.Fatalf("%d cells, want 5", len(idx.Cells))
	}
	for k, c := range idx.Cells {
		if c.Row != rows[k] || c.ID != fmt.Sprint("id", rows[k]) || c.Sheet != 0 {
			t.Errorf("cell %d: %+v", k, c)
		}
		near(t, fmt.Sprintf("centre of row %d's cell", c.Row), rgbAt(sheet, c.X+32, c.Y+32), palette[k])
	}
}

func TestBuildSplitsLargeJobsIntoBoundedSheets(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 20,000 thumbnails")
	}
	n := 20000 // 32 px cells, 16,384 a sheet: two sheets
	src := Source{Width: 4, Height: 4, Pix: make([]uint8, n*4*4*3), TotalRows: n, IDs: make([]string, n), URLs: make([]string, n)}
	for i := range n {
		src.Rows = append(src.Rows, i)
	}
	a, err := Build(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	if a.Index.Cell != 32 || len(a.Sheets) != 2 {
		t.Fatalf("cell %d, %d sheets; want 32 px and 2", a.Index.Cell, len(a.Sheets))
	}
	for i, s := range a.Index.Sheets {
		if s.Width > MaxSheetSide || s.Height > MaxSheetSide {
			t.Errorf("sheet %d is %dx%d, over %d", i, s.Width, s.Height, MaxSheetSide)
		}
	}
	if s := a.Index.Sheets[1]; s.Width != 4096 || s.Height != 32*((n-16384+127)/128) {
		t.Errorf("second sheet %+v", s)
	}
	last := a.Index.Cells[n-1]
	if last.Sheet != 1 || last.X != ((n-16384-1)%128)*32 || last.Y != ((n-16384-1)/128)*32 {
		t.Errorf("last cell %+v", last)
	}
}

func TestCellSize(t *testing.T) {
	for n, want := range map[int]int{1: 64, 4096: 64, 4097: 32, 65536: 32, 65537: 16} {
		if got := CellSize(n); got != want {
			t.Errorf("CellSize(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestBuildRejectsShortPixels(t *testing.T) {
	_, err := Build(context.Background(), Source{Width: 2, Height: 2, Pix: make([]uint8, 5), Rows: []int{0}, IDs: []string{"a"}, URLs: []string{"u"}, TotalRows: 1})
	if err == nil {
		t.Fatal("no error for 5 bytes of a 2x2 image")
	}
}

func TestRenderPlacesThumbnailsAtTheirCoordinates(t *testing.T) {
	// Four corners and a centre; row 5 has coordinates but no thumbnail.
	src := Source{Width: 8, Height: 8, Pix: solid(8, 8, palette), Rows: []int{0, 1, 2, 3, 4}, TotalRows: 6,
		IDs: []string{"a", "b", "c", "d", "e"}, URLs: []string{"", "", "", "", ""}}
	a, err := Build(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	sheet, err := jpeg.Decode(bytes.NewReader(a.Sheets[0]))
	if err != nil {
		t.Fatal(err)
	}
	points := []Point{{0, -10, -10}, {1, 10, -10}, {2, -10, 10}, {3, 10, 10}, {4, 0, 0}, {5, 5, 0}}
	const w, h = 400, 300
	img, err := Render(context.Background(), &a.Index, []image.Image{sheet}, points, w, h)
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds().Dx() != w || img.Bounds().Dy() != h {
		t.Fatalf("size %v", img.Bounds())
	}
	l := NewLayout(points, w, h, 64)
	for k, p := range points[:5] {
		x, y := l.Place(p.X, p.Y)
		near(t, fmt.Sprintf("row %d at (%.0f, %.0f)", p.Row, x, y), rgbAt(img, int(x), int(y)), palette[k])
		// The whole thumbnail is inside the picture.
		if x-float64(l.Thumb)/2 < 0 || x+float64(l.Thumb)/2 > w || y-float64(l.Thumb)/2 < 0 || y+float64(l.Thumb)/2 > h {
			t.Errorf("row %d's thumbnail at (%.0f, %.0f) side %d leaves the picture", p.Row, x, y, l.Thumb)
		}
	}
	// y points up: row 2 (y = 10) is above row 0 (y = -10).
	_, y0 := l.Place(-10, -10)
	_, y2 := l.Place(-10, 10)
	if y2 >= y0 {
		t.Errorf("y = 10 drawn at %.0f, below y = -10 at %.0f", y2, y0)
	}
	x, y := l.Place(5, 0)
	near(t, "row 5 (no thumbnail): a grey dot", rgbAt(img, int(x), int(y)), [3]uint8{120, 120, 120})
	near(t, "background", rgbAt(img, 2, h/2), [3]uint8{255, 255, 255})
}

func TestRenderWithoutPointsIsBlank(t *testing.T) {
	img, err := Render(context.Background(), nil, nil, nil, 64, 64)
	if err != nil {
		t.Fatal(err)
	}
	near(t, "centre", rgbAt(img, 32, 32), [3]uint8{255, 255, 255})
}

// BenchmarkBuild makes the atlas of 10,000 images of 100 × 100: 32 px
// cells in one sheet of 100 × 100 cells (3200 × 3200).
func BenchmarkBuild(b *testing.B) {
	const n, w, h = 10000, 100, 100
	src := Source{Width: w, Height: h, Pix: make([]uint8, n*w*h*3), TotalRows: n, IDs: make([]string, n), URLs: make([]string, n)}
	for i := range src.Pix {
		src.Pix[i] = uint8(i * 7)
	}
	for i := range n {
		src.Rows = append(src.Rows, i)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := Build(context.Background(), src); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/n, "µs/image")
}

// BenchmarkRender draws 10,000 thumbnails into a 1200 × 900 map.
func BenchmarkRender(b *testing.B) {
	const n = 10000
	src := Source{Width: 8, Height: 8, Pix: make([]uint8, n*8*8*3), TotalRows: n, IDs: make([]string, n), URLs: make([]string, n)}
	points := make([]Point, n)
	for i := range n {
		src.Rows = append(src.Rows, i)
		points[i] = Point{Row: i, X: float64(i % 100), Y: float64(i / 100)}
	}
	a, err := Build(context.Background(), src)
	if err != nil {
		b.Fatal(err)
	}
	sheet, err := jpeg.Decode(bytes.NewReader(a.Sheets[0]))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := Render(context.Background(), &a.Index, []image.Image{sheet}, points, 1200, 900); err != nil {
			b.Fatal(err)
		}
	}
}

// Images read from a spool file (pixels the loader kept on disk) give the
// same atlas, byte for byte, as the same images in memory; a failed read
// fails the build, naming the file.
func TestBuildReadsSpooledImages(t *testing.T) {
	pix := solid(10, 8, palette)
	src := Source{Width: 10, Height: 8, Pix: pix, Rows: []int{0, 1, 3, 4, 6}, TotalRows: 7}
	for _, r := range src.Rows {
		src.IDs = append(src.IDs, fmt.Sprint("id", r))
		src.URLs = append(src.URLs, fmt.Sprintf("https://h/%d.png", r))
	}
	want, err := Build(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	f, err := rowspool.Create(t.TempDir(), 10*8*3)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := errors.Join(f.Append(pix), f.Finish()); err != nil {
		t.Fatal(err)
	}
	src.Pix, src.Reader = nil, f
	got, err := Build(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Error("the atlas of spooled images differs from the one of the same images in memory")
	}
	f.Close()
	if _, err := Build(context.Background(), src); err == nil || !strings.Contains(err.Error(), f.Path()) {
		t.Errorf("build from a closed spool: %v, want an error naming %s", err, f.Path())
	}
}
