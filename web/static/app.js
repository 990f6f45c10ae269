// tsnemap's page: the form, the list of jobs, and a job's live view and
// map. Routes are URL fragments: #/ (home) and #/jobs/ID.
import { APIError, apiKey, download, fetchBitmap, json, readEvents, request, setAPIKey, setKeyPrompt } from './api.js';
import { Explorer, Table, rampCSS } from './explore.js';
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
  layout: 'scatter', // or 'grid', when the result has a grid layout
  counts: { shown: 0, matches: 0 },
  pending: null, // URLSearchParams of a link: colour, search, filters, selection; applied with the first table
  pendingView: null, // and its layout and view, applied once the result's positions are there
  lastUpdateMs: 0, // time the last colour/search/filter change took to apply
  searchShown: '', // the search the map's styles were last computed for
  rehearsed: null, // the table whose changes were rehearsed (see rehearse)
};
const explorer = new Explorer();

const map = new MapView($('map'), $('map-overlay'), {
  renderer: new URLSearchParams(location.search).get('renderer') || 'auto', // ?renderer=webgl|2d, for comparisons
  onHover: (row) => { showDetails(row >= 0 ? row : map.selected); },
  onSelect: (row) => { showDetails(row); },
  onArea: (rows, additive) => { selectRows(rows, additive); },
  onView: () => scheduleURL(),
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
      arrived: map.stats.arrived ?? 0, // rows that arrived as an addition
      freshRows: map.fresh ? map.fresh.rows.length : 0, // still ringed
      atlasCells: map.atlas ? map.atlas.rows.length : 0,
      pointsDrawn: map.stats.pointsDrawn,
      thumbnailsDrawn: map.stats.thumbnailsDrawn,
      frames: map.stats.frames,
      renderer: map.renderer.kind,
      drawnOnCPU: !!map.renderer.lastCPU, // the last picture was drawn on the CPU (raster.js)
      view: { ...map.view },
      thumbSide: map.thumbSide(),
      hoveredRow: map.hovered,
      selectedRow: map.selected,
      failures: state.failures.length,
      resultLoaded: !!state.result,
      colourBy: explorer.colour,
      search: explorer.search,
      searchShown: state.searchShown, // the search the map shows (typing is applied once a frame)
      filters: [...explorer.filters.keys()],
      shown: state.counts.shown,
      matches: state.counts.matches,
      selection: explorer.selectedRows(),
      layout: state.layout,
      gridAvailable: !!gridOf(),
      hotspots: state.result?.hotspots?.length ?? 0,
      lastUpdateMs: state.lastUpdateMs,
    };
  },
  /** Where a world point is drawn, in page pixels. */
  pageOfWorld(x, y) {
    const v = map.view, r = map.canvas.getBoundingClientRect();
    return { x: r.left + (x - v.cx) * v.scale + map.width / 2, y: r.top + (v.cy - y) * v.scale + map.height / 2 };
  },
  /**
   * Times colour-by, search and filter changes made through the page's own
   * controls, each from the change to the end of the frame that shows it.
   */
  benchExplore: () => benchExplore(),
  /** Where a row is drawn, in page (CSS) pixels; null if nowhere. */
  pagePointOf(row) {
    const p = map.screenOf(row);
    if (!p) return null;
    const r = map.canvas.getBoundingClientRect();
    return { x: r.left + p.x, y: r.top + p.y };
  },
  /** Shown rows in drawing order (the last is on top). */
  drawOrder() { return [...map.drawList()]; },
  /** Target positions of the placed rows: [[row, x, y]]. */
  positions() { return map.order.map((r) => [r, map.toX[r], map.toY[r]]); },
  loadSynthetic: async (n) => {
    showJobView(); closeStream(); state.job = null; state.result = null;
    await syntheticMap(map, n);
    // A table to go with it: a categorical and a numeric column, and text.
    const styles = ['stripes', 'rings', 'checker', 'sunset', 'dots', 'diagonal', 'waves', 'grid', 'spots', 'cross', 'fan', 'noise'];
    setTable(new Table(['id', 'title', 'style', 'year'], n, (r, c) =>
      [`S${r}`, `Étude ${styles[r % 12]} n° ${r}`, styles[r % 12], String(1850 + ((r * 7919) % 120))][c]));
    updateMapEmpty();
  },
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
    if (el.dataset.kind === 'bool') {
      if (el.checked) body[el.name] = true;
      continue;
    }
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
  state.added = 0;
  atlasLoading = false;
  failuresAt = -1;
  map.setRows(0);
  map.atlas = null;
  map.version++;
  map.autoFit = true;
  map.tileWorld = 0;
  map.setLabels([]);
  state.layout = 'scatter';
  explorer.setTable(null);
  explorer.fromParams(state.pending ?? new URLSearchParams());
  renderExploreControls();
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
  if (!terminal(job.status) || following(job)) follow(id);
}

