// What the page needs to explore a map, apart from drawing it: the table's
// columns (categorical or numeric), colour by a column, search, filters,
// the selection, its export as CSV/TSV, and the view as URL parameters.
// Everything works on typed arrays over the rows, so that at 100,000 rows
// a change costs a few milliseconds.

// Paul Tol's "muted" qualitative scheme, distinct for colour-blind readers
// (https://personal.sron.nl/~pault/, "Colour schemes and templates"); the
// rest of the categories are "other", in pale grey.
export const CATEGORY_COLOURS = ['#CC6677', '#332288', '#DDCC77', '#117733', '#88CCEE', '#882255', '#44AA99', '#999933', '#AA4499'];
export const OTHER_COLOUR = '#BBBBBB';
/** The fade (of 255) of rows that do not match the search. */
export const DIM = 40;

// Viridis (van der Walt & Smith, matplotlib), a perceptually uniform ramp
// readable in grey and by colour-blind readers: nine stops, interpolated.
const VIRIDIS = ['#440154', '#472c7a', '#3b518b', '#2c718e', '#21908d', '#27ad81', '#5cc863', '#aadc32', '#fde725'];

const NUMBER = /^\s*[-+]?(\d+([.,]\d*)?|[.,]\d+)([eE][-+]?\d+)?\s*$/;
// Dates as catalogues write years: "1850", "c. 1850", "1850-1855", "1850s".
const YEAR = /^\s*(?:c\.?|ca\.?|circa|about)?\s*(-?\d{3,4})s?(?:\s*[-–/]\s*\d{2,4})?\s*$/i;

/** A value as a number (years included), or NaN. */
export function numberOf(v) {
  if (v == null || v === '') return NaN;
  if (NUMBER.test(v)) return Number(v.trim().replace(',', '.'));
  const m = YEAR.exec(v);
  return m ? Number(m[1]) : NaN;
}

/** Case- and accent-insensitive form of a text: "Ré" and "RE" both become "re". */
export function fold(s) {
  return String(s).normalize('NFD').replace(/\p{M}/gu, '').toLowerCase();
}

