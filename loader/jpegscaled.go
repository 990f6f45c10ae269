package loader

import (
	"encoding/binary"
	"errors"
	"image"
	"math"
)

// This file is the JPEG fast path: a decoder for baseline (and extended
// sequential) Huffman JPEG — the overwhelming majority of photographs on
// the web — that reconstructs every 8×8 block at 1/2, 1/4 or 1/8 size in
// the DCT domain, written from ITU-T T.81. A thumbnail needs 1/16 to 1/64
// of the pixels; decoding them all and throwing them away in a resize was
// two thirds of the CPU. Anything else (progressive, arithmetic coding,
// 12-bit, CMYK/YCCK/RGB, DNL) and any error return nil so that image/jpeg,
// which knows all of it and gives the proper error message, takes over.

var errFallback = errors.New("jpeg: not for the fast path")

// zigzag[k] is the natural-order index of the k-th coefficient in the
// zig-zag sequence (T.81 figure A.6).
var zigzag = [64]uint8{
	0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
	12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
	35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
	58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
}

// idctMatrix[n][x*n+u] = C(u)/2 · cos((2x+1)uπ / 2n): the n-point inverse
// DCT that keeps the n lowest frequencies of an 8-point block. The 1/2
// (rather than √(2/n)) keeps the 8-point gain, so each output pixel is the
// band-limited average of the 8/n × 8/n pixels it stands for.
var idctMatrix = func() (m [9][]float32) {
	for _, n := range []int{1, 2, 4, 8} {
		m[n] = make([]float32, n*n)
		for x := 0; x < n; x++ {
			for u := 0; u < n; u++ {
				c := 1.0
				if u == 0 {
					c = 1 / math.Sqrt2
				}
				m[n][x*n+u] = float32(c / 2 * math.Cos(float64(2*x+1)*float64(u)*math.Pi/float64(2*n)))
			}
		}
	}
	return m
}()

// The tables above are read-only after package initialisation.

type huffTable struct {
	lut [1 << lutBits]uint16 // code prefix → length<<8 | value; 0 = longer than lutBits
	// fastAC decodes, for AC tables, a whole (run, size) symbol and its
	// extra bits when both fit in lutBits: value<<16 | run<<8 | length, or
	// 0. Most coefficients of a photograph are small, so this one lookup
	// replaces a lookup, a second read and a sign extension.
	fastAC  [1 << lutBits]int32
	maxcode [18]int32 // largest code of each length, -1 if none
	valptr  [17]int32 // index in vals of the first code of each length
	mincode [17]int32
	vals    [256]uint8
	defined bool
}

const lutBits = 9

func (h *huffTable) build(bits [17]int, vals []uint8) error {
	*h = huffTable{defined: true}
	copy(h.vals[:], vals)
	code, k := int32(0), int32(0)
	for l := 1; l <= 16; l++ {
		h.valptr[l] = k
		h.mincode[l] = code
		h.maxcode[l] = -1
		if bits[l] > 0 {
			for i := 0; i < bits[l]; i++ {
				if code >= 1<<l {
					return errFallback // over-subscribed: more codes than fit
				}
				if l <= lutBits {
					// Every lutBits-bit prefix that starts with this code.
					shift := lutBits - l
					base := int(code) << shift
					for j := 0; j < 1<<shift; j++ {
						h.lut[base+j] = uint16(l)<<8 | uint16(vals[k])
					}
				}
				code++
				k++
			}
			h.maxcode[l] = code - 1
		}
		code <<= 1
	}
	h.maxcode[17] = math.MaxInt32
	for p := range h.fastAC {
		e := h.lut[p]
		if e == 0 {
			continue
		}
		l, rs := int(e>>8), uint8(e)
		r, sz := int(rs>>4), int(rs&15)
		if sz == 0 || l+sz > lutBits {
			continue
		}
		v := int32(p>>(lutBits-l-sz)) & (1<<sz - 1)
		if v < 1<<(sz-1) {
			v += -1<<sz + 1
		}
		h.fastAC[p] = v<<16 | int32(r)<<8 | int32(l+sz)
	}
	return nil
}

