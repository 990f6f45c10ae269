// Browser test of tsnemap's page, in real headless Chromium (Debian's
// /usr/bin/chromium) driven by playwright-core. Run by the Go test
// TestBrowser (cmd/tsnemap/browser_test.go) against a live `serve --demo`:
//
//   TSNEMAP_URL=http://127.0.0.1:8080 TSNEMAP_SCREENSHOTS=dir node browser.mjs
//
// It prints "SCREENSHOT <path>" for each picture and "FRAMETIME <json>" for
// the 10,000-point panning measurement, and exits non-zero on the first
// failed check. No check waits a fixed time: each polls until a deadline.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const base = process.env.TSNEMAP_URL;
assert.ok(base, 'TSNEMAP_URL is required');
const shots = process.env.TSNEMAP_SCREENSHOTS || 'screenshots';
mkdirSync(shots, { recursive: true });
const executablePath = process.env.TSNEMAP_CHROMIUM || '/usr/bin/chromium';
const benchPoints = Number(process.env.TSNEMAP_BENCH_POINTS || 10000);

const log = (...a) => console.log(...a);
let step = 'start';
const stepOf = (name) => { step = name; log('--', name); };

async function until(what, fn, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function api(path, init) {
  const res = await fetch(base + path, init);
  const ct = res.headers.get('content-type') || '';
  return { status: res.status, body: ct.includes('json') ? await res.json() : await res.text() };
}

const state = (page) => page.evaluate(() => window.tsnemap.state);

async function shot(page, name, opts = {}) {
  const path = join(shots, name + '.png');
  await page.screenshot({ path, ...opts });
  log('SCREENSHOT', path);
}

const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
const pageErrors = [];
function watch(page) {
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('dialog', (d) => d.accept()); // the delete confirmation
}

try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true, hasTouch: true });
  const page = await ctx.newPage();
  watch(page);

  stepOf('the empty state');
  await page.goto(base + '/');
  {
    // Without a GPU Chromium hands out WebGL rendered by SwiftShader even
    // when asked not to; "auto" then draws with canvas 2D, which is quicker.
    const { renderer, glName } = await page.evaluate(() => {
      const gl = document.createElement('canvas').getContext('webgl2');
      const info = gl && gl.getExtension('WEBGL_debug_renderer_info');
      return { renderer: window.tsnemap.state.renderer, glName: gl ? String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER)) : '' };
    });
    log('renderer chosen by the page:', renderer, 'WebGL 2 would be:', glName || 'none');
    if (!glName || /swiftshader|llvmpipe|softpipe|software|basic render/i.test(glName)) assert.equal(renderer, 'canvas2d', `auto with a software WebGL (${glName})`);
    else assert.equal(renderer, 'webgl2', `auto with a GPU's WebGL (${glName})`);
  }
  await page.waitForSelector('#jobs-empty:not([hidden])');
  await shot(page, 'empty');

  stepOf('a bad field shows the API\'s own message next to it');
  await page.click('#demo-button');
  const dataset = await page.inputValue('#f-dataset_url');
  const template = await page.inputValue('#f-image_url_template');
  assert.match(dataset, /^http:\/\/.*\/data\.tab$/);
  await page.evaluate(() => { document.querySelector('.options').open = true; });
  await page.fill('#f-perplexity', '-5');
  await page.click('#submit-button');
  await page.waitForSelector('#e-perplexity:not([hidden])');
  const shown = await page.textContent('#e-perplexity');
  const direct = await api('/v1/jobs', { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ dataset_url: dataset, image_url_template: template, perplexity: -5 }) });
  assert.equal(direct.status, 400);
  const apiMsg = direct.body.errors.filter((e) => e.field === 'perplexity').map((e) => e.message).join('; ');
  assert.equal(shown, apiMsg, 'the page shows the API\'s message for perplexity');
  assert.equal(await page.getAttribute('#f-perplexity', 'aria-invalid'), 'true');
  await shot(page, 'bad-field');

  stepOf('submit the demo catalogue through the form');
  await page.fill('#f-perplexity', '20');
  await page.fill('#f-iterations', '5000'); // a few seconds of optimising, to watch it converge
  await page.check('#f-grid'); // and a grid layout, to toggle to
  await page.click('#submit-button');
  await page.waitForURL(/#\/jobs\/[0-9A-Z]+$/);
  const id = page.url().split('/').pop();
  assert.ok(await page.isHidden('#e-perplexity'));

  stepOf('progress advances, the map is drawn while the optimiser runs');
  const seen = new Set();
  let convergingShot = false;
  let thumbsWhileRunning = 0;
  const done = await until('the job to succeed', async () => {
    const s = await state(page);
    if (s.progress) seen.add(`${s.stage}:${s.progress.images_loaded}:${s.progress.iteration}`);
    if (s.status === 'running' && s.embeddingEvents > 0) thumbsWhileRunning = Math.max(thumbsWhileRunning, s.thumbnailsDrawn);
    if (!convergingShot && s.status === 'running' && s.embeddingEvents > 0 && s.thumbnailsDrawn > 0) {
      convergingShot = true;
      await shot(page, 'converging');
    }
    return s.status === 'succeeded' && s.resultLoaded ? s : s.status === 'failed' || s.status === 'canceled' ? s : null;
  }, 90000);
  assert.equal(done.status, 'succeeded', 'the demo job succeeds');
  assert.ok(seen.size >= 3, `progress advanced through several states: ${[...seen].join(' ')}`);
  log('progress states seen:', seen.size, 'embedding events:', done.embeddingEvents);
  assert.ok(done.embeddingEvents >= 1, 'embedding events drew the map while it converged');
  assert.equal(thumbsWhileRunning, 300, 'every loaded image was drawn as a thumbnail while the optimiser ran');

  stepOf('one thumbnail per loaded image');
  const job = (await api('/v1/jobs/' + id)).body;
  const loaded = job.progress.images_loaded;
  assert.equal(loaded, 300);
  assert.equal(job.progress.images_failed, 1);
  const fin = await until('the finished map drawn', async () => {
    const s = await state(page);
    return s.pointsPlaced === loaded && s.thumbnailsDrawn === loaded ? s : null;
  });
  assert.equal(fin.atlasCells, loaded);
  assert.equal(fin.pointsDrawn, loaded);
  await page.waitForSelector('#failures-table:not([hidden])');
  assert.match(await page.textContent('#failures-body'), /P9999.*http 404/s);
  await shot(page, 'finished-map', { fullPage: true });
  await shot(page, 'finished-map-canvas', { clip: await page.locator('.map-stage').boundingBox() });

  stepOf('pan and zoom change the view');
  const box = await page.locator('#map').boundingBox();
  const v0 = (await state(page)).view;
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width / 2 + 120, box.y + box.height / 2 + 60, { steps: 8 });
  await page.mouse.up();
  const v1 = (await state(page)).view;
  assert.ok(v1.cx < v0.cx && v1.cy > v0.cy, `dragging right and down moves the view left and up: ${JSON.stringify(v0)} → ${JSON.stringify(v1)}`);
  assert.ok(Math.abs((v0.cx - v1.cx) * v1.scale - 120) < 1, 'the map follows the mouse exactly');
  await page.mouse.wheel(0, -300);
  const v2 = await until('the wheel to zoom in', async () => { const v = (await state(page)).view; return v.scale > v1.scale ? v : null; });
  log('zoom by wheel:', (v2.scale / v1.scale).toFixed(2));
  await page.focus('#map');
  await page.keyboard.press('-');
  const v3 = (await state(page)).view;
  assert.ok(v3.scale < v2.scale, 'the - key zooms out');
  await page.keyboard.press('ArrowLeft');
  assert.ok((await state(page)).view.cx < v3.cx, 'the left arrow pans');

  stepOf('touch: two fingers pinch to zoom, one drags; trackpad pinch (ctrl + wheel) zooms');
  const cdp = await ctx.newCDPSession(page);
  const mx = box.x + box.width / 2, my = box.y + box.height / 2;
  const touch = (type, points) => cdp.send('Input.dispatchTouchEvent', { type, touchPoints: points.map(([x, y], id) => ({ x, y, id })) });
  const p0 = (await state(page)).view;
  await touch('touchStart', [[mx - 40, my], [mx + 40, my]]);
  for (let k = 1; k <= 5; k++) await touch('touchMove', [[mx - 40 - 16 * k, my], [mx + 40 + 16 * k, my]]);
  await touch('touchEnd', []);
  const p1 = await until('the pinch to zoom in', async () => { const v = (await state(page)).view; return v.scale > p0.scale * 1.5 ? v : null; });
  assert.ok(Math.abs(p1.scale / p0.scale - 3) < 0.3, `fingers 80 px apart moved to 240 px zoom 3×: ${p1.scale / p0.scale}`);
  await touch('touchStart', [[mx, my]]);
  for (let k = 1; k <= 5; k++) await touch('touchMove', [[mx + 20 * k, my]]);
  await touch('touchEnd', []);
  const p2 = await until('one finger to pan', async () => { const v = (await state(page)).view; return v.cx < p1.cx ? v : null; });
  assert.ok(Math.abs((p1.cx - p2.cx) * p2.scale - 100) < 1, 'the map follows the finger');
  await page.mouse.move(mx, my);
  await page.keyboard.down('Control');
  await page.mouse.wheel(0, -40);
  await page.keyboard.up('Control');
  await until('ctrl + wheel (a trackpad pinch) to zoom in', async () => (await state(page)).view.scale > p2.scale * 1.2);

  await page.focus('#map');
  await page.keyboard.press('0');
  await until('fit to show every point again', async () => (await state(page)).pointsDrawn === loaded);

  stepOf('hover shows the right row');
  const result = (await api(`/v1/jobs/${id}/result?format=json`)).body;
  const order = await page.evaluate(() => window.tsnemap.drawOrder());
  const top = order[order.length - 1]; // drawn last: on top at its centre
  const at = await page.evaluate((r) => window.tsnemap.pagePointOf(r), top);
  await page.mouse.move(at.x, at.y);
  await until('the hovered row', async () => (await state(page)).hoveredRow === top);
  const details = await page.textContent('#details');
  const want = result.points[top].fields;
  assert.ok(details.includes(want.title) && details.includes(want.id), `details show row ${top} (${want.id}, ${want.title}): ${details}`);
  await shot(page, 'hover', { clip: await page.locator('.map-area').boundingBox() });

  stepOf('clicking opens the full image');
  const [popup] = await Promise.all([page.waitForEvent('popup'), page.mouse.click(at.x, at.y)]);
  await until('the popup to load the image', async () => popup.url().includes('/images/'), 10000);
  assert.ok(popup.url().endsWith(`/images/${want.id}.png`), `popup opened ${popup.url()}`);
  await popup.close();

  stepOf('keyboard: ] selects a row, the details follow');
  await page.focus('#map');
  await page.keyboard.press(']');
  const sel = (await state(page)).selectedRow;
  assert.equal(sel, order[0]);

  stepOf('the result downloads');
  for (const [link, head] of [['#dl-tsv', 'id\ttitle\tstyle\tyear\tx\ty\tcluster\tgrid_x\tgrid_y'], ['#dl-csv', 'id,title,style,year,x,y,cluster,grid_x,grid_y']]) {
    const [dl] = await Promise.all([page.waitForEvent('download'), page.click(link)]);
    const path = join(shots, dl.suggestedFilename());
    await dl.saveAs(path);
    const text = readFileSync(path, 'utf8');
    assert.equal(text.split('\n')[0], head);
    assert.equal(text.trim().split('\n').length, 302, `${link}: header and 301 rows`);
  }
  const [pngDl] = await Promise.all([page.waitForEvent('download'), page.click('#dl-png')]);
  const pngPath = join(shots, 'map-from-server.png');
  await pngDl.saveAs(pngPath);
  log('SCREENSHOT', pngPath);

  await explore(page, id, result);

  stepOf('cancel works');
  await page.goto(base + '/#/');
  await page.waitForSelector('#jobs-table:not([hidden])');
  await page.click('#demo-button');
  await page.evaluate(() => { document.querySelector('.options').open = true; });
  await page.fill('#f-iterations', '100000');
  await page.fill('#f-perplexity', '20');
  await page.click('#submit-button');
  await page.waitForURL(/#\/jobs\/[0-9A-Z]+$/);
  const slowId = page.url().split('/').pop();
  assert.notEqual(slowId, id);
  await until('the job to optimise', async () => (await state(page)).stage === 'optimizing', 60000);
  stepOf('a running job: colour and search over the rows known so far (id and image URL)');
  await until('the thumbnails of the running job', async () => (await state(page)).atlasCells === 300);
  await page.fill('#search', 'p0012');
  await until('one match among the rows loaded', async () => (await page.textContent('#search-count')) === '1 of 301 match');
  await page.selectOption('#colour-by', 'id');
  await page.waitForSelector('#legend:not([hidden])');
  await shot(page, 'running-search');
  await page.click('#cancel-button');
  await until('the job to be canceled', async () => (await state(page)).status === 'canceled', 10000);
  assert.equal((await api('/v1/jobs/' + slowId)).body.status, 'canceled');
  await page.waitForSelector('#job-error:not([hidden])');
  await page.waitForSelector('#delete-button:not([hidden])');
  await shot(page, 'canceled');

  stepOf('delete works');
  await page.click('#delete-button');
  await page.waitForURL(/#\/$/);
  await until('the job to be gone', async () => (await api('/v1/jobs/' + slowId)).status === 404);

  stepOf('readable at 200% zoom: no sideways scrolling');
  const zoomed = await browser.newContext({ viewport: { width: 640, height: 450 }, deviceScaleFactor: 2 });
  const zp = await zoomed.newPage();
  watch(zp);
  for (const hash of ['#/', '#/jobs/' + id]) {
    await zp.goto(base + '/' + hash);
    await zp.waitForSelector(hash === '#/' ? '#jobs-table:not([hidden])' : '#downloads-list:not([hidden])');
    if (hash !== '#/') await until('the map at 200%', async () => { const s = await state(zp); return s.resultLoaded && s.thumbnailsDrawn === loaded && s.failures === 1; });
    const [sw, cw] = await zp.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]);
    assert.ok(sw <= cw, `${hash}: page is ${sw} px wide in a ${cw} px window`);
  }
  await shot(zp, 'zoom-200', { fullPage: true });
  await zoomed.close();

  stepOf('an addition: the base\'s points where they were, the new ones arriving, ringed, then settling');
  const post = async (req) => (await api('/v1/jobs', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(req) })).body;
  const small = await post({ dataset_url: dataset, image_url_template: template, perplexity: 20, iterations: 500, limit: 200 });
  await until('the base of 200 rows', async () => (await api('/v1/jobs/' + small.id)).body.status === 'succeeded', 90000);
  const grown = await post({ dataset_url: dataset, image_url_template: template, base_job_id: small.id });
  assert.equal(grown.request.base_job_id, small.id);
  await until('the addition', async () => (await api('/v1/jobs/' + grown.id)).body.status === 'succeeded', 90000);
  await page.goto(base + '/#/jobs/' + grown.id);
  const arriving = await until('new rows arriving', async () => { const s = await state(page); return s.resultLoaded && s.freshRows > 0 ? s : null; });
  assert.ok(arriving.arrived >= 90 && arriving.arrived <= 101, `about 100 new rows arrived: ${arriving.arrived}`);
  assert.equal(arriving.rows, 301);
  await shot(page, 'addition-arriving');
  const settled = await until('the new rows to settle', async () => { const s = await state(page); return s.freshRows === 0 && s.thumbnailsDrawn === loaded ? s : null; }, 15000);
  assert.equal(settled.pointsPlaced, loaded);
  await shot(page, 'addition-settled');

  stepOf('API key: a 401 asks for a key, which is then sent on every request');
  const keyed = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const kp = await keyed.newPage();
  watch(kp);
  const seenAuth = [];
  await kp.route('**/v1/**', async (route) => {
    const auth = route.request().headers()['authorization'];
    seenAuth.push(auth || '');
    if (auth !== 'Bearer test-key') {
      await route.fulfill({ status: 401, contentType: 'application/problem+json',
        body: JSON.stringify({ type: 'about:blank', title: 'Unauthorized', status: 401, detail: 'send Authorization: Bearer <key>' }) });
      return;
    }
    await route.continue();
  });
  await kp.goto(base + '/');
  await kp.waitForSelector('#key-dialog[open]');
  await kp.fill('#key-input', 'test-key');
  await kp.click('#key-ok');
  await kp.waitForSelector('#jobs-table:not([hidden])');
  assert.equal(await kp.evaluate(() => sessionStorage.getItem('tsnemap.apiKey')), 'test-key');
  // The job view again, with WebGL asked for by name (a browser that would
  // render WebGL in software gives the page canvas 2D by default).
  await kp.goto(base + '/?renderer=webgl#/jobs/' + id);
  const ks = await until('the keyed job view', async () => { const s = await state(kp); return s.resultLoaded && s.thumbnailsDrawn === loaded ? s : null; });
  assert.equal(ks.renderer, 'webgl2');
  await shot(kp, 'finished-map-webgl', { clip: await kp.locator('.map-stage').boundingBox() });
  assert.ok(seenAuth.filter((a) => a === 'Bearer test-key').length >= 3, 'later requests carry the key');
  await keyed.close();

  stepOf('a map without thumbnails: colour and search draw dots');
  const bare = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const bp0 = await bare.newPage();
  watch(bp0);
  await bp0.route('**/v1/jobs/' + id, async (route) => {
    const res = await route.fetch();
    const job = await res.json();
    delete job.links.atlas; // as for a job whose thumbnails were not kept
    await route.fulfill({ response: res, json: job });
  });
  await bp0.goto(base + '/#/jobs/' + id + '?colour=style&q=sunset');
  const bs = await until('the bare map', async () => { const s = await state(bp0); return s.resultLoaded && s.pointsDrawn > 0 ? s : null; });
  assert.equal(bs.atlasCells, 0);
  assert.equal(bs.thumbnailsDrawn, 0);
  assert.equal(bs.colourBy, 'style');
  assert.equal(bs.matches, 50);
  await shot(bp0, 'no-thumbnails', { clip: await bp0.locator('.map-stage').boundingBox() });
  await bare.close();

  stepOf(`frame time: panning ${benchPoints} points`);
  for (const renderer of ['webgl', '2d']) {
    const bp = await ctx.newPage();
    watch(bp);
    await bp.goto(base + '/?renderer=' + renderer);
    await bp.evaluate((n) => window.tsnemap.loadSynthetic(n), benchPoints);
    for (const mode of ['circle', 'sweep', 'zoom']) {
      const r = await bp.evaluate((mode) => window.tsnemap.bench(300, mode), mode);
      assert.equal(r.thumbnailsDrawn, benchPoints, 'every synthetic point is drawn as a thumbnail');
      log('FRAMETIME', JSON.stringify({ points: benchPoints, viewport: '1280x900', ...r }));
    }
    await shot(bp, `synthetic-${benchPoints}-${renderer === '2d' ? 'canvas2d' : 'webgl2'}`);
    // Coloured by a column, zoomed out, thumbnails are squares of their
    // colour: the picture (drawn on the CPU by canvas 2D and by a WebGL in
    // software) has the top row's legend colour at its centre, also with a
    // search dimming the rest.
    await bp.selectOption('#colour-by', 'style');
    for (const q of ['', 'rings']) {
      await bp.fill('#search', q);
      const px = await bp.evaluate(() => new Promise((res) => {
        const m = window.tsnemap.map;
        m.request();
        requestAnimationFrame(() => {
          const list = m.drawList(), r = list[list.length - 1], p = m.screenOf(r);
          const x = Math.round(p.x * m.dpr), y = Math.round(p.y * m.dpr);
          const gl = m.renderer.gl, out = new Uint8Array(4);
          if (gl) gl.readPixels(x, m.canvas.height - 1 - y, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, out);
          else out.set(m.canvas.getContext('2d').getImageData(x, y, 1, 1).data);
          const style = ['stripes', 'rings', 'checker', 'sunset', 'dots', 'diagonal', 'waves', 'grid', 'spots', 'cross', 'fan', 'noise'][r % 12];
          const item = document.querySelector(`#legend .legend-item[data-value="${style}"]`) || document.querySelector('#legend .legend-item[data-other="true"]');
          const want = getComputedStyle(item.querySelector('.swatch')).backgroundColor.match(/\d+/g).map(Number);
          res({ row: r, style, got: [...out.slice(0, 3)], want, cpu: window.tsnemap.state.drawnOnCPU });
        });
      }));
      log('top row colour', renderer, q || '(no search)', JSON.stringify(px));
      if (q) assert.equal(px.style, q, 'a match is drawn on top of the dimmed rows');
      for (let k = 0; k < 3; k++) assert.ok(Math.abs(px.got[k] - px.want[k]) <= 6, `${renderer}: the top row's centre has its colour: ${JSON.stringify(px)}`);
      if (renderer === '2d') assert.ok(px.cpu, 'canvas 2D draws 10,000 small thumbnails on the CPU');
    }
    await bp.close();
  }

  assert.deepEqual(pageErrors, [], 'no uncaught errors in the page');
  log('browser test: ok');
} catch (e) {
  console.error(`FAILED at "${step}": ${e.stack || e}`);
  if (pageErrors.length) console.error('page errors:', pageErrors);
  process.exitCode = 1;
} finally {
  await browser.close();
}