function hexRGB(h) {
  const v = parseInt(h.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

/** RGBA packed as the little-endian bytes r, g, b, a of a Uint32. */
function pack([r, g, b], a = 255) { return ((a << 24) | (b << 16) | (g << 8) | r) >>> 0; }

export function ramp(t) {
  const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const a = hexRGB(VIRIDIS[i]), b = hexRGB(VIRIDIS[i + 1]), f = x - i;
  return a.map((v, k) => Math.round(v + (b[k] - v) * f));
}

let lut = null;
/** The ramp as 256 packed colours. */
function rampLUT() {
  if (!lut) {
    lut = new Uint32Array(256);
    for (let i = 0; i < 256; i++) lut[i] = pack(ramp(i / 255));
  }
  return lut;
}

export function rampCSS() {
  return 'linear-gradient(to right, ' + VIRIDIS.join(', ') + ')';
}

/**
 * The table behind the map: columns (names), values[c][row] and, per
 * column, its kind: {kind: 'numeric', num: Float64Array, min, max} or
 * {kind: 'categorical', cats: [{value, count}] most frequent first, catOf:
 * Int32Array (index into cats)}. Built from the JSON result, or, while a job
 * runs, from the atlas (id and image URL of the rows loaded so far).
 */
export class Table {
  constructor(columns, n, valueOf) {
    this.columns = columns;
    this.n = n;
    this.values = columns.map((_, c) => { const a = new Array(n); for (let r = 0; r < n; r++) a[r] = valueOf(r, c) ?? ''; return a; });
    this.info = this.values.map((vals) => describeColumn(vals));
    // One folded text per row, columns apart, for search.
    this.hay = new Array(n);
    for (let r = 0; r < n; r++) {
      let s = '';
      for (let c = 0; c < columns.length; c++) s += (c ? '\u0001' : '') + this.values[c][r];
      this.hay[r] = fold(s);
    }
  }

  static fromResult(res) {
    const pts = res.points;
    return new Table(res.columns, pts.length, (r, c) => pts[r].fields[res.columns[c]]);
  }

  static fromAtlas(a, n) {
    const id = new Array(n).fill(''), url = new Array(n).fill('');
    if (a) for (let k = 0; k < a.rows.length; k++) { if (a.rows[k] < n) { id[a.rows[k]] = a.ids[k]; url[a.rows[k]] = a.urls[k]; } }
    return new Table(['id', 'image'], n, (r, c) => (c ? url[r] : id[r]));
  }

  col(name) { return this.columns.indexOf(name); }
}

function describeColumn(vals) {
  const n = vals.length;
  const num = new Float64Array(n);
  let filled = 0, numeric = 0, min = Infinity, max = -Infinity;
  const counts = new Map();
  for (let r = 0; r < n; r++) {
    const v = vals[r];
    num[r] = numberOf(v);
    if (v !== '') {
      filled++;
      counts.set(v, (counts.get(v) || 0) + 1);
      if (!Number.isNaN(num[r])) { numeric++; if (num[r] < min) min = num[r]; if (num[r] > max) max = num[r]; }
    }
  }
  // Numeric: nearly every value a number, and more distinct values than a
  // palette has colours (a column of 1, 2, 3 codes reads better as categories).
  if (filled && numeric >= 0.9 * filled && counts.size > CATEGORY_COLOURS.length) return { kind: 'numeric', num, min, max };
  const cats = [...counts].map(([value, count]) => ({ value, count })).sort((a, b) => b.count - a.count || (a.value < b.value ? -1 : 1));
  if (filled < n) cats.push({ value: '', count: n - filled });
  const index = new Map(cats.map((c, i) => [c.value, i]));
  const catOf = new Int32Array(n);
  for (let r = 0; r < n; r++) catOf[r] = index.get(vals[r]);
  return { kind: 'categorical', cats, catOf, num };
}

/**
 * The view's state that is not the camera: colour-by column and the
 * categories hidden from it, search text, filters and selection. apply()
 * turns it into what the map draws: colour, fade and visibility per row.
 */
export class Explorer {
  constructor() {
    warmUp();
    this.table = null;
    this.colour = ''; // column name
    this.hiddenCats = new Set(); // category values hidden by the legend
    this.search = '';
    this.filters = new Map(); // column → {values: Set} | {min, max}
    this.selection = new Set();
    this.lastSearch = null; // matchesOf's last answer: {table, q, hit}
  }

  setTable(t) { this.table = t; }

  /** Keeps only what the table has (a link may name a column it lacks). */
  valid() {
    const t = this.table;
    if (!t) return;
    if (this.colour && t.col(this.colour) < 0) this.colour = '';
    for (const k of [...this.filters.keys()]) if (t.col(k) < 0) this.filters.delete(k);
    for (const r of [...this.selection]) if (r >= t.n) this.selection.delete(r);
  }

  /** The legend of the colour column: categories or the numeric range. */
  legend() {
    const t = this.table;
    const c = t && this.colour ? t.col(this.colour) : -1;
    if (c < 0) return null;
    const info = t.info[c];
    if (info.kind === 'numeric') return { kind: 'numeric', min: info.min, max: info.max, column: this.colour };
    const items = info.cats.slice(0, CATEGORY_COLOURS.length).map((cat, i) => ({ value: cat.value, count: cat.count, colour: CATEGORY_COLOURS[i], hidden: this.hiddenCats.has(cat.value) }));
    const rest = info.cats.slice(CATEGORY_COLOURS.length);
    if (rest.length) items.push({ value: null, label: `other (${rest.length} values)`, count: rest.reduce((s, x) => s + x.count, 0), colour: OTHER_COLOUR, hidden: this.hiddenCats.has(null) });
    return { kind: 'categorical', items, column: this.colour };
  }

  /**
   * Per row: colour (packed RGBA, alpha 0 for none), fade (255 shown,
   * lower dimmed) and shown (0: hidden by a filter or the legend).
   * Returns counts: {shown, matches}.
   */
  apply(n, colour, fade, shown) {
    const t = this.table;
    colour.fill(0); fade.fill(255); shown.fill(1);
    let matches = 0, visible = 0;
    if (!t) return { shown: n, matches: n };
    const m = Math.min(n, t.n);
    const filters = [...this.filters].map(([name, f]) => [t.col(name), f]).filter(([c]) => c >= 0);
    for (const [c, f] of filters) {
      const info = t.info[c];
      if (f.values) {
        const vals = t.values[c];
        for (let r = 0; r < m; r++) if (!f.values.has(vals[r])) shown[r] = 0;
      } else {
        const num = info.num;
        const lo = f.min ?? -Infinity, hi = f.max ?? Infinity;
        for (let r = 0; r < m; r++) { const v = num[r]; if (!(v >= lo && v <= hi)) shown[r] = 0; }
      }
    }
    const c = this.colour ? t.col(this.colour) : -1;
    if (c >= 0) {
      const info = t.info[c];
      if (info.kind === 'numeric') {
        const span = (info.max - info.min) || 1;
        const lut = rampLUT();
        for (let r = 0; r < m; r++) {
          const v = info.num[r];
          if (!Number.isNaN(v)) colour[r] = lut[Math.round(((v - info.min) / span) * 255)];
        }
      } else {
        const k = CATEGORY_COLOURS.length;
        const pal = CATEGORY_COLOURS.map((h) => pack(hexRGB(h)));
        const other = pack(hexRGB(OTHER_COLOUR));
        const hidden = info.cats.map((cat, i) => this.hiddenCats.has(i < k ? cat.value : null));
        for (let r = 0; r < m; r++) {
          const i = info.catOf[r];
          colour[r] = i < k ? pal[i] : other;
          if (hidden[i]) shown[r] = 0;
        }
      }
    }
    const q = fold(this.search.trim());
    const hit = q ? this.matchesOf(q) : null;
    for (let r = 0; r < m; r++) {
      if (!shown[r]) continue;
      visible++;
      if (hit && !hit[r]) fade[r] = DIM; else matches++;
    }
    for (let r = m; r < n; r++) { visible++; if (!q) matches++; else fade[r] = DIM; }
    return { shown: visible, matches };
  }

  /**
   * Which rows hold the folded query q. The last answer is kept: the same
   * query (a colour or filter change) costs nothing, and a query that
   * extends it (typing on) looks only at the rows that matched before.
   */
  matchesOf(q) {
    const t = this.table, last = this.lastSearch;
    if (last && last.table === t && last.q === q) return last.hit;
    const hit = new Uint8Array(t.n);
    if (last && last.table === t && q.startsWith(last.q)) {
      const prev = last.hit;
      for (let r = 0; r < t.n; r++) if (prev[r] && t.hay[r].includes(q)) hit[r] = 1;
    } else {
      for (let r = 0; r < t.n; r++) if (t.hay[r].includes(q)) hit[r] = 1;
    }
    this.lastSearch = { table: t, q, hit };
    return hit;
  }

  /** Rows to export: the selection, in row order. */
  selectedRows() { return [...this.selection].sort((a, b) => a - b); }

  /** The selected rows as CSV or TSV: every column, then x, y. */
  exportRows(delim, xy) {
    const t = this.table;
    const field = (v) => {
      v = String(v ?? '');
      return v.includes(delim) || /["\r\n]/.test(v) ? '"' + v.replaceAll('"', '""') + '"' : v;
    };
    const lines = [[...t.columns, 'x', 'y'].map(field).join(delim)];
    for (const r of this.selectedRows()) {
      const p = xy(r);
      lines.push([...t.columns.map((_, c) => t.values[c][r]), p ? p[0] : '', p ? p[1] : ''].map(field).join(delim));
    }
    return lines.join('\n') + '\n';
  }

  /** The state as URL parameters (into params, a URLSearchParams). */
  toParams(params) {
    if (this.colour) params.set('colour', this.colour);
    if (this.hiddenCats.size) params.set('hide', [...this.hiddenCats].map((v) => (v == null ? '\u0000' : v)).join('\u001f'));
    if (this.search) params.set('q', this.search);
    for (const [name, f] of this.filters) {
      params.append('f', name + '\u001f' + (f.values ? 'in\u001f' + [...f.values].join('\u001f') : 'range\u001f' + (f.min ?? '') + '\u001f' + (f.max ?? '')));
    }
    if (this.selection.size) params.set('sel', encodeRows(this.selectedRows()));
  }

  fromParams(params) {
    this.colour = params.get('colour') || '';
    this.hiddenCats = new Set((params.get('hide') || '').split('\u001f').filter((v) => v !== '').map((v) => (v === '\u0000' ? null : v)));
    this.search = params.get('q') || '';
    this.filters = new Map();
    for (const f of params.getAll('f')) {
      const [name, kind, ...rest] = f.split('\u001f');
      if (kind === 'in') this.filters.set(name, { values: new Set(rest) });
      else if (kind === 'range') {
        const num = (s) => (s === '' || s == null || Number.isNaN(Number(s)) ? null : Number(s));
        this.filters.set(name, { min: num(rest[0]), max: num(rest[1]) });
      }
    }
    this.selection = new Set(decodeRows(params.get('sel') || ''));
  }
}

let warm = false;

/**
 * Runs apply() once per page on a made-up table of a dozen rows, through
 * every branch (colour by a category with hidden ones and by a number,
 * filters of values and of a range, a search and one typed on), so that
 * V8 has seen each before it optimises apply's loops on a real table.
 * Otherwise the optimised code, made while the map loads (no colour, no
 * search), is thrown away the first time a change takes a branch it has
 * not seen, and that change runs its 100,000-row loops unoptimised.
 */
function warmUp() {
  if (warm) return;
  warm = true;
  const n = 12;
  const t = new Table(['id', 'style', 'year'], n, (r, c) => [`w${r}`, `s${r}`, String(1900 + r)][c]);
  const e = new Explorer();
  const colour = new Uint32Array(n + 1), fade = new Uint8Array(n + 1), shown = new Uint8Array(n + 1);
  e.setTable(t);
  e.colour = 'style';
  e.hiddenCats.add('s1').add(null);
  e.filters.set('style', { values: new Set(['s1', 's2', 's3']) });
  e.search = 'w';
  e.apply(n + 1, colour, fade, shown);
  e.colour = 'year';
  e.filters = new Map([['year', { min: 1901, max: 1905 }]]);
  e.search = 'w1';
  e.apply(n + 1, colour, fade, shown);
  e.search = 'x';
  e.apply(n, colour, fade, shown);
}

/** Sorted rows as ranges in base 36: "0-5.9.c-k". */
export function encodeRows(rows) {
  const out = [];
  for (let i = 0; i < rows.length;) {
    let j = i;
    while (j + 1 < rows.length && rows[j + 1] === rows[j] + 1) j++;
    out.push(j > i ? rows[i].toString(36) + '-' + rows[j].toString(36) : rows[i].toString(36));
    i = j + 1;
  }
  return out.join('.');
}

export function decodeRows(s) {
  const rows = [];
  for (const part of s.split('.')) {
    if (!part) continue;
    const [a, b] = part.split('-').map((x) => parseInt(x, 36));
    if (!Number.isFinite(a) || a < 0) continue;
    const end = Number.isFinite(b) ? Math.min(b, a + 1e6) : a;
    for (let r = a; r <= end; r++) rows.push(r);
  }
  return rows;
}

/** Is (x, y) inside the polygon pts ([x0, y0, x1, y1, …])? Even–odd rule. */
export function insidePolygon(pts, x, y) {
  let inside = false;
  for (let i = 0, j = pts.length - 2; i < pts.length; j = i, i += 2) {
    const xi = pts[i], yi = pts[i + 1], xj = pts[j], yj = pts[j + 1];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}
