// Small hand-written SVG charts for the dashboard: a time histogram with an
// error series overlaid, and horizontal bar breakdowns.
//
// Every chart is an <svg role="img"> with a <title> and an aria-label saying
// what it shows, a <title> per bar (the browser's hover tooltip with the
// number), and a <details> data table with the same numbers (screen readers
// and keyboard users read the table). Colours come from CSS classes that use
// the theme's variables (style.css, "dashboard"); geometry is set through SVG
// attributes only (the CSP forbids inline styles).

import { h } from './dom.js';

const SVG = 'http://www.w3.org/2000/svg';
const NUM = new Intl.NumberFormat('en-US');

/** A number as shown: 12,345. */
export function num(n) { return NUM.format(Number(n) || 0); }

/** An SVG element: s('rect', {x: 1}, child…). */
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null && v !== false) el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** A round axis maximum and step for `max` with about `ticks` steps. */
function niceScale(max, ticks = 4) {
  if (!(max > 0)) return { top: 1, step: 1 };
  const raw = max / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((x) => x >= raw && (x >= 1 || mag < 1)) || 10 * mag;
  const whole = Math.max(1, step); // counts are integers: no step below 1
  return { top: Math.ceil(max / whole) * whole, step: whole };
}

/** `text` cut to `max` characters with an ellipsis. */
function cut(text, max) {
  const t = String(text);
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

/** A <details> with a data table: `head` the column names, `rows` arrays of cells (nodes or text). */
function dataTable({ caption, head, rows, test, rowAttrs }) {
  const table = h('table', { class: 'data', 'data-test': test },
    h('caption', { class: 'sr-only' }, caption),
    h('thead', null, h('tr', null, head.map((c, i) => h('th', { scope: 'col', class: i ? 'n' : null }, c)))),
    h('tbody', null, rows.map((cells, r) => h('tr', rowAttrs ? rowAttrs(r) : null,
      cells.map((c, i) => (i === 0 ? h('th', { scope: 'row' }, c) : c))))));
  return h('details', { class: 'chart-table' }, h('summary', null, 'Show the numbers'), table);
}

/** A numeric table cell with a data-test name. */
function numCell(n, test) {
  return h('td', { class: 'n', 'data-test': test }, num(n));
}

/**
 * The activity histogram: `buckets` [{start (ISO), label (axis, or empty), span (tooltip), count, errors}]
 * oldest first. Returns a <figure> with the chart, its legend and its table.
 */
export function histogram({ title, buckets, unit }) {
  const W = 1100;
  const H = 200;
  const m = { top: 12, right: 8, bottom: 26, left: 46 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const n = Math.max(1, buckets.length);
  const total = buckets.reduce((a, b) => a + b.count, 0);
  const errors = buckets.reduce((a, b) => a + b.errors, 0);
  const { top, step } = niceScale(Math.max(0, ...buckets.map((b) => b.count)));
  const y = (v) => m.top + ph - (v / top) * ph;
  const bw = pw / n;
  const barW = Math.max(1, Math.min(bw * 0.74, 48));
  const label = `${title}: ${num(total)} events, ${num(errors)} of them errors, in ${buckets.length} ${unit}s. The numbers are in the table below.`;
  const svg = s('svg', {
    class: 'chart chart-hist', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label,
    preserveAspectRatio: 'xMidYMid meet', 'data-test': 'histogram-chart',
  }, s('title', null, label));

  // The grid and the y axis.
  const grid = s('g', { class: 'grid', 'aria-hidden': 'true' });
  for (let v = 0; v <= top + 1e-9; v += step) {
    const yy = Math.round(y(v)) + 0.5;
    grid.append(s('line', { x1: m.left, x2: W - m.right, y1: yy, y2: yy, class: v === 0 ? 'axis' : 'gridline' }),
      s('text', { x: m.left - 8, y: yy, class: 'tick', 'text-anchor': 'end', 'dominant-baseline': 'middle' }, num(v)));
  }
  svg.append(grid);

  // The x labels: the buckets that have one (the caller picks them, on round times).
  const xs = s('g', { class: 'x', 'aria-hidden': 'true' });
  buckets.forEach((b, i) => {
    if (!b.label) return;
    xs.append(s('text', { x: m.left + bw * i + bw / 2, y: H - 8, class: 'tick', 'text-anchor': 'middle' }, b.label));
  });
  svg.append(xs);

  // The bars: a group per bucket with its tooltip; the whole column is the hover target.
  buckets.forEach((b, i) => {
    const x = m.left + bw * i + (bw - barW) / 2;
    const tip = `${b.span}: ${num(b.count)} ${b.count === 1 ? 'event' : 'events'}, ${num(b.errors)} ${b.errors === 1 ? 'error' : 'errors'}`;
    const g = s('g', { class: 'bucket', 'data-start': b.start }, s('title', null, tip),
      s('rect', { class: 'hit', x: m.left + bw * i, y: m.top, width: bw, height: ph }));
    if (b.count > 0) {
      const hgt = Math.max(1.5, y(0) - y(b.count));
      g.append(s('rect', { class: 'bar bar-events', x, y: y(0) - hgt, width: barW, height: hgt, rx: Math.min(2, barW / 4) }));
    }
    if (b.errors > 0) {
      const hgt = Math.max(1.5, y(0) - y(b.errors));
      g.append(s('rect', { class: 'bar bar-errors', x, y: y(0) - hgt, width: barW, height: hgt }));
    }
    svg.append(g);
  });

  const legend = h('ul', { class: 'legend', 'aria-hidden': 'true' },
    h('li', null, h('span', { class: 'sw sw-events' }), `Events (${num(total)})`),
    h('li', null, h('span', { class: 'sw sw-errors' }), `of which errors: severity error or critical (${num(errors)})`));
  const table = dataTable({
    caption: `${title}: events and errors per ${unit}`,
    head: [`${unit[0].toUpperCase()}${unit.slice(1)} (UTC)`, 'Events', 'Errors'],
    rows: buckets.map((b) => [b.span, numCell(b.count, 'count'), numCell(b.errors, 'errors')]),
    test: 'histogram-table',
    rowAttrs: (r) => ({ 'data-test': 'bucket', 'data-start': buckets[r].start }),
  });
  return h('figure', { class: 'chart-fig' }, h('div', { class: 'chart-box' }, svg), legend, table);
}

/**
 * A horizontal bar breakdown: `items` [{value, label, count, href?, cls?}] in
 * the order shown. `field` names the breakdown (data-field, for tests);
 * `head` the first column's name; `caption` the table's; `total` the share base
 * shown in the tooltips (optional).
 */
export function bars({ caption, head, items, field, total, labelChars = 22 }) {
  const W = 460;
  const row = 26;
  const labelW = 170;
  const countW = 64;
  const H = items.length * row + 2;
  const max = Math.max(1, ...items.map((it) => it.count));
  const pw = W - labelW - countW;
  const sum = items.reduce((a, it) => a + it.count, 0);
  const label = `${caption}: ${items.map((it) => `${it.label} ${num(it.count)}`).join(', ')}.`;
  const svg = s('svg', {
    class: 'chart chart-bars', viewBox: `0 0 ${W} ${H}`, role: 'img',
    'aria-label': label, 'data-test': 'bars-chart', 'data-field': field,
  }, s('title', null, label));
  items.forEach((it, i) => {
    const y0 = i * row + 1;
    const share = total ? ` (${((100 * it.count) / total).toFixed(1)} % of ${num(total)})` : '';
    const w = it.count > 0 ? Math.max(2, (it.count / max) * pw) : 0;
    svg.append(s('g', { class: `brow ${it.cls || ''}`.trim() },
      s('title', null, `${it.label}: ${num(it.count)}${share}`),
      s('rect', { class: 'hit', x: 0, y: y0, width: W, height: row - 2 }),
      s('text', { class: 'blabel', x: 4, y: y0 + row / 2, 'dominant-baseline': 'middle' }, cut(it.label, labelChars)),
      s('rect', { class: 'track', x: labelW, y: y0 + 5, width: pw, height: row - 12, rx: 3 }),
      w ? s('rect', { class: 'bar', x: labelW, y: y0 + 5, width: w, height: row - 12, rx: 3 }) : null,
      s('text', { class: 'bcount', x: W - 4, y: y0 + row / 2, 'text-anchor': 'end', 'dominant-baseline': 'middle' }, num(it.count))));
  });
  const table = dataTable({
    caption,
    head: [head, 'Events'],
    rows: items.map((it) => [it.href ? h('a', { href: it.href }, it.label) : it.label, numCell(it.count, 'count')]),
    test: 'breakdown',
    rowAttrs: (r) => ({ 'data-test': 'row', 'data-value': items[r].value }),
  });
  table.querySelector('table').dataset.field = field;
  if (sum < (total || 0)) table.append(h('p', { class: 'muted small' }, `The rest (${num(total - sum)}) have other values or none.`));
  return h('figure', { class: 'chart-fig' }, h('div', { class: 'chart-box' }, svg), table);
}

/** A 0–100 meter: an <svg> bar for the anomaly score (its number is shown beside it). */
export function meter(value, label) {
  const v = Math.max(0, Math.min(100, Number(value) || 0));
  const level = v >= 70 ? 'high' : v >= 30 ? 'medium' : 'low';
  return s('svg', { class: `chart meter meter-${level}`, viewBox: '0 0 100 8', role: 'img', 'aria-label': `${label}: ${v} of 100`, preserveAspectRatio: 'none' },
    s('title', null, `${label}: ${v} of 100`),
    s('rect', { class: 'track', x: 0, y: 0, width: 100, height: 8, rx: 4 }),
    v ? s('rect', { class: 'fill', x: 0, y: 0, width: Math.max(2, v), height: 8, rx: 4 }) : null);
}
