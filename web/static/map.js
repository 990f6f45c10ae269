// The map: every point drawn on one canvas from the atlas sheets (one
// drawImage per visible thumbnail, no DOM node per image), with pan and
// zoom by mouse, wheel, trackpad, touch and keyboard.
//
// World coordinates are the embedding's x, y (y up, as in map.png); the
// view is a centre (cx, cy) and a scale in CSS pixels per unit.

import { insidePolygon } from './explore.js';
import { Canvas2DRenderer, GLRenderer } from './render.js';

const ANIMATE_MS = 600;
const MIN_SCALE = 1e-6;
const MAX_SCALE = 1e7;
const FRAME_SAMPLES = 600;
const ZOOM_SETTLE_MS = 150;

export class MapView {
  constructor(canvas, overlay, { onHover = () => {}, onOpen = () => {}, onSelect = () => {}, onArea = () => {}, onView = () => {}, renderer = 'auto' } = {}) {
    this.canvas = canvas;
    this.overlay = overlay;
    this.octx = overlay.getContext('2d');
    // renderer: "auto" (WebGL 2 where a GPU draws it, else canvas 2D),
    // "webgl" (WebGL 2 even in software) or "2d".
    this.renderer = (renderer !== '2d' && GLRenderer.create(canvas, renderer === 'webgl')) || new Canvas2DRenderer(canvas);
    this.renderer.onRestore = () => this.request();
    this.version = 0; // changes whenever positions, rows or the atlas change
    this.onHover = onHover;
    this.onOpen = onOpen;
    this.onSelect = onSelect;
    this.onArea = onArea; // (rows, additive): a box or lasso was drawn
    this.onView = onView; // the view moved (debounced by the caller)
    this.tool = 'pan'; // 'pan', 'box' or 'lasso': what a drag does
    this.shape = null; // the box or lasso being drawn, in CSS px
    this.labels = []; // [{x, y, el}]: DOM labels kept over world points
    this.flight = null;
    this.tileWorld = 0; // thumbnail side in world units when laid out on a grid
    this.view = { cx: 0, cy: 0, scale: 1 };
    this.thumbWorld = 1; // side of a thumbnail in world units
    this.autoFit = true;
    this.zoomingUntil = 0;
    this.zoomTimer = 0;
    this.hovered = -1;
    this.selected = -1;
    this.stats = { pointsDrawn: 0, thumbnailsDrawn: 0, frames: 0, drawMs: [], lastDrawMs: 0, arrived: 0 };
    // Every field the map ever gets is made here, so its shape (V8's hidden
    // class) never changes after loading: a field added later (the first
    // colour change used to add two) throws away the optimised code of
    // every loop over the rows that reads the map, and the first change
    // after loading then ran its 100,000-row loops unoptimised.
    this.list = null; // drawList()'s answer, for listVersion
    this.listBuf = null;
    this.listVersion = -1;
    this.allColoured = false; // raster.js's allColoured(), for allColouredVersion
    this.allColouredVersion = -1;
    this.before = null; // beforeNextFrame's function
    this.fresh = null; // rows that just arrived: {rows, until}
    this.overlayDirty = false;
    this.setRows(0);
    this.atlas = null; // {cell, sheets: ImageBitmap[], sheetOf, sxOf, syOf, ids, urls}
    this.pointers = new Map();
    this.drag = null;
    this.frame = 0;
    this.width = 0;
    this.height = 0;
    this.resize();
    new ResizeObserver(() => this.resize()).observe(canvas);
    this.bind();
  }