/** Whether the job follows its table: its stream goes on after done. */
function following(job) {
  return job?.status === 'succeeded' && job.request?.follow_interval_seconds > 0;
}

/** A followed table grew: the new rows arrive on the map, then the table, thumbnails and hotspots catch up. */
function onAdded(ev) {
  let top = map.n - 1;
  const rows = [], coords = [];
  for (const r of ev.rows) {
    top = Math.max(top, r.row);
    if (r.coords) { rows.push(r.row); coords.push(r.coords[0], r.coords[1]); }
  }
  map.grow(top + 1);
  map.arrive(rows, coords, 2, { x: map.view.cx, y: map.view.cy });
  state.added = (state.added ?? 0) + ev.rows.length;
  if (state.job) onJob(state.job);
  state.embeddingEvents++; // the reload below glides, not jumps
  if (state.job) { loadAtlas(state.job); loadResult(state.job.id); }
  updateMapEmpty();
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
        else if (name === 'added') onAdded(JSON.parse(data));
      }, ctl.signal, state.job?.request?.follow_interval_seconds > 0);
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
      if (terminal(j.status) && !following(j)) return;
    } catch (err) {
      if (err instanceof APIError && err.status === 404) { showJobError('The job was deleted.'); return; }
      /* else try again */
    }
  }
}

function onJob(job) {
  if (state.route !== 'job' || $('job-id').textContent !== job.id) return;
  const before = state.job;
  state.job = job;
  const p = job.progress;
  const words = STAGE_WORDS[job.stage] ?? job.stage;
  const note = job.status === 'running' ? ' — ' + words
    : following(job) ? ' — following its table' + (state.added ? `, ${state.added} rows added` : '') : '';
  $('job-status').replaceChildren(statusSpan(job.status), document.createTextNode(note));
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
  if (map.n < p.images_total) { map.setRows(p.images_total); restyle(); }
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
    if (!state.result) setTable(Table.fromAtlas(map.atlas, map.n));
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
    state.scatter = { rows, coords };
    const firstNew = await additionStart(state.job);
    if (state.job?.id !== id) return;
    if (firstNew >= 0 && !map.order.length) {
      // An addition: the base's rows where they were, the new ones arriving.
      const k = rows.findIndex((r) => r >= firstNew);
      const cut = k < 0 ? rows.length : k;
      map.setPositions(rows.slice(0, cut), coords.slice(0, 2 * cut), 2, false);
      map.arrive(rows.slice(cut), coords.slice(2 * cut), 2, { x: map.view.cx, y: map.view.cy });
    } else map.setPositions(rows, coords, 2, state.embeddingEvents > 0);
    setTable(tableOfResult(res));
    applyPendingView();
    renderHotspots();
    state.failures = res.failures;
    failuresAt = res.failures.length;
    renderFailures();
    showDetails(map.hovered >= 0 ? map.hovered : map.selected);
    updateMapEmpty();
  } catch (err) {
    banner('The result could not be loaded: ' + err.message);
  }
}

