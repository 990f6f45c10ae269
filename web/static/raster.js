// Drawing the map on the CPU into one picture (an ImageData), for where a
// thumbnail at a time is slow: canvas 2D (one drawImage a thumbnail, about
// 10 µs each, so 100,000 take a second) and WebGL rasterised in software
// (SwiftShader sets up 200,000 small triangles about as slowly). The
// thumbnails are first scaled down once to the side they are drawn at (a
// "sprite" per atlas cell, whole device pixels), then each is copied into
// the picture as a block of pixels: 100,000 thumbnails of 6 × 6 px are
// 3.6 million pixel copies, tens of milliseconds. A colour change, a search
// or a filter redraws only this picture; panning moves it as before.

import { DIM } from './explore.js';

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
 * Zoomed in past the sides SPRITE_BUDGET allows (100,000 thumbnails above
 * 7 px), thumbnails are drawn from one "source" set of sprites, the atlas
 * scaled down to the largest side that fits this (100,000: 11 px of the
 * atlas's 16; 10,000: the whole 32 px), enlarged or reduced to the side
 * drawn as they are copied (nearest pixel). Made once per atlas, the first
 * time it is needed, and its dimmed copy (as much again) while the page is
 * idle after that.
 */
export const SOURCE_BUDGET = 48 << 20;
/**
 * Most pixels a picture drawn from the source sprites may copy (thumbnails
 * near it times their area): about 60 ms of copying on the 2-core VM. Past
 * it, zoomed in over a dense part, thumbnails are big and few enough in
 * view for the GPU or drawImage.
 */
export const MAX_SOURCE_PIXELS = 24e6;
/**
 * Longest a piece of work done while the page is idle runs before it
 * yields (ms), so that an input that comes meanwhile is not held up.
 */
export const IDLE_SLICE_MS = 8;

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
    this.fades = new Map(); // fade → the sprites blended towards white
    this.fading = false; // fadeWhenIdle is making one
    const m = a.sheetOf.length;
    this.off = new Int32Array(m);
    for (let k = 0; k < m; k++) {
      const w = this.width[a.sheetOf[k]];
      this.off[k] = Math.round((a.syOf[k] * S) / a.cell) * w + Math.round((a.sxOf[k] * S) / a.cell);
    }
  }
}

/**
 * The sprites of a dimmed row (fade f < 255): blended towards white once,
 * so that drawing one is a copy as for the others (blending each pixel as
 * it is drawn made a search's redraw several times slower), and the same
 * look as WebGL's, which mixes a dimmed thumbnail with white, not with
 * what lies under it. Made at most once per fade value.
 */
Sprites.prototype.faded = function faded(f) {
  let d = this.fades.get(f);
  if (!d) {
    const a = f + (f >> 7);
    d = this.data.map((src) => fadeInto(new Uint32Array(src.length), src, a, 0, src.length));
    this.fades.set(f, d);
  }
  return d;
};

/**
 * Makes the dimmed copy of fade f a slice at a time while the page is
 * idle (a slice is a few milliseconds, so a frame that is due is not held
 * up), unless it is already there.
 */
Sprites.prototype.fadeWhenIdle = function fadeWhenIdle(f) {
  if (this.fades.has(f) || this.fading) return;
  const a = f + (f >> 7);
  const out = this.data.map((src) => new Uint32Array(src.length));
  let sheet = 0, at = 0;
  this.fading = true;
  const step = (deadline) => {
    // At least one slice (256k pixels, a millisecond or two) a call, more
    // while idle time lasts, but not past IDLE_SLICE_MS: a change that
    // comes meanwhile waits at most that long (an idle period can be 50 ms).
    const t0 = performance.now();
    while (sheet < out.length) {
      const src = this.data[sheet], end = Math.min(src.length, at + (1 << 18));
      fadeInto(out[sheet], src, a, at, end);
      at = end;
      if (at === src.length) { sheet++; at = 0; }
      if (!deadline || deadline.didTimeout || deadline.timeRemaining() <= 2 || performance.now() - t0 > IDLE_SLICE_MS) break;
    }
    if (sheet < out.length) { idle(step); return; }
    this.fading = false;
    if (!this.fades.has(f)) this.fades.set(f, out);
  };
  idle(step);
};