  /** Makes room for n rows (every row of the table, loaded or not). */
  setRows(n) {
    this.n = n;
    this.x = new Float32Array(n);
    this.y = new Float32Array(n);
    this.fromX = new Float32Array(n);
    this.fromY = new Float32Array(n);
    this.toX = new Float32Array(n);
    this.toY = new Float32Array(n);
    this.has = new Uint8Array(n);
    // Style per row (see Explorer.apply): packed RGBA colour (alpha 0:
    // none), fade (255 shown, less dimmed), shown (0 hidden) and marked
    // (in the selection).
    this.colour = new Uint32Array(n);
    this.fade = new Uint8Array(n).fill(255);
    this.shown = new Uint8Array(n).fill(1);
    this.marked = new Uint8Array(n);
    this.styled = false; // any colour: thumbnails get frames
    this.cellOf = new Int32Array(n).fill(-1);
    this.order = []; // rows with a position, in drawing order
    this.anim = null;
    this.version++;
    if (this.atlas) this.atlas.rows.forEach((row, k) => { if (row < n) this.cellOf[row] = k; });
    this.hovered = -1;
    this.selected = -1;
    this.request();
  }

  /** Makes room for n rows, keeping the rows there (a map that grows). */
  grow(n) {
    if (n <= this.n) return;
    const keep = (a, T, fill) => { const b = new T(n); if (fill !== undefined) b.fill(fill); b.set(a); return b; };
    for (const k of ['x', 'y', 'fromX', 'fromY', 'toX', 'toY']) this[k] = keep(this[k], Float32Array);
    this.has = keep(this.has, Uint8Array);
    this.colour = keep(this.colour, Uint32Array);
    this.fade = keep(this.fade, Uint8Array, 255);
    this.shown = keep(this.shown, Uint8Array, 1);
    this.marked = keep(this.marked, Uint8Array);
    this.cellOf = keep(this.cellOf, Int32Array, -1);
    this.n = n;
    this.version++;
    this.request();
  }

  /**
   * Rows that just arrived (an addition): they glide in from `from` (world
   * x, y) to their places and wear a ring for ms, then settle. Rows already
   * placed do not move.
   */
  arrive(rows, coords, dims, from, ms = 4000) {
    for (const r of rows) {
      if (r >= 0 && r < this.n && !this.has[r]) { this.x[r] = from.x; this.y[r] = from.y; this.has[r] = 1; }
    }
    this.fresh = { rows: rows.slice(), until: performance.now() + ms };
    this.stats.arrived += rows.length;
    this.setPositions(rows, coords, dims, true);
  }

  /** Style changed (colour, fade, shown or marked arrays written): redraw. */
  restyle(styled) {
    this.styled = styled;
    this.version++;
    this.request();
  }

  /**
   * Rows in the order they are drawn: shown ones only, dimmed first and
   * selected last, so what matters is on top. Cached per version.
   */
  drawList() {
    if (this.listVersion === this.version) return this.list;
    // Counted first, then written into one reused Int32Array: at 100,000
    // rows this is a millisecond and makes no garbage (three growing
    // arrays and their concatenation took tens on a loaded machine).
    const order = this.order, shown = this.shown, marked = this.marked, fade = this.fade;
    let nd = 0, np = 0, nm = 0;
    for (let k = 0; k < order.length; k++) {
      const r = order[k];
      if (!shown[r]) continue;
      if (marked[r]) nm++; else if (fade[r] < 255) nd++; else np++;
    }
    if (!this.listBuf || this.listBuf.length < nd + np + nm) this.listBuf = new Int32Array(Math.max(nd + np + nm, this.n));
    const buf = this.listBuf;
    let d = 0, p = nd, m = nd + np;
    for (let k = 0; k < order.length; k++) {
      const r = order[k];
      if (!shown[r]) continue;
      if (marked[r]) buf[m++] = r; else if (fade[r] < 255) buf[d++] = r; else buf[p++] = r;
    }
    this.list = buf.subarray(0, nd + np + nm);
    this.listVersion = this.version;
    return this.list;
  }

