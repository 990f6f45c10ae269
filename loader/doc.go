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
// Decoding a full 800×600 JPEG with image/jpeg and resizing it spends about
// two thirds of its CPU producing and then averaging away pixels that a
// 100×100 thumbnail does not need. jpegscaled.go is a
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
// Speed and CPU per image, against the original Python loader, are
// measured by this package's benchmarks (BenchmarkLoadImages,
// BenchmarkSeedPython, BenchmarkDecode); the figures, with the machine they
// were measured on, are kept in one place: docs/loader.md.
package loader
