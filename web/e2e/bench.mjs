// Opt-in benchmark of the page at a large synthetic map, in the same
// headless Chromium as the browser test: how long changing colour-by,
// searching and filtering take to show, fitted and zoomed in, and the frame
// times of panning. Against a running `tsnemap serve`:
//
//   TSNEMAP_URL=http://127.0.0.1:8080 TSNEMAP_BENCH_POINTS=100000 node bench.mjs
//
// TSNEMAP_BENCH_RUNS: runs of each change at each view (default 5);
// TSNEMAP_BENCH_RENDERERS: default "webgl,2d"; TSNEMAP_BENCH_ZOOMS: the
// views, as zoom factors over the fitted map (default "1,2,4": at 100,000
// points thumbnails of 6, 12 and 24 px, the zoomed views centred on one of
// the synthetic map's islands). Panning is timed fitted and at the last zoom
// (TSNEMAP_BENCH_PAN=0 skips it). TSNEMAP_BENCH_FIRSTS: pages loaded afresh
// per renderer only to time the first change after loading (default 6),
// taking in turn colour-by, a search and a filter as that first change.
//
// Each change is made through the page's own controls (the colour-by
// select, the search box, the range filter's inputs, a legend entry) and
// timed from the input event to the frame painted: the map's frame drawn,
// its pixels read back (so a software rasteriser's work is included), then
// the next requestAnimationFrame (the frame has been handed on). "search,
// typing" types six keys 40 ms apart and is timed from the last key. The
// first change after loading (made as soon as the map is drawn, fitted, as
// a person might) is reported on rows of its own, per kind, from the main
// page and the pages loaded afresh for it; the other rows leave it out. Besides wall
// time, the CPU time of every Chromium process during the change is read
// from /proc (Linux; "no change" is what the measuring itself costs): on a
// machine shared with other work it is the steadier figure. The timing is
// done here, not by the page, so the same script measures older builds.
// Prints one EXPLORETIME line per change, FRAMETIME lines as the browser
// test does, and a table of medians, 95th percentiles and maxima.
// Figures: docs/page.md.
import { readFileSync, readdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

const base = process.env.TSNEMAP_URL;
if (!base) throw new Error('TSNEMAP_URL is required');
const n = Number(process.env.TSNEMAP_BENCH_POINTS || 100000);
const runs = Number(process.env.TSNEMAP_BENCH_RUNS || 5);
const renderers = (process.env.TSNEMAP_BENCH_RENDERERS || 'webgl,2d').split(',');
const zooms = (process.env.TSNEMAP_BENCH_ZOOMS || '1,2,4').split(',').map(Number);
const pan = process.env.TSNEMAP_BENCH_PAN !== '0';
const firsts = Number(process.env.TSNEMAP_BENCH_FIRSTS ?? 6);
const browser = await chromium.launch({ executablePath: process.env.TSNEMAP_CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });

/**
 * CPU time (ms) so far of the browser's processes (this script's
 * descendants), every thread; NaN where /proc is missing.
 */
function browserCPU() {
  const root = process.pid;
  let procs;
  try { procs = readdirSync('/proc').filter((d) => /^\d+$/.test(d)); } catch { return NaN; }
  const parent = new Map();
  for (const p of procs) {
    try {
      const st = readFileSync(`/proc/${p}/stat`, 'utf8');
      parent.set(Number(p), Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]));
    } catch { /* gone */ }
  }
  const ours = (p) => { for (let q = parent.get(p), k = 0; q > 1 && k < 64; q = parent.get(q), k++) if (q === root) return true; return false; };
  let ns = 0;
  for (const p of parent.keys()) {
    if (!ours(p)) continue;
    try {
      for (const t of readdirSync(`/proc/${p}/task`)) ns += Number(readFileSync(`/proc/${p}/task/${t}/schedstat`, 'utf8').split(' ')[0]);
    } catch { /* gone */ }
  }
  return ns / 1e6;
}

/**
 * Runs in the page: makes one change through the controls and times it
 * from the event to the frame painted. Returns {painted, drawn, draw}.
 */
