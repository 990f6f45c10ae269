// Drawing the map on the CPU into one picture (an ImageData), for where a
// thumbnail at a time is slow: canvas 2D (one drawImage a thumbnail, about
// 10 µs each, so 100,000 take a second) and WebGL rasterised in software
// (SwiftShader sets up 200,000 small triangles about as slowly). The
// thumbnails are first scaled down once to the side they are drawn at (a
// "sprite" per atlas cell, whole device pixels), then each is copied into
// the picture as a block of pixels: 100,000 thumbnails of 6 × 6 px are
// 3.6 million pixel copies, tens of milliseconds. A colour change, a search
// or a filter redraws only this picture; panning moves it as before.

const WHITE = 0xffffffff;
const GREY = 0xff94847a; // #7a8494, a row without a thumbnail
const MARK = 0xff00a5f0; // #f0a500, a selected row

/**
 * Memory the scaled-down thumbnails of one side may take (bytes): 100,000
 * thumbnails up to 7 px, 10,000 up to 22 px. Making them costs about as
 * much as drawing the thumbnails one by one once, so they are made when
 * zooming stops, not while it goes on.
 */
export const SPRITE_BUDGET = 24 << 20;
/** Largest side (device px) drawn this way; above it thumbnails are few and big. */
export const MAX_SPRITE = 96;

/**
 * The atlas's thumbnails scaled to S × S device pixels: per sheet, the
 * sheet drawn scaled by S / cell (the browser's high-quality downscaling),
 * read back as packed RGBA (the bytes r, g, b, a of a little-endian Uint32).
 */
export class Sprites {
  /** Bytes the sprites of side S would take, or Infinity where there is no atlas. */
  static bytes(a, S) {
    if (!a) return Infinity;
    let b = 0;
    for (const bm of a.sheets) b += Math.round(bm.width / a.cell) * S * Math.round(bm.height / a.cell) * S * 4;
    return b;
  }

  constructor(a, S) {
    this.atlas = a;
    this.S = S;
    this.data = [];
    this.width = [];
    for (const bm of a.sheets) {
      const cols = Math.round(bm.width / a.cell), rows = Math.round(bm.height / a.cell);
      const W = Math.max(1, cols * S), H = Math.max(1, rows * S);
      const c = new OffscreenCanvas(W, H);
      const g = c.getContext('2d', { willReadFrequently: true });
      g.imageSmoothingEnabled = true;
      g.imageSmoothingQuality = 'high';
      g.drawImage(bm, 0, 0, cols * a.cell, rows * a.cell, 0, 0, W, H);
      this.data.push(new Uint32Array(g.getImageData(0, 0, W, H).data.buffer));
      this.width.push(W);
    }
    const m = a.sheetOf.length;
    this.off = new Int32Array(m);
    for (let k = 0; k < m; k++) {
      const w = this.width[a.sheetOf[k]];
      this.off[k] = Math.round((a.syOf[k] * S) / a.cell) * w + Math.round((a.sxOf[k] * S) / a.cell);
    }
  }
}

/**
 * d blended towards s by a / 256, opaque: red and blue in one product, green
 * in another (each channel's product stays within its 16 bits).
 */
function mix(d, s, a) {
  const b = 256 - a;
  return (0xff000000 | ((((s & 0xff00ff) * a + (d & 0xff00ff) * b) >>> 8) & 0xff00ff) | ((((s & 0xff00) * a + (d & 0xff00) * b) >>> 8) & 0xff00)) >>> 0;
}

/**
 * A W × H picture of packed pixels, its rows top down or (flip, as WebGL
 * reads a texture) bottom up; box is the part drawn on since it was last
 * cleared (everything else is white).
 */
class Picture {
  constructor(W, H, flip) {
    this.img = new ImageData(W, H);
    this.px = new Uint32Array(this.img.data.buffer);
    this.px.fill(WHITE);
    this.W = W; this.H = H; this.flip = flip;
    this.box = null;
  }

  /** Index of pixel (0, y). */
  row(y) { return this.flip ? (this.H - 1 - y) * this.W : y * this.W; }

