// Unit tests of web/static/raster.js under node's test runner (no
// browser): skipping thumbnails that the rows above hide changes no pixel
// of the picture, over random maps of every kind of row, side and look.
// Run by web's TestRasterInNode (go test ./web), or `node --test raster.test.mjs`.
import assert from 'node:assert/strict';
import test from 'node:test';

// What raster.js needs of a browser: ImageData, and requestIdleCallback
// (never called back here: dimmed rows are blended as copied until a test
// makes the dimmed copy).
globalThis.ImageData ??= class { constructor(w, h) { this.width = w; this.height = h; this.data = new Uint8ClampedArray(w * h * 4); } };
globalThis.window ??= globalThis;
globalThis.requestIdleCallback ??= () => 0;
const { Picture, Sprites, composite } = await import('../static/raster.js');

/** A random map of n rows over a W × H picture: thumbnails, dots, colours, dimmed and selected rows. */
function randomMap(n, W, H, coloured, rand) {
  const a = { cell: 4, sheetOf: new Int32Array(n), sxOf: new Int32Array(n), syOf: new Int32Array(n) };
  const m = { atlas: a, x: new Float32Array(n), y: new Float32Array(n), view: { scale: 1 }, dpr: 1, cellOf: new Int32Array(n),
    fade: new Uint8Array(n), colour: new Uint32Array(n), marked: new Uint8Array(n) };
  const list = Int32Array.from({ length: n }, (_, i) => i);
  m.drawList = () => list;
  for (let i = 0; i < n; i++) {
    m.x[i] = (rand() - 0.5) * (W + 20); m.y[i] = (rand() - 0.5) * (H + 20);
    m.cellOf[i] = rand() < 0.1 ? -1 : i;
    m.fade[i] = rand() < 0.5 ? 40 : 255;
    m.colour[i] = coloured && rand() < 0.8 ? (0xff000000 | (rand() * 0xffffff)) >>> 0 : 0;
    m.marked[i] = rand() < 0.02 ? 1 : 0;
  }
  return m;
}

/** Sprites of side Q with random pixels, one per row. */
function randomSprites(a, n, Q, rand) {
  const s = Object.create(Sprites.prototype);
  return Object.assign(s, { atlas: a, S: Q, width: [Q], fades: new Map(), off: Int32Array.from({ length: n }, (_, i) => i * Q * Q),
    data: [Uint32Array.from({ length: n * Q * Q }, () => (0xff000000 | (rand() * 0xffffff)) >>> 0)] });
}

test('skipping hidden thumbnails changes no pixel', () => {
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 4294967296);
  const W = 200, H = 150, n = 3000;
  for (const side of [3, 5, 6, 7, 12, 24]) { // 5: the sprites' own side; others scaled as copied
    for (const coloured of [false, true]) {
      const m = randomMap(n, W, H, coloured, rand);
      const sprites = randomSprites(m.atlas, n, 5, rand);
      for (const look of [{ frame: 0, solid: false }, { frame: 2, solid: false }, { frame: 0, solid: true }]) {
        for (const sp of [sprites, null]) {
          const a = new Picture(W, H, false), b = new Picture(W, H, false);
          composite(m, side, 0, 0, a, 1, look, sp, true);
          composite(m, side, 0, 0, b, 1, look, sp, false);
          const what = JSON.stringify({ side, coloured, look, sprites: !!sp });
          assert.deepEqual(a.box, b.box, what);
          let differ = 0;
          for (let i = 0; i < a.px.length; i++) if (a.px[i] !== b.px[i]) differ++;
          assert.equal(differ, 0, `${what}: ${differ} pixels differ`);
        }
      }
    }
  }
});

test('dimmed rows blended as copied match the dimmed copy', () => {
  let seed = 11;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 4294967296);
  const W = 160, H = 120, n = 2000;
  for (const side of [3, 5, 9]) { // 5: the sprites' own side; others scaled as copied
    for (const look of [{ frame: 0, solid: false }, { frame: 2, solid: false }]) {
      const m = randomMap(n, W, H, true, rand);
      const sprites = randomSprites(m.atlas, n, 5, rand);
      const a = new Picture(W, H, false), b = new Picture(W, H, false);
      composite(m, side, 0, 0, a, 1, look, sprites);
      for (const f of new Set(m.fade)) if (f < 255) sprites.faded(f);
      composite(m, side, 0, 0, b, 1, look, sprites);
      let differ = 0;
      for (let i = 0; i < a.px.length; i++) if (a.px[i] !== b.px[i]) differ++;
      assert.equal(differ, 0, `${JSON.stringify({ side, look })}: ${differ} pixels differ`);
    }
  }
});