async function change([kind, arg]) {
  const m = window.tsnemap.map;
  const raf = () => new Promise((r) => requestAnimationFrame(r));
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const settle = () => {
    const gl = m.renderer.gl;
    if (gl) gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array(4));
    else m.canvas.getContext('2d').getImageData(0, 0, 1, 1);
  };
  const $ = (id) => document.getElementById(id);
  const input = (el, v) => { el.value = v; el.dispatchEvent(new Event('input', { bubbles: true })); };
  const pick = (el, v) => { el.value = v; el.dispatchEvent(new Event('change', { bubbles: true })); };
  await raf(); await raf();
  let frames = m.stats.frames;
  let t0 = performance.now();
  switch (kind) {
    case 'none': break;
    case 'colour': pick($('colour-by'), arg); break;
    case 'legend': document.querySelector('#legend .legend-item').click(); break;
    case 'search': input($('search'), arg); break;
    case 'typing': {
      // Keys 40 ms apart; the clock starts at the last one.
      for (let k = 1; k < arg.length; k++) { input($('search'), arg.slice(0, k)); await sleep(40); }
      frames = m.stats.frames;
      t0 = performance.now();
      input($('search'), arg);
      break;
    }
    case 'filter': pick($('filter-column'), arg); break;
    case 'from': input(document.querySelector('#filters .filter-min'), arg); break;
    case 'to': input(document.querySelector('#filters .filter-max'), arg); break;
    case 'unfilter': document.querySelector('#filters .filter-remove').click(); break;
    default: throw new Error('unknown change ' + kind);
  }
  // The frame that shows the change: the map's own requestAnimationFrame
  // runs before this one (it was asked for first). Where the page says
  // which search it shows, wait for that one.
  const shows = () => kind !== 'typing' || window.tsnemap.state.searchShown === undefined || window.tsnemap.state.searchShown === arg;
  if (kind !== 'none') do await raf(); while (m.stats.frames === frames || !shows());
  settle();
  const drawn = performance.now() - t0;
  await raf();
  return { painted: performance.now() - t0, drawn, draw: m.stats.lastDrawMs };
}

const CHANGES = [
  ['colour by a category', 'colour', 'style'],
  ['hide a category (legend)', 'legend'],
  ['colour by a number (year)', 'colour', 'year'],
  ...['s', 'su', 'sun', 'suns', 'sunse', 'sunset'].map((q) => ['search keystroke', 'search', q]),
  ['search with accents', 'search', 'Étude sunset n° 1'],
  ['search cleared', 'search', ''],
  ['search, typing (6 keys, from the last)', 'typing', 'sunset'],
  ['search cleared', 'search', ''],
  ['add a filter (year)', 'filter', 'year'],
  ['filter range: from', 'from', '1900'],
  ['filter range: to', 'to', '1950'],
  ['remove the filter', 'unfilter'],
  ['colour by nothing', 'colour', ''],
  ['no change (the measuring itself)', 'none'],
];

/** Centres the view on (x, y) at `zoom` times the fitted scale and waits until drawn. */
async function view(page, zoom) {
  await page.evaluate(async (z) => {
    const m = window.tsnemap.map;
    m.fit();
    if (z !== 1) {
      m.autoFit = false;
      m.view = { cx: 30, cy: 0, scale: m.view.scale * z }; // an island of the synthetic map
      m.request();
    }
    for (let k = 0; k < 3; k++) await new Promise((r) => requestAnimationFrame(r));
    await new Promise((r) => setTimeout(r, 300));
    for (let k = 0; k < 3; k++) await new Promise((r) => requestAnimationFrame(r));
  }, zoom);
  return page.evaluate(() => ({ side: window.tsnemap.state.thumbSide, inView: window.tsnemap.state.pointsDrawn }));
}

// The first change on a page loaded afresh, in turn: [label, kind, arg].
const FIRSTS = [
  ['colour by a category', 'colour', 'style'],
  ['search', 'search', 'sunset'],
  ['filter (year)', 'filter', 'year'],
];

/** A page with the synthetic map of n points drawn with renderer, fitted; returns {page, kind, loadMs}. */
async function load(renderer) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('pageerror', (e) => { throw e; });
  await page.goto(base + '/?renderer=' + renderer);
  const t0 = Date.now();
  await page.evaluate((k) => window.tsnemap.loadSynthetic(k), n);
  const kind = await page.evaluate(() => window.tsnemap.state.renderer);
  return { page, kind, loadMs: Date.now() - t0 };
}