  /** index: the API's AtlasIndex; sheets: decoded sheets, in order. */
  setAtlas(index, sheets) {
    if (index.rows > this.n) this.setRows(index.rows);
    const m = index.cells.length;
    const a = { cell: index.cell, sheets, sheetOf: new Int32Array(m), sxOf: new Int32Array(m), syOf: new Int32Array(m), ids: [], urls: [], rows: new Int32Array(m) };
    index.cells.forEach((c, k) => {
      a.sheetOf[k] = c.sheet; a.sxOf[k] = c.x; a.syOf[k] = c.y; a.ids.push(c.id); a.urls.push(c.url); a.rows[k] = c.row;
      if (c.row < this.n) this.cellOf[c.row] = k;
    });
    this.atlas = a;
    this.version++;
    this.request();
  }

  /** The atlas cell of a row: {sheet, x, y, size, id, url} or null. */
  cell(row) {
    const k = row >= 0 && row < this.n ? this.cellOf[row] : -1;
    if (k < 0 || !this.atlas) return null;
    const a = this.atlas;
    return { bitmap: a.sheets[a.sheetOf[k]], x: a.sxOf[k], y: a.syOf[k], size: a.cell, id: a.ids[k], url: a.urls[k] };
  }

  /**
   * New coordinates for some rows (rows[k] at coords[k*dims], coords[k*dims+1]).
   * With animate, points glide there from where they are.
   */
  setPositions(rows, coords, dims, animate) {
    const first = this.order.length === 0;
    for (let k = 0; k < rows.length; k++) {
      const r = rows[k];
      if (r < 0 || r >= this.n) continue;
      const nx = coords[k * dims], ny = coords[k * dims + 1];
      if (!Number.isFinite(nx) || !Number.isFinite(ny)) continue;
      if (!this.has[r]) { this.x[r] = nx; this.y[r] = ny; this.has[r] = 1; }
      this.toX[r] = nx; this.toY[r] = ny;
    }
    this.order = [];
    for (let r = 0; r < this.n; r++) if (this.has[r]) this.order.push(r);
    this.version++;
    if (animate && !first && !reducedMotion()) {
      this.fromX.set(this.x); this.fromY.set(this.y);
      this.anim = { start: performance.now() };
    } else {
      this.x.set(this.toX); this.y.set(this.toY);
      this.anim = null;
    }
    if (this.autoFit || first) this.fit(true);
    this.request();
  }