type bitReader struct {
	data   []byte
	pos    int
	acc    uint64 // bits, MSB first
	n      uint   // valid bits in acc
	zeros  int    // zero bytes fed past a marker or the end
	broken bool
}

// fill tops acc up to at least 56 bits, undoing byte stuffing (FF 00) and
// feeding zeros once a marker or the end is reached (T.81 F.1.2.3).
func (b *bitReader) fill() {
	for b.n <= 56 {
		var c byte
		if b.pos < len(b.data) && b.zeros == 0 {
			c = b.data[b.pos]
			if c == 0xFF {
				if b.pos+1 < len(b.data) && b.data[b.pos+1] == 0 {
					b.pos += 2
				} else {
					b.zeros++
					c = 0
				}
			} else {
				b.pos++
			}
		} else {
			b.zeros++
		}
		b.acc |= uint64(c) << (56 - b.n)
		b.n += 8
	}
}

// restart skips to after the RSTn marker the stream must be at.
func (b *bitReader) restart() bool {
	b.acc, b.n, b.zeros = 0, 0, 0
	if b.pos+1 < len(b.data) && b.data[b.pos] == 0xFF && b.data[b.pos+1] >= 0xD0 && b.data[b.pos+1] <= 0xD7 {
		b.pos += 2
		return true
	}
	return false
}

type jpegComponent struct {
	id        uint8
	h, v      int
	tq        int
	plane     []uint8 // reconstructed samples at the output resolution
	stride    int
	sw, sh    int // samples per block across and down: n times the subsampling
	bw, bh    int // blocks across and down in the component (no MCU padding)
	dc, ac    int // table selectors of the current scan
	predictor int32
}

type scaledJPEG struct {
	width, height int
	hmax, vmax    int
	n             int // output pixels per block side: 1, 2 or 4
	comps         []jpegComponent
	quant         [4][64]int32 // in zig-zag order
	dcTables      [4]huffTable
	acTables      [4]huffTable
	restartEvery  int
	mcusX, mcusY  int
	adobe         int // Adobe APP14 transform, -1 if absent
	sawFrame      bool
}

// decodeJPEGScaled returns data decoded at the smallest of 1/8, 1/4 and
// 1/2 scale that is still at least minW×minH, or nil when the fast path
// does not apply (no reduction possible, or an unsupported or broken file).
func decodeJPEGScaled(data []byte, minW, minH int) (img *image.NRGBA, n int) {
	img, n, err := decodeScaled(data, minW, minH)
	if err != nil {
		return nil, 0
	}
	return img, n
}

// decodeScaled also returns n: the image is 1/(8/n) of full size, its last
// column and row covering only what is left of the width and height.
func decodeScaled(data []byte, minW, minH int) (*image.NRGBA, int, error) {
	img, n, err := decodeScaledImpl(data, minW, minH)
	return img, n, err
}

