/**
 * The live dashboard `orchard serve` shows at `/`: one self-contained HTML page (inline CSS and
 * JS, no external URLs, works offline). It loads `/v1/status` and `/v1/metrics?taskId=`, then
 * follows the server-sent events on `/v1/events` (`version`, `metrics`) and re-reads the status
 * every two seconds. Charts are inline SVG drawn by the page itself: accuracy and loss per model
 * version, updates/s, mean staleness and clients in flight over time, rejected updates by reason.
 *
 * Every chart's <svg> carries `data-points` (points drawn), so tests can watch it grow.
 */

const STYLE = `
  :root { color-scheme: light dark; --fg: #1b1f24; --muted: #667; --bg: #fafafa; --card: #fff; --line: #d0d7de;
    --c1: #0b72c4; --c2: #d1495b; --c3: #2e933c; --c4: #8a4fff; --c5: #e09f1f; }
  @media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --muted: #9aa; --bg: #0d1117; --card: #161b22; --line: #30363d; } }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.4 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
  header { display: flex; gap: 16px; align-items: baseline; padding: 12px 20px; border-bottom: 1px solid var(--line); flex-wrap: wrap; }
  h1 { font-size: 18px; margin: 0; }
  #conn { font-size: 12px; color: var(--muted); }
  #conn.live::before { content: '● '; color: var(--c3); }
  #conn.down::before { content: '● '; color: var(--c2); }
  .tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(140px, 1fr)); gap: 12px; padding: 16px 20px 0; }
  .tile { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
  .tile b { display: block; font-size: 22px; font-variant-numeric: tabular-nums; }
  .tile span { color: var(--muted); font-size: 12px; }
  .grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 16px; padding: 16px 20px 24px; }
  figure { margin: 0; background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
  figcaption { font-weight: 600; margin-bottom: 4px; }
  svg { width: 100%; height: 200px; display: block; }
  svg text { fill: var(--muted); font-size: 11px; }
  svg .axis { stroke: var(--line); }
  svg .empty { fill: var(--muted); font-size: 13px; }
  select { font: inherit; }
`;

