// Opt-in benchmark of the page at a large synthetic map, in the same
// headless Chromium as the browser test: how long changing colour-by,
// searching and filtering take to show, and the frame times of panning.
// Against a running `tsnemap serve`:
//
//   TSNEMAP_URL=http://127.0.0.1:8080 TSNEMAP_BENCH_POINTS=100000 node bench.mjs
//
// (TSNEMAP_BENCH_RUNS: runs of each change, default 5; TSNEMAP_BENCH_RENDERERS:
// default "webgl,2d".) Each change is made through the page's own controls
// (the colour-by select, the search box one keystroke at a time, the range
// filter's inputs, a legend entry) and timed from the input event to the
// frame painted: the map's frame drawn, its pixels read back (so a software
// rasteriser's work is included), then the next requestAnimationFrame (the
// frame has been handed on). The timing is done here, not by the page, so
// the same script measures older builds. Prints one EXPLORETIME line per run
// and renderer, FRAMETIME lines as the browser test does, and a table of
// medians. Figures: docs/page.md.
import { chromium } from 'playwright-core';

const base = process.env.TSNEMAP_URL;
if (!base) throw new Error('TSNEMAP_URL is required');
const n = Number(process.env.TSNEMAP_BENCH_POINTS || 100000);
const runs = Number(process.env.TSNEMAP_BENCH_RUNS || 5);
const renderers = (process.env.TSNEMAP_BENCH_RENDERERS || 'webgl,2d').split(',');
const browser = await chromium.launch({ executablePath: process.env.TSNEMAP_CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });

/**
 * Runs in the page: makes each change through the controls and times it
 * from the event to the frame painted. Returns {change: ms}.
 */
async function exploreOnce() {
  const m = window.tsnemap.map;
  const raf = () => new Promise((r) => requestAnimationFrame(r));
  const settle = () => {
    const gl = m.renderer.gl;
    if (gl) gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array(4));
    else m.canvas.getContext('2d').getImageData(0, 0, 1, 1);
  };
  const $ = (id) => document.getElementById(id);
  const out = {};
  const time = async (name, act) => {
    await raf(); await raf();
    const frames = m.stats.frames;
    const t0 = performance.now();
    act();
    // The frame that shows the change: the map's own requestAnimationFrame
    // runs before this one (it was asked for first).
    do await raf(); while (m.stats.frames === frames);
    settle();
    const drawn = performance.now() - t0;
    await raf();
    (out[name] ||= []).push({ painted: performance.now() - t0, drawn, draw: m.stats.lastDrawMs });
  };
  const input = (el, v) => { el.value = v; el.dispatchEvent(new Event('input', { bubbles: true })); };
  const change = (el, v) => { el.value = v; el.dispatchEvent(new Event('change', { bubbles: true })); };
  const sel = $('colour-by'), search = $('search');
  await time('colour by a category', () => change(sel, 'style'));
  await time('hide a category (legend)', () => document.querySelector('#legend .legend-item').click());
  await time('colour by a number (year)', () => change(sel, 'year'));
  for (const q of ['s', 'su', 'sun', 'suns', 'sunse', 'sunset']) await time('search keystroke', () => input(search, q));
  await time('search with accents', () => input(search, 'Étude sunset n° 1'));
  await time('search cleared', () => input(search, ''));
  await time('add a filter (year)', () => change($('filter-column'), 'year'));
  await time('filter range: from', () => input(document.querySelector('#filters .filter-min'), '1900'));
  await time('filter range: to', () => input(document.querySelector('#filters .filter-max'), '1950'));
  await time('remove the filter', () => document.querySelector('#filters .filter-remove').click());
  await time('colour by nothing', () => change(sel, ''));
  return out;
}

const median = (a) => { const s = [...a].sort((p, q) => p - q); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
const table = [], pans = [];
try {
  for (const renderer of renderers) {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('pageerror', (e) => { throw e; });
    await page.goto(base + '/?renderer=' + renderer);
    const t0 = Date.now();
    await page.evaluate((k) => window.tsnemap.loadSynthetic(k), n);
    const kind = await page.evaluate(() => window.tsnemap.state.renderer);
    console.log(`loaded ${n} points (${kind}) in ${Date.now() - t0} ms`);
    const all = {};
    for (let k = 0; k < runs; k++) {
      const r = await page.evaluate(exploreOnce);
      console.log('EXPLORETIME', JSON.stringify({ points: n, renderer: kind, run: k, ...r }));
      for (const [name, v] of Object.entries(r)) (all[name] ||= []).push(...v);
    }
    for (const [name, v] of Object.entries(all)) {
      table.push([n, kind, name, median(v.map((x) => x.painted)), Math.max(...v.map((x) => x.painted)), median(v.map((x) => x.draw)), v.length]);
    }
    for (const mode of ['circle', 'sweep', 'zoom']) {
      const r = await page.evaluate((m) => window.tsnemap.bench(300, m), mode);
      console.log('FRAMETIME', JSON.stringify({ points: n, viewport: '1280x900', ...r }));
      pans.push([n, kind, mode, r.interval.p50, r.interval.mean, r.interval.p95, r.fps]);
    }
    await page.close();
  }
} finally {
  await browser.close();
}
console.log('\npoints | renderer | change | painted median ms | max ms | map draw JS median ms | samples');
for (const row of table) console.log(row.map((v) => (typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(1) : v)).join(' | '));
console.log('\npoints | renderer | pan | frame interval p50 / mean / p95 ms | fps');
for (const [p, k, mode, a, b, c, f] of pans) console.log([p, k, mode, [a, b, c].map((v) => v.toFixed(1)).join(' / '), f.toFixed(0)].join(' | '));
