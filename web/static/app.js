// tsnemap's page: the form, the list of jobs, and a job's live view and
// map. Routes are URL fragments: #/ (home) and #/jobs/ID.
import { APIError, apiKey, download, fetchBitmap, json, readEvents, request, setAPIKey, setKeyPrompt } from './api.js';
import { MapView, benchPan, syntheticMap } from './map.js';

const $ = (id) => document.getElementById(id);
const config = JSON.parse($('config').textContent || '{}');

// Job error codes in words (the message from the server follows).
const CODE_WORDS = {
  dataset_unreachable: 'The table could not be downloaded.',
  dataset_invalid: 'The table could not be read.',
  no_images: 'Too few images could be loaded to make a map.',
  perplexity_too_large: 'The perplexity is too large for the number of images that loaded.',
  timeout: 'The job ran out of time.',
  backend_unavailable: 'The compute backend asked for is not available.',
  internal: 'The server failed while running the job.',
};
const STAGE_WORDS = {
  queued: 'waiting for a worker', fetching_dataset: 'fetching the table', loading_images: 'loading images',
  reducing: 'reducing (PCA)', computing_affinities: 'finding neighbours', optimizing: 'optimising the map',
  writing_result: 'writing the result', finished: 'finished',
};

// ---- state, exposed for tests and benchmarks as window.tsnemap ----
const state = {
  route: 'home',
  job: null,
  result: null, // the JSON result once the job succeeded
  failures: [],
  embeddingEvents: 0,
  streamConnected: false,
};

const map = new MapView($('map'), $('map-overlay'), {
  renderer: new URLSearchParams(location.search).get('renderer') || 'auto', // ?renderer=webgl|2d, for comparisons
  onHover: (row) => { showDetails(row >= 0 ? row : map.selected); },
  onSelect: (row) => { showDetails(row); },
  onOpen: (row) => {
    const c = map.cell(row);
    if (c?.url) window.open(c.url, '_blank', 'noopener');
  },
});

window.tsnemap = {
  get state() {
    return {
      route: state.route,
      jobId: state.job?.id ?? null,
      status: state.job?.status ?? null,
      stage: state.job?.stage ?? null,
      progress: state.job?.progress ?? null,
      embeddingEvents: state.embeddingEvents,
      rows: map.n,
      pointsPlaced: map.order.length,
      atlasCells: map.atlas ? map.atlas.rows.length : 0,
      pointsDrawn: map.stats.pointsDrawn,
      thumbnailsDrawn: map.stats.thumbnailsDrawn,
      frames: map.stats.frames,
      renderer: map.renderer.kind,
      view: { ...map.view },
      thumbSide: map.thumbSide(),
      hoveredRow: map.hovered,
      selectedRow: map.selected,
      failures: state.failures.length,
      resultLoaded: !!state.result,
    };
  },
  /** Where a row is drawn, in page (CSS) pixels; null if nowhere. */
  pagePointOf(row) {
    const p = map.screenOf(row);
    if (!p) return null;
    const r = map.canvas.getBoundingClientRect();
    return { x: r.left + p.x, y: r.top + p.y };
  },
  /** Rows in drawing order (the last is on top). */
  drawOrder() { return [...map.order]; },
  loadSynthetic: async (n) => { showJobView(); closeStream(); state.job = null; await syntheticMap(map, n); updateMapEmpty(); },
  bench: (frames, mode) => benchPan(map, frames, mode),
  map,
};

// ---- the API key dialog ----
const keyDialog = $('key-dialog');
setKeyPrompt((reason) => new Promise((resolve) => {
  $('key-why').textContent = reason;
  $('key-input').value = '';
  keyDialog.returnValue = '';
  keyDialog.addEventListener('close', () => {
    const v = $('key-input').value.trim();
    resolve(keyDialog.returnValue === 'ok' && v ? v : null);
    $('key-button').hidden = !apiKey() && !(keyDialog.returnValue === 'ok' && v);
  }, { once: true });
  keyDialog.showModal();
  $('key-input').focus();
}));
$('key-button').hidden = !apiKey();
$('key-button').addEventListener('click', () => { setAPIKey(''); $('key-button').hidden = true; route(); });

function banner(msg) {
  const b = $('banner');
  b.textContent = msg || '';
  b.hidden = !msg;
}

