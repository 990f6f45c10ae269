// Two ways to draw the map's points, chosen once per canvas: WebGL 2 (one
// draw call per atlas sheet: 10,000 thumbnails cost the CPU next to
// nothing) and, where WebGL 2 is missing, canvas 2D. Where thumbnails are
// drawn small, canvas 2D and a WebGL rendered in software draw the picture
// on the CPU instead (raster.js: scaled-down thumbnails copied as blocks of
// pixels), and only then show it; one thumbnail at a time they cost about
// 10 µs each, a second for 100,000.
//
// A renderer's draw(m, side) reads from MapView m: order (rows drawn, in
// order), x, y, cellOf, atlas, view, width, height, dpr; side is the
// thumbnail's side in CSS pixels.

import { Raster } from './raster.js';

const VS = `#version 300 es
in vec2 a_corner;
in vec2 a_pos;
in vec2 a_cell;
in vec4 a_colour;
in vec4 a_style;
uniform vec2 u_center;
uniform float u_scale;
uniform vec2 u_view;
uniform float u_side;
uniform vec2 u_sheet;
uniform float u_cell;
out vec2 v_uv;
out vec2 v_corner;
out vec4 v_colour;
out vec4 v_style;
void main() {
  v_corner = a_corner;
  v_colour = a_colour;
  v_style = a_style;
  vec2 s = (a_pos - u_center) * u_scale;
  s.y = -s.y;
  vec2 p = s + (a_corner - 0.5) * u_side;
  vec2 clip = p / (u_view * 0.5);
  gl_Position = vec4(clip.x, -clip.y, 0.0, 1.0);
  v_uv = (a_cell + a_corner * u_cell) / u_sheet;
}`;

const FS = `#version 300 es
precision mediump float;
in vec2 v_uv;
in vec2 v_corner;
in vec4 v_colour;
in vec4 v_style;
uniform sampler2D u_tex;
uniform bool u_textured;
uniform vec4 u_color;
uniform float u_frame;
uniform bool u_solid;
out vec4 o;
void main() {
  bool coloured = v_colour.a > 0.5;
  vec4 c = u_textured && !(u_solid && coloured) ? texture(u_tex, v_uv) : coloured ? vec4(v_colour.rgb, 1.0) : u_color;
  float e = min(min(v_corner.x, 1.0 - v_corner.x), min(v_corner.y, 1.0 - v_corner.y));
  if (coloured && e < u_frame) c = vec4(v_colour.rgb, 1.0);
  if (v_style.y > 0.5 && (!u_textured || e < max(u_frame, 0.15))) c = vec4(0.94, 0.65, 0.0, 1.0);
  o = mix(vec4(1.0), c, v_style.x);
}`;

// The cache: a picture of the points over the view and a margin round it,
// drawn once and then moved while the map is only panned (a software GL
// or 2D canvas draws 10,000 small thumbnails far more slowly than one big
// picture).
const BLIT_VS = `#version 300 es
in vec2 a_corner;
uniform vec4 u_rect;
uniform vec2 u_view;
out vec2 v_uv;
void main() {
  vec2 p = u_rect.xy + a_corner * u_rect.zw;
  gl_Position = vec4(p.x / u_view.x * 2.0 - 1.0, 1.0 - p.y / u_view.y * 2.0, 0.0, 1.0);
  v_uv = vec2(a_corner.x, 1.0 - a_corner.y);
}`;

const BLIT_FS = `#version 300 es
precision mediump float;
in vec2 v_uv;
uniform sampler2D u_tex;
out vec4 o;
void main() {
  o = texture(u_tex, v_uv);
}`;

/**
 * The margin round the view that a cache covers, in CSS pixels: a third of
 * the view, or an eighth when the CPU draws it zoomed in (raster given:
 * each thumbnail costs many pixels then, and what a change redraws is
 * mostly the view).
 */
function cacheMargin(m, raster, side) {
  return Math.round(Math.max(m.width, m.height) / (raster && raster.zoomedIn(m, side) ? 8 : 3));
}

/** The cache's key: what, besides the centre, its picture depends on. */
function cacheKey(m, side, version) { return [version, m.view.scale, side, m.width, m.height, m.dpr].join('|'); }

