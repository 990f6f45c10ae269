// Package loader fetches a table of image URLs and every image it names,
// and turns each image into W×H×3 bytes of RGB for the embedding.
//
// # Use
//
// Build one Loader from a Config and share it; it holds the guarded HTTP
// transport (connections kept alive, HTTP/2 where offered) and the
// counters read by Stats:
//
//	l, err := loader.New(loader.Config{AllowPrivateNetworks: false})
//	tab, err := l.FetchTable(ctx, url, loader.TableOptions{ImageURLTemplate: "https://host/{id}.jpg"})
//	im, err := l.LoadImages(ctx, tab.Rows, loader.ImageOptions{Width: 100, Height: 100}, progress)
//	// im.Pix: im.Len() images of 100·100·3 bytes, in row order; im.Rows[k]
//	// is the index in tab.Rows of image k; im.Failures, one per row that
//	// did not load ("http 404", "not an image (text/html)", ...).
//
// Errors are matched with errors.Is: ErrDatasetUnreachable (network, HTTP
// status, guard refusal, too large), ErrDatasetInvalid (no header, unknown
// column — a *ColumnError naming the columns that exist —, bad template,
// no rows left), ErrNoImages (every image failed), ErrInvalidOptions.
//
// # How it works
//
// The table is read whole (at most MaxTableBytes, counted while streaming),
// decoded as UTF-8 with every invalid byte read as Latin-1, and parsed with
// encoding/csv after the delimiter (tab or comma) is chosen from the header
// line. Rows keep their original values and position so that the service
// can write the table back with coordinates appended.
//
// Images flow through two pools joined by a small buffered channel:
//
//	scheduler ──▶ MaxInFlight downloaders ──▶ chan (2 × decoders) ──▶ GOMAXPROCS decoders ──▶ pixels[row]
//
// The scheduler hands out rows host by host in turn, never more than
// MaxPerHost to one host. A downloader retries connection errors,
// timeouts, 429 and 5xx with exponential backoff and jitter (Retry-After
// honoured up to a cap), and stops reading a body at MaxImageBytes. The
// buffer lets decoders never wait for the network while bounding the
// bodies held in memory; when decoding is the bottleneck the downloaders
// wait, not the cores. A decoder sniffs the format from the bytes (never
// the Content-Type), reads the dimensions from the header and refuses
// anything over MaxImagePixels before decoding, decodes, applies the EXIF
// orientation, resizes with github.com/disintegration/imaging to exactly
// W×H, composites alpha on white and writes RGB straight into the row's
// slot of the result. A cancelled context stops the scheduler, aborts
// every request in flight and returns once all goroutines are done.
//
// The private-network guard sits in the transport's dialer: every address
// a host resolves to — and, through the dialer's Control hook, every
// address actually connected to — is checked against loopback, RFC 1918,
// unique-local, link-local (169.254.169.254), CGNAT, multicast, reserved
// and unspecified ranges, IPv4-mapped and NAT64 forms included. Because the
// check is on the dialled address, DNS rebinding cannot slip past it, and
// each redirect (at most MaxRedirects, http and https only) dials through
// it again. Hosts written as decimal, octal or hex numbers are read as the
// IPv4 addresses a C library would make of them. No proxy is used.
//
// # JPEG fast path
//
// Decoding a full 800×600 JPEG with image/jpeg and resizing it cost about
// 11 ms of CPU per image (Pillow, with libjpeg-turbo, about 7), two thirds of it in producing and then averaging
// away pixels that a 100×100 thumbnail does not need. jpegscaled.go is a
// baseline Huffman decoder written from ITU-T T.81 that reconstructs each
// 8×8 block at 1×1, 2×2 or 4×4 directly from its lowest-frequency DCT
// coefficients (chroma at the luma's output resolution), choosing the
// smallest scale that is still at least the target size; imaging then
// resizes the small picture. Progressive, arithmetic-coded, 12-bit,
// CMYK/YCCK and Adobe-RGB files, and any stream it finds broken, go to
// image/jpeg instead. Tests hold it to image/jpeg's full decode (mean
// difference under 1 level of luma on the fixtures).
//
// # Figures
//
//	go test ./loader -run '^$' -bench 'LoadImages|SeedPython' -benchtime 1x
//	go test ./loader -run '^$' -bench Decode -benchtime 300x
//
// serve 2,000 varied 800×600 JPEGs (quality 85, 4:2:0, about 84 KB each)
// from a loopback server in a separate process and load them at 100×100;
// the Python baseline is shared/bench/seed_loader.py (beside the repository) (requests, 32
// threads, Pillow; Debian's python3-requests and python3-pil) against the
// same server and files, in the same run. The first run makes the files
// (a few minutes) in $TMPDIR/tsnemap-loader-bench-v1. On the 2-core
// development machine, shared with other builds (load average 11–20, so
// wall-clock rates move by ±30% between runs; CPU per image is steady):
//
//	                            images/s   CPU per image
//	Go loader, no latency          246         2.68 ms
//	Go loader, +20 ms per request  236         2.74 ms     (96% of no latency)
//	Python seed, no latency         94         7.04 ms
//	Python seed, +20 ms             104         7.10 ms
//
// Go/Python: 2.6× the images per second, 2.6× less CPU per image. Decode
// and resize alone (BenchmarkDecode): fast path 2.6–2.8 ms of CPU per
// image, image/jpeg 10.7–11.8 ms. Latency does not change CPU per image,
// as expected of a loader that keeps 64 downloads in flight. Where the
// fast path's CPU goes: entropy decoding ~45%, reduced IDCT ~20%,
// imaging's resize ~15%, colour conversion and the rest ~20%.
package loader