func decodeScaledImpl(data []byte, minW, minH int) (*image.NRGBA, int, error) {
	if len(data) < 4 || data[0] != 0xFF || data[1] != 0xD8 {
		return nil, 0, errFallback
	}
	d := &scaledJPEG{adobe: -1}
	pos := 2
	for {
		// Find the next marker, skipping fill bytes.
		for pos < len(data) && data[pos] != 0xFF {
			pos++
		}
		for pos < len(data) && data[pos] == 0xFF {
			pos++
		}
		if pos >= len(data) {
			return nil, 0, errFallback
		}
		m := data[pos]
		pos++
		if m == 0xD9 { // EOI
			break
		}
		if m >= 0xD0 && m <= 0xD7 || m == 0x01 {
			continue
		}
		if pos+2 > len(data) {
			return nil, 0, errFallback
		}
		segLen := int(binary.BigEndian.Uint16(data[pos:]))
		if segLen < 2 || pos+segLen > len(data) {
			return nil, 0, errFallback
		}
		seg := data[pos+2 : pos+segLen]
		pos += segLen
		var err error
		switch {
		case m == 0xC0 || m == 0xC1: // baseline, extended sequential Huffman
			err = d.readSOF(seg, minW, minH)
		case m >= 0xC2 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC:
			err = errFallback // progressive, lossless, arithmetic
		case m == 0xC4:
			err = d.readDHT(seg)
		case m == 0xDB:
			err = d.readDQT(seg)
		case m == 0xDD:
			if len(seg) < 2 {
				return nil, 0, errFallback
			}
			d.restartEvery = int(binary.BigEndian.Uint16(seg))
		case m == 0xEE:
			if len(seg) >= 12 && string(seg[:5]) == "Adobe" {
				d.adobe = int(seg[11])
			}
		case m == 0xDA:
			if !d.sawFrame {
				return nil, 0, errFallback
			}
			var end int
			end, err = d.readScan(seg, data, pos)
			pos = end
		case m == 0xDC: // DNL
			err = errFallback
		}
		if err != nil {
			return nil, 0, err
		}
	}
	if !d.sawFrame {
		return nil, 0, errFallback
	}
	return d.toNRGBA(), d.n, nil
}

func (d *scaledJPEG) readSOF(seg []byte, minW, minH int) error {
	if d.sawFrame || len(seg) < 6 || seg[0] != 8 {
		return errFallback
	}
	d.height = int(binary.BigEndian.Uint16(seg[1:]))
	d.width = int(binary.BigEndian.Uint16(seg[3:]))
	nc := int(seg[5])
	// Past the default pixel limit the loader refuses the image anyway;
	// the bound also keeps plane sizes sane for any caller.
	if d.width == 0 || d.height == 0 || d.width*d.height > 100_000_000 || (nc != 1 && nc != 3) || len(seg) < 6+3*nc {
		return errFallback
	}
	// Three components are YCbCr unless Adobe says RGB (transform 0) or
	// the ids spell R, G, B; leave those to image/jpeg.
	if nc == 3 && (d.adobe == 0 || (seg[6] == 'R' && seg[9] == 'G' && seg[12] == 'B')) {
		return errFallback
	}
	d.n = 0
	for _, n := range []int{1, 2, 4} {
		if (d.width*n+7)/8 >= minW && (d.height*n+7)/8 >= minH {
			d.n = n
			break
		}
	}
	if d.n == 0 {
		return errFallback // no reduction possible: the full decoder is as good
	}
	d.comps = make([]jpegComponent, nc)
	d.hmax, d.vmax = 1, 1
	for i := range d.comps {
		c := &d.comps[i]
		c.id = seg[6+3*i]
		c.h, c.v = int(seg[7+3*i]>>4), int(seg[7+3*i]&15)
		c.tq = int(seg[8+3*i])
		if c.h < 1 || c.h > 4 || c.v < 1 || c.v > 4 || c.tq > 3 {
			return errFallback
		}
		d.hmax, d.vmax = max(d.hmax, c.h), max(d.vmax, c.v)
	}
	if nc == 1 {
		// A single component is never interleaved: its MCU is one block.
		d.comps[0].h, d.comps[0].v, d.hmax, d.vmax = 1, 1, 1, 1
	}
	d.mcusX = (d.width + 8*d.hmax - 1) / (8 * d.hmax)
	d.mcusY = (d.height + 8*d.vmax - 1) / (8 * d.vmax)
	for i := range d.comps {
		c := &d.comps[i]
		c.bw = (d.width*c.h + 8*d.hmax - 1) / (8 * d.hmax)
		c.bh = (d.height*c.v + 8*d.vmax - 1) / (8 * d.vmax)
		// Subsampled chroma is reconstructed at the luma's output
		// resolution (more of its coefficients kept), so that no
		// upsampling is needed and colour edges stay where they are.
		c.sw, c.sh = d.n*d.hmax/c.h, d.n*d.vmax/c.v
		if d.hmax%c.h != 0 || d.vmax%c.v != 0 || c.sw > 8 || c.sh > 8 || c.sw&(c.sw-1) != 0 || c.sh&(c.sh-1) != 0 {
			return errFallback
		}
		c.stride = d.mcusX * c.h * c.sw
		c.plane = make([]uint8, c.stride*d.mcusY*c.v*c.sh)
	}
	d.sawFrame = true
	return nil
}