/** What, besides centre and scale, it depends on: while zooming it is drawn scaled. */
function cacheBase(m, version) { return [version, m.width, m.height, m.dpr].join('|'); }

/**
 * Where the cache goes on the screen now, in CSS px: {left, top, w, h,
 * inside}; inside says the view (at the cache's own scale) has not left it.
 * Unscaled, the corner is rounded to device pixels so the picture stays sharp.
 */
function cacheRect(c, m) {
  const { cx, cy, scale } = m.view;
  const r = scale / c.scale;
  const dx = (c.cx - cx) * scale, dy = (cy - c.cy) * scale;
  let left = dx - (m.width / 2 + c.margin) * r + m.width / 2;
  let top = dy - (m.height / 2 + c.margin) * r + m.height / 2;
  if (r === 1) {
    left = Math.round(left * m.dpr) / m.dpr;
    top = Math.round(top * m.dpr) / m.dpr;
  }
  return { left, top, w: (m.width + 2 * c.margin) * r, h: (m.height + 2 * c.margin) * r,
    inside: Math.abs(dx) <= c.margin && Math.abs(dy) <= c.margin };
}

/**
 * The policy both renderers follow. Panning moves the cache, redrawn when
 * the view leaves it; zooming (while the wheel or pinch goes on) scales it,
 * and the map is drawn sharp once zooming stops; any other change (new
 * positions, thumbnails, size) draws straight to the screen.
 */
function drawCached(rd, m, side, zooming, version) {
  const key = cacheKey(m, side, version), base = cacheBase(m, version);
  let c = rd.cache;
  if (zooming && c && c.built && c.base === base && c.key !== key) {
    const ratio = m.view.scale / c.scale;
    if (ratio > 0.25 && ratio < 4) { rd.blit(m, cacheRect(c, m), true); return; }
  }
  if (!c || c.key !== key) {
    rd.cache = c = { ...c, key, base, built: false }; // keeps its texture or canvas for reuse
    // Drawing on the CPU costs the same for the cache as for the screen:
    // build it at once, so the first pan does not.
    if (!zooming && !rd.cpuPlan(m, side)) { rd.direct(m, side); return; }
  }
  let rect = c.built ? cacheRect(c, m) : null;
  if (!rect || !rect.inside) {
    if (!rd.build(m, side)) { rd.direct(m, side); return; }
    c.scale = m.view.scale;
    rect = cacheRect(c, m);
  }
  rd.blit(m, rect, false);
}

/** The name of the device (or program) that renders gl. */
function glRendererName(gl) {
  const info = gl.getExtension('WEBGL_debug_renderer_info');
  return String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
}

/** The names of renderers that rasterise in software (SwiftShader, llvmpipe, …). */
const SOFTWARE_GL = /swiftshader|llvmpipe|softpipe|software|basic render/i;

export class GLRenderer {
  /**
   * A WebGL 2 renderer, or null. Unless forced, it asks the browser not to
   * hand out a WebGL it would render in software where a GPU is missing or
   * blocked (failIfMajorPerformanceCaveat): canvas 2D is as quick then.
   * Headless Chromium (and others) hand out SwiftShader all the same, so
   * unless forced the renderer's name is read first on a throw-away canvas
   * (a canvas that once gave a WebGL context cannot give a 2D one) and a
   * software one is refused: at 100,000 points on an idle 2-core machine
   * canvas 2D painted the first change after loading in 71 ms (median; 89
   * at worst) where SwiftShader took 80 (123), and panned as fluidly
   * (docs/page.md, "Fourth round").
   */
  static create(canvas, force) {
    if (!force && GLRenderer.softwareOnly()) return null;
    const gl = canvas.getContext('webgl2', { alpha: false, antialias: false, premultipliedAlpha: true, preserveDrawingBuffer: false,
      failIfMajorPerformanceCaveat: !force });
    if (!gl) return null;
    try {
      return new GLRenderer(canvas, gl);
    } catch (e) {
      console.warn('tsnemap: WebGL 2 failed, drawing with canvas 2D:', e);
      return null;
    }
  }

  /** Whether the WebGL 2 this browser would hand out renders in software. */
  static softwareOnly() {
    const gl = document.createElement('canvas').getContext('webgl2', { failIfMajorPerformanceCaveat: true });
    if (!gl) return true;
    const software = SOFTWARE_GL.test(glRendererName(gl));
    gl.getExtension('WEBGL_lose_context')?.loseContext();
    return software;
  }

