package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"strings"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/atlas"
	"github.com/tsnemap/tsnemap/internal/testkit"
	"github.com/tsnemap/tsnemap/openapi"
)

// The test runner's thumbnails (testkit.AtlasOfRows): rows a (red) and c
// (blue) of its three-row table loaded, row b failed.
var red, blue = testkit.AtlasRed, testkit.AtlasBlue

func colourNear(got, want [3]uint8) bool {
	for i := range 3 {
		if d := int(got[i]) - int(want[i]); d < -16 || d > 16 {
			return false
		}
	}
	return true
}

func rgb(img image.Image, x, y int) [3]uint8 {
	r, g, b, _ := img.At(x, y).RGBA()
	return [3]uint8{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8)}
}

func TestAtlasAndMapOfAJobWithAFailedImage(t *testing.T) {
	e := newEnv(t)
	j := e.submit(okBody)
	done := e.waitStatus(j.Id, "succeeded", 10*time.Second)
	if done.Links.Atlas == nil || *done.Links.Atlas != "/v1/jobs/"+j.Id+"/atlas" ||
		done.Links.Map == nil || *done.Links.Map != "/v1/jobs/"+j.Id+"/map.png" {
		t.Errorf("links = %+v", done.Links)
	}

	res, b := e.do("GET", "/v1/jobs/"+j.Id+"/atlas", "")
	if res.StatusCode != 200 {
		t.Fatalf("atlas: %d %s", res.StatusCode, b)
	}
	var idx openapi.AtlasIndex
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	if idx.Cell != 64 || idx.Rows != 3 || fmt.Sprint(idx.Missing) != "[1]" || len(idx.Cells) != 2 || len(idx.Sheets) != 1 {
		t.Fatalf("atlas index = %s", b)
	}
	if c := idx.Cells[1]; c.Row != 2 || c.Id != "c" || c.Url != "http://img/c.png" || c.Sheet != 0 {
		t.Errorf("cell of row c = %+v", c)
	}
	sh := idx.Sheets[0]
	if sh.Url != "/v1/jobs/"+j.Id+"/atlas/0" || sh.Width != 128 || sh.Height != 64 {
		t.Errorf("sheet = %+v", sh)
	}
	res, b = e.do("GET", sh.Url, "")
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("sheet: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	sheet, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if sheet.Bounds().Dx() != sh.Width || sheet.Bounds().Dy() != sh.Height {
		t.Errorf("sheet is %v, index says %dx%d", sheet.Bounds(), sh.Width, sh.Height)
	}
	for k, want := range [][3]uint8{red, blue} {
		c := idx.Cells[k]
		if got := rgb(sheet, c.X+32, c.Y+32); !colourNear(got, want) {
			t.Errorf("cell of row %d is %v, want about %v", c.Row, got, want)
		}
	}
	if etag := res.Header.Get("ETag"); etag == "" {
		t.Error("sheet without ETag")
	} else if res, _ := e.do("GET", sh.Url, "", "If-None-Match", etag); res.StatusCode != 304 {
		t.Errorf("sheet with its ETag: %d, want 304", res.StatusCode)
	}
	if res, b := e.do("GET", "/v1/jobs/"+j.Id+"/atlas/7", ""); res.StatusCode != 404 || !strings.Contains(string(b), "sheet 7") {
		t.Errorf("sheet 7: %d %s", res.StatusCode, b)
	}

	// map.png: the default size, then a small one whose pixels are checked.
	res, b = e.do("GET", "/v1/jobs/"+j.Id+"/map.png", "")
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("map.png: %d %s", res.StatusCode, b)
	}
	if cfg, err := png.DecodeConfig(bytes.NewReader(b)); err != nil || cfg.Width != 1200 || cfg.Height != 900 {
		t.Errorf("default map.png: %+v %v, want 1200x900", cfg, err)
	}
	res, b = e.do("GET", "/v1/jobs/"+j.Id+"/map.png?width=300&height=200", "")
	if res.StatusCode != 200 {
		t.Fatalf("map.png 300x200: %d %s", res.StatusCode, b)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds().Dx() != 300 || img.Bounds().Dy() != 200 {
		t.Fatalf("map.png is %v", img.Bounds())
	}
	// Row a at (1.25, 2.25), row c at (-0.5, 0.5); row b has no point.
	points := []atlas.Point{{Row: 0, X: 1.25, Y: 2.25}, {Row: 2, X: -0.5, Y: 0.5}}
	l := atlas.NewLayout(points, 300, 200, 64)
	for k, want := range [][3]uint8{red, blue} {
		x, y := l.Place(points[k].X, points[k].Y)
		if got := rgb(img, int(x), int(y)); !colourNear(got, want) {
			t.Errorf("map.png at row %d's place (%.0f, %.0f): %v, want about %v", points[k].Row, x, y, got, want)
		}
	}
	if got := rgb(img, 150, 100); got != [3]uint8{255, 255, 255} {
		t.Errorf("map.png between the points: %v, want white", got)
	}

	// Out-of-range sizes are 400s naming the field.
	for q, field := range map[string]string{"width=10": "width", "height=5000": "height", "width=wide": "width"} {
		res, b := e.do("GET", "/v1/jobs/"+j.Id+"/map.png?"+q, "")
		var p openapi.Problem
		_ = json.Unmarshal(b, &p)
		if res.StatusCode != 400 || p.Errors == nil || len(*p.Errors) == 0 || (*p.Errors)[0].Field != field {
			t.Errorf("map.png?%s: %d %s, want 400 naming %s", q, res.StatusCode, b, field)
		}
	}

	// Deleting the job deletes its thumbnails.
	if res, _ := e.do("DELETE", "/v1/jobs/"+j.Id, ""); res.StatusCode != 204 {
		t.Fatalf("DELETE: %d", res.StatusCode)
	}
	if _, err := e.store.AtlasSheet(t.Context(), j.Id, 0); err == nil {
		t.Error("the sheet outlived its job")
	}
	if res, _ := e.do("GET", "/v1/jobs/"+j.Id+"/atlas", ""); res.StatusCode != 404 {
		t.Errorf("atlas of a deleted job: %d", res.StatusCode)
	}
}