  /** Frames the whole map (targets, not the animation's current place). */
  fit(keepAuto) {
    if (!keepAuto) this.autoFit = true;
    if (!this.order.length || this.width < 2 || this.height < 2) { this.request(); return; } // hidden: fit once shown
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const r of this.order) {
      const x = this.toX[r], y = this.toY[r];
      if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
    }
    const n = this.order.length;
    const side = clamp(0.75 * Math.sqrt((this.width * this.height) / n), 6, 64);
    const w = Math.max(x1 - x0, 1e-9), h = Math.max(y1 - y0, 1e-9);
    const scale = Math.min((this.width - side - 16) / w, (this.height - side - 16) / h);
    this.view = { cx: (x0 + x1) / 2, cy: (y0 + y1) / 2, scale: clamp(scale, MIN_SCALE, MAX_SCALE) };
    this.thumbWorld = this.tileWorld || side / this.view.scale;
    this.request();
  }

  /** Glides the view to centre (x, y) with radius r in view. */
  flyTo(x, y, r) {
    this.autoFit = false;
    const scale = clamp(Math.min(this.width, this.height) / (2.4 * Math.max(r, 1e-9)), MIN_SCALE, MAX_SCALE);
    const from = { ...this.view }, to = { cx: x, cy: y, scale };
    if (reducedMotion()) { this.view = to; this.request(); return; }
    this.flight = { from, to, start: performance.now() };
    this.request();
  }

  /** Where a row is drawn, in CSS pixels from the canvas's top left; null if nowhere. */
  screenOf(row) {
    if (row < 0 || row >= this.n || !this.has[row]) return null;
    return { x: (this.x[row] - this.view.cx) * this.view.scale + this.width / 2, y: (this.view.cy - this.y[row]) * this.view.scale + this.height / 2 };
  }

  thumbSide() { return clamp(this.thumbWorld * this.view.scale, 2, 256); }

  /** The row whose thumbnail is on top at (px, py), or -1. */
  hitTest(px, py) {
    const half = this.thumbSide() / 2;
    const { cx, cy, scale } = this.view;
    const w2 = this.width / 2, h2 = this.height / 2;
    const list = this.drawList();
    for (let k = list.length - 1; k >= 0; k--) {
      const r = list[k];
      const sx = (this.x[r] - cx) * scale + w2, sy = (cy - this.y[r]) * scale + h2;
      if (Math.abs(sx - px) <= half && Math.abs(sy - py) <= half) return r;
    }
    return -1;
  }

  panBy(dx, dy) {
    this.autoFit = false;
    this.view.cx -= dx / this.view.scale;
    this.view.cy += dy / this.view.scale;
    this.request();
  }

  /** Zooms by factor f keeping the world point under (px, py) in place. */
  zoomAt(f, px = this.width / 2, py = this.height / 2) {
    this.autoFit = false;
    // While zooming goes on the renderer may scale its last picture; once
    // it pauses, the map is drawn sharp again.
    this.zoomingUntil = performance.now() + ZOOM_SETTLE_MS;
    clearTimeout(this.zoomTimer);
    this.zoomTimer = setTimeout(() => this.request(), ZOOM_SETTLE_MS + 10);
    const v = this.view;
    const wx = (px - this.width / 2) / v.scale + v.cx, wy = v.cy - (py - this.height / 2) / v.scale;
    v.scale = clamp(v.scale * f, MIN_SCALE, MAX_SCALE);
    v.cx = wx - (px - this.width / 2) / v.scale;
    v.cy = wy + (py - this.height / 2) / v.scale;
    this.request();
  }

  resize() {
    const r = this.canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    this.dpr = dpr;
    const w = Math.max(1, Math.round(r.width)), h = Math.max(1, Math.round(r.height));
    if (w === this.width && h === this.height && this.canvas.width === Math.round(w * dpr)) return;
    const first = !this.width;
    this.width = w; this.height = h;
    this.canvas.width = this.overlay.width = Math.round(w * dpr);
    this.canvas.height = this.overlay.height = Math.round(h * dpr);
    if (this.autoFit || first) this.fit(true);
    this.request();
  }

  request() {
    if (this.frame) return;
    this.frame = requestAnimationFrame((t) => {
      // Work coalesced into this frame (a search typed on) runs first,
      // while this.frame still holds: what it asks to redraw is this frame.
      const before = this.before;
      this.before = null;
      before?.();
      this.frame = 0;
      this.draw(t);
    });
  }

  /**
   * Runs fn just before the next frame is drawn, once however often it is
   * asked for in between (the last fn wins): a burst of keystrokes costs
   * one pass, at the frame that shows it, with no delay added.
   */
  beforeNextFrame(fn) {
    this.before = fn;
    this.request();
  }

  draw() {
    const t0 = performance.now();
    if (this.flight) {
      const f = this.flight;
      const a = Math.min(1, (t0 - f.start) / ANIMATE_MS), e = a * (2 - a);
      const ls = Math.log(f.from.scale) + (Math.log(f.to.scale) - Math.log(f.from.scale)) * e;
      this.view = { cx: f.from.cx + (f.to.cx - f.from.cx) * e, cy: f.from.cy + (f.to.cy - f.from.cy) * e, scale: Math.exp(ls) };
      this.zoomingUntil = a < 1 ? t0 + ZOOM_SETTLE_MS : 0;
      if (a >= 1) { this.flight = null; this.onView(); }
      this.request();
    }
    if (this.anim) {
      const a = Math.min(1, (t0 - this.anim.start) / ANIMATE_MS);
      const e = a * (2 - a); // ease out
      for (const r of this.order) {
        this.x[r] = this.fromX[r] + (this.toX[r] - this.fromX[r]) * e;
        this.y[r] = this.fromY[r] + (this.toY[r] - this.fromY[r]) * e;
      }
      this.version++;
      if (a >= 1) this.anim = null; else this.request();
    }
    const s = this.thumbSide(), half = s / 2;
    this.renderer.draw(this, s, t0 < this.zoomingUntil);
    // What is in view (the renderer may draw more and let the GPU clip).
    const { cx, cy, scale } = this.view;
    const w2 = this.width / 2, h2 = this.height / 2;
    const W = this.width + half, H = this.height + half;
    const a = this.atlas;
    let points = 0, thumbs = 0;
    for (const r of this.drawList()) {
      const sx = (this.x[r] - cx) * scale + w2, sy = (cy - this.y[r]) * scale + h2;
      if (sx < -half || sy < -half || sx > W || sy > H) continue;
      points++;
      if (a && this.cellOf[r] >= 0) thumbs++;
    }
    // The overlay is a layer of its own: hidden when it shows nothing, so
    // the compositor has one layer less to blend while panning.
    this.placeLabels();
    const fresh = this.fresh && t0 < this.fresh.until ? this.fresh : null;
    const highlight = this.screenOf(this.selected) || this.screenOf(this.hovered) || this.shape || fresh;
    this.overlay.style.visibility = highlight ? 'visible' : 'hidden';
    const o = this.octx;
    if (highlight || this.overlayDirty) {
      o.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
      o.clearRect(0, 0, this.width, this.height);
    }
    this.overlayDirty = !!highlight;
    for (const [row, colour, width] of [[this.selected, '#f0a500', 3], [this.hovered, '#1f5fbf', 2]]) {
      const p = this.screenOf(row);
      if (!p) continue;
      o.lineWidth = width;
      o.strokeStyle = colour;
      o.strokeRect(p.x - half - width / 2, p.y - half - width / 2, s + width, s + width);
    }
    if (this.shape) this.drawShape(o);
    if (fresh) {
      // New rows wear a ring that fades as they settle.
      o.lineWidth = 2;
      o.strokeStyle = `rgba(42, 157, 58, ${Math.min(1, (fresh.until - t0) / 1500).toFixed(2)})`;
      o.beginPath();
      for (const r of fresh.rows) {
        const p = this.screenOf(r);
        if (p) { o.moveTo(p.x + half + 4, p.y); o.arc(p.x, p.y, half + 4, 0, 2 * Math.PI); }
      }
      o.stroke();
      this.request();
    } else this.fresh = null;
    const st = this.stats;
    st.pointsDrawn = points;
    st.thumbnailsDrawn = thumbs;
    st.frames++;
    st.lastDrawMs = performance.now() - t0;
    st.drawMs.push(st.lastDrawMs);
    if (st.drawMs.length > FRAME_SAMPLES) st.drawMs.shift();
  }

  setHovered(row) {
    if (row === this.hovered) return;
    this.hovered = row;
    this.onHover(row);
    this.request();
  }

  select(row) {
    this.selected = row;
    this.onSelect(row);
    const p = this.screenOf(row);
    if (p && (p.x < 0 || p.y < 0 || p.x > this.width || p.y > this.height)) {
      this.autoFit = false;
      this.view.cx = this.x[row];
      this.view.cy = this.y[row];
    }
    this.request();
  }

  local(e) {
    const r = this.canvas.getBoundingClientRect();
    return { x: e.clientX - r.left, y: e.clientY - r.top };
  }

  bind() {
    const c = this.canvas;
    c.addEventListener('pointerdown', (e) => {
      if (e.button !== 0 && e.pointerType === 'mouse') return;
      c.setPointerCapture(e.pointerId);
      const p = this.local(e);
      this.pointers.set(e.pointerId, p);
      this.drag = { moved: 0, pinch: this.pointers.size === 2 ? this.pinchState() : null };
      const tool = e.shiftKey && this.tool === 'pan' ? 'box' : this.tool;
      this.shape = tool !== 'pan' && this.pointers.size === 1 ? { tool, pts: [p.x, p.y], additive: e.shiftKey || e.ctrlKey || e.metaKey } : null;
      if (this.pointers.size > 1) this.shape = null;
      c.classList.add('dragging');
    });
    c.addEventListener('pointermove', (e) => {
      const p = this.local(e);
      const prev = this.pointers.get(e.pointerId);
      if (!prev) {
        if (e.pointerType !== 'touch') this.setHovered(this.hitTest(p.x, p.y));
        return;
      }
      this.pointers.set(e.pointerId, p);
      if (this.pointers.size === 2 && this.drag?.pinch) {
        const now = this.pinchState();
        const before = this.drag.pinch;
        if (before.d > 0) this.zoomAt(now.d / before.d, now.mx, now.my);
        this.panBy(now.mx - before.mx, now.my - before.my);
        this.drag.pinch = now;
        this.drag.moved += 10;
      } else if (this.pointers.size === 1) {
        const dx = p.x - prev.x, dy = p.y - prev.y;
        this.drag.moved += Math.abs(dx) + Math.abs(dy);
        if (this.shape) {
          if (this.shape.tool === 'box') this.shape.pts = [this.shape.pts[0], this.shape.pts[1], p.x, p.y];
          else this.shape.pts.push(p.x, p.y);
          this.request();
        } else {
          this.panBy(dx, dy);
        }
      }
    });
    const end = (e) => {
      const had = this.pointers.get(e.pointerId);
      this.pointers.delete(e.pointerId);
      if (this.pointers.size < 2 && this.drag) this.drag.pinch = null;
      if (this.pointers.size === 0) {
        c.classList.remove('dragging');
        const click = this.drag && this.drag.moved < 5 && e.type === 'pointerup';
        this.drag = null;
        const shape = this.shape;
        this.shape = null;
        if (shape && !click && e.type === 'pointerup') { this.onArea(this.rowsInShape(shape), shape.additive); this.request(); return; }
        if (shape) this.request();
        if (!shape && !click) this.onView();
        if (click && had) {
          const row = this.hitTest(had.x, had.y);
          if (row >= 0) { this.select(row); this.onOpen(row); }
        }
      }
    };
    c.addEventListener('pointerup', end);
    c.addEventListener('pointercancel', end);
    c.addEventListener('pointerleave', (e) => { if (!this.pointers.size && e.pointerType !== 'touch') this.setHovered(-1); });
    c.addEventListener('wheel', (e) => {
      e.preventDefault();
      this.onView();
      const p = this.local(e);
      const unit = e.deltaMode === 1 ? 16 : e.deltaMode === 2 ? this.height : 1;
      if (!e.ctrlKey && Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
        this.panBy(-e.deltaX * unit, 0); // trackpad: sideways swipe pans
        return;
      }
      // Wheel, and trackpad pinch (which browsers send as wheel + ctrl).
      const k = e.ctrlKey ? 0.01 : 0.0015;
      this.zoomAt(Math.exp(-e.deltaY * unit * k), p.x, p.y);
    }, { passive: false });
    c.addEventListener('keydown', (e) => {
      const step = (e.shiftKey ? 0.4 : 0.1) * Math.min(this.width, this.height);
      let handled = true;
      switch (e.key) {
        case 'ArrowLeft': this.panBy(step, 0); break;
        case 'ArrowRight': this.panBy(-step, 0); break;
        case 'ArrowUp': this.panBy(0, step); break;
        case 'ArrowDown': this.panBy(0, -step); break;
        case '+': case '=': this.zoomAt(1.25); break;
        case '-': case '_': this.zoomAt(0.8); break;
        case '0': this.fit(); break;
        case ']': case 'n': this.step(1); break;
        case '[': case 'p': this.step(-1); break;
        case 'Enter': if (this.selected >= 0) this.onOpen(this.selected); break;
        case 'Escape': this.select(-1); break;
        default: handled = false;
      }
      if (handled) { e.preventDefault(); this.onView(); }
    });
  }

  /** The shown rows whose centre lies in a box or lasso (CSS px). */
  rowsInShape(shape) {
    let pts = shape.pts;
    if (shape.tool === 'box') {
      if (pts.length < 4) return [];
      const [x0, y0, x1, y1] = pts;
      pts = [x0, y0, x1, y0, x1, y1, x0, y1];
    }
    if (pts.length < 6) return [];
    let bx0 = Infinity, by0 = Infinity, bx1 = -Infinity, by1 = -Infinity;
    for (let i = 0; i < pts.length; i += 2) {
      bx0 = Math.min(bx0, pts[i]); bx1 = Math.max(bx1, pts[i]); by0 = Math.min(by0, pts[i + 1]); by1 = Math.max(by1, pts[i + 1]);
    }
    const out = [];
    const { cx, cy, scale } = this.view;
    const w2 = this.width / 2, h2 = this.height / 2;
    for (const r of this.drawList()) {
      const sx = (this.x[r] - cx) * scale + w2, sy = (cy - this.y[r]) * scale + h2;
      if (sx < bx0 || sx > bx1 || sy < by0 || sy > by1) continue;
      if (insidePolygon(pts, sx, sy)) out.push(r);
    }
    return out;
  }

  /** The shown rows whose centre is in view (the keyboard's way to select an area). */
  rowsInView() {
    return this.rowsInShape({ tool: 'box', pts: [0, 0, this.width, this.height] });
  }

  drawShape(o) {
    const { tool, pts } = this.shape;
    if (pts.length < 4) return;
    o.lineWidth = 2;
    o.setLineDash([6, 4]);
    o.strokeStyle = '#1d2430';
    o.fillStyle = 'rgba(31, 95, 191, 0.12)';
    o.beginPath();
    if (tool === 'box') o.rect(pts[0], pts[1], pts[2] - pts[0], pts[3] - pts[1]);
    else { o.moveTo(pts[0], pts[1]); for (let i = 2; i < pts.length; i += 2) o.lineTo(pts[i], pts[i + 1]); o.closePath(); }
    o.fill();
    o.stroke();
    o.setLineDash([]);
  }

  /** Labels: [{x, y, el}] with el absolutely placed in the map's stage. */
  setLabels(labels) {
    for (const l of this.labels) l.el.remove();
    this.labels = labels;
    for (const l of labels) this.canvas.parentElement.append(l.el);
    this.request();
  }

  placeLabels() {
    const { cx, cy, scale } = this.view;
    for (const l of this.labels) {
      const sx = (l.x - cx) * scale + this.width / 2, sy = (cy - l.y) * scale + this.height / 2;
      const out = sx < 0 || sy < 0 || sx > this.width || sy > this.height;
      if (out !== l.out) { l.el.hidden = out; l.out = out; }
      if (!out) l.el.style.transform = `translate(${Math.round(sx)}px, ${Math.round(sy)}px) translate(-50%, -50%)`;
    }
  }

  pinchState() {
    const [a, b] = [...this.pointers.values()];
    return { d: Math.hypot(a.x - b.x, a.y - b.y), mx: (a.x + b.x) / 2, my: (a.y + b.y) / 2 };
  }

  /** Keyboard: select the next (or previous) row that is on the map. */
  step(dir) {
    if (!this.order.length) return;
    let k = this.order.indexOf(this.selected);
    k = k < 0 ? (dir > 0 ? 0 : this.order.length - 1) : (k + dir + this.order.length) % this.order.length;
    this.select(this.order[k]);
  }
}