func (d *scaledJPEG) readDQT(seg []byte) error {
	for len(seg) > 0 {
		pq, tq := seg[0]>>4, int(seg[0]&15)
		if tq > 3 || pq > 1 {
			return errFallback
		}
		seg = seg[1:]
		if pq == 0 {
			if len(seg) < 64 {
				return errFallback
			}
			for k := 0; k < 64; k++ {
				d.quant[tq][k] = int32(seg[k])
			}
			seg = seg[64:]
		} else {
			if len(seg) < 128 {
				return errFallback
			}
			for k := 0; k < 64; k++ {
				d.quant[tq][k] = int32(binary.BigEndian.Uint16(seg[2*k:]))
			}
			seg = seg[128:]
		}
	}
	return nil
}

func (d *scaledJPEG) readDHT(seg []byte) error {
	for len(seg) > 0 {
		if len(seg) < 17 {
			return errFallback
		}
		tc, th := seg[0]>>4, int(seg[0]&15)
		if tc > 1 || th > 3 {
			return errFallback
		}
		var bits [17]int
		total := 0
		for l := 1; l <= 16; l++ {
			bits[l] = int(seg[l])
			total += bits[l]
		}
		if total > 256 || len(seg) < 17+total {
			return errFallback
		}
		t := &d.dcTables[th]
		if tc == 1 {
			t = &d.acTables[th]
		}
		if err := t.build(bits, seg[17:17+total]); err != nil {
			return err
		}
		seg = seg[17+total:]
	}
	return nil
}

// readScan decodes one scan whose entropy-coded data starts at data[pos]
// and returns where it ended.
func (d *scaledJPEG) readScan(seg, data []byte, pos int) (int, error) {
	if len(seg) < 1 {
		return 0, errFallback
	}
	ns := int(seg[0])
	if ns < 1 || ns > len(d.comps) || len(seg) < 1+2*ns+3 {
		return 0, errFallback
	}
	scomps := make([]*jpegComponent, ns)
	for i := 0; i < ns; i++ {
		id, sel := seg[1+2*i], seg[2+2*i]
		var c *jpegComponent
		for j := range d.comps {
			if d.comps[j].id == id {
				c = &d.comps[j]
			}
		}
		if c == nil {
			return 0, errFallback
		}
		c.dc, c.ac = int(sel>>4), int(sel&15)
		if c.dc > 3 || c.ac > 3 || !d.dcTables[c.dc].defined || !d.acTables[c.ac].defined {
			return 0, errFallback
		}
		c.predictor = 0
		scomps[i] = c
	}
	ss, se, ahal := seg[1+2*ns], seg[2+2*ns], seg[3+2*ns]
	if ss != 0 || se != 63 || ahal != 0 {
		return 0, errFallback
	}
	br := &bitReader{data: data, pos: pos}
	var coef [64]int32

	block := func(c *jpegComponent, bx, by int) {
		ok, flat := d.decodeBlock(br, c, &coef)
		if !ok {
			br.broken = true
			return
		}
		dst := c.plane[by*c.sh*c.stride+bx*c.sw:]
		if flat {
			// Smooth blocks are common: every output sample is the DC.
			v := clampByte(float32(coef[0])/8 + 128)
			for y := 0; y < c.sh; y++ {
				row := dst[y*c.stride : y*c.stride+c.sw]
				for x := range row {
					row[x] = v
				}
			}
			return
		}
		reconstruct(&coef, c.sw, c.sh, dst, c.stride)
	}

	mcu := 0
	total := d.mcusX * d.mcusY
	if ns == 1 {
		// Non-interleaved: blocks in raster order over the component only.
		c := scomps[0]
		total = c.bw * c.bh
	}
	for mcu < total {
		if d.restartEvery > 0 && mcu > 0 && mcu%d.restartEvery == 0 {
			if !br.restart() {
				return 0, errFallback
			}
			for _, c := range scomps {
				c.predictor = 0
			}
		}
		if ns == 1 {
			c := scomps[0]
			block(c, mcu%c.bw, mcu/c.bw)
		} else {
			mx, my := mcu%d.mcusX, mcu/d.mcusX
			for _, c := range scomps {
				for v := 0; v < c.v; v++ {
					for h := 0; h < c.h; h++ {
						block(c, mx*c.h+h, my*c.v+v)
					}
				}
			}
		}
		// Reading ahead takes at most 8 bytes past the scan's end; more
		// zeros than that mean the data ran out: a truncated file,
		// refused now rather than decoded to the end as grey.
		if br.broken || br.zeros > 16 {
			return 0, errFallback
		}
		mcu++
	}
	// Bytes fed as zeros but taken as data mean the scan ran past the
	// end of its data: a truncated file.
	if br.zeros-int(br.n/8) > 1 {
		return 0, errFallback
	}
	return br.pos, nil
}