func TestAtlasWhileRunningMapNotYet(t *testing.T) {
	e := newEnv(t)
	j := e.submit(`{"dataset_url":"https://m.example/slow","image_url_column":"u"}`)
	testkit.Eventually(t, 10*time.Second, func() (bool, string) {
		res, b := e.do("GET", "/v1/jobs/"+j.Id+"/atlas", "")
		if res.StatusCode != 200 && res.StatusCode != 409 {
			t.Fatalf("atlas of a running job: %d %s", res.StatusCode, b)
		}
		return res.StatusCode == 200, fmt.Sprintf("%d %s", res.StatusCode, b)
	}, "atlas of a running job")
	if st := e.job(j.Id); st.Status != "running" || st.Links.Atlas == nil || st.Links.Map != nil {
		t.Errorf("running job: %s, links %+v", st.Status, st.Links)
	}
	if res, b := e.do("GET", "/v1/jobs/"+j.Id+"/map.png", ""); res.StatusCode != 409 {
		t.Errorf("map.png of a running job: %d %s", res.StatusCode, b)
	}
	e.do("DELETE", "/v1/jobs/"+j.Id, "")
}

func TestAtlasAndMapOfAFailedOrUnknownJob(t *testing.T) {
	e := newEnv(t)
	j := e.submit(`{"dataset_url":"https://m.example/broken","image_url_column":"u"}`)
	e.waitStatus(j.Id, "failed", 10*time.Second)
	for _, p := range []string{"/atlas", "/map.png"} {
		if res, b := e.do("GET", "/v1/jobs/"+j.Id+p, ""); res.StatusCode != 409 {
			t.Errorf("%s of a failed job: %d %s", p, res.StatusCode, b)
		}
		if res, b := e.do("GET", "/v1/jobs/NOSUCHJOB"+p, ""); res.StatusCode != 404 {
			t.Errorf("%s of an unknown job: %d %s", p, res.StatusCode, b)
		}
	}
	if res, b := e.do("GET", "/v1/jobs/"+j.Id+"/atlas/-1", ""); res.StatusCode != 400 {
		t.Errorf("sheet -1: %d %s", res.StatusCode, b)
	}
}
