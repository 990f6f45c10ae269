package api

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tsnemap/tsnemap/jobs"
	"github.com/tsnemap/tsnemap/openapi"
)

// TestResultWithHotspotsAndGrid: the cluster and grid columns follow x, y in
// the table (empty for noise and for a failed image) and appear in the JSON
// with the hotspots and their ids.
func TestResultWithHotspotsAndGrid(t *testing.T) {
	res := &jobs.Result{Columns: []string{"id", "title"}, Dimensions: 2, Clustered: true, Gridded: true,
		Rows: []jobs.ResultRow{
			{ID: "a", Values: []string{"a", "Sea"}, Coords: []float32{1.5, 2}, Cluster: 1, Grid: []int{0, 1}},
			{ID: "b", Values: []string{"b", "Night"}},
			{ID: "c", Values: []string{"c", "Sky"}, Coords: []float32{-1, 0.5}, Grid: []int{1, 0}},
		},
		Hotspots: []jobs.Hotspot{{ID: 1, Size: 1, X: 1.5, Y: 2, Radius: 0, Rows: []int{0}}},
	}
	for _, tc := range []struct {
		name  string
		res   jobs.Result
		delim byte
		want  string
	}{
		{"tsv, clusters and grid", *res, '\t', "id\ttitle\tx\ty\tcluster\tgrid_x\tgrid_y\na\tSea\t1.5\t2\t1\t0\t1\nb\tNight\t\t\t\t\t\nc\tSky\t-1\t0.5\t\t1\t0\n"},
		{"csv, clusters only", func() jobs.Result { r := *res; r.Gridded = false; return r }(), ',', "id,title,x,y,cluster\na,Sea,1.5,2,1\nb,Night,,,\nc,Sky,-1,0.5,\n"},
		{"csv, neither (a result from before hotspots)", func() jobs.Result { r := *res; r.Gridded, r.Clustered = false, false; return r }(), ',', "id,title,x,y\na,Sea,1.5,2\nb,Night,,\nc,Sky,-1,0.5\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(WriteTable(&tc.res, tc.delim)); got != tc.want {
				t.Errorf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
	b, err := json.Marshal(ResultJSON(res))
	if err != nil {
		t.Fatal(err)
	}
	var out openapi.Result
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	p := out.Points
	if *p[0].Cluster != 1 || *p[0].GridX != 0 || *p[0].GridY != 1 || p[1].Cluster != nil || p[1].GridX != nil || p[2].Cluster != nil || *p[2].GridX != 1 {
		t.Errorf("points = %s", b)
	}
	if len(out.Hotspots) != 1 || out.Hotspots[0].Ids[0] != "a" || out.Hotspots[0].Size != 1 || out.Hotspots[0].Rows[0] != 0 {
		t.Errorf("hotspots = %+v", out.Hotspots)
	}
	if b, _ := json.Marshal(ResultJSON(&jobs.Result{Dimensions: 3})); string(b) != `{"columns":[],"failures":[],"hotspots":[],"points":[]}` {
		t.Errorf("empty result = %s", b)
	}
}

func TestSubmitGrid(t *testing.T) {
	e := newEnv(t)
	j := e.submit(`{"dataset_url":"https://museum.example/data.tab","image_url_template":"https://museum.example/img/{id}.jpg","grid":true}`)
	if !j.Request.Grid {
		t.Errorf("normalized request grid = false")
	}
	res, body := e.do("POST", "/v1/jobs", `{"dataset_url":"https://museum.example/data.tab","image_url_template":"https://m.example/{id}.jpg","grid":true,"dimensions":3}`)
	if res.StatusCode != 400 || !json.Valid(body) || !strings.Contains(string(body), `"field":"grid"`) {
		t.Errorf("grid with 3-D: %d %s", res.StatusCode, body)
	}
}