const SCRIPT = `
'use strict';
const MAX_POINTS = 2000;
const COLORS = ['var(--c1)', 'var(--c2)', 'var(--c3)', 'var(--c4)', 'var(--c5)'];
const state = { taskId: null, metrics: [], status: null, es: null };
const $ = (id) => document.getElementById(id);
const SVG_NS = 'http://www.w3.org/2000/svg';

function el(name, attrs, text) {
  const node = document.createElementNS(SVG_NS, name);
  for (const k in attrs) node.setAttribute(k, String(attrs[k]));
  if (text !== undefined) node.textContent = text;
  return node;
}

function fmt(v) {
  if (!Number.isFinite(v)) return '–';
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(1) + 'M';
  if (a >= 1e4) return (v / 1e3).toFixed(0) + 'k';
  if (Number.isInteger(v) || a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  return String(Number(v.toPrecision(3)));
}

function niceTicks(lo, hi, n) {
  if (!(hi > lo)) { hi = lo + 1; }
  const step0 = (hi - lo) / n;
  const mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0) || step0;
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(t);
  return ticks;
}

/** Line chart of several series [{name, points: [[x, y], ...]}] into an <svg>. */
function lineChart(svg, series, opts) {
  const W = 600, H = 200, L = 48, R = 28, T = 10, B = 28;
  svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
  svg.replaceChildren();
  const pts = series.flatMap((s) => s.points);
  svg.setAttribute('data-points', String(pts.length));
  if (pts.length === 0) {
    svg.appendChild(el('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'empty' }, 'waiting for data…'));
    return;
  }
  let x0 = Math.min(...pts.map((p) => p[0])), x1 = Math.max(...pts.map((p) => p[0]));
  let y0 = opts.yMin !== undefined ? opts.yMin : Math.min(...pts.map((p) => p[1]));
  let y1 = opts.yMax !== undefined ? opts.yMax : Math.max(...pts.map((p) => p[1]));
  if (x1 === x0) { x1 = x0 + 1; }
  if (y1 === y0) { y1 = y0 + (Math.abs(y0) || 1) * 0.1; y0 = y0 - (opts.yMin !== undefined ? 0 : (Math.abs(y0) || 1) * 0.1); }
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
  for (const t of niceTicks(y0, y1, 4)) {
    svg.appendChild(el('line', { x1: L, x2: W - R, y1: sy(t), y2: sy(t), class: 'axis' }));
    svg.appendChild(el('text', { x: L - 4, y: sy(t) + 4, 'text-anchor': 'end' }, fmt(t)));
  }
  for (const t of niceTicks(x0, x1, 6)) {
    svg.appendChild(el('text', { x: sx(t), y: H - B + 16, 'text-anchor': 'middle' }, opts.xFormat ? opts.xFormat(t) : fmt(t)));
  }
  svg.appendChild(el('text', { x: W - R, y: H - 2, 'text-anchor': 'end' }, opts.xLabel));
  series.forEach((s, i) => {
    if (s.points.length === 0) return;
    const d = s.points.map((p, j) => (j === 0 ? 'M' : 'L') + sx(p[0]).toFixed(1) + ' ' + sy(p[1]).toFixed(1)).join(' ');
    const color = COLORS[i % COLORS.length];
    svg.appendChild(el('path', { d: d, fill: 'none', stroke: color, 'stroke-width': 2, 'data-series': s.name }));
    if (s.points.length < 60)
      for (const p of s.points) svg.appendChild(el('circle', { cx: sx(p[0]), cy: sy(p[1]), r: 2.5, fill: color }));
    if (series.length > 1) svg.appendChild(el('text', { x: L + 8 + i * 110, y: T + 10, fill: color }, s.name));
  });
}

/** Horizontal bars {label: count} into an <svg>. */
function barChart(svg, counts) {
  const W = 600, H = 200, L = 120, R = 50, T = 8;
  svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
  svg.replaceChildren();
  const entries = Object.entries(counts).filter((e) => e[1] > 0).sort((a, b) => b[1] - a[1]).slice(0, 8);
  svg.setAttribute('data-points', String(entries.length));
  if (entries.length === 0) {
    svg.appendChild(el('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'empty' }, 'no rejected updates'));
    return;
  }
  const max = Math.max(...entries.map((e) => e[1]));
  const h = Math.min(22, (H - T * 2) / entries.length - 4);
  entries.forEach((e, i) => {
    const y = T + i * (h + 4);
    const w = Math.max(1, (e[1] / max) * (W - L - R));
    svg.appendChild(el('text', { x: L - 6, y: y + h * 0.7, 'text-anchor': 'end' }, e[0]));
    svg.appendChild(el('rect', { x: L, y: y, width: w, height: h, fill: COLORS[1], rx: 2, 'data-reason': e[0] }));
    svg.appendChild(el('text', { x: L + w + 4, y: y + h * 0.7 }, String(e[1])));
  });
}

function clock(t) {
  const d = new Date(t);
  return String(d.getHours()).padStart(2, '0') + ':' + String(d.getMinutes()).padStart(2, '0') + ':' + String(d.getSeconds()).padStart(2, '0');
}

function render() {
  const m = state.metrics;
  const evaluated = m.filter((p) => typeof p.values.accuracy === 'number');
  lineChart($('chart-accuracy'), [{ name: 'accuracy', points: evaluated.map((p) => [p.version, p.values.accuracy]) }], { xLabel: 'model version', yMin: 0, yMax: 1 });
  lineChart($('chart-loss'), [{ name: 'loss', points: evaluated.filter((p) => typeof p.values.loss === 'number').map((p) => [p.version, p.values.loss]) }], { xLabel: 'model version', yMin: 0 });
  const timed = (key) => m.filter((p) => typeof p.values[key] === 'number').map((p) => [p.at, p.values[key]]);
  lineChart($('chart-rate'), [{ name: 'updates/s', points: timed('updatesPerSecond') }], { xLabel: 'time', yMin: 0, xFormat: clock });
  lineChart($('chart-staleness'), [{ name: 'staleness', points: timed('staleness') }], { xLabel: 'time', yMin: 0, xFormat: clock });
  lineChart($('chart-inflight'), [{ name: 'in flight', points: timed('inFlight') }], { xLabel: 'time', yMin: 0, xFormat: clock });
  const task = state.status && state.status.tasks.find((t) => t.taskId === state.taskId);
  const last = m.length > 0 ? m[m.length - 1] : null;
  const rejected = (task && task.rejected) || (last && last.values.rejected) || {};
  barChart($('chart-rejected'), rejected);
  const lastEval = evaluated.length > 0 ? evaluated[evaluated.length - 1] : null;
  $('tile-version').textContent = task ? String(task.version) : last ? String(last.version) : '–';
  $('tile-accuracy').textContent = lastEval ? (lastEval.values.accuracy * 100).toFixed(1) + '%' : '–';
  $('tile-rate').textContent = last && typeof last.values.updatesPerSecond === 'number' ? fmt(last.values.updatesPerSecond) : '–';
  $('tile-inflight').textContent = task ? String(task.inFlight) : '–';
  $('tile-accepted').textContent = task ? String(task.accepted) : '–';
  $('tile-rejected').textContent = String(Object.values(rejected).reduce((a, b) => a + b, 0));
}

let pending = false;
function scheduleRender() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => { pending = false; render(); });
}

function addMetric(p) {
  if (!p || p.taskId !== state.taskId || typeof p.values !== 'object') return;
  const m = state.metrics;
  // Keep the series ordered by time and free of repeats (the stream and the first fetch overlap).
  if (m.length > 0 && (p.at < m[m.length - 1].at || (p.at === m[m.length - 1].at && p.version === m[m.length - 1].version))) {
    if (m.some((q) => q.at === p.at && q.version === p.version)) return;
    m.push(p);
    m.sort((a, b) => a.at - b.at);
  } else m.push(p);
  if (m.length > MAX_POINTS) m.splice(0, m.length - MAX_POINTS);
  scheduleRender();
}

async function getJson(url) {
  const res = await fetch(url, { cache: 'no-store' });
  if (!res.ok) throw new Error(url + ': ' + res.status);
  return res.json();
}

async function refreshStatus() {
  try {
    state.status = await getJson('/v1/status');
    const ids = state.status.tasks.map((t) => t.taskId);
    const select = $('task');
    if (select.options.length !== ids.length || ids.some((id, i) => select.options[i].value !== id)) {
      select.replaceChildren(...ids.map((id) => { const o = document.createElement('option'); o.value = id; o.textContent = id; return o; }));
    }
    if (state.taskId === null && ids.length > 0) {
      const wanted = new URLSearchParams(location.search).get('taskId');
      await selectTask(wanted && ids.includes(wanted) ? wanted : ids[0]);
    }
    select.value = state.taskId || '';
    scheduleRender();
  } catch (e) {
    $('conn').className = 'down';
    $('conn').textContent = 'server unreachable';
  }
}

async function selectTask(taskId) {
  state.taskId = taskId;
  state.metrics = [];
  try {
    const res = await getJson('/v1/metrics?taskId=' + encodeURIComponent(taskId) + '&limit=' + MAX_POINTS);
    for (const p of res.metrics) addMetric(p);
  } catch (e) { /* the stream still fills the charts */ }
  scheduleRender();
}

function connect() {
  if (state.es) state.es.close();
  const es = new EventSource('/v1/events');
  state.es = es;
  es.onopen = () => { $('conn').className = 'live'; $('conn').textContent = 'live'; };
  es.onerror = () => { $('conn').className = 'down'; $('conn').textContent = 'reconnecting…'; };
  es.addEventListener('metrics', (ev) => { try { addMetric(JSON.parse(ev.data)); } catch (e) {} });
  es.addEventListener('version', (ev) => {
    try {
      const v = JSON.parse(ev.data);
      if (state.status && v.taskId === state.taskId) {
        const task = state.status.tasks.find((t) => t.taskId === v.taskId);
        if (task && v.version > task.version) { task.version = v.version; scheduleRender(); }
      }
    } catch (e) {}
  });
}

$('task').addEventListener('change', (ev) => { selectTask(ev.target.value); });
render();
refreshStatus().then(connect);
setInterval(refreshStatus, 2000);
`;

