package main

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/tsnemap/tsnemap/openapi"
	"github.com/tsnemap/tsnemap/web"
)

// The demo catalogue: paintings in a handful of styles, so that a map of
// them shows one cluster per style. It is generated at start-up
// (deterministically) and served on a loopback address of its own.
const (
	demoPerStyle = 50
	demoSize     = 96
	// demoHost is a loopback address used by nothing else, so that opening
	// the private-network guard for it opens nothing but the demo.
	demoHost = "127.0.0.42"
)

type demoStyle struct {
	name  string
	paint func(img *image.RGBA, r *rand.Rand)
}

var demoStyles = []demoStyle{
	{"stripes", paintStripes},
	{"rings", paintRings},
	{"checker", paintChecker},
	{"sunset", paintSunset},
	{"pointillist", paintDots},
	{"diagonal", paintDiagonal},
}

type demoServer struct {
	addr  netip.AddrPort
	srv   *http.Server
	files map[string][]byte
}

// demoCatalogue renders every painting and the table. A few rows show what
// real catalogues do: two have no id (dropped) and one image is missing
// (its row keeps empty coordinates).
func demoCatalogue() (map[string][]byte, error) {
	files := map[string][]byte{}
	var tab strings.Builder
	tab.WriteString("id\ttitle\tstyle\tyear\n")
	r := rand.New(rand.NewPCG(42, 7))
	n := 0
	for k := 0; k < demoPerStyle; k++ {
		for _, st := range demoStyles {
			n++
			id := fmt.Sprintf("P%04d", n)
			img := image.NewRGBA(image.Rect(0, 0, demoSize, demoSize))
			st.paint(img, r)
			var b bytes.Buffer
			if err := png.Encode(&b, img); err != nil {
				return nil, fmt.Errorf("demo image %s: %w", id, err)
			}
			files["/images/"+id+".png"] = b.Bytes()
			fmt.Fprintf(&tab, "%s\tÉtude %s n° %d\t%s\t%d\n", id, st.name, k+1, st.name, 1850+r.IntN(120))
		}
	}
	tab.WriteString("NaN\tuntitled (no id: dropped)\tunknown\t1900\n")
	tab.WriteString("\tanother without id\tunknown\t1901\n")
	tab.WriteString("P9999\tlost painting (image missing)\tunknown\t1902\n")
	files["/data.tab"] = []byte(tab.String())
	return files, nil
}

func startDemo(log *slog.Logger) (*demoServer, error) {
	files, err := demoCatalogue()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", demoHost+":0")
	if err != nil {
		// Some systems configure only 127.0.0.1 on loopback.
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("demo: listen: %w", err)
		}
	}
	d := &demoServer{addr: netip.MustParseAddrPort(ln.Addr().String()), files: files}
	d.srv = &http.Server{Handler: d, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = d.srv.Serve(ln) }()
	log.Info("demo catalogue", "url", "http://"+d.addr.String()+"/data.tab", "paintings", len(files)-1)
	return d, nil
}

func (d *demoServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, ok := d.files[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if strings.HasSuffix(r.URL.Path, ".png") {
		w.Header().Set("Content-Type", "image/png")
	} else {
		w.Header().Set("Content-Type", "text/tab-separated-values; charset=utf-8")
	}
	_, _ = w.Write(b)
}

func (d *demoServer) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = d.srv.Shutdown(ctx)
}

// webDemo is the demo as the page offers it (a button that fills the form).
func (d *demoServer) webDemo() *web.Demo {
	base := "http://" + d.addr.String()
	return &web.Demo{DatasetURL: base + "/data.tab", ImageURLTemplate: base + "/images/{id}.png", Perplexity: 20}
}

func (d *demoServer) curl(api string) string {
	base := "http://" + d.addr.String()
	return fmt.Sprintf(`curl -si %s/v1/jobs -H 'Content-Type: application/json' -d '{"dataset_url":"%s/data.tab","image_url_template":"%s/images/{id}.png","perplexity":20}'`,
		api, base, base)
}

// catalogue is the demo as /demo.json serves it.
func (d *demoServer) catalogue() *openapi.DemoCatalogue {
	w := d.webDemo()
	return &openapi.DemoCatalogue{DatasetUrl: w.DatasetURL, ImageUrlTemplate: w.ImageURLTemplate, Perplexity: float64(w.Perplexity)}
}