/** out[i] = src[i] blended towards white by a / 256, for i in [from, to). */
function fadeInto(out, src, a, from, to) {
  for (let i = from; i < to; i++) out[i] = mix(WHITE, src[i], a);
  return out;
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
export class Picture {
  constructor(W, H, flip) {
    this.img = new ImageData(W, H);
    this.px = new Uint32Array(this.img.data.buffer);
    this.px.fill(WHITE);
    this.W = W; this.H = H; this.flip = flip;
    this.box = null;
    this.xs = null; this.ys = null; this.keep = null; // scratch(), made when first needed
  }

  /** Reused per-row scratch arrays of at least n entries (composite's positions and flags). */
  scratch(n) {
    if (!this.xs || this.xs.length < n) { this.xs = new Int32Array(n); this.ys = new Int32Array(n); this.keep = new Uint8Array(n); }
    return { xs: this.xs, ys: this.ys, keep: this.keep };
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

/** Fills the rectangle (x, y, w, h), clipped to the picture; dimmed (f < 255) towards white. */
function fillRect(p, x, y, w, h, col, f) {
  const x0 = Math.max(0, x), y0 = Math.max(0, y), x1 = Math.min(p.W, x + w), y1 = Math.min(p.H, y + h);
  if (x0 >= x1 || y0 >= y1) return;
  if (f < 255) col = mix(WHITE, col, f + (f >> 7));
  const px = p.px, n = x1 - x0;
  for (let j = y0; j < y1; j++) {
    let o = p.row(j) + x0;
    const end = o + n;
    for (; o < end; o++) px[o] = col;
  }
}

/** Copies the S × S sprite at src[off] (row length sw) to (x, y), clipped. */
function blit(p, x, y, S, src, off, sw) {
  const i0 = Math.max(0, -x), j0 = Math.max(0, -y), i1 = Math.min(S, p.W - x), j1 = Math.min(S, p.H - y);
  if (i0 >= i1 || j0 >= j1) return;
  const px = p.px, n = i1 - i0;
  for (let j = j0; j < j1; j++) {
    let o = p.row(y + j) + x + i0, s = off + j * sw + i0;
    const end = o + n;
    for (; o < end; o++, s++) px[o] = src[s];
  }
}

/**
 * Copies the Q × Q sprite at src[off] (row length sw) to (x, y) as S × S,
 * clipped: pixel i of a row comes from source pixel idx[i] (nearest), and
 * dimmed (f < 255) towards white.
 */
function blitScaled(p, x, y, S, src, off, sw, idx, f) {
  const i0 = Math.max(0, -x), j0 = Math.max(0, -y), i1 = Math.min(S, p.W - x), j1 = Math.min(S, p.H - y);
  if (i0 >= i1 || j0 >= j1) return;
  const px = p.px, a = f + (f >> 7);
  for (let j = j0; j < j1; j++) {
    const o = p.row(y + j) + x, s = off + idx[j] * sw;
    if (f >= 255) for (let i = i0; i < i1; i++) px[o + i] = src[s + idx[i]];
    else for (let i = i0; i < i1; i++) px[o + i] = mix(WHITE, src[s + idx[i]], a);
  }
}

/** Source pixel of each of S pixels drawn from Q (nearest, centres aligned). */
function nearest(S, Q) {
  const idx = new Int32Array(S);
  for (let i = 0; i < S; i++) idx[i] = Math.min(Q - 1, Math.floor(((i + 0.5) * Q) / S));
  return idx;
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
 * part drawn on. cull false draws hidden rows too (for the test that
 * skipping them changes no pixel).
 */
export function composite(m, side, cx, cy, p, dpr, look, sprites, cull = true) {
  p.clear();
  const W = p.W, H = p.H;
  const a = m.atlas;
  const S = Math.max(1, Math.round(side * dpr));
  // Sprites of another side (the source set, zoomed in) are scaled as copied.
  const idx = sprites && sprites.S !== S ? nearest(S, sprites.S) : null;
  // Until the dimmed copy is made (while the page is idle after the sprites),
  // dimmed rows are blended as copied, the same pixels: making the copy here
  // would blend every sprite, hidden ones too, and held up a first search
  // that came soon after loading by 0.1–0.3 s.
  const same = sprites && !idx ? nearest(S, S) : null;
  const dot = Math.max(1, Math.round(Math.max(2, Math.min(6, side / 3)) * dpr));
  const frame = look.frame ? Math.max(1, Math.round(look.frame * dpr)) : 0;
  const markW = Math.max(1, Math.round(Math.max(look.frame, 3) * dpr));
  const list = m.drawList();
  const X = m.x, Y = m.y, cellOf = m.cellOf, fade = m.fade, colour = m.colour, marked = m.marked;
  const { xs, ys, keep } = p.scratch(list.length);
  // First, top row first: where each row goes, and whether the rows drawn
  // after it hide it entirely (then it is not drawn: at 100,000 points most
  // thumbnails lie under others, and every drawn pixel is opaque).
  const cover = new Cover(W, H, S);
  const k = m.view.scale * dpr, w2 = W / 2, h2 = H / 2;
  let thumbs = 0, bx0 = W, by0 = H, bx1 = 0, by1 = 0;
  for (let n = list.length - 1; n >= 0; n--) {
    const r = list[n];
    const sx = (X[r] - cx) * k + w2, sy = (cy - Y[r]) * k + h2;
    keep[n] = 0;
    if (sx < -S || sy < -S || sx > W + S || sy > H + S) continue;
    if (sx < bx0) bx0 = sx; if (sx > bx1) bx1 = sx; if (sy < by0) by0 = sy; if (sy > by1) by1 = sy;
    const c = a ? cellOf[r] : -1;
    if (c >= 0) thumbs++;
    const z = c >= 0 ? S : dot;
    const x = Math.round(sx - z / 2), y = Math.round(sy - z / 2);
    if (cull && cover.hides(x, y, z)) continue;
    cover.add(x, y, z);
    xs[n] = x; ys[n] = y; keep[n] = 1;
  }
  for (let n = 0; n < list.length; n++) {
    if (!keep[n]) continue;
    const r = list[n], x = xs[n], y = ys[n];
    const f = fade[r], col = colour[r] >>> 24 ? colour[r] | 0xff000000 : 0, mark = marked[r];
    const c = a ? cellOf[r] : -1;
    if (c >= 0 && !(look.solid && col)) {
      if (sprites) {
        const sh = a.sheetOf[c];
        // Dimmed: from the dimmed copy once made (blending as copied is four times slower).
        const faded = f < 255 ? sprites.fades.get(f) : null;
        const src = (faded || sprites.data)[sh];
        if (idx || (f < 255 && !faded)) blitScaled(p, x, y, S, src, sprites.off[c], sprites.width[sh], idx || same, faded ? 255 : f);
        else blit(p, x, y, S, src, sprites.off[c], sprites.width[sh]);
      } else fillRect(p, x, y, S, S, GREY, f);
      if (mark) frameRect(p, x, y, S, markW, MARK, f);
      else if (col && frame) frameRect(p, x, y, S, frame, col >>> 0, f);
    } else if (c >= 0) {
      fillRect(p, x, y, S, S, (mark ? MARK : col) >>> 0, f);
    } else {
      fillRect(p, x, y, dot, dot, (mark ? MARK : col || GREY) >>> 0, f);
    }
  }
  const e = Math.max(S, dot) / 2 + 1;
  p.box = bx1 < bx0 ? null : { x0: Math.max(0, Math.floor(bx0 - e)), y0: Math.max(0, Math.floor(by0 - e)), x1: Math.min(W, Math.ceil(bx1 + e)), y1: Math.min(H, Math.ceil(by1 + e)) };
  return thumbs;
}

/**
 * Which parts of a W × H picture the squares drawn so far cover entirely,
 * in blocks of half a thumbnail's side: a square every block of which is
 * covered is hidden (conservative: a block counts only once one square
 * covers all of it).
 */
class Cover {
  constructor(W, H, S) {
    this.B = Math.max(1, S >> 1);
    this.GW = Math.ceil(W / this.B);
    this.GH = Math.ceil(H / this.B);
    this.cells = new Uint8Array(this.GW * this.GH);
  }

  /** Is the z × z square at (x, y) (clipped to the picture) hidden? */
  hides(x, y, z) {
    const B = this.B, GW = this.GW;
    const i0 = Math.max(0, Math.floor(x / B)), i1 = Math.min(GW - 1, Math.floor((x + z - 1) / B));
    const j0 = Math.max(0, Math.floor(y / B)), j1 = Math.min(this.GH - 1, Math.floor((y + z - 1) / B));
    if (i0 > i1 || j0 > j1) return true; // outside the picture
    for (let j = j0; j <= j1; j++) for (let i = i0; i <= i1; i++) if (!this.cells[j * GW + i]) return false;
    return true;
  }

  /** Marks the blocks the z × z square at (x, y) covers entirely. */
  add(x, y, z) {
    const B = this.B, GW = this.GW;
    const i0 = Math.max(0, Math.ceil(x / B)), i1 = Math.min(GW, Math.floor((x + z) / B));
    const j0 = Math.max(0, Math.ceil(y / B)), j1 = Math.min(this.GH, Math.floor((y + z) / B));
    for (let j = j0; j < j1; j++) for (let i = i0; i < i1; i++) this.cells[j * GW + i] = 1;
  }
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
    warmUp();
    this.pic = null;
    this.sprites = [];
    this.source = null; // the source sprites (zoomed in), of this.source.atlas
    this.thumbs = 0; // thumbnails copied by the last draw
    this.scratchPic = null; // rehearse()'s picture
  }

  /**
   * The sprites for drawing thumbnails `side` CSS px wide, or null when
   * none are needed (no atlas, or solid squares); undefined when this way
   * of drawing does not fit (the sprites would be too big) or, with
   * noMaking, they are not made yet.
   */
  spritesFor(m, side, look, noMaking, area) {
    const a = m.atlas;
    if (!a || !a.sheets.length || (look.solid && m.styled && allColoured(m))) return null;
    const S = Math.max(1, Math.round(side * m.dpr));
    if (S > MAX_SPRITE) return undefined;
    let s = this.sprites.find((x) => x.atlas === a && x.S === S);
    if (s) return s;
    if (Sprites.bytes(a, S) > SPRITE_BUDGET) return this.sourceFor(m, S, noMaking, area);
    if (noMaking) return undefined;
    s = new Sprites(a, S);
    this.sprites = [s, ...this.sprites.filter((x) => x.atlas === a)].slice(0, 2);
    // The dimmed copies a search needs, made while the page is idle so
    // that the first search does not pay for them.
    s.fadeWhenIdle(DIM);
    return s;
  }

  /** Are thumbnails of `side` CSS px drawn from the source sprites (zoomed in past the exact ones)? */
  zoomedIn(m, side) {
    const a = m.atlas;
    return !!a && Sprites.bytes(a, Math.max(1, Math.round(side * m.dpr))) > SPRITE_BUDGET;
  }

  /**
   * The source sprites for drawing thumbnails S device px wide, or
   * undefined where they do not fit or, drawn here, would copy more than
   * MAX_SOURCE_PIXELS (area: the part of the map drawn, {cx, cy, w, h} in
   * CSS px; rows near it are counted).
   */
  sourceFor(m, S, noMaking, area) {
    const a = m.atlas;
    if (!this.source || this.source.atlas !== a) {
      if (noMaking) return undefined;
      let Q = a.cell;
      while (Q > 1 && Sprites.bytes(a, Q) > SOURCE_BUDGET) Q--;
      if (Q <= 1) return undefined;
      const s = this.source = new Sprites(a, Q);
      s.fadeWhenIdle(DIM);
    }
    if (area && rowsNear(m, area, S / m.dpr) * S * S > MAX_SOURCE_PIXELS) return undefined;
    return this.source;
  }

  /**
   * Rehearses drawing the map m as a change would (colour and fade per
   * row given, the rows m draws now), into a small picture of
   * its own that nobody sees, with the sprites already made for thumbnails
   * of `side` CSS px, if any: run while the page is idle after loading
   * (see app.js's rehearse), so that V8 has optimised the drawing loops for
   * coloured squares, frames and dimmed thumbnails before the first change
   * needs them, not while it draws. Returns the ms it took.
   */
  rehearse(m, side, colour, fade, look) {
    const t0 = performance.now();
    const list = m.drawList();
    const r = { atlas: m.atlas, x: m.x, y: m.y, view: m.view, dpr: m.dpr, cellOf: m.cellOf, fade, colour, marked: m.marked,
      styled: true, version: -1, allColoured: false, allColouredVersion: -2, drawList: () => list };
    const S = Math.max(1, Math.round(side * m.dpr));
    const sprites = this.sprites.find((x) => x.atlas === m.atlas && x.S === S) || null;
    allColoured(r);
    if (!this.scratchPic) this.scratchPic = new Picture(256, 256, true);
    composite(r, side, m.view.cx, m.view.cy, this.scratchPic, m.dpr, look, sprites);
    return performance.now() - t0;
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
  const colour = m.colour;
  for (const r of m.drawList()) if (!(colour[r] >>> 24)) { all = false; break; }
  m.allColouredVersion = m.version;
  m.allColoured = all;
  return all;
}

/** How many shown rows have a thumbnail of side CSS px reaching into area ({cx, cy, w, h}, CSS px). */
function rowsNear(m, area, side) {
  const k = m.view.scale, hw = area.w / 2 / k + side / k, hh = area.h / 2 / k + side / k;
  const x0 = area.cx - hw, x1 = area.cx + hw, y0 = area.cy - hh, y1 = area.cy + hh;
  const list = m.drawList(), xs = m.x, ys = m.y;
  let c = 0;
  for (let i = 0; i < list.length; i++) {
    const r = list[i], x = xs[r], y = ys[r];
    if (x >= x0 && x <= x1 && y >= y0 && y <= y1) c++;
  }
  return c;
}

/** Runs fn when the page is idle (soon, where the browser cannot say). */
function idle(fn) {
  if (window.requestIdleCallback) requestIdleCallback(fn, { timeout: 2000 });
  else setTimeout(fn, 50);
}

let warm = false;

/**
 * Draws, once per page, a made-up map of eight rows that takes every way
 * composite draws a row (a thumbnail plain, dimmed, framed, selected,
 * scaled; a coloured square; a dot), so that the JIT's optimised code for
 * it covers them all. Otherwise the first change that takes a new way (a
 * colour after loading: squares instead of thumbnails) leaves the
 * optimised loop for the interpreter half-way through 100,000 rows:
 * 120–220 ms instead of 30–45 on the loaded 2-core VM.
 */
function warmUp() {
  if (warm) return;
  warm = true;
  const n = 8, list = Int32Array.from({ length: n }, (_, i) => i);
  const a = { cell: 2, sheetOf: new Int32Array(n), sxOf: new Int32Array(n), syOf: new Int32Array(n) };
  const m = {
    atlas: a, x: new Float32Array(n), y: new Float32Array(n), view: { scale: 1 }, dpr: 1,
    cellOf: Int32Array.from([0, 1, 2, 3, 4, -1, -1, 5]),
    fade: Uint8Array.from([255, DIM, 255, DIM, 255, 255, DIM, DIM]),
    colour: Uint32Array.from([0, 0, 0xff0000ff, 0xff00ff00, 0, 0, 0xffff0000, 0xff0000ff]),
    marked: Uint8Array.from([0, 0, 0, 0, 1, 0, 0, 1]),
    drawList: () => list,
  };
  const sprites = (S) => {
    const sp = Object.create(Sprites.prototype);
    Object.assign(sp, { atlas: a, S, data: [new Uint32Array(S * S * n)], width: [S], fades: new Map(), fading: false, off: Int32Array.from({ length: n }, (_, i) => i * S * S) });
    return sp;
  };
  const p = new Picture(16, 16, false);
  // Each with and without the dimmed copy made.
  for (const [side, sp, look] of [[2, sprites(2), { frame: 0, solid: false }], [2, sprites(2), { frame: 1, solid: false }],
    [2, null, { frame: 0, solid: true }], [4, sprites(2), { frame: 1, solid: false }], [4, null, { frame: 0, solid: false }]]) {
    composite(m, side, 0, 0, p, 1, look, sp);
    if (sp) { sp.faded(DIM); composite(m, side, 0, 0, p, 1, look, sp); }
  }
}
