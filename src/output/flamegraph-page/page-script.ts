// The flame graph page's JavaScript, inlined into the single HTML file. Plain ES2017 for any
// current browser; kept as a string because the project's TypeScript has no DOM types. It must
// never contain a backtick, a dollar-brace or a closing script tag (html.ts checks the last).
//
// Layout: an icicle (root on top, callees below). The root and the zoomed frame's ancestors stay
// at the top of the page whatever the depth, and deep stacks grow down the scrollable page.
// Drawing walks the preorder arrays and skips whole subtrees narrower than a pixel, so the cost
// follows what is visible, not the number of nodes.

export const PAGE_SCRIPT = String.raw`
(function () {
  'use strict';
  var KINDS = ['kernel', 'native', 'go', 'unknown', 'process', 'root'];
  var ROW = 18;
  var MIN_WIDTH = 1;
  var FONT = '12px ui-monospace, Menlo, Consolas, "DejaVu Sans Mono", monospace';
  var MATCH_COLOR = 'rgb(225,60,225)';

  var $ = function (id) { return document.getElementById(id); };
  var canvas = $('flame'), ctx = canvas.getContext('2d'), tip = $('tip'), statusEl = $('status');
  var searchEl = $('search'), matchEl = $('match'), typeEl = $('type'), crumbsEl = $('crumbs');

  var meta, n = 0, depth, func, parent, end, selfs = [], totals = [], xoffs = [];
  var funcMatch = null, subtreeMatch = null, type = 0, zoom = 0, charW = 7;
  var lastVisible = { nodes: [], xs: [], ws: [] };
  var lastMatch = { value: 0, percent: 0, count: 0 };
  var hook = { ready: false, error: null, frameCount: 0, decodeMs: 0, firstRenderMs: 0 };
  window.__flamewire = hook;

  function fail(msg) {
    hook.error = String(msg);
    statusEl.textContent = 'Cannot show the flame graph: ' + msg;
    statusEl.className = 'error';
    statusEl.style.display = '';
  }

  // ---- decoding -------------------------------------------------------------------------
  function base64Bytes(s) {
    var bin = atob(s.replace(/\s+/g, ''));
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  function gunzip(bytes) {
    if (typeof DecompressionStream !== 'function') {
      return Promise.reject(new Error('this browser has no DecompressionStream (Chrome 80+, Firefox 113+, Safari 16.4+ have it)'));
    }
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
    return new Response(stream).arrayBuffer();
  }

  function decode(buf) {
    var b = new Uint8Array(buf), pos = 0;
    function uint() {
      var r = 0, mul = 1, x;
      do {
        if (pos >= b.length) throw new Error('payload truncated');
        x = b[pos++];
        r += (x & 0x7f) * mul;
        mul *= 128;
      } while (x & 0x80);
      return r;
    }
    if (b.length < 4 || String.fromCharCode(b[0], b[1], b[2], b[3]) !== 'FWG1') throw new Error('unknown payload format');
    pos = 4;
    var jlen = uint();
    if (pos + jlen > b.length) throw new Error('payload truncated');
    meta = JSON.parse(new TextDecoder().decode(b.subarray(pos, pos + jlen)));
    pos += jlen;
    n = uint();
    var nt = meta.sampleTypes.length;
    depth = new Uint16Array(n);
    func = new Uint32Array(n);
    var i, t;
    for (i = 0; i < n; i++) depth[i] = uint();
    for (i = 0; i < n; i++) func[i] = uint();
    for (t = 0; t < nt; t++) {
      var s = new Float64Array(n);
      for (i = 0; i < n; i++) s[i] = uint();
      selfs.push(s);
    }
    if (n === 0 || depth[0] !== 0) throw new Error('payload has no root');
    // Parent and subtree end from the preorder depths.
    parent = new Int32Array(n);
    end = new Uint32Array(n);
    var stack = new Int32Array(65537), sp = 0;
    parent[0] = -1;
    stack[sp++] = 0;
    for (i = 1; i < n; i++) {
      while (sp > 0 && depth[stack[sp - 1]] >= depth[i]) end[stack[--sp]] = i;
      if (sp === 0 || depth[i] !== depth[stack[sp - 1]] + 1) throw new Error('payload tree is malformed');
      parent[i] = stack[sp - 1];
      stack[sp++] = i;
    }
    while (sp > 0) end[stack[--sp]] = n;
    for (t = 0; t < nt; t++) {
      var tot = Float64Array.from(selfs[t]);
      for (i = n - 1; i > 0; i--) tot[parent[i]] += tot[i];
      totals.push(tot);
      xoffs.push(null);
    }
  }

  // Left edge of every node in value units: children packed from their parent's left edge.
  function xoff(t) {
    if (xoffs[t]) return xoffs[t];
    var x = new Float64Array(n), cursor = new Float64Array(n), tot = totals[t];
    for (var i = 1; i < n; i++) {
      var p = parent[i];
      x[i] = x[p] + cursor[p];
      cursor[p] += tot[i];
    }
    xoffs[t] = x;
    return x;
  }

  // ---- formatting -----------------------------------------------------------------------
  function fnName(i) { return meta.strings[meta.funcs[func[i] * 5]]; }
  function fnKind(i) { return KINDS[meta.funcs[func[i] * 5 + 3]] || 'unknown'; }
  function grouped(v) { return Math.round(v).toLocaleString('en-US'); }
  function fmtValue(v, t) {
    var st = meta.sampleTypes[t] || { type: '', unit: '' };
    var u = st.unit;
    if (u === 'nanoseconds') {
      if (v >= 1e9) return (v / 1e9).toFixed(v >= 1e11 ? 0 : 2) + ' s';
      if (v >= 1e6) return (v / 1e6).toFixed(2) + ' ms';
      if (v >= 1e3) return (v / 1e3).toFixed(2) + ' \u00b5s';
      return grouped(v) + ' ns';
    }
    if (u === 'bytes') {
      var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'], k = 0;
      while (v >= 1024 && k < units.length - 1) { v /= 1024; k++; }
      return (k === 0 ? grouped(v) : v.toFixed(2)) + ' ' + units[k];
    }
    if (u === 'count' || u === '') return grouped(v) + ' ' + (st.type || 'samples');
    return grouped(v) + ' ' + u;
  }
  // Profiles with off-CPU time name their types ("Off-CPU"); others show "cpu (nanoseconds)".
  function typeLabel(t) {
    var st = meta.sampleTypes[t];
    return st.label || st.type + (st.unit ? ' (' + st.unit + ')' : '');
  }
  // A value with the type's name, unless the value says it already ("125 samples").
  function namedValue(v, t) {
    var st = meta.sampleTypes[t];
    return st.label && st.unit !== 'count' && st.unit !== '' ? st.label + ' ' + fmtValue(v, t) : fmtValue(v, t);
  }
  function pct(v, of) { return (of > 0 ? (100 * v / of) : 0).toFixed(2) + '%'; }

  // ---- colours --------------------------------------------------------------------------
  function hash(s) {
    var h = 2166136261;
    for (var i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 16777619); }
    return ((h >>> 0) % 1000) / 1000;
  }
  function rgb(r, g, b) { return 'rgb(' + Math.round(r) + ',' + Math.round(g) + ',' + Math.round(b) + ')'; }
  // Kernel orange, native red, Go aqua (as in Brendan Gregg's mixed-mode palettes), unknown grey.
  var PALETTE = {
    kernel: function (v) { return rgb(235 + 20 * v, 135 + 50 * v, 35 + 25 * v); },
    native: function (v) { return rgb(215 + 40 * v, 60 + 70 * v, 50 + 30 * v); },
    go: function (v) { return rgb(60 + 60 * v, 180 + 40 * v, 200 + 30 * v); },
    unknown: function (v) { return rgb(175 + 30 * v, 175 + 30 * v, 175 + 30 * v); },
    process: function (v) { return rgb(175 + 30 * v, 160 + 30 * v, 225 + 20 * v); },
    root: function () { return rgb(200, 205, 215); }
  };
  var colorCache = new Map();
  function color(i) {
    var f = func[i];
    var c = colorCache.get(f);
    if (c === undefined) {
      var k = fnKind(i);
      c = PALETTE[k](hash(fnName(i)));
      colorCache.set(f, c);
    }
    return c;
  }

  // ---- drawing --------------------------------------------------------------------------
  function ancestors(node) {
    var chain = [];
    for (var p = parent[node]; p >= 0; p = parent[p]) chain.push(p);
    return chain.reverse();
  }

  function render() {
    var W = canvas.parentNode.clientWidth;
    if (W <= 0) return;
    var tot = totals[type], x = xoff(type), zt = tot[zoom];
    var scale = zt > 0 ? W / zt : 0, x0 = x[zoom];
    var nodes = [], xs = [], ws = [], maxDepth = depth[zoom], ticks = [];
    var chain = ancestors(zoom);
    for (var a = 0; a < chain.length; a++) { nodes.push(chain[a]); xs.push(0); ws.push(W); }
    var stopAt = end[zoom], i = zoom;
    while (i < stopAt) {
      var w = tot[i] * scale;
      if (w < MIN_WIDTH) {
        // A match too narrow to draw still gets a one-pixel mark, so a search never finds nothing visible.
        if (subtreeMatch !== null && subtreeMatch[i] === 1 && w > 0) ticks.push(i);
        i = end[i];
        continue;
      }
      nodes.push(i); xs.push((x[i] - x0) * scale); ws.push(w);
      if (depth[i] > maxDepth) maxDepth = depth[i];
      i++;
    }
    var H = (maxDepth + 1) * ROW + 2;
    var dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(W * dpr) || canvas.height !== Math.round(H * dpr)) {
      canvas.width = Math.round(W * dpr);
      canvas.height = Math.round(H * dpr);
      canvas.style.height = H + 'px';
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    ctx.font = FONT;
    ctx.textBaseline = 'middle';
    charW = ctx.measureText('M').width || 7;
    for (var k = 0; k < nodes.length; k++) {
      var node = nodes[k], fx = xs[k], fw = ws[k], fy = depth[node] * ROW;
      var matched = funcMatch !== null && funcMatch[func[node]] === 1;
      ctx.globalAlpha = k < chain.length ? 0.6 : 1;
      ctx.fillStyle = matched ? MATCH_COLOR : color(node);
      ctx.fillRect(fx, fy, fw > 2 ? fw - 1 : fw, ROW - 1);
      if (fw >= charW * 3 + 6) {
        var name = fnName(node), max = Math.floor((fw - 6) / charW);
        var label = name.length <= max ? name : name.slice(0, max - 2) + '..';
        ctx.fillStyle = '#000';
        ctx.fillText(label, fx + 3, fy + ROW / 2);
      }
    }
    ctx.globalAlpha = 1;
    ctx.fillStyle = MATCH_COLOR;
    for (var m = 0; m < ticks.length; m++) {
      ctx.fillRect(Math.floor((x[ticks[m]] - x0) * scale), depth[ticks[m]] * ROW, 1, ROW - 1);
    }
    lastVisible = { nodes: nodes, xs: xs, ws: ws };
    $('reset').disabled = zoom === 0;
    $('up').disabled = zoom === 0;
    crumbsEl.textContent = zoom === 0 ? '' : 'Zoomed: ' + chain.concat([zoom]).map(fnName).join(' \u203a ');
  }

  var pending = false;
  function scheduleRender() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(function () { pending = false; render(); });
  }

  // ---- hit testing, tooltip, zoom -------------------------------------------------------
  function nodeAt(px, py) {
    var row = Math.floor(py / ROW);
    if (row < 0 || px < 0) return -1;
    var zd = depth[zoom];
    if (row < zd) return ancestors(zoom)[row];
    var tot = totals[type], x = xoff(type), zt = tot[zoom];
    if (!(zt > 0)) return -1;
    var scale = canvas.parentNode.clientWidth / zt;
    var v = x[zoom] + px / scale, node = zoom;
    if (v < x[zoom] || v >= x[zoom] + zt) return -1;
    while (depth[node] < row) {
      var found = -1;
      for (var c = node + 1; c < end[node]; c = end[c]) {
        if (v >= x[c] && v < x[c] + tot[c]) { found = c; break; }
      }
      if (found < 0) return -1;
      node = found;
    }
    return tot[node] * scale >= MIN_WIDTH ? node : -1;
  }

  function tooltipText(node) {
    var tot = totals[type], all = tot[0], p = parent[node];
    var lines = [];
    var kind = fnKind(node);
    var fi = func[node] * 5;
    var desc = kind === 'root' ? 'all samples' : kind === 'process' ? 'process' : kind + ' frame' + (meta.funcs[fi + 4] ? ' (inlined)' : '');
    lines.push(desc);
    var named = meta.sampleTypes.length && meta.sampleTypes[type].label ? meta.sampleTypes[type].label + ': ' : '';
    lines.push(meta.sampleTypes.length ? named + fmtValue(tot[node], type) + ' \u2014 ' + pct(tot[node], all) + ' of total' +
      (p >= 0 ? ', ' + pct(tot[node], tot[p]) + ' of parent' : '') : '');
    if (selfs[type] && selfs[type][node] > 0) lines.push('self: ' + fmtValue(selfs[type][node], type) + ' (' + pct(selfs[type][node], all) + ')');
    for (var t = 0; t < meta.sampleTypes.length; t++) {
      if (t !== type) lines.push((meta.sampleTypes[t].label || meta.sampleTypes[t].type) + ': ' + fmtValue(totals[t][node], t));
    }
    var file = meta.funcs[fi + 1], line = meta.funcs[fi + 2];
    if (file >= 0) lines.push(meta.strings[file] + (line > 0 ? ':' + line : ''));
    return { name: fnName(node), body: lines.join('\n') };
  }

  function showTip(node, cx, cy) {
    if (node < 0) { tip.style.display = 'none'; return; }
    var t = tooltipText(node);
    tip.textContent = '';
    var nameEl = document.createElement('div');
    nameEl.className = 'name';
    nameEl.textContent = t.name;
    var bodyEl = document.createElement('div');
    bodyEl.textContent = t.body;
    tip.appendChild(nameEl);
    tip.appendChild(bodyEl);
    tip.style.display = 'block';
    var r = tip.getBoundingClientRect();
    var left = cx + 14, top = cy + 14;
    if (left + r.width > window.innerWidth - 4) left = Math.max(4, cx - r.width - 14);
    if (top + r.height > window.innerHeight - 4) top = Math.max(4, cy - r.height - 14);
    tip.style.left = left + 'px';
    tip.style.top = top + 'px';
  }

  function zoomTo(node) {
    if (node < 0 || node >= n || !(totals[type][node] > 0)) return;
    zoom = node;
    render();
  }

  // ---- search ---------------------------------------------------------------------------
  // Regex when the query is one, else a plain substring; case-insensitive unless it has capitals.
  function search(q) {
    q = String(q || '');
    searchEl.classList.remove('invalid');
    searchEl.title = '';
    if (q === '') {
      funcMatch = null;
      subtreeMatch = null;
      lastMatch = { value: 0, percent: 0, count: 0 };
      matchEl.textContent = '';
      render();
      return lastMatch;
    }
    var flags = /[A-Z]/.test(q) ? '' : 'i', test;
    try {
      var re = new RegExp(q, flags);
      test = function (s) { return re.test(s); };
    } catch (e) {
      var needle = flags ? q.toLowerCase() : q;
      test = function (s) { return (flags ? s.toLowerCase() : s).indexOf(needle) >= 0; };
      searchEl.title = 'Not a valid regular expression: matching it as text';
    }
    var nf = meta.funcs.length / 5;
    funcMatch = new Uint8Array(nf);
    for (var f = 0; f < nf; f++) {
      var k = meta.funcs[f * 5 + 3];
      // The root and process names are not frames: matching "all" should not match everything.
      if (KINDS[k] !== 'root' && test(meta.strings[meta.funcs[f * 5]])) funcMatch[f] = 1;
    }
    subtreeMatch = new Uint8Array(n);
    for (var i = n - 1; i > 0; i--) {
      if (subtreeMatch[i] === 1 || funcMatch[func[i]] === 1) { subtreeMatch[i] = 1; subtreeMatch[parent[i]] = 1; }
    }
    recountMatch();
    render();
    return lastMatch;
  }

  // Matched value counts each sample once: an outermost match covers its whole subtree.
  function recountMatch() {
    if (funcMatch === null) return;
    var tot = totals[type], sum = 0, count = 0, i = 0;
    while (i < n) {
      if (funcMatch[func[i]] === 1) { sum += tot[i]; count++; i = end[i]; } else i++;
    }
    lastMatch = { value: sum, percent: tot[0] > 0 ? 100 * sum / tot[0] : 0, count: count };
    matchEl.textContent = 'Matched: ' + pct(sum, tot[0]) + ' (' + fmtValue(sum, type) + ')';
  }

  // ---- page -----------------------------------------------------------------------------
  function summary() {
    var parts = [];
    for (var t = 0; t < meta.sampleTypes.length; t++) parts.push(namedValue(totals[t][0], t));
    var text = 'Total: ' + (parts.join(' \u00b7 ') || 'no samples');
    var dur = Number(meta.durationNanos);
    if (dur > 0) text += ' \u00b7 duration ' + (dur / 1e9).toFixed(dur >= 1e10 ? 0 : 2) + ' s';
    var start = Number(meta.timeNanos) / 1e6;
    if (start > 0) text += ' \u00b7 started ' + new Date(start).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
    $('summary').textContent = text;
  }

  function footer() {
    var el = $('footer');
    var head = document.createElement('div');
    head.textContent = 'flamewire \u00b7 ' + n.toLocaleString('en-US') + ' frames in the call tree \u00b7 ' +
      (meta.funcs.length / 5).toLocaleString('en-US') + ' functions' +
      (meta.period > 0 ? ' \u00b7 period ' + meta.period + ' ' + (meta.periodType.type || '') + ' ' + (meta.periodType.unit || '') : '');
    el.appendChild(head);
    if (meta.comments.length) {
      var ul = document.createElement('ul');
      ul.id = 'comments';
      meta.comments.forEach(function (c) {
        var li = document.createElement('li');
        li.textContent = c;
        ul.appendChild(li);
      });
      el.appendChild(ul);
    }
  }

  function setup() {
    if (meta.sampleTypes.length > 1) {
      meta.sampleTypes.forEach(function (_, t) {
        var o = document.createElement('option');
        o.value = String(t);
        o.textContent = typeLabel(t);
        typeEl.appendChild(o);
      });
    } else {
      $('typeWrap').style.display = 'none';
    }
    type = meta.defaultType >= 0 && meta.defaultType < meta.sampleTypes.length ? meta.defaultType : 0;
    if (!meta.sampleTypes.length) { selfs.push(new Float64Array(n)); totals.push(new Float64Array(n)); xoffs.push(null); }
    typeEl.value = String(type);
    typeEl.addEventListener('change', function () {
      type = Number(typeEl.value);
      if (!(totals[type][zoom] > 0)) zoom = 0;
      recountMatch();
      summary();
      render();
    });
    searchEl.addEventListener('input', function () { search(searchEl.value); });
    $('reset').addEventListener('click', function () { zoomTo(0); });
    $('up').addEventListener('click', function () { if (zoom > 0) zoomTo(parent[zoom]); });
    document.addEventListener('keydown', function (e) {
      if (e.key === 'Escape' && document.activeElement !== searchEl) zoomTo(0);
      if ((e.ctrlKey || e.metaKey) && e.key === 'f') { e.preventDefault(); searchEl.focus(); searchEl.select(); }
    });
    canvas.addEventListener('mousemove', function (e) { showTip(nodeAt(e.offsetX, e.offsetY), e.clientX, e.clientY); });
    canvas.addEventListener('mouseleave', function () { tip.style.display = 'none'; });
    canvas.addEventListener('click', function (e) {
      var node = nodeAt(e.offsetX, e.offsetY);
      if (node >= 0) { zoomTo(node); showTip(nodeAt(e.offsetX, e.offsetY), e.clientX, e.clientY); }
    });
    window.addEventListener('resize', scheduleRender);
    summary();
    footer();
  }

  // A read-only view for tests and curious users; only search() changes anything (the box).
  hook.visibleFrames = function () {
    var v = lastVisible, out = [];
    for (var k = 0; k < v.nodes.length; k++) {
      var i = v.nodes[k];
      out.push({
        name: fnName(i), kind: fnKind(i), depth: depth[i], x: v.xs[k], y: depth[i] * ROW, width: v.ws[k], height: ROW - 1,
        value: totals[type][i], matched: funcMatch !== null && funcMatch[func[i]] === 1
      });
    }
    return out;
  };
  hook.search = function (q) { searchEl.value = String(q); return search(q); };
  hook.state = function () {
    return { zoom: n ? fnName(zoom) : null, zoomDepth: n ? depth[zoom] : 0, sampleType: type, match: lastMatch,
      total: n ? totals[type][0] : 0 };
  };

  try {
    var t0 = performance.now();
    var bytes = base64Bytes($('flamewire-data').textContent || '');
    gunzip(bytes).then(function (buf) {
      decode(buf);
      hook.decodeMs = performance.now() - t0;
      hook.frameCount = n;
      setup();
      if (totals[type][0] > 0) statusEl.style.display = 'none';
      else statusEl.textContent = 'The profile has no samples.';
      render();
      hook.firstRenderMs = performance.now();
      hook.ready = true;
      document.documentElement.setAttribute('data-ready', '1');
    }).catch(function (e) { fail(e && e.message ? e.message : e); });
  } catch (e) {
    fail(e && e.message ? e.message : e);
  }
})();
`;