// instructions are what `serve --demo` prints on standard output: the
// page, and commands that map the demo and follow the job, each working
// as printed.
func (d *demoServer) instructions(api string) string {
	return fmt.Sprintf(`Open the page: %[1]s/  (its "Demo" button fills in the demo catalogue)

Or map the demo catalogue from a shell:

  %[2]s

The answer's Location header is the job's URL; poll it until "status" is "succeeded":

  curl -s %[1]s/v1/jobs/<id>

then fetch the table with x and y:

  curl -s %[1]s/v1/jobs/<id>/result

From Python: pip install ./clients/python (see docs/python.md); the demo's URLs are at %[1]s/demo.json.
`, api, d.curl(api))
}

func jitter(r *rand.Rand, c color.RGBA, amount int) color.RGBA {
	j := func(v uint8) uint8 { return uint8(max(0, min(255, int(v)+r.IntN(2*amount+1)-amount))) }
	return color.RGBA{j(c.R), j(c.G), j(c.B), 255}
}

func fill(img *image.RGBA, f func(x, y int) color.RGBA) {
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			img.SetRGBA(x, y, f(x, y))
		}
	}
}

func paintStripes(img *image.RGBA, r *rand.Rand) {
	warm := []color.RGBA{{200, 60, 40, 255}, {230, 160, 40, 255}, {120, 30, 30, 255}, {240, 220, 180, 255}}
	bands := 3 + r.IntN(4)
	cols := make([]color.RGBA, bands)
	for i := range cols {
		cols[i] = jitter(r, warm[r.IntN(len(warm))], 25)
	}
	fill(img, func(x, y int) color.RGBA { return cols[y*bands/demoSize] })
}

func paintRings(img *image.RGBA, r *rand.Rand) {
	a, b := jitter(r, color.RGBA{30, 60, 160, 255}, 30), jitter(r, color.RGBA{220, 220, 90, 255}, 30)
	cx, cy := 40+r.Float64()*16, 40+r.Float64()*16
	w := 6 + r.Float64()*6
	fill(img, func(x, y int) color.RGBA {
		if int(math.Hypot(float64(x)-cx, float64(y)-cy)/w)%2 == 0 {
			return a
		}
		return b
	})
}

func paintChecker(img *image.RGBA, r *rand.Rand) {
	a, b := jitter(r, color.RGBA{20, 20, 20, 255}, 20), jitter(r, color.RGBA{235, 235, 225, 255}, 20)
	cell := 8 + r.IntN(12)
	fill(img, func(x, y int) color.RGBA {
		if (x/cell+y/cell)%2 == 0 {
			return a
		}
		return b
	})
}

func paintSunset(img *image.RGBA, r *rand.Rand) {
	horizon := 55 + r.IntN(15)
	sx, sy, sr := 20+r.Float64()*56, float64(horizon)-10, 8+r.Float64()*6
	sea := jitter(r, color.RGBA{20, 40, 70, 255}, 15)
	fill(img, func(x, y int) color.RGBA {
		if y >= horizon {
			return sea
		}
		if math.Hypot(float64(x)-sx, float64(y)-sy) < sr {
			return color.RGBA{255, 230, 120, 255}
		}
		t := float64(y) / float64(horizon)
		return color.RGBA{uint8(120 + 130*t), uint8(60 + 60*t), uint8(140 - 100*t), 255}
	})
}

func paintDots(img *image.RGBA, r *rand.Rand) {
	bg := jitter(r, color.RGBA{240, 240, 230, 255}, 10)
	fill(img, func(x, y int) color.RGBA { return bg })
	palette := []color.RGBA{{60, 140, 70, 255}, {200, 80, 150, 255}, {70, 120, 200, 255}}
	for i := 0; i < 160; i++ {
		c := jitter(r, palette[r.IntN(len(palette))], 30)
		x0, y0 := r.IntN(demoSize), r.IntN(demoSize)
		for dy := -2; dy <= 2; dy++ {
			for dx := -2; dx <= 2; dx++ {
				if dx*dx+dy*dy <= 4 && image.Pt(x0+dx, y0+dy).In(img.Bounds()) {
					img.SetRGBA(x0+dx, y0+dy, c)
				}
			}
		}
	}
}

func paintDiagonal(img *image.RGBA, r *rand.Rand) {
	a, b := jitter(r, color.RGBA{40, 150, 150, 255}, 30), jitter(r, color.RGBA{10, 60, 90, 255}, 30)
	w := 5 + r.IntN(8)
	fill(img, func(x, y int) color.RGBA {
		if ((x+y)/w)%2 == 0 {
			return a
		}
		return b
	})
}