// decodeBlock reads one block's coefficients (T.81 F.2.2), keeping in
// coef, dequantised, only those inside the component's kept corner. The
// bit buffer lives in locals here, refilled to at least 32 bits before
// every symbol: a code (≤ 16 bits) and its extra bits (≤ 11) always fit.
func (d *scaledJPEG) decodeBlock(br *bitReader, c *jpegComponent, coef *[64]int32) (ok, flat bool) {
	dct, act := &d.dcTables[c.dc], &d.acTables[c.ac]
	q := &d.quant[c.tq]
	sw, sh := uint8(c.sw), uint8(c.sh)
	*coef = [64]int32{}
	flat = true // no kept AC coefficient: the block reconstructs to its DC
	acc, n := br.acc, br.n
	refill := func() {
		br.acc, br.n = acc, n
		br.fill()
		acc, n = br.acc, br.n
	}
	if n < 32 {
		refill()
	}
	// DC: a size category, then that many bits of difference.
	var sym uint8
	if e := dct.lut[acc>>(64-lutBits)]; e != 0 {
		l := uint(e >> 8)
		acc <<= l
		n -= l
		sym = uint8(e)
	} else {
		var l uint
		if sym, l = dct.slow(acc); l == 0 {
			return false, false
		}
		acc <<= l
		n -= l
	}
	if sym > 11 {
		return false, false
	}
	if sym != 0 {
		v := int32(acc >> (64 - uint(sym)))
		acc <<= sym
		n -= uint(sym)
		if v < 1<<(sym-1) {
			v += -1<<sym + 1
		}
		c.predictor += v
	}
	coef[0] = c.predictor * q[0]
	// AC: (run, size) symbols until end of block. All must be read to stay
	// in step; only those inside the kept corner are stored.
	for k := 1; k < 64; {
		if n < 32 {
			refill()
		}
		if f := act.fastAC[acc>>(64-lutBits)]; f != 0 {
			l := uint(f & 15)
			acc <<= l
			n -= l
			k += int(f>>8) & 15
			if k > 63 {
				return false, false
			}
			if z := zigzag[k]; z&7 < sw && z>>3 < sh {
				coef[z] = (f >> 16) * q[k]
				flat = false
			}
			k++
			continue
		}
		if e := act.lut[acc>>(64-lutBits)]; e != 0 {
			l := uint(e >> 8)
			acc <<= l
			n -= l
			sym = uint8(e)
		} else {
			var l uint
			if sym, l = act.slow(acc); l == 0 {
				return false, false
			}
			acc <<= l
			n -= l
		}
		r, s := int(sym>>4), sym&15
		if s == 0 {
			if r != 15 {
				break // end of block
			}
			k += 16
			continue
		}
		k += r
		if k > 63 || s > 10 {
			return false, false
		}
		v := int32(acc >> (64 - uint(s)))
		acc <<= s
		n -= uint(s)
		if z := zigzag[k]; z&7 < sw && z>>3 < sh {
			if v < 1<<(s-1) {
				v += -1<<s + 1
			}
			coef[z] = v * q[k]
			flat = false
		}
		k++
	}
	br.acc, br.n = acc, n
	return true, flat
}