// ---- the form ----
const form = $('submit-form');
if (config.demo) {
  $('demo-button').hidden = false;
  $('demo-button').addEventListener('click', () => {
    $('f-dataset_url').value = config.demo.dataset_url;
    $('f-image_url_template').value = config.demo.image_url_template;
    $('f-image_url_column').value = '';
    if (config.demo.perplexity) $('f-perplexity').value = config.demo.perplexity;
    $('f-dataset_url').focus();
  });
}

/** The form as a JobRequest: empty fields are left out (the server's defaults apply). */
function formRequest() {
  const body = {};
  for (const el of form.querySelectorAll('input[name], select[name]')) {
    const raw = el.value.trim();
    if (raw === '') continue;
    let v = raw;
    switch (el.dataset.kind) {
      case 'int': case 'number': {
        const x = Number(raw);
        v = Number.isFinite(x) ? x : raw; // a non-number goes as typed: the server names the field
        break;
      }
      case 'auto-number': {
        const x = Number(raw);
        v = raw === 'auto' || !Number.isFinite(x) ? raw : x;
        break;
      }
    }
    const path = el.name.split('.');
    let o = body;
    for (const p of path.slice(0, -1)) o = o[p] ??= {};
    o[path[path.length - 1]] = v;
  }
  return body;
}

function clearFieldErrors() {
  for (const p of form.querySelectorAll('.field-error')) { p.textContent = ''; p.hidden = true; }
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
}

/** Puts each problem's message next to its field; the rest above the form. */
function showFieldErrors(err) {
  const rest = [];
  let first = null;
  for (const [field, msg] of err.fieldErrors()) {
    const input = document.getElementById('f-' + field);
    const p = document.getElementById('e-' + field);
    if (input && p) {
      p.textContent = msg;
      p.hidden = false;
      input.setAttribute('aria-invalid', 'true');
      if (input.closest('details')) input.closest('details').open = true;
      first ??= input;
    } else {
      rest.push(field === 'body' ? msg : field + ': ' + msg);
    }
  }
  const box = $('form-error');
  if (rest.length || !first) {
    box.textContent = rest.length ? rest.join(' ') : err.message;
    box.hidden = false;
  }
  (first || box).focus?.();
}

form.addEventListener('submit', async (e) => {
  e.preventDefault();
  clearFieldErrors();
  const btn = $('submit-button');
  btn.disabled = true;
  try {
    const job = await json('/v1/jobs', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(formRequest()) });
    location.hash = '#/jobs/' + job.id;
  } catch (err) {
    if (err instanceof APIError) showFieldErrors(err); else throw err;
  } finally {
    btn.disabled = false;
  }
});

// ---- the list ----
let listTimer = 0;

let listPages = 1; // pages of 50 shown; "Show older jobs" adds one

async function refreshList() {
  clearTimeout(listTimer);
  if (state.route !== 'home') return;
  try {
    const jobs = [];
    let token = null;
    for (let p = 0; p < listPages; p++) {
      const page = await json('/v1/jobs?limit=50' + (token ? '&page_token=' + encodeURIComponent(token) : ''));
      jobs.push(...page.jobs);
      token = page.next_page_token;
      if (!token) break;
    }
    renderList(jobs);
    $('more-jobs').hidden = !token;
    banner('');
  } catch (err) {
    banner('The list of jobs could not be loaded: ' + err.message);
  }
  if (state.route === 'home') listTimer = setTimeout(refreshList, 2000);
}

$('more-jobs').addEventListener('click', () => { listPages++; refreshList(); });

function renderList(jobs) {
  $('jobs-empty').hidden = jobs.length > 0;
  $('jobs-table').hidden = jobs.length === 0;
  const body = $('jobs-body');
  body.replaceChildren(...jobs.map((j) => {
    const tr = document.createElement('tr');
    const a = document.createElement('a');
    a.href = '#/jobs/' + j.id;
    a.textContent = j.id;
    const cells = [a, statusSpan(j.status), STAGE_WORDS[j.stage] ?? j.stage, progressWords(j), seconds(j.progress.elapsed_seconds),
      new Date(j.created_at).toLocaleString()];
    for (const c of cells) {
      const td = document.createElement('td');
      td.append(c);
      tr.append(td);
    }
    tr.children[3].className = tr.children[4].className = 'num';
    return tr;
  }));
}

function statusSpan(s) {
  const sp = document.createElement('span');
  sp.className = 'st-' + s;
  sp.textContent = s;
  return sp;
}