  constructor(canvas, gl) {
    this.kind = 'webgl2';
    this.canvas = canvas;
    this.gl = gl;
    this.textures = [];
    this.sheets = null;
    this.raster = new Raster();
    this.glName = glRendererName(gl);
    // Rendered in software (SwiftShader, llvmpipe): thumbnails are drawn on the CPU.
    this.software = SOFTWARE_GL.test(this.glName);
    this.init();
    canvas.addEventListener('webglcontextlost', (e) => e.preventDefault());
    canvas.addEventListener('webglcontextrestored', () => { this.init(); if (this.sheets) this.setSheets(this.sheets); this.onRestore?.(); });
  }

  init() {
    const gl = this.gl;
    const sh = (type, src) => {
      const s = gl.createShader(type);
      gl.shaderSource(s, src);
      gl.compileShader(s);
      if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
      return s;
    };
    const link = (vs, fs) => {
      const p = gl.createProgram();
      gl.attachShader(p, sh(gl.VERTEX_SHADER, vs));
      gl.attachShader(p, sh(gl.FRAGMENT_SHADER, fs));
      gl.linkProgram(p);
      if (!gl.getProgramParameter(p, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(p));
      return p;
    };
    const prog = link(VS, FS);
    this.prog = prog;
    this.blit_ = link(BLIT_VS, BLIT_FS);
    this.blitU = { rect: gl.getUniformLocation(this.blit_, 'u_rect'), view: gl.getUniformLocation(this.blit_, 'u_view'), tex: gl.getUniformLocation(this.blit_, 'u_tex') };
    this.blitVao = gl.createVertexArray();
    gl.bindVertexArray(this.blitVao);
    const quad = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, quad);
    gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([0, 0, 1, 0, 0, 1, 1, 1]), gl.STATIC_DRAW);
    const aq = gl.getAttribLocation(this.blit_, 'a_corner');
    gl.enableVertexAttribArray(aq);
    gl.vertexAttribPointer(aq, 2, gl.FLOAT, false, 0, 0);
    gl.bindVertexArray(null);
    this.cache = null;
    this.u = {};
    for (const n of ['u_center', 'u_scale', 'u_view', 'u_side', 'u_sheet', 'u_cell', 'u_tex', 'u_textured', 'u_color', 'u_frame', 'u_solid']) this.u[n] = gl.getUniformLocation(prog, n);
    this.vao = gl.createVertexArray();
    gl.bindVertexArray(this.vao);
    // Two triangles a point, every vertex carrying its point's position
    // and cell: plain drawArrays, not instancing, which software GL
    // (SwiftShader) runs one instance at a time, 30 times slower.
    this.cornerBuf = gl.createBuffer();
    this.posBuf = gl.createBuffer();
    this.cellBuf = gl.createBuffer();
    this.aCorner = gl.getAttribLocation(prog, 'a_corner');
    this.aPos = gl.getAttribLocation(prog, 'a_pos');
    this.aCell = gl.getAttribLocation(prog, 'a_cell');
    for (const [loc, buf] of [[this.aCorner, this.cornerBuf], [this.aPos, this.posBuf], [this.aCell, this.cellBuf]]) {
      gl.bindBuffer(gl.ARRAY_BUFFER, buf);
      gl.enableVertexAttribArray(loc);
      gl.vertexAttribPointer(loc, 2, gl.FLOAT, false, 0, 0);
    }
    // Colour and style: four normalised bytes a vertex.
    this.colourBuf = gl.createBuffer();
    this.styleBuf = gl.createBuffer();
    for (const [name, buf] of [['a_colour', this.colourBuf], ['a_style', this.styleBuf]]) {
      const loc = gl.getAttribLocation(prog, name);
      gl.bindBuffer(gl.ARRAY_BUFFER, buf);
      gl.enableVertexAttribArray(loc);
      gl.vertexAttribPointer(loc, 4, gl.UNSIGNED_BYTE, true, 0, 0);
    }
    gl.bindVertexArray(null);
    this.colours = new Uint32Array(0);
    this.styles = new Uint32Array(0);
    this.pos = new Float32Array(0);
    this.cells = new Float32Array(0);
    this.corners = new Float32Array(0);
    this.cornersUploaded = 0;
    this.textures = [];
  }

  /**
   * The atlas sheets to draw from. With a GPU they go up as textures at
   * once (with mipmaps, for thumbnails drawn smaller than a cell). In
   * software (SwiftShader) they go up only when the GPU path first draws
   * thumbnails, zoomed in past what the CPU draws: otherwise the CPU draws
   * every thumbnail and the textures are not used, and at 100,000 points
   * uploading a 5,072 × 5,072 sheet with its mipmaps kept SwiftShader busy
   * for 1–2 s after loading, so the first colour or search change waited
   * behind it. Drawn there, thumbnails are bigger than their cell (no
   * mipmaps needed).
   */
  setSheets(sheets) {
    const gl = this.gl;
    for (const t of this.textures) if (t) gl.deleteTexture(t);
    this.sheets = sheets;
    this.textures = sheets.map((bm) => (this.software ? null : this.uploadSheet(bm, true)));
  }

  /** The texture of sheet i, uploaded now if it is not yet. */
  texture(i) {
    if (!this.textures[i]) this.textures[i] = this.uploadSheet(this.sheets[i], !this.software);
    return this.textures[i];
  }

  /** A texture of the sheet bm, with mipmaps or without. */
  uploadSheet(bm, mipmaps) {
    const gl = this.gl;
    const t = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D, t);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, gl.RGBA, gl.UNSIGNED_BYTE, bm);
    if (mipmaps) gl.generateMipmap(gl.TEXTURE_2D);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, mipmaps ? gl.LINEAR_MIPMAP_LINEAR : gl.LINEAR);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.LINEAR);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
    return t;
  }

  draw(m, side, zooming) {
    const gl = this.gl;
    if (gl.isContextLost()) return;
    const a = m.atlas;
    if (a && a.sheets !== this.sheets) this.setSheets(a.sheets);
    if (!a && this.sheets) this.setSheets([]);
    if (m.version !== this.version) {
      this.version = m.version;
      this.filled = false; // the vertex arrays are filled when next drawn with them
    }
    this.zooming = zooming;
    drawCached(this, m, side, zooming, this.version);
  }

  /** How the CPU would draw this ({look, sprites}), or null: it does not here. */
  cpuPlan(m, side) { return this.software ? planCPU(this.raster, m, side, this.zooming) : null; }

  direct(m, side) {
    const gl = this.gl;
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    gl.viewport(0, 0, this.canvas.width, this.canvas.height);
    this.drawPoints(m, side, m.view.cx, m.view.cy, m.width, m.height);
  }

  blit(m, rect, scaled) {
    const gl = this.gl;
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    gl.viewport(0, 0, this.canvas.width, this.canvas.height);
    gl.clearColor(1, 1, 1, 1);
    gl.clear(gl.COLOR_BUFFER_BIT);
    gl.useProgram(this.blit_);
    gl.bindVertexArray(this.blitVao);
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D, this.cache.tex);
    const f = scaled ? gl.LINEAR : gl.NEAREST;
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, f);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, f);
    gl.uniform1i(this.blitU.tex, 0);
    gl.uniform4f(this.blitU.rect, rect.left, rect.top, rect.w, rect.h);
    gl.uniform2f(this.blitU.view, m.width, m.height);
    gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4);
    gl.bindVertexArray(null);
  }

  /** Draws the points round the current centre into the cache; false if it cannot be that big. */
  build(m, side) {
    const gl = this.gl;
    const c = this.cache;
    const M = cacheMargin(m, this.software ? this.raster : null, side);
    const vw = m.width + 2 * M, vh = m.height + 2 * M;
    const w = Math.round(vw * m.dpr), h = Math.round(vh * m.dpr);
    const max = gl.getParameter(gl.MAX_TEXTURE_SIZE);
    if (w > max || h > max) return false; // a huge screen: no cache, draw each frame
    const plan = this.cpuPlan(m, side);
    if (!c.tex || c.w !== w || c.h !== h) {
      if (c.tex) { gl.deleteTexture(c.tex); gl.deleteFramebuffer(c.fb); }
      c.tex = gl.createTexture();
      gl.bindTexture(gl.TEXTURE_2D, c.tex);
      gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, w, h, 0, gl.RGBA, gl.UNSIGNED_BYTE, null);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
      c.fb = gl.createFramebuffer();
      gl.bindFramebuffer(gl.FRAMEBUFFER, c.fb);
      gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, c.tex, 0);
      c.w = w; c.h = h;
      c.synced = false;
    }
    this.lastCPU = !!plan;
    if (plan) {
      // Rows bottom up, as GL draws into a texture and the blit reads it.
      const { img, dirty } = this.raster.draw(m, side, m.view.cx, m.view.cy, w, h, plan.look, plan.sprites, true);
      const d = c.synced ? dirty : { x0: 0, y0: 0, x1: w, y1: h };
      if (d) {
        gl.bindTexture(gl.TEXTURE_2D, c.tex);
        gl.pixelStorei(gl.UNPACK_ROW_LENGTH, w);
        gl.pixelStorei(gl.UNPACK_SKIP_PIXELS, d.x0);
        gl.pixelStorei(gl.UNPACK_SKIP_ROWS, h - d.y1);
        gl.texSubImage2D(gl.TEXTURE_2D, 0, d.x0, h - d.y1, d.x1 - d.x0, d.y1 - d.y0, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array(img.data.buffer));
        for (const p of [gl.UNPACK_ROW_LENGTH, gl.UNPACK_SKIP_PIXELS, gl.UNPACK_SKIP_ROWS]) gl.pixelStorei(p, 0);
      }
      c.synced = true; // the texture holds the picture: next time only what changed goes up
    } else {
      gl.bindFramebuffer(gl.FRAMEBUFFER, c.fb);
      gl.viewport(0, 0, w, h);
      this.drawPoints(m, side, m.view.cx, m.view.cy, vw, vh);
      c.synced = false;
    }
    c.cx = m.view.cx; c.cy = m.view.cy; c.margin = M; c.built = true;
    return true;
  }

  /** Draws every point, centred on (cx, cy), into a target vw × vh CSS px. */
  drawPoints(m, side, cx, cy, vw, vh) {
    const gl = this.gl;
    const a = m.atlas;
    if (!this.filled) { this.fill(m); this.filled = true; }
    const groups = this.groups, k = this.count;
    gl.clearColor(1, 1, 1, 1);
    gl.clear(gl.COLOR_BUFFER_BIT);
    if (!k) return;
    gl.useProgram(this.prog);
    gl.bindVertexArray(this.vao);
    if (this.upload) {
      this.upload = false;
      gl.bindBuffer(gl.ARRAY_BUFFER, this.posBuf);
      gl.bufferData(gl.ARRAY_BUFFER, this.pos.subarray(0, 12 * k), gl.DYNAMIC_DRAW);
      gl.bindBuffer(gl.ARRAY_BUFFER, this.cellBuf);
      gl.bufferData(gl.ARRAY_BUFFER, this.cells.subarray(0, 12 * k), gl.DYNAMIC_DRAW);
      gl.bindBuffer(gl.ARRAY_BUFFER, this.colourBuf);
      gl.bufferData(gl.ARRAY_BUFFER, this.colours.subarray(0, 6 * k), gl.DYNAMIC_DRAW);
      gl.bindBuffer(gl.ARRAY_BUFFER, this.styleBuf);
      gl.bufferData(gl.ARRAY_BUFFER, this.styles.subarray(0, 6 * k), gl.DYNAMIC_DRAW);
      if (this.cornersUploaded < k) {
        gl.bindBuffer(gl.ARRAY_BUFFER, this.cornerBuf);
        gl.bufferData(gl.ARRAY_BUFFER, this.corners, gl.STATIC_DRAW);
        this.cornersUploaded = this.corners.length / 12;
      }
    }
    const u = this.u;
    gl.uniform2f(u.u_center, cx, cy);
    gl.uniform1f(u.u_scale, m.view.scale);
    gl.uniform2f(u.u_view, vw, vh);
    gl.uniform1i(u.u_tex, 0);
    const { frame, solid } = frameOf(m, side);
    gl.uniform1f(u.u_frame, frame / Math.max(side, 1));
    gl.uniform1i(u.u_solid, solid ? 1 : 0);
    gl.activeTexture(gl.TEXTURE0);
    for (const g of groups) {
      if (g.sheet < 0) {
        gl.uniform1i(u.u_textured, 0);
        gl.uniform4f(u.u_color, 0.48, 0.52, 0.58, 1);
        gl.uniform1f(u.u_side, Math.max(2, Math.min(6, side / 3)));
      } else {
        const bm = a.sheets[g.sheet];
        gl.bindTexture(gl.TEXTURE_2D, this.texture(g.sheet));
        gl.uniform1i(u.u_textured, 1);
        gl.uniform2f(u.u_sheet, bm.width, bm.height);
        gl.uniform1f(u.u_cell, a.cell);
        gl.uniform1f(u.u_side, side);
      }
      gl.drawArrays(gl.TRIANGLES, 6 * g.start, 6 * g.count);
    }
    gl.bindVertexArray(null);
  }
}