  /** Makes the drawn part white again. */
  clear() {
    const b = this.box;
    if (!b) return;
    for (let y = b.y0; y < b.y1; y++) { const o = this.row(y); this.px.fill(WHITE, o + b.x0, o + b.x1); }
    this.box = null;
  }
}

/** Fills the rectangle (x, y, w, h), clipped to the picture. */
function fillRect(p, x, y, w, h, col, f) {
  const x0 = Math.max(0, x), y0 = Math.max(0, y), x1 = Math.min(p.W, x + w), y1 = Math.min(p.H, y + h);
  if (x0 >= x1 || y0 >= y1) return;
  const px = p.px, n = x1 - x0, a = f + (f >> 7);
  for (let j = y0; j < y1; j++) {
    let o = p.row(j) + x0;
    const end = o + n;
    if (f >= 255) for (; o < end; o++) px[o] = col;
    else for (; o < end; o++) px[o] = mix(px[o], col, a);
  }
}

/** Copies the S × S sprite at src[off] (row length sw) to (x, y), clipped. */
function blit(p, x, y, S, src, off, sw, f) {
  const i0 = Math.max(0, -x), j0 = Math.max(0, -y), i1 = Math.min(S, p.W - x), j1 = Math.min(S, p.H - y);
  if (i0 >= i1 || j0 >= j1) return;
  const px = p.px, n = i1 - i0, a = f + (f >> 7);
  for (let j = j0; j < j1; j++) {
    let o = p.row(y + j) + x + i0, s = off + j * sw + i0;
    const end = o + n;
    if (f >= 255) for (; o < end; o++, s++) px[o] = src[s];
    else for (; o < end; o++, s++) px[o] = mix(px[o], src[s], a);
  }
}

/** A frame lw px wide inside the square (x, y, S). */
function frameRect(p, x, y, S, lw, col, f) {
  lw = Math.min(lw, Math.ceil(S / 2));
  fillRect(p, x, y, S, lw, col, f);
  fillRect(p, x, y + S - lw, S, lw, col, f);
  fillRect(p, x, y + lw, lw, S - 2 * lw, col, f);
  fillRect(p, x + S - lw, y + lw, lw, S - 2 * lw, col, f);
}

/**
 * Draws the map m's shown rows, centred on (cx, cy), into the picture p
 * (cleared first), of device pixels (dpr of them a CSS px), as the other renderers
 * do: thumbnails of side `side` CSS px (sprites, of that side in device
 * px, or null where none are needed), coloured frames or, zoomed out,
 * squares of their colour (look: {frame, solid}), dimmed rows blended
 * towards white, selected rows framed in orange, rows without a thumbnail
 * as small squares. Returns the number of thumbnails copied; p.box is the
 * part drawn on.
 */