function progressWords(j) {
  const p = j.progress;
  if (j.stage === 'loading_images' || (p.images_total && !p.iteration && j.status === 'running')) {
    return `${p.images_loaded} / ${p.images_total} images` + (p.images_failed ? `, ${p.images_failed} failed` : '');
  }
  if (p.iterations) return `${p.iteration} / ${p.iterations} iterations`;
  return p.images_total ? `${p.images_loaded} images` : '–';
}

function seconds(s) {
  if (!s) return '–';
  return s < 60 ? s.toFixed(1) + ' s' : Math.floor(s / 60) + ' min ' + Math.round(s % 60) + ' s';
}

// ---- the job view ----
let stream = null; // AbortController of the event stream
let atlasLoading = false;
let failuresAt = -1;
let failuresFetched = -Infinity;

function closeStream() {
  stream?.abort();
  stream = null;
}

function showJobView() {
  state.route = 'job';
  $('home-view').hidden = true;
  $('job-view').hidden = false;
  map.resize(); // it was hidden (no size): measure it now, not at the next resize notification
}

async function openJob(id) {
  showJobView();
  closeStream();
  state.job = null;
  state.result = null;
  state.failures = [];
  state.embeddingEvents = 0;
  atlasLoading = false;
  failuresAt = -1;
  map.setRows(0);
  map.atlas = null;
  map.version++;
  map.autoFit = true;
  $('job-id').textContent = id;
  $('job-error').hidden = true;
  // Nothing of the job shown before stays on screen while this one loads.
  $('job-status').textContent = 'loading…';
  for (const t of ['t-images', 't-iter', 't-kl', 't-elapsed']) $(t).textContent = '–';
  for (const p of ['p-images', 'p-iter']) $(p).value = 0;
  $('cancel-button').hidden = $('delete-button').hidden = true;
  $('downloads-list').hidden = true;
  $('downloads-wait').hidden = false;
  renderFailures();
  showDetails(-1);
  updateMapEmpty();
  let job;
  try {
    job = await json('/v1/jobs/' + encodeURIComponent(id));
  } catch (err) {
    $('job-status').textContent = '';
    showJobError(err.status === 404 ? `There is no job ${id}: it may have been deleted.` : err.message);
    return;
  }
  onJob(job);
  if (!terminal(job.status)) follow(id);
}

function terminal(s) { return s === 'succeeded' || s === 'failed' || s === 'canceled'; }

/** Follows the job's events; reconnects (with a growing pause) if the stream breaks. */
async function follow(id) {
  const ctl = new AbortController();
  stream = ctl;
  let pause = 500;
  while (!ctl.signal.aborted) {
    try {
      state.streamConnected = true;
      const done = await readEvents(`/v1/jobs/${encodeURIComponent(id)}/events?embedding=1`, (name, data) => {
        if (ctl.signal.aborted) return;
        if (name === 'progress' || name === 'done') onJob(JSON.parse(data));
        else if (name === 'embedding') onEmbedding(JSON.parse(data));
      }, ctl.signal);
      if (done) return;
      pause = 500;
    } catch (err) {
      if (ctl.signal.aborted) return;
      if (err instanceof APIError && err.status === 404) { showJobError('The job was deleted.'); return; }
      banner('Lost the live view (' + err.message + '); reconnecting…');
    } finally {
      state.streamConnected = false;
    }
    await new Promise((r) => setTimeout(r, pause));
    pause = Math.min(pause * 2, 5000);
    // Catch up in case the job ended while we were away.
    try {
      const j = await json('/v1/jobs/' + encodeURIComponent(id));
      onJob(j);
      banner('');
      if (terminal(j.status)) return;
    } catch { /* try again */ }
  }
}