// The corners of a point's two triangles.
const QUAD = new Float32Array([0, 0, 1, 0, 0, 1, 0, 1, 1, 0, 1, 1]);

// Points are grouped: rows without a thumbnail (dots) first, then by
// sheet; sheets follow row order, so the drawing order stays the row order.
GLRenderer.prototype.fill = function fill(m) {
  const a = m.atlas;
  const list = m.drawList();
  const n = list.length;
  if (this.pos.length < 12 * n) {
    this.pos = new Float32Array(12 * n);
    this.cells = new Float32Array(12 * n);
    this.colours = new Uint32Array(6 * n);
    this.styles = new Uint32Array(6 * n);
    this.corners = new Float32Array(12 * n);
    for (let i = 0; i < n; i++) this.corners.set(QUAD, 12 * i);
  }
  const groups = [];
  let k = 0;
  const sheetCount = a ? a.sheets.length : 0;
  for (let g = -1; g < sheetCount; g++) {
    const start = k;
    for (const r of list) {
      const c = a ? m.cellOf[r] : -1;
      const sheet = c >= 0 ? a.sheetOf[c] : -1;
      if (sheet !== g) continue;
      const x = m.x[r], y = m.y[r], u = c >= 0 ? a.sxOf[c] : 0, v = c >= 0 ? a.syOf[c] : 0;
      for (let j = 12 * k; j < 12 * k + 12; j += 2) {
        this.pos[j] = x; this.pos[j + 1] = y;
        this.cells[j] = u; this.cells[j + 1] = v;
      }
      const col = m.colour[r], st = m.fade[r] | (m.marked[r] ? 0xff00 : 0);
      this.colours.fill(col, 6 * k, 6 * k + 6);
      this.styles.fill(st, 6 * k, 6 * k + 6);
      k++;
    }
    if (k > start) groups.push({ sheet: g, start, count: k - start });
  }
  this.groups = groups;
  this.count = k;
  this.upload = true;
};