/** For an addition, the first row that is not its base's (-1 otherwise). */
async function additionStart(job) {
  const base = job?.request?.base_job_id;
  if (!base) return -1;
  try {
    const atlas = await json(`/v1/jobs/${encodeURIComponent(base)}/atlas`);
    return atlas.rows;
  } catch {
    return -1; // the base is gone: show the map as it is
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
    if (pt.cluster != null) add('hotspot', String(pt.cluster));
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
  const m = location.hash.match(/^#\/jobs\/([0-9A-Za-z_-]{1,64})(?:\?(.*))?$/);
  if (m) {
    state.pending = new URLSearchParams(m[2] || '');
    state.pendingView = state.pending;
    openJob(m[1]);
    return;
  }
  closeStream();
  state.route = 'home';
  state.job = null;
  $('job-view').hidden = true;
  $('home-view').hidden = false;
  refreshList();
}

window.addEventListener('hashchange', () => { route(); $('main').focus({ preventScroll: true }); });
route();

// ---- exploring: colour, search, filters, selection, hotspots, grid, URL ----

/** The result as a Table, with its hotspot as a column of its own. */
function tableOfResult(res) {
  const cols = [...res.columns];
  const hasHotspots = res.hotspots?.length > 0;
  const hotCol = hasHotspots && !cols.includes('hotspot') ? cols.push('hotspot') - 1 : -1;
  return new Table(cols, res.points.length, (r, c) => (c === hotCol ? (res.points[r].cluster != null ? String(res.points[r].cluster) : '') : res.points[r].fields[cols[c]]));
}

function setTable(t) {
  explorer.setTable(t);
  if (state.pending && t) { explorer.fromParams(state.pending); state.pending = null; }
  explorer.valid();
  renderExploreControls();
  restyle();
  rehearse(t);
}

/**
 * Once per table, while the page is idle after it arrives, rehearses the
 * changes people make first (colour by a category and by a number, a
 * search, a filter) on a second explorer and, where the map is drawn on
 * the CPU, draws each into a small picture nobody sees: V8 compiles the
 * loops over the rows (apply's, the drawing's) when they first run hot,
 * and at 100,000 rows the first change after loading ran them unoptimised
 * while the compiler competed for the same two cores. One step an idle
 * period, and only while no frame of the map is waiting (a step costs
 * 5–30 ms the first time), so panning is not held up.
 */
function rehearse(t) {
  if (!t || !t.n || state.rehearsed === t) return;
  state.rehearsed = t;
  const ex = new Explorer();
  ex.setTable(t);
  const n = map.n, colour = new Uint32Array(n), fade = new Uint8Array(n), shown = new Uint8Array(n);
  const cat = t.columns.find((c, i) => t.info[i].kind === 'categorical'), num = t.columns.find((c, i) => t.info[i].kind === 'numeric');
  const raster = map.renderer.raster && map.renderer.software !== false ? map.renderer.raster : null;
  const draw = (look) => { if (raster && map.atlas) raster.rehearse(map, map.thumbSide(), colour, fade, look); };
  const squares = { frame: 0, solid: true }, framed = { frame: 2, solid: false }, plain = { frame: 0, solid: false };
  const steps = [
    () => { ex.colour = cat || ''; ex.apply(n, colour, fade, shown); },
    () => draw(squares),
    () => draw(framed),
    () => { ex.colour = num || ''; ex.apply(n, colour, fade, shown); },
    () => draw(squares),
    () => { ex.colour = ''; ex.search = t.values[0][0].slice(0, 3); ex.apply(n, colour, fade, shown); },
    () => draw(plain),
    () => { ex.search = t.values[0][0].slice(0, 4) || 'x'; ex.apply(n, colour, fade, shown); }, // typed on
    () => { if (num) ex.filters.set(num, { min: t.info[t.col(num)].min, max: t.info[t.col(num)].max }); ex.apply(n, colour, fade, shown); },
  ];
  const step = (deadline) => {
    if (explorer.table !== t || map.n !== n) return; // another table came: its own rehearsal runs
    if (!map.frame && deadline.timeRemaining() >= 10) steps.shift()();
    if (steps.length) requestIdleCallback(step);
  };
  if (window.requestIdleCallback) requestIdleCallback(step);
}

/** Writes the explorer's state into the map's style arrays and redraws. */
function restyle() {
  const t0 = performance.now();
  if (map.before === restyle) map.before = null; // a typed search waiting for the frame: done here
  state.counts = explorer.apply(map.n, map.colour, map.fade, map.shown);
  state.searchShown = explorer.search;
  map.marked.fill(0);
  for (const r of explorer.selection) if (r < map.n) map.marked[r] = 1;
  map.restyle(!!explorer.colour);
  renderLegend();
  const q = explorer.search.trim();
  $('search-count').textContent = q ? `${state.counts.matches} of ${state.counts.shown} match` : '';
  renderSelection();
  scheduleURL();
  state.lastUpdateMs = performance.now() - t0;
}

function renderExploreControls() {
  const t = explorer.table;
  const cols = t ? t.columns : [];
  const fill = (sel, first, value) => {
    const opts = [new Option(first, '')];
    for (const c of cols) opts.push(new Option(c + (t.info[t.col(c)].kind === 'numeric' ? ' (numbers)' : ''), c));
    sel.replaceChildren(...opts);
    sel.value = value;
  };
  fill($('colour-by'), 'nothing', explorer.colour);
  fill($('filter-column'), 'add a filter on…', '');
  $('search').value = explorer.search;
  renderFilters();
}

function renderLegend() {
  const lg = explorer.legend();
  const box = $('legend');
  box.hidden = !lg;
  if (!lg) { box.replaceChildren(); return; }
  const title = document.createElement('span');
  title.className = 'legend-title';
  title.textContent = lg.column + ':';
  if (lg.kind === 'numeric') {
    const bar = document.createElement('span');
    bar.className = 'ramp';
    bar.style.backgroundImage = rampCSS();
    const lo = document.createElement('span'), hi = document.createElement('span');
    lo.className = hi.className = 'num legend-range';
    lo.textContent = fmt(lg.min); hi.textContent = fmt(lg.max);
    box.replaceChildren(title, lo, bar, hi);
    return;
  }
  box.replaceChildren(title, ...lg.items.map((it) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'legend-item';
    b.setAttribute('aria-pressed', String(!it.hidden));
    b.dataset.value = it.value ?? '';
    b.dataset.other = String(it.value == null);
    const sw = document.createElement('span');
    sw.className = 'swatch';
    sw.style.background = it.colour;
    const label = document.createElement('span');
    label.className = 'legend-label';
    label.textContent = it.label ?? (it.value === '' ? '(empty)' : it.value);
    const count = document.createElement('span');
    count.className = 'num legend-count';
    count.textContent = String(it.count);
    b.append(sw, label, count);
    b.title = (it.hidden ? 'Show ' : 'Hide ') + label.textContent;
    b.addEventListener('click', () => {
      const v = it.value;
      if (explorer.hiddenCats.has(v)) explorer.hiddenCats.delete(v); else explorer.hiddenCats.add(v);
      restyle();
      box.querySelector(`button[data-value="${CSS.escape(v ?? '')}"][data-other="${v == null}"]`)?.focus();
    });
    return b;
  }));
}

function fmt(v) {
  return Number.isInteger(v) ? String(v) : Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(4);
}

$('colour-by').addEventListener('change', (e) => { explorer.colour = e.target.value; explorer.hiddenCats.clear(); restyle(); });
// Typing is coalesced: each key only notes the text, and the map's next
// frame applies the latest once (keys that arrive while a frame is being
// drawn cost nothing), so a burst of keys costs one pass, not one a key.
$('search').addEventListener('input', (e) => { explorer.search = e.target.value; map.beforeNextFrame(restyle); });
$('filter-column').addEventListener('change', (e) => {
  const name = e.target.value;
  e.target.value = '';
  const t = explorer.table;
  if (!name || !t || explorer.filters.has(name)) return;
  const info = t.info[t.col(name)];
  explorer.filters.set(name, info.kind === 'numeric' ? { min: info.min, max: info.max } : { values: new Set(info.cats.map((c) => c.value)) });
  renderFilters();
  restyle();
  $('filters').querySelector(`[data-column="${CSS.escape(name)}"] input`)?.focus();
});

/** One editor per filter: a range for numbers, checkboxes for categories. */
function renderFilters() {
  const t = explorer.table;
  const box = $('filters');
  if (!t) { box.replaceChildren(); return; }
  box.replaceChildren(...[...explorer.filters].map(([name, f]) => {
    const div = document.createElement('div');
    div.className = 'filter';
    div.dataset.column = name;
    div.setAttribute('role', 'group');
    div.setAttribute('aria-label', 'Filter on ' + name);
    const title = document.createElement('strong');
    title.textContent = name;
    div.append(title);
    const info = t.info[t.col(name)];
    if (!f.values) {
      for (const [k, words] of [['min', 'from'], ['max', 'to']]) {
        const l = document.createElement('label');
        const inp = document.createElement('input');
        inp.type = 'number';
        inp.step = 'any';
        inp.className = 'filter-' + k;
        inp.value = f[k] ?? '';
        if (info.kind === 'numeric') inp.placeholder = fmt(k === 'min' ? info.min : info.max);
        inp.addEventListener('input', () => { const v = inp.value.trim(); f[k] = v === '' || Number.isNaN(Number(v)) ? null : Number(v); restyle(); });
        l.append(words + ' ', inp);
        div.append(l);
      }
    } else {
      const vals = document.createElement('div');
      vals.className = 'values';
      const cats = info.kind === 'categorical' ? info.cats.slice(0, 200) : [];
      for (const c of cats) {
        const l = document.createElement('label');
        const cb = document.createElement('input');
        cb.type = 'checkbox';
        cb.checked = f.values.has(c.value);
        cb.value = c.value;
        cb.addEventListener('change', () => { if (cb.checked) f.values.add(c.value); else f.values.delete(c.value); restyle(); });
        l.append(cb, ` ${c.value === '' ? '(empty)' : c.value} (${c.count})`);
        vals.append(l);
      }
      div.append(vals);
    }
    const rm = document.createElement('button');
    rm.type = 'button';
    rm.className = 'link filter-remove';
    rm.textContent = 'Remove';
    rm.setAttribute('aria-label', 'Remove the filter on ' + name);
    rm.addEventListener('click', () => { explorer.filters.delete(name); renderFilters(); restyle(); });
    div.append(rm);
    return div;
  }));
}

// -- selection --
function selectRows(rows, additive) {
  if (!additive) explorer.selection.clear();
  for (const r of rows) explorer.selection.add(r);
  restyle();
}

for (const b of document.querySelectorAll('button.tool')) {
  b.addEventListener('click', () => {
    map.tool = b.dataset.tool;
    for (const o of document.querySelectorAll('button.tool')) o.setAttribute('aria-pressed', String(o === b));
    map.canvas.style.cursor = map.tool === 'pan' ? '' : 'crosshair';
  });
}
$('select-view').addEventListener('click', () => selectRows(map.rowsInView(), false));
map.canvas.addEventListener('keydown', (e) => {
  if (e.key === 's') { selectRows(map.rowsInView(), e.shiftKey); e.preventDefault(); }
  if (e.key === 'x' && map.selected >= 0) {
    if (explorer.selection.has(map.selected)) explorer.selection.delete(map.selected); else explorer.selection.add(map.selected);
    restyle();
    e.preventDefault();
  }
});

const SELECTION_SHOWN = 120;

function renderSelection() {
  const rows = explorer.selectedRows();
  $('selection').hidden = rows.length === 0;
  $('selection-count').textContent = `(${rows.length} ${rows.length === 1 ? 'image' : 'images'})`;
  if (!rows.length) { $('selection-list').replaceChildren(); return; }
  const t = explorer.table;
  const items = rows.slice(0, SELECTION_SHOWN).map((r) => {
    const li = document.createElement('li');
    li.dataset.row = String(r);
    const c = map.cell(r);
    if (c?.bitmap) {
      const cv = document.createElement('canvas');
      cv.width = cv.height = c.size;
      cv.getContext('2d').drawImage(c.bitmap, c.x, c.y, c.size, c.size, 0, 0, c.size, c.size);
      cv.setAttribute('role', 'img');
      cv.setAttribute('aria-label', 'Thumbnail of row ' + r);
      li.append(cv);
    }
    const text = document.createElement('div');
    const parts = t ? t.columns.slice(0, 4).map((col, k) => `${col}: ${t.values[k][r] ?? ''}`) : [];
    text.textContent = `row ${r}` + (parts.length ? ' — ' + parts.join('; ') : '');
    li.append(text);
    return li;
  });
  if (rows.length > SELECTION_SHOWN) {
    const li = document.createElement('li');
    li.textContent = `…and ${rows.length - SELECTION_SHOWN} more (all are in the downloads).`;
    items.push(li);
  }
  $('selection-list').replaceChildren(...items);
}

function xyOf(r) {
  const p = state.result?.points[r];
  if (p) return p.x == null ? null : [p.x, p.y];
  return map.has[r] ? [map.toX[r], map.toY[r]] : null;
}

function saveText(text, name, type) {
  const url = URL.createObjectURL(new Blob([text], { type: type + ';charset=utf-8' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

const selName = (ext) => `tsnemap-${state.job?.id ?? 'map'}-selection.${ext}`;
$('sel-csv').addEventListener('click', () => saveText(explorer.exportRows(',', xyOf), selName('csv'), 'text/csv'));
$('sel-tsv').addEventListener('click', () => saveText(explorer.exportRows('\t', xyOf), selName('tsv'), 'text/tab-separated-values'));
$('sel-clear').addEventListener('click', () => selectRows([], false));
$('sel-link').addEventListener('click', async () => {
  writeURL();
  $('share-link').value = location.href;
  $('share-link').select();
  try {
    await navigator.clipboard.writeText(location.href);
    $('share-done').textContent = 'Copied.';
  } catch {
    $('share-done').textContent = 'Copy the link above (the browser did not allow the page to).';
  }
});

// -- hotspots --
function renderHotspots() {
  const hs = state.result?.hotspots ?? [];
  map.setLabels(hs.map((h) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'hotspot-label';
    b.dataset.hotspot = String(h.id);
    b.textContent = `${h.id} · ${h.size}`;
    b.setAttribute('aria-label', `Hotspot ${h.id}: ${h.size} images. Fly there.`);
    b.addEventListener('click', () => {
      const at = hotspotPlace(h);
      map.flyTo(at.x, at.y, at.r);
      map.canvas.focus({ preventScroll: true });
    });
    const at = hotspotPlace(h);
    return { x: at.x, y: at.y, el: b, hotspot: h };
  }));
}

/** A hotspot's centre and radius in the current layout. */
function hotspotPlace(h) {
  if (state.layout !== 'grid') return { x: h.x, y: h.y, r: h.radius };
  let sx = 0, sy = 0, k = 0;
  state.result.points.forEach((p) => { if (p.cluster === h.id && map.has[p.row]) { sx += map.toX[p.row]; sy += map.toY[p.row]; k++; } });
  return k ? { x: sx / k, y: sy / k, r: Math.sqrt(h.size) * map.tileWorld * 0.7 } : { x: h.x, y: h.y, r: h.radius };
}

// -- grid layout --
/** The grid positions in world units (the scatter's extent), or null. */
function gridOf() {
  const res = state.result;
  if (!res || !state.scatter || !res.points.some((p) => p.grid_x != null)) return null;
  if (state.grid) return state.grid;
  let cols = 0, x0 = Infinity, x1 = -Infinity;
  for (const p of res.points) if (p.grid_x != null) cols = Math.max(cols, p.grid_x + 1);
  const c = state.scatter.coords;
  for (let i = 0; i < c.length; i += 2) { x0 = Math.min(x0, c[i]); x1 = Math.max(x1, c[i]); }
  const cellW = Math.max(x1 - x0, 1e-9) / cols;
  let y0 = Infinity;
  for (let i = 1; i < c.length; i += 2) y0 = Math.min(y0, c[i]);
  const rows = [], coords = [];
  for (const p of res.points) if (p.grid_x != null) { rows.push(p.row); coords.push(x0 + (p.grid_x + 0.5) * cellW, y0 + (p.grid_y + 0.5) * cellW); }
  state.grid = { rows, coords, cell: cellW };
  return state.grid;
}

function setLayout(layout, animate = true) {
  const g = gridOf();
  if (layout === 'grid' && !g) layout = 'scatter';
  state.layout = layout;
  $('grid-toggle').setAttribute('aria-pressed', String(layout === 'grid'));
  const src = layout === 'grid' ? g : state.scatter;
  if (!src) return;
  map.tileWorld = layout === 'grid' ? g.cell * 0.92 : 0;
  map.autoFit = true;
  map.setPositions(src.rows, src.coords, 2, animate);
  renderHotspots();
  scheduleURL();
}

$('grid-toggle').addEventListener('click', () => setLayout(state.layout === 'grid' ? 'scatter' : 'grid'));

// -- the view in the URL --
let urlTimer = 0;
function scheduleURL() {
  clearTimeout(urlTimer);
  urlTimer = setTimeout(writeURL, 250);
}

function writeURL() {
  clearTimeout(urlTimer);
  const id = state.job?.id;
  if (!id || state.route !== 'job' || state.pending) return;
  const p = new URLSearchParams();
  const pv = state.pendingView; // not applied yet: kept as it came
  if (pv) {
    for (const k of ['v', 'layout']) if (pv.has(k)) p.set(k, pv.get(k));
  } else if (!map.autoFit) {
    const v = map.view;
    p.set('v', [v.cx, v.cy, v.scale].map((x) => Number(x.toPrecision(6))).join(','));
  }
  if (!pv && state.layout === 'grid') p.set('layout', 'grid');
  explorer.toParams(p);
  const q = p.toString();
  const hash = '#/jobs/' + id + (q ? '?' + q : '');
  if (location.hash !== hash) history.replaceState(null, '', hash);
  if (!$('selection').hidden) $('share-link').value = location.href;
}

/** A link's layout and view, once the map's positions are known. */
function applyPendingView() {
  const p = state.pendingView;
  $('grid-toggle').hidden = !gridOf();
  if (!p) return;
  state.pendingView = null;
  if (p.get('layout') === 'grid') setLayout('grid', false);
  const v = (p.get('v') || '').split(',').map(Number);
  if (v.length === 3 && v.every(Number.isFinite) && v[2] > 0) {
    map.autoFit = false;
    map.view = { cx: v[0], cy: v[1], scale: v[2] };
    map.request();
  }
  restyle();
}

async function benchExplore() {
  const frame = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  const settle = () => { const gl = map.renderer.gl; if (gl) gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array(4)); };
  const t = explorer.table;
  const numeric = t.columns.find((c) => t.info[t.col(c)].kind === 'numeric');
  const categorical = t.columns.find((c) => t.info[t.col(c)].kind === 'categorical' && t.info[t.col(c)].cats.length <= 50);
  const out = {};
  const time = async (name, act) => {
    await frame();
    const t0 = performance.now();
    act();
    const applied = performance.now() - t0;
    await new Promise((r) => requestAnimationFrame(r)); // the map's own frame runs first
    settle();
    out[name] = { total: performance.now() - t0, apply: applied, draw: map.stats.lastDrawMs };
  };
  const sel = $('colour-by'), search = $('search');
  await time('colour categorical', () => { sel.value = categorical; sel.dispatchEvent(new Event('change')); });
  await time('colour numeric', () => { sel.value = numeric; sel.dispatchEvent(new Event('change')); });
  await time('search', () => { search.value = 'etude rings'; search.dispatchEvent(new Event('input')); });
  await time('search, accents', () => { search.value = 'Étude sunset n° 1'; search.dispatchEvent(new Event('input')); });
  await time('search, typing on', () => { search.value = 'Étude sunset n° 12'; search.dispatchEvent(new Event('input')); });
  await time('filter range', () => { explorer.filters.set(numeric, { min: 1900, max: 1950 }); renderFilters(); restyle(); });
  await time('clear', () => { explorer.filters.clear(); renderFilters(); search.value = ''; search.dispatchEvent(new Event('input')); });
  return out;
}