/** Even–odd point-in-polygon, written here again so the test checks the page. */
function inside(poly, x, y) {
  let c = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    const [xi, yi] = poly[i], [xj, yj] = poly[j];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) c = !c;
  }
  return c;
}

/** Reads a CSV or TSV the page saved (quotes as RFC 4180). */
function parseTable(text, delim) {
  const rows = [];
  let row = [], f = '', q = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (q) {
      if (ch === '"' && text[i + 1] === '"') { f += '"'; i++; } else if (ch === '"') q = false; else f += ch;
    } else if (ch === '"') q = true;
    else if (ch === delim) { row.push(f); f = ''; } else if (ch === '\n') { row.push(f); rows.push(row); row = []; f = ''; } else f += ch;
  }
  return rows;
}

/**
 * The exploring tools, as a curator uses them on the finished demo map:
 * colour by a column and read the legend, search with and without accents,
 * filter a range, lasso a region and download its rows, click a hotspot
 * label, toggle the grid, and reload a copied link.
 */
async function explore(page, id, result) {
  const pts = result.points;
  const styleCount = (st) => pts.filter((p) => p.fields.style === st).length;

  stepOf('colour by a categorical column: the legend counts, a click hides a category');
  await page.focus('#map');
  await page.keyboard.press('0');
  await page.selectOption('#colour-by', 'style');
  await page.waitForSelector('#legend:not([hidden]) .legend-item');
  const legend = await page.$$eval('#legend .legend-item', (bs) => bs.map((b) => [b.querySelector('.legend-label').textContent, Number(b.querySelector('.legend-count').textContent)]));
  for (const [label, count] of legend) assert.equal(count, styleCount(label), `legend: ${label} ${count}`);
  assert.equal(legend.reduce((s, [, c]) => s + c, 0), pts.length, 'the legend counts every row');
  assert.equal(legend[0][1], 50);
  await page.click('#legend .legend-item[data-value="rings"]');
  await until('rings hidden', async () => (await state(page)).shown === pts.length - 50);
  assert.equal(await page.getAttribute('#legend .legend-item[data-value="rings"]', 'aria-pressed'), 'false');
  assert.ok((await page.evaluate(() => window.tsnemap.drawOrder())).every((r) => pts[r].fields.style !== 'rings'), 'no ring is drawn');
  await shot(page, 'colour-by-style', { clip: await page.locator('#job-view').boundingBox() });
  await page.click('#legend .legend-item[data-value="rings"]');
  await until('rings shown again', async () => (await state(page)).shown === pts.length);

  stepOf('colour by a numeric column (years): a ramp and its range');
  await page.selectOption('#colour-by', 'year');
  const years = pts.map((p) => Number(p.fields.year));
  await until('the numeric legend', async () => (await page.$$eval('#legend .legend-range', (e) => e.map((x) => x.textContent))).join('–') === `${Math.min(...years)}–${Math.max(...years)}`);
  assert.equal(await page.locator('#legend .ramp').count(), 1);
  await shot(page, 'colour-by-year', { clip: await page.locator('.map-area').boundingBox() });

  stepOf('search: case- and accent-insensitive, with a match count');
  for (const [q, n] of [['étude RINGS', 50], ['etude rings', 50], ['ÉTUDE', 300], ['Etude sunset n° 7', 1], ['no such thing', 0]]) {
    await page.fill('#search', q);
    await until(`"${q}" to match ${n}`, async () => (await state(page)).matches === n);
    assert.equal(await page.textContent('#search-count'), `${n} of ${pts.length} match`);
    if (q === 'etude rings') await shot(page, 'search', { clip: await page.locator('.map-area').boundingBox() });
  }
  await page.fill('#search', '');
  await until('no search', async () => (await page.textContent('#search-count')) === '');

  stepOf('filter a range of years');
  await page.selectOption('#filter-column', 'year');
  await page.fill('.filter[data-column="year"] .filter-min', '1900');
  await page.fill('.filter[data-column="year"] .filter-max', '1950');
  const inRange = pts.filter((p) => Number(p.fields.year) >= 1900 && Number(p.fields.year) <= 1950).length;
  await until(`the filter to show ${inRange}`, async () => (await state(page)).shown === inRange);
  const drawn = await page.evaluate(() => window.tsnemap.drawOrder());
  assert.ok(drawn.every((r) => pts[r].fields.year >= '1900' && pts[r].fields.year <= '1950'), 'only rows in range are drawn');
  await shot(page, 'filter-range', { clip: await page.locator('#job-view').boundingBox() });

  stepOf('lasso a region: the selection lists its rows, which download as CSV and TSV');
  await page.click('#tool-lasso');
  const mb = await page.locator('#map').boundingBox();
  const cx = mb.x + mb.width / 2, cy = mb.y + mb.height / 2, R = Math.min(mb.width, mb.height) * 0.3;
  const poly = [];
  for (let k = 0; k < 12; k++) poly.push([cx + R * Math.cos((k * Math.PI) / 6), cy + 0.8 * R * Math.sin((k * Math.PI) / 6)]);
  const want = [];
  for (const r of drawn) {
    const p = await page.evaluate((row) => window.tsnemap.pagePointOf(row), r);
    if (p && inside(poly, p.x, p.y)) want.push(r);
  }
  want.sort((a, b) => a - b);
  assert.ok(want.length > 0, 'the lasso holds some images');
  await page.mouse.move(...poly[0]);
  await page.mouse.down();
  for (const p of [...poly.slice(1), poly[0]]) await page.mouse.move(...p, { steps: 3 });
  await shot(page, 'lasso-drawing', { clip: await page.locator('.map-area').boundingBox() });
  await page.mouse.up();
  const selected = await until('the lasso selection', async () => { const s = await state(page); return s.selection.length ? s.selection : null; });
  assert.deepEqual(selected, want, 'the selection is the rows shown inside the lasso');
  await page.waitForSelector('#selection:not([hidden])');
  assert.equal(await page.locator('#selection-list li[data-row]').count(), Math.min(want.length, 120));
  assert.match(await page.textContent('#selection-count'), new RegExp(`\\(${want.length} image`));
  await shot(page, 'selection', { fullPage: true });
  for (const [button, delim] of [['#sel-csv', ','], ['#sel-tsv', '\t']]) {
    const [dl] = await Promise.all([page.waitForEvent('download'), page.click(button)]);
    const path = join(shots, dl.suggestedFilename());
    await dl.saveAs(path);
    const rows = parseTable(readFileSync(path, 'utf8'), delim);
    assert.deepEqual(rows[0], ['id', 'title', 'style', 'year', 'hotspot', 'x', 'y'], `${button}: header`);
    assert.equal(rows.length - 1, want.length, `${button}: one line per selected row`);
    rows.slice(1).forEach((f, k) => {
      const p = pts[want[k]];
      assert.deepEqual(f.slice(0, 4), [p.fields.id, p.fields.title, p.fields.style, p.fields.year]);
      assert.equal(f[4], p.cluster == null ? '' : String(p.cluster));
      assert.equal(Number(f[5]), p.x);
      assert.equal(Number(f[6]), p.y);
    });
  }
  await page.click('#tool-pan');

  stepOf('hotspot labels show sizes; a click flies there');
  assert.ok(result.hotspots.length >= 2, `the demo's styles make hotspots: ${result.hotspots.length}`);
  const labels = await page.$$eval('.hotspot-label', (ls) => ls.map((l) => [Number(l.dataset.hotspot), l.textContent]));
  assert.deepEqual(labels, result.hotspots.map((h) => [h.id, `${h.id} · ${h.size}`]));
  const h = result.hotspots[result.hotspots.length - 1];
  const before = (await state(page)).view;
  await page.click(`.hotspot-label[data-hotspot="${h.id}"]`);
  const flown = await until('the flight to the hotspot', async () => {
    const v = (await state(page)).view;
    return Math.abs(v.cx - h.x) * v.scale < 1 && Math.abs(v.cy - h.y) * v.scale < 1 ? v : null;
  }, 10000);
  assert.ok(flown.scale > before.scale, 'it zooms in on the hotspot');
  await shot(page, 'hotspot', { clip: await page.locator('.map-area').boundingBox() });

  stepOf('the grid toggle: every image in its own cell, in the server\'s order');
  await page.click('#grid-toggle');
  await until('the grid layout', async () => (await state(page)).layout === 'grid');
  const pos = await page.evaluate(() => window.tsnemap.positions());
  const cells = new Set();
  for (const [r, x, y] of pos) {
    const p = pts[r];
    assert.ok(p.grid_x != null, `row ${r} has a grid cell`);
    cells.add(p.grid_x + ',' + p.grid_y);
  }
  assert.equal(cells.size, pos.length, 'each cell at most once');
  const [r0, x0, y0] = pos[0];
  const far = pos.find(([r]) => pts[r].grid_x !== pts[r0].grid_x);
  const cell = (far[1] - x0) / (pts[far[0]].grid_x - pts[r0].grid_x);
  for (const [r, x, y] of pos) {
    assert.ok(Math.abs(x - x0 - cell * (pts[r].grid_x - pts[r0].grid_x)) < 1e-3 * Math.abs(cell), `row ${r} sits in its column`);
    assert.ok(Math.abs(y - y0 - cell * (pts[r].grid_y - pts[r0].grid_y)) < 1e-3 * Math.abs(cell), `row ${r} sits in its row`);
  }
  await page.focus('#map');
  await page.keyboard.press('0');
  await until('the grid drawn', async () => (await state(page)).frames > 0);
  await shot(page, 'grid', { clip: await page.locator('.map-area').boundingBox() });

  stepOf('copy a link: it reopens the same view');
  await page.fill('#search', 'étude');
  await page.click('#sel-link');
  await until('the link to be written', async () => (await page.inputValue('#share-link')).includes('sel='));
  const link = await page.inputValue('#share-link');
  assert.ok(link.includes('/#/jobs/' + id + '?'), link);
  const s0 = await state(page);
  const again = await page.context().newPage();
  watch(again);
  await again.goto(link);
  const s1 = await until('the linked view', async () => { const s = await state(again); return s.resultLoaded && s.layout === 'grid' && s.frames > 0 ? s : null; });
  for (const k of ['colourBy', 'search', 'filters', 'selection', 'shown', 'matches', 'layout']) assert.deepEqual(s1[k], s0[k], `the link keeps ${k}`);
  for (const k of ['cx', 'cy', 'scale']) assert.ok(Math.abs(s1.view[k] - s0.view[k]) <= 1e-5 * Math.max(1, Math.abs(s0.view[k])), `the link keeps the view's ${k}: ${s1.view[k]} vs ${s0.view[k]}`);
  assert.equal(await again.inputValue('.filter[data-column="year"] .filter-min'), '1900');
  await shot(again, 'reloaded-link', { fullPage: true });
  await again.close();
  await page.fill('#search', '');
}