function clamp(v, lo, hi) { return Math.min(hi, Math.max(lo, v)); }

function reducedMotion() {
  return window.matchMedia?.('(prefers-reduced-motion: reduce)').matches;
}

/**
 * A synthetic map of n points in clusters with a generated atlas, for
 * measuring frame times without a job (window.tsnemap.loadSynthetic).
 */
export async function syntheticMap(map, n) {
  const cell = n <= 4096 ? 64 : n <= 65536 ? 32 : 16;
  const cols = Math.ceil(Math.sqrt(n));
  const rowsOfCells = Math.ceil(n / cols);
  const sheet = new OffscreenCanvas(cols * cell, rowsOfCells * cell);
  const g = sheet.getContext('2d');
  const cells = [];
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 4294967296);
  const gauss = () => Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
  const coords = new Float32Array(2 * n);
  const rows = [];
  for (let i = 0; i < n; i++) {
    const cl = i % 12;
    const hue = cl * 30;
    const x = (i % cols) * cell, y = Math.floor(i / cols) * cell;
    g.fillStyle = `hsl(${hue} 70% ${40 + rand() * 30}%)`;
    g.fillRect(x, y, cell, cell);
    g.fillStyle = `hsl(${(hue + 180) % 360} 60% 60%)`;
    g.beginPath();
    g.arc(x + cell / 2, y + cell / 2, cell * (0.15 + rand() * 0.2), 0, 2 * Math.PI);
    g.fill();
    cells.push({ row: i, id: 'S' + i, url: '', sheet: 0, x, y });
    const ang = (cl / 12) * 2 * Math.PI;
    coords[2 * i] = 30 * Math.cos(ang) + 4 * gauss();
    coords[2 * i + 1] = 30 * Math.sin(ang) + 4 * gauss();
    rows.push(i);
  }
  const bitmap = await createImageBitmap(sheet);
  map.setRows(n);
  map.setAtlas({ cell, rows: n, cells, missing: [], sheets: [{ width: sheet.width, height: sheet.height }] }, [bitmap]);
  map.setPositions(rows, coords, 2, false);
  map.fit();
}