function onJob(job) {
  if (state.route !== 'job' || $('job-id').textContent !== job.id) return;
  const before = state.job;
  state.job = job;
  const p = job.progress;
  const words = STAGE_WORDS[job.stage] ?? job.stage;
  $('job-status').replaceChildren(statusSpan(job.status), document.createTextNode(job.status === 'running' ? ' — ' + words : ''));
  const total = Math.max(p.images_total, 1);
  $('p-images').max = total;
  $('p-images').value = p.images_loaded + p.images_failed;
  $('t-images').textContent = p.images_total ? `${p.images_loaded} of ${p.images_total}` + (p.images_failed ? ` (${p.images_failed} failed)` : '') : '–';
  $('p-iter').max = Math.max(p.iterations, 1);
  $('p-iter').value = p.iteration;
  $('t-iter').textContent = p.iterations ? `${p.iteration} of ${p.iterations}` : '–';
  $('t-kl').textContent = p.kl_divergence == null ? '–' : p.kl_divergence.toFixed(3);
  $('t-elapsed').textContent = seconds(p.elapsed_seconds);
  $('cancel-button').hidden = terminal(job.status);
  $('delete-button').hidden = !terminal(job.status);
  if (job.error) showJobError((CODE_WORDS[job.error.code] ?? job.error.code) + ' ' + job.error.message);
  else if (job.status === 'canceled') showJobError('The job was canceled.');
  if (map.n < p.images_total) map.setRows(p.images_total);
  // The failures so far: fetched when their count changes, at most once a
  // second while images load (the server writes them about as often).
  if (p.images_failed !== failuresAt && (p.images_failed > 0 || terminal(job.status)) &&
      (terminal(job.status) || performance.now() - failuresFetched > 1000)) loadFailures(job.id, p.images_failed);
  if (job.links.atlas && !map.atlas && !atlasLoading) loadAtlas(job);
  const ready = job.status === 'succeeded';
  $('downloads-list').hidden = !ready;
  $('downloads-wait').hidden = ready;
  $('downloads-wait').textContent = terminal(job.status) && !ready ? 'This job has no result to download.' : 'The table with x, y is ready when the job has succeeded.';
  if (ready) {
    setDownloads(job.id);
    if (!state.result && before?.status !== 'succeeded') loadResult(job.id);
  }
  updateMapEmpty();
}

function showJobError(msg) {
  $('job-error').textContent = msg;
  $('job-error').hidden = false;
}

function onEmbedding(e) {
  state.embeddingEvents++;
  map.setPositions(e.rows ?? e.coordinates.map((_, i) => i).slice(0, e.coordinates.length / e.dimensions), e.coordinates, e.dimensions, true);
  updateMapEmpty();
}

async function loadAtlas(job) {
  atlasLoading = true;
  try {
    const index = await json(job.links.atlas);
    const sheets = await Promise.all(index.sheets.map((s) => fetchBitmap(s.url)));
    if (state.job?.id !== job.id) return;
    map.setAtlas(index, sheets);
    updateMapEmpty();
  } catch (err) {
    atlasLoading = false; // try again on the next update
    if (!(err instanceof APIError && err.status === 409)) banner('The thumbnails could not be loaded: ' + err.message);
  }
}

async function loadResult(id) {
  try {
    const res = await json(`/v1/jobs/${encodeURIComponent(id)}/result?format=json`);
    if (state.job?.id !== id) return;
    state.result = res;
    const rows = [], coords = [];
    res.points.forEach((p) => { if (p.x != null && p.y != null) { rows.push(p.row); coords.push(p.x, p.y); } });
    if (map.n < res.points.length) map.setRows(res.points.length);
    map.setPositions(rows, coords, 2, state.embeddingEvents > 0);
    state.failures = res.failures;
    failuresAt = res.failures.length;
    renderFailures();
    showDetails(map.hovered >= 0 ? map.hovered : map.selected);
    updateMapEmpty();
  } catch (err) {
    banner('The result could not be loaded: ' + err.message);
  }
}

async function loadFailures(id, count) {
  failuresAt = count;
  failuresFetched = performance.now();
  try {
    const { failures } = await json(`/v1/jobs/${encodeURIComponent(id)}/failures`);
    if (state.job?.id !== id) return;
    state.failures = failures;
    renderFailures();
  } catch { failuresAt = -1; }
}

function renderFailures() {
  const f = state.failures;
  $('failures-count').textContent = `(${f.length})`;
  $('failures-none').hidden = f.length > 0;
  $('failures-table').hidden = f.length === 0;
  $('failures-body').replaceChildren(...f.map((x) => {
    const tr = document.createElement('tr');
    for (const v of [x.row, x.id, x.url, x.error]) {
      const td = document.createElement('td');
      td.textContent = v;
      tr.append(td);
    }
    return tr;
  }));
}

function updateMapEmpty() {
  const e = $('map-empty');
  const j = state.job;
  if (map.order.length) { e.hidden = true; } else {
    e.hidden = false;
    e.textContent = !j ? 'The map appears here once the images have loaded.' :
      j.status === 'failed' || j.status === 'canceled' ? 'No map: the job ended before it was made.' :
        j.status === 'succeeded' ? 'Loading the map…' :
        j.stage === 'loading_images' || j.stage === 'fetching_dataset' || j.stage === 'queued' ? 'The map appears here once the images have loaded.' :
          'The first positions arrive in a moment…';
  }
  const s = window.tsnemap.state;
  $('map-count').textContent = map.order.length ? `${s.pointsPlaced} points, ${s.atlasCells} thumbnails` : '';
}