export class Canvas2DRenderer {
  constructor(canvas) {
    this.kind = 'canvas2d';
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d', { alpha: false });
    this.cache = null;
    this.raster = new Raster();
  }

  /** How the CPU would draw this ({look, sprites}), or null: drawImage a thumbnail. */
  cpuPlan(m, side) { return planCPU(this.raster, m, side, this.zooming); }

  draw(m, side, zooming) {
    this.zooming = zooming;
    drawCached(this, m, side, zooming, m.version);
  }

  direct(m, side) {
    this.ctx.setTransform(m.dpr, 0, 0, m.dpr, 0, 0);
    drawPoints2D(this.ctx, m, side, m.view.cx, m.view.cy, m.width, m.height);
  }

  build(m, side) {
    const c = this.cache;
    const M = cacheMargin(m, this.raster, side);
    const vw = m.width + 2 * M, vh = m.height + 2 * M;
    const w = Math.round(vw * m.dpr), h = Math.round(vh * m.dpr);
    if (!c.canvas || c.canvas.width !== w || c.canvas.height !== h) { c.canvas = new OffscreenCanvas(w, h); c.synced = false; }
    const cc = c.canvas.getContext('2d', { alpha: false });
    const plan = this.cpuPlan(m, side);
    this.lastCPU = !!plan;
    if (plan) {
      const { img, dirty } = this.raster.draw(m, side, m.view.cx, m.view.cy, w, h, plan.look, plan.sprites, false);
      const d = c.synced ? dirty : { x0: 0, y0: 0, x1: w, y1: h };
      if (d) cc.putImageData(img, 0, 0, d.x0, d.y0, d.x1 - d.x0, d.y1 - d.y0);
      c.synced = true; // the canvas holds the picture: next time only what changed goes in
    } else {
      cc.setTransform(m.dpr, 0, 0, m.dpr, 0, 0);
      drawPoints2D(cc, m, side, m.view.cx, m.view.cy, vw, vh);
      c.synced = false;
    }
    c.cx = m.view.cx; c.cy = m.view.cy; c.margin = M; c.built = true;
    return true;
  }

