// Opt-in benchmark of the page at a large synthetic map, in the same
// headless Chromium as the browser test: how long changing colour-by,
// searching and filtering take to show (from the change to the end of the
// frame that shows it), and the frame times of panning. Against a running
// `tsnemap serve`:
//
//   TSNEMAP_URL=http://127.0.0.1:8080 TSNEMAP_BENCH_POINTS=100000 node bench.mjs
//
// Prints one EXPLORETIME line per run and renderer, REDRAWTIME lines (a
// plain full redraw, the floor under any change), and FRAMETIME lines as
// the browser test does (a page without benchExplore, an older build, gets
// only the latter). Figures: docs/page.md.
import { chromium } from 'playwright-core';

const base = process.env.TSNEMAP_URL;
if (!base) throw new Error('TSNEMAP_URL is required');
const n = Number(process.env.TSNEMAP_BENCH_POINTS || 100000);
const runs = Number(process.env.TSNEMAP_BENCH_RUNS || 3);
const browser = await chromium.launch({ executablePath: process.env.TSNEMAP_CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
try {
  for (const renderer of ['webgl', '2d']) {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('pageerror', (e) => { throw e; });
    await page.goto(base + '/?renderer=' + renderer);
    const t0 = Date.now();
    await page.evaluate((k) => window.tsnemap.loadSynthetic(k), n);
    const kind = await page.evaluate(() => window.tsnemap.state.renderer);
    console.log(`loaded ${n} points (${kind}) in ${Date.now() - t0} ms`);
    // The floor: a full redraw of the map as any change of positions or
    // thumbnails makes it (the same in builds before exploring), timed as
    // benchExplore times its changes.
    for (let k = 0; k < runs; k++) {
      const r = await page.evaluate(async () => {
        const m = window.tsnemap.map;
        const frame = () => new Promise((res) => requestAnimationFrame(() => requestAnimationFrame(res)));
        await frame();
        const t0 = performance.now();
        m.version++;
        m.request();
        await new Promise((res) => requestAnimationFrame(res));
        const gl = m.renderer.gl;
        if (gl) gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array(4));
        return { total: performance.now() - t0, draw: m.stats.lastDrawMs };
      });
      console.log('REDRAWTIME', JSON.stringify({ points: n, renderer: kind, run: k, ...r }));
    }
    if (await page.evaluate(() => typeof window.tsnemap.benchExplore === 'function')) {
      for (let k = 0; k < runs; k++) {
        const r = await page.evaluate(() => window.tsnemap.benchExplore());
        console.log('EXPLORETIME', JSON.stringify({ points: n, renderer: kind, run: k, ...r }));
      }
    }
    for (const mode of ['circle', 'sweep', 'zoom']) {
      const r = await page.evaluate((m) => window.tsnemap.bench(300, m), mode);
      console.log('FRAMETIME', JSON.stringify({ points: n, viewport: '1280x900', ...r }));
    }
    await page.close();
  }
} finally {
  await browser.close();
}