/** The dashboard page. Static: everything it shows is fetched by the page itself. */
export function dashboardHtml(): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Orchard dashboard</title>
<style>${STYLE}</style>
</head>
<body>
<header>
  <h1>Orchard</h1>
  <label>task <select id="task" aria-label="task"></select></label>
  <span id="conn">connecting…</span>
</header>
<section class="tiles">
  <div class="tile"><b id="tile-version">–</b><span>model version</span></div>
  <div class="tile"><b id="tile-accuracy">–</b><span>test accuracy</span></div>
  <div class="tile"><b id="tile-rate">–</b><span>updates / s</span></div>
  <div class="tile"><b id="tile-inflight">–</b><span>clients in flight</span></div>
  <div class="tile"><b id="tile-accepted">–</b><span>updates accepted</span></div>
  <div class="tile"><b id="tile-rejected">–</b><span>updates rejected</span></div>
</section>
<main class="grid">
  <figure><figcaption>Test accuracy per model version</figcaption><svg id="chart-accuracy" role="img" aria-label="accuracy per version"></svg></figure>
  <figure><figcaption>Test loss per model version</figcaption><svg id="chart-loss" role="img" aria-label="loss per version"></svg></figure>
  <figure><figcaption>Accepted updates per second</figcaption><svg id="chart-rate" role="img" aria-label="updates per second"></svg></figure>
  <figure><figcaption>Mean staleness of accepted updates</figcaption><svg id="chart-staleness" role="img" aria-label="staleness"></svg></figure>
  <figure><figcaption>Clients in flight</figcaption><svg id="chart-inflight" role="img" aria-label="clients in flight"></svg></figure>
  <figure><figcaption>Rejected updates by reason</figcaption><svg id="chart-rejected" role="img" aria-label="rejected updates by reason"></svg></figure>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
}