/** Makes one change on page, timed (and Chromium's CPU during it). */
async function timed(page, what, arg) {
  const c0 = browserCPU();
  const r = await page.evaluate(change, [what, arg]);
  r.cpu = browserCPU() - c0;
  return r;
}

const quantile = (a, q) => { const s = [...a].sort((p, r) => p - r); return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]; };
const median = (a) => { const s = [...a].sort((p, q) => p - q); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
const table = [], pans = [];
try {
  for (const renderer of renderers) {
    const firstOf = new Map(); // label → results of first changes after loading
    const addFirst = (label, r) => { if (!firstOf.has(label)) firstOf.set(label, []); firstOf.get(label).push(r); };
    const { page, kind, loadMs } = await load(renderer);
    console.log(`loaded ${n} points (${kind}) in ${loadMs} ms`);
    const at = table.length; // the first changes' rows go first
    let first = true, v1 = null;
    for (const zoom of zooms) {
      const v = await view(page, zoom);
      if (zoom === 1) v1 = v;
      const all = new Map();
      for (let k = 0; k < runs; k++) {
        for (const [name, what, arg] of CHANGES) {
          const r = await timed(page, what, arg);
          const label = first && zoom === 1 ? 'first change after loading: ' + name : name;
          console.log('EXPLORETIME', JSON.stringify({ points: n, renderer: kind, zoom, side: v.side, run: k, change: label, ...r }));
          if (first && zoom === 1) addFirst(label, r);
          else {
            if (!all.has(label)) all.set(label, []);
            all.get(label).push(r);
          }
          first = false;
        }
      }
      for (const [name, rs] of all) {
        const p = rs.map((x) => x.painted);
        table.push([n, kind, `${zoom}× (${v.side.toFixed(0)} px, ${v.inView} in view)`, name, median(p), quantile(p, 0.95), Math.max(...p),
          median(rs.map((x) => x.cpu)), median(rs.map((x) => x.draw)), rs.length]);
      }
    }
    for (const zoom of pan ? [1, zooms[zooms.length - 1]].filter((z, i, a) => a.indexOf(z) === i) : []) {
      await view(page, zoom);
      for (const mode of zoom === 1 ? ['circle', 'sweep', 'zoom'] : ['circle', 'sweep']) {
        const r = await page.evaluate((m) => window.tsnemap.bench(300, m), mode);
        console.log('FRAMETIME', JSON.stringify({ points: n, viewport: '1280x900', zoom, ...r }));
        pans.push([n, kind, `${mode} at ${zoom}×`, r.interval.p50, r.interval.mean, r.interval.p95, r.fps]);
      }
    }
    await page.close();
    // The first change after loading, on pages loaded only for it.
    for (let k = 0; k < firsts; k++) {
      const [name, what, arg] = FIRSTS[k % FIRSTS.length];
      const fresh = await load(renderer);
      const v = await view(fresh.page, 1);
      const r = await timed(fresh.page, what, arg);
      const label = 'first change after loading: ' + name;
      console.log('EXPLORETIME', JSON.stringify({ points: n, renderer: kind, zoom: 1, side: v.side, run: k, change: label, ...r }));
      addFirst(label, r);
      await fresh.page.close();
    }
    const allFirst = [...firstOf.values()].flat();
    table.splice(at, 0, ...[...firstOf, ['first change after loading: any of these', allFirst]].map(([name, rs]) => {
      const p = rs.map((x) => x.painted);
      return [n, kind, `1× (${v1 ? v1.side.toFixed(0) : '?'} px, ${v1 ? v1.inView : '?'} in view)`, name, median(p), quantile(p, 0.95), Math.max(...p),
        median(rs.map((x) => x.cpu)), median(rs.map((x) => x.draw)), rs.length];
    }));
  }
} finally {
  await browser.close();
}
const f = (v) => (typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(1) : v);
console.log('\npoints | renderer | view | change | painted median / p95 / max ms | Chromium CPU median ms | map draw JS median ms | samples');
for (const [p, k, z, name, a, b, c, cpu, d, s] of table) console.log([p, k, z, name, [a, b, c].map(f).join(' / '), f(cpu), f(d), s].join(' | '));
console.log('\npoints | renderer | pan | frame interval p50 / mean / p95 ms | fps');
for (const [p, k, mode, a, b, c, fps] of pans) console.log([p, k, mode, [a, b, c].map((v) => v.toFixed(1)).join(' / '), fps.toFixed(0)].join(' | '));