  blit(m, rect, scaled) {
    const ctx = this.ctx;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    ctx.imageSmoothingEnabled = scaled;
    const d = m.dpr;
    if (scaled) ctx.drawImage(this.cache.canvas, rect.left * d, rect.top * d, rect.w * d, rect.h * d);
    else ctx.drawImage(this.cache.canvas, Math.round(rect.left * d), Math.round(rect.top * d));
  }
}

/**
 * How thumbnails show their colour: a frame of `frame` CSS px when they are
 * big enough to see both; when small (zoomed out), solid squares of the
 * colour, which is then what one sees.
 */
function frameOf(m, side) {
  if (!m.styled) return { frame: 0, solid: false };
  if (side < 14) return { frame: 0, solid: true };
  return { frame: Math.max(2, Math.min(6, side / 12)), solid: false };
}

/** {look, sprites} for drawing on the CPU, or null where the sprites would not fit. */
function planCPU(raster, m, side, zooming) {
  const look = frameOf(m, side);
  const M = cacheMargin(m, raster, side);
  const sprites = raster.spritesFor(m, side, look, zooming, { cx: m.view.cx, cy: m.view.cy, w: m.width + 2 * M, h: m.height + 2 * M });
  return sprites === undefined ? null : { look, sprites };
}

const cssOf = new Map();
function css(packed) {
  let s = cssOf.get(packed);
  if (!s) {
    s = `rgb(${packed & 255}, ${(packed >>> 8) & 255}, ${(packed >>> 16) & 255})`;
    cssOf.set(packed, s);
  }
  return s;
}