// slow decodes a code longer than the lookup table: its value and length,
// or length 0 if no code matches (a corrupt stream).
func (h *huffTable) slow(acc uint64) (uint8, uint) {
	for l := uint(lutBits + 1); l <= 16; l++ {
		code := int32(acc >> (64 - l))
		if code <= h.maxcode[l] {
			return h.vals[h.valptr[l]+code-h.mincode[l]], l
		}
	}
	return 0, 0
}

// reconstruct writes the nw×nh reduced inverse DCT of coef (natural
// order, dequantised) to dst, level-shifted and clamped.
func reconstruct(coef *[64]int32, nw, nh int, dst []uint8, stride int) {
	if nw == 1 && nh == 1 {
		dst[0] = clampByte(float32(coef[0])/8 + 128)
		return
	}
	mw, mh := idctMatrix[nw], idctMatrix[nh]
	// tmp = Mh · F restricted to the kept corner, then out = tmp · Mwᵀ.
	var tmp [64]float32
	for y := 0; y < nh; y++ {
		for u := 0; u < nw; u++ {
			var s float32
			for v := 0; v < nh; v++ {
				s += mh[y*nh+v] * float32(coef[v*8+u])
			}
			tmp[y*nw+u] = s
		}
	}
	for y := 0; y < nh; y++ {
		row := dst[y*stride : y*stride+nw]
		for x := 0; x < nw; x++ {
			var s float32
			for u := 0; u < nw; u++ {
				s += tmp[y*nw+u] * mw[x*nw+u]
			}
			row[x] = clampByte(s + 128)
		}
	}
}

func clampByte(v float32) uint8 {
	switch {
	case v <= 0:
		return 0
	case v >= 255:
		return 255
	}
	return uint8(v + 0.5)
}

// toNRGBA converts the planes, all at the output resolution, to RGB.
func (d *scaledJPEG) toNRGBA() *image.NRGBA {
	w := (d.width*d.n + 7) / 8
	h := (d.height*d.n + 7) / 8
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	y0 := &d.comps[0]
	if len(d.comps) == 1 {
		for y := 0; y < h; y++ {
			src := y0.plane[y*y0.stride : y*y0.stride+w]
			dst := img.Pix[y*img.Stride : y*img.Stride+4*w]
			for x, v := range src {
				dst[4*x], dst[4*x+1], dst[4*x+2], dst[4*x+3] = v, v, v, 255
			}
		}
		return img
	}
	cb, cr := &d.comps[1], &d.comps[2]
	for y := 0; y < h; y++ {
		yr := y0.plane[y*y0.stride : y*y0.stride+w]
		cbr := cb.plane[y*cb.stride : y*cb.stride+w]
		crr := cr.plane[y*cr.stride : y*cr.stride+w]
		dst := img.Pix[y*img.Stride : y*img.Stride+4*w]
		for x := range yr {
			// JFIF YCbCr → RGB in 16.16 fixed point.
			yy := int32(yr[x]) << 16
			b := int32(cbr[x]) - 128
			r := int32(crr[x]) - 128
			dst[4*x] = clamp16(yy + 91881*r)
			dst[4*x+1] = clamp16(yy - 22554*b - 46802*r)
			dst[4*x+2] = clamp16(yy + 116130*b)
			dst[4*x+3] = 255
		}
	}
	return img
}

func clamp16(v int32) uint8 {
	v = (v + 1<<15) >> 16
	if uint32(v) > 255 {
		if v < 0 {
			return 0
		}
		return 255
	}
	return uint8(v)
}