/**
 * Pans the map every animation frame for `frames` frames and reports the
 * time between frames and the time spent drawing, in ms. mode "circle":
 * round a circle of 40 px once a second; "sweep": 8 px a frame one way for
 * half the frames, then back (so the view keeps leaving what was drawn);
 * "zoom": in by 1 % a frame for half the frames, then out. All end where
 * they began.
 */
export function benchPan(map, frames = 300, mode = 'circle') {
  return new Promise((resolve) => {
    const intervals = [];
    const draws = [];
    let last = 0, i = 0;
    const half = Math.floor(frames / 2);
    const at = mode === 'sweep' ? (k) => [8 * (k <= half ? k : 2 * half - k), 0] :
      (k) => [40 * Math.cos((2 * Math.PI * k) / 60), 40 * Math.sin((2 * Math.PI * k) / 60)];
    const tick = (t) => {
      if (last) intervals.push(t - last);
      last = t;
      if (i > 0) draws.push(map.stats.lastDrawMs);
      if (i >= frames) {
        const iv = summary(intervals);
        resolve({ mode, frames, interval: iv, draw: summary(draws), fps: 1000 / iv.mean,
          pointsDrawn: map.stats.pointsDrawn, thumbnailsDrawn: map.stats.thumbnailsDrawn, renderer: map.renderer.kind });
        return;
      }
      if (mode === 'zoom') {
        map.zoomAt(i < half ? 1.01 : 1 / 1.01);
      } else {
        const [x0, y0] = at(i), [x1, y1] = at(i + 1);
        map.panBy(x1 - x0, y1 - y0);
      }
      i++;
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
}

function summary(a) {
  const s = [...a].sort((p, q) => p - q);
  const at = (q) => s[Math.min(s.length - 1, Math.floor(q * s.length))];
  const mean = s.reduce((p, q) => p + q, 0) / Math.max(1, s.length);
  return { mean, p50: at(0.5), p95: at(0.95), max: s[s.length - 1] };
}