function showDetails(row) {
  const box = $('details');
  if (row == null || row < 0) {
    box.replaceChildren(hint('Point at an image to see its row; click it to open the full image.'));
    return;
  }
  const parts = [];
  const c = map.cell(row);
  if (c?.bitmap) {
    const cv = document.createElement('canvas');
    cv.width = cv.height = c.size;
    cv.getContext('2d').drawImage(c.bitmap, c.x, c.y, c.size, c.size, 0, 0, c.size, c.size);
    cv.setAttribute('role', 'img');
    cv.setAttribute('aria-label', 'Thumbnail of row ' + row);
    parts.push(cv);
  }
  const dl = document.createElement('dl');
  dl.id = 'details-fields';
  const add = (k, v) => {
    const dt = document.createElement('dt'); dt.textContent = k;
    const dd = document.createElement('dd'); dd.textContent = v;
    dl.append(dt, dd);
  };
  add('row', String(row));
  const pt = state.result?.points[row];
  if (pt) {
    for (const col of state.result.columns) add(col, pt.fields[col] ?? '');
    if (pt.x != null) add('x, y', `${pt.x.toFixed(3)}, ${pt.y.toFixed(3)}`);
  } else if (c) {
    add('id', c.id);
  }
  parts.push(dl);
  if (c?.url) {
    const a = document.createElement('a');
    a.href = c.url;
    a.target = '_blank';
    a.rel = 'noopener';
    a.textContent = 'Open the full image';
    parts.push(a);
  }
  box.replaceChildren(...parts);
  box.dataset.row = String(row);
}

function hint(text) {
  const p = document.createElement('p');
  p.className = 'hint';
  p.textContent = text;
  return p;
}

function setDownloads(id) {
  const base = '/v1/jobs/' + encodeURIComponent(id);
  const links = { tsv: [base + '/result?format=tsv', `tsnemap-${id}.tab`], csv: [base + '/result?format=csv', `tsnemap-${id}.csv`],
    json: [base + '/result?format=json', `tsnemap-${id}.json`], png: [base + '/map.png?width=1600&height=1200', `tsnemap-${id}.png`] };
  for (const [k, [href, name]] of Object.entries(links)) {
    const a = $('dl-' + k);
    a.href = href;
    a.download = name;
  }
}

// With an API key a plain link cannot authenticate: fetch and save instead.
$('downloads-list').addEventListener('click', (e) => {
  const a = e.target.closest('a[data-download]');
  if (!a || !apiKey()) return;
  e.preventDefault();
  download(a.getAttribute('href'), a.download).catch((err) => banner('The download failed: ' + err.message));
});

$('cancel-button').addEventListener('click', async () => {
  const id = state.job?.id;
  if (!id) return;
  $('cancel-button').disabled = true;
  try {
    const j = await json('/v1/jobs/' + encodeURIComponent(id), { method: 'DELETE' });
    if (j) onJob(j);
  } catch (err) {
    banner('The job could not be canceled: ' + err.message);
  } finally {
    $('cancel-button').disabled = false;
  }
});

$('delete-button').addEventListener('click', async () => {
  const id = state.job?.id;
  if (!id || !confirm(`Delete job ${id} and its result?`)) return;
  try {
    await request('/v1/jobs/' + encodeURIComponent(id), { method: 'DELETE' });
    location.hash = '#/';
  } catch (err) {
    banner('The job could not be deleted: ' + err.message);
  }
});

$('zoom-in').addEventListener('click', () => map.zoomAt(1.25));
$('zoom-out').addEventListener('click', () => map.zoomAt(0.8));
$('zoom-fit').addEventListener('click', () => map.fit());

// ---- routing ----
function route() {
  banner('');
  const m = location.hash.match(/^#\/jobs\/([0-9A-Za-z_-]{1,64})$/);
  if (m) { openJob(m[1]); return; }
  closeStream();
  state.route = 'home';
  state.job = null;
  $('job-view').hidden = true;
  $('home-view').hidden = false;
  refreshList();
}

window.addEventListener('hashchange', () => { route(); $('main').focus({ preventScroll: true }); });
route();