/** Draws the points centred on (cx, cy) into ctx, a vw × vh CSS px target. */
function drawPoints2D(ctx, m, side, cx, cy, vw, vh) {
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, vw, vh);
  const half = side / 2;
  const scale = m.view.scale;
  const w2 = vw / 2, h2 = vh / 2;
  const W = vw + half, H = vh + half;
  const a = m.atlas;
  // Smoothing costs time and shows only when thumbnails are drawn large.
  ctx.imageSmoothingEnabled = !a || side > a.cell / 3;
  ctx.imageSmoothingQuality = 'low';
  const grey = '#7a8494';
  ctx.fillStyle = grey;
  const dot = Math.max(2, Math.min(6, side / 3));
  const { frame, solid } = frameOf(m, side);
  let alpha = 1;
  for (const r of m.drawList()) {
    const sx = (m.x[r] - cx) * scale + w2, sy = (cy - m.y[r]) * scale + h2;
    if (sx < -half || sy < -half || sx > W || sy > H) continue;
    const fa = m.fade[r] / 255;
    if (fa !== alpha) { ctx.globalAlpha = alpha = fa; }
    const c = a ? m.cellOf[r] : -1;
    const bm = c >= 0 ? a.sheets[a.sheetOf[c]] : null;
    const col = m.colour[r] >>> 24 ? css(m.colour[r]) : null;
    const mark = m.marked[r];
    if (bm && !(solid && col)) {
      ctx.drawImage(bm, a.sxOf[c], a.syOf[c], a.cell, a.cell, sx - half, sy - half, side, side);
      if ((col && frame) || mark) {
        const lw = mark ? Math.max(frame, 3) : frame;
        ctx.strokeStyle = mark ? '#f0a500' : col;
        ctx.lineWidth = lw;
        ctx.strokeRect(sx - half + lw / 2, sy - half + lw / 2, side - lw, side - lw);
      }
    } else {
      ctx.fillStyle = mark ? '#f0a500' : col || grey;
      if (bm) ctx.fillRect(sx - half, sy - half, side, side);
      else ctx.fillRect(sx - dot / 2, sy - dot / 2, dot, dot);
    }
  }
  ctx.globalAlpha = 1;
}