export function composite(m, side, cx, cy, p, dpr, look, sprites) {
  p.clear();
  const W = p.W, H = p.H;
  const a = m.atlas;
  const S = sprites ? sprites.S : Math.max(1, Math.round(side * dpr));
  const dot = Math.max(1, Math.round(Math.max(2, Math.min(6, side / 3)) * dpr));
  const frame = look.frame ? Math.max(1, Math.round(look.frame * dpr)) : 0;
  const markW = Math.max(1, Math.round(Math.max(look.frame, 3) * dpr));
  const k = m.view.scale * dpr, w2 = W / 2, h2 = H / 2;
  const list = m.drawList();
  let thumbs = 0, bx0 = W, by0 = H, bx1 = 0, by1 = 0;
  for (let n = 0; n < list.length; n++) {
    const r = list[n];
    const sx = (m.x[r] - cx) * k + w2, sy = (cy - m.y[r]) * k + h2;
    if (sx < -S || sy < -S || sx > W + S || sy > H + S) continue;
    if (sx < bx0) bx0 = sx; if (sx > bx1) bx1 = sx; if (sy < by0) by0 = sy; if (sy > by1) by1 = sy;
    const f = m.fade[r], col = m.colour[r] >>> 24 ? m.colour[r] | 0xff000000 : 0, mark = m.marked[r];
    const c = a ? m.cellOf[r] : -1;
    if (c >= 0 && !(look.solid && col)) {
      const x = Math.round(sx - S / 2), y = Math.round(sy - S / 2);
      if (sprites) {
        const sh = a.sheetOf[c];
        blit(p, x, y, S, sprites.data[sh], sprites.off[c], sprites.width[sh], f);
        thumbs++;
      } else fillRect(p, x, y, S, S, GREY, f);
      if (mark) frameRect(p, x, y, S, markW, MARK, f);
      else if (col && frame) frameRect(p, x, y, S, frame, col >>> 0, f);
    } else if (c >= 0) {
      fillRect(p, Math.round(sx - S / 2), Math.round(sy - S / 2), S, S, (mark ? MARK : col) >>> 0, f);
    } else {
      fillRect(p, Math.round(sx - dot / 2), Math.round(sy - dot / 2), dot, dot, (mark ? MARK : col || GREY) >>> 0, f);
    }
  }
  const e = Math.max(S, dot) / 2 + 1;
  p.box = bx1 < bx0 ? null : { x0: Math.max(0, Math.floor(bx0 - e)), y0: Math.max(0, Math.floor(by0 - e)), x1: Math.min(W, Math.ceil(bx1 + e)), y1: Math.min(H, Math.ceil(by1 + e)) };
  return thumbs;
}

/** The smallest box holding boxes a and b (either may be null). */
function union(a, b) {
  if (!a || !b) return a || b;
  return { x0: Math.min(a.x0, b.x0), y0: Math.min(a.y0, b.y0), x1: Math.max(a.x1, b.x1), y1: Math.max(a.y1, b.y1) };
}

/**
 * What a renderer keeps to draw on the CPU: the picture and the sprites of
 * the last two sides (zooming out and back in again reuses them).
 */
export class Raster {
  constructor() {
    this.pic = null;
    this.sprites = [];
  }

  /**
   * The sprites for drawing thumbnails `side` CSS px wide, or null when
   * none are needed (no atlas, or solid squares); undefined when this way
   * of drawing does not fit (the sprites would be too big) or, with
   * noMaking, they are not made yet.
   */
  spritesFor(m, side, look, noMaking) {
    const a = m.atlas;
    if (!a || !a.sheets.length || (look.solid && m.styled && allColoured(m))) return null;
    const S = Math.max(1, Math.round(side * m.dpr));
    if (S > MAX_SPRITE) return undefined;
    let s = this.sprites.find((x) => x.atlas === a && x.S === S);
    if (s) return s;
    if (noMaking || Sprites.bytes(a, S) > SPRITE_BUDGET) return undefined;
    s = new Sprites(a, S);
    this.sprites = [s, ...this.sprites.filter((x) => x.atlas === a)].slice(0, 2);
    return s;
  }

  /**
   * Draws into a W × H picture (rows bottom up with flip), reused between
   * calls. Returns {img: its ImageData, dirty}: dirty is the part that
   * changed since the last call (everything when the picture is new), a
   * box {x0, y0, x1, y1} in top-down rows, or null for none.
   */
  draw(m, side, cx, cy, W, H, look, sprites, flip) {
    let p = this.pic, all = false;
    if (!p || p.W !== W || p.H !== H || p.flip !== flip) { p = this.pic = new Picture(W, H, flip); all = true; }
    const before = p.box;
    this.thumbs = composite(m, side, cx, cy, p, m.dpr, look, sprites);
    return { img: p.img, dirty: all ? { x0: 0, y0: 0, x1: W, y1: H } : union(before, p.box) };
  }
}

/** Does every shown row have a colour (so no thumbnail is drawn as a picture)? Cached per version. */
function allColoured(m) {
  if (m.allColouredVersion === m.version) return m.allColoured;
  let all = true;
  for (const r of m.drawList()) if (!(m.colour[r] >>> 24)) { all = false; break; }
  m.allColouredVersion = m.version;
  m.allColoured = all;
  return all;
}
