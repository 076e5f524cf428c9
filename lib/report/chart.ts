/**
 * A line chart as an SVG string: one metric against steps, a train line per run (solid) and its
 * evaluations (dashed, with a dot per evaluation), axes with round ticks. No script and no
 * external file: the report that holds it opens anywhere, offline.
 *
 * Long runs are thinned to at most `2 * MAX_BUCKETS` points per line, keeping each bucket's
 * lowest and highest value, so that a spike stays visible. Values that were not finite (null in
 * metrics.jsonl) break the line and are counted under the chart.
 */

export interface Series {
  label: string;
  color: string;
  /** [step, value] pairs in step order; null values are gaps. */
  points: [number, number | null][];
  dashed?: boolean;
  /** A dot at every point (evaluations). */
  dots?: boolean;
}

export const WIDTH = 460;
export const HEIGHT = 250;
const MARGIN = { left: 62, right: 14, top: 28, bottom: 34 };
const MAX_BUCKETS = 400;

/** Escapes text for HTML and SVG. */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** Round tick values within [lo, hi], about `count` of them: steps of 1, 2 or 5 times a power of ten. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const r = raw / power;  // in [1, 10): the nearest of 1, 2, 5, 10 on a log scale
  const step = power * (r >= Math.sqrt(50) ? 10 : r >= Math.sqrt(10) ? 5 : r >= Math.sqrt(2) ? 2 : 1);
  const ticks: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(Math.abs(t) < step * 1e-9 ? 0 : t);
  return ticks;
}

/** A tick's label: short, without float noise. */
export function tickLabel(x: number): string {
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a >= 1e5 || a < 1e-3) return x.toExponential(1).replace('e+', 'e');
  return String(Number(x.toPrecision(4)));
}

/** The points of a line, thinned to each bucket's extremes when there are many. */
function thinned(points: [number, number][]): [number, number][] {
  if (points.length <= 2 * MAX_BUCKETS) return points;
  const out: [number, number][] = [];
  const size = points.length / MAX_BUCKETS;
  for (let b = 0; b < MAX_BUCKETS; b++) {
    const bucket = points.slice(Math.floor(b * size), Math.floor((b + 1) * size));
    if (bucket.length === 0) continue;
    let lo = bucket[0], hi = bucket[0];
    for (const p of bucket) {
      if (p[1] < lo[1]) lo = p;
      if (p[1] > hi[1]) hi = p;
    }
    out.push(...(lo[0] <= hi[0] ? [lo, hi] : [hi, lo]));
  }
  return out;
}

/** Splits a series at its gaps: runs of finite points. */
function segments(points: [number, number | null][]): [number, number][][] {
  const out: [number, number][][] = [[]];
  for (const [x, y] of points) {
    if (y === null || !Number.isFinite(y)) {
      if (out.at(-1)!.length > 0) out.push([]);
      continue;
    }
    out.at(-1)!.push([x, y]);
  }
  return out.filter((s) => s.length > 0);
}

export interface ChartAxis {
  /** Where the x ticks go (default: round steps). */
  xTicks?: readonly number[];
  /** A tick's label (default: the number). */
  xLabel?: (x: number) => string;
  /** The x axis's name (default "step"). */
  xName?: string;
}

/** The chart of `title` over `series`, as an `<svg>` element. */
export function lineChart(title: string, series: readonly Series[], axis: ChartAxis = {}): string {
  const finite = series.flatMap((s) => s.points.filter((p): p is [number, number] => p[1] !== null && Number.isFinite(p[1])));
  const gaps = series.reduce((n, s) => n + s.points.filter((p) => p[1] === null || !Number.isFinite(p[1])).length, 0);
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-label="${escapeXml(title)}">`);
  parts.push(`<text x="${MARGIN.left}" y="17" class="title">${escapeXml(title)}</text>`);
  const plotW = WIDTH - MARGIN.left - MARGIN.right, plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  parts.push(`<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotW}" height="${plotH}" class="frame"/>`);
  if (finite.length === 0) {
    parts.push(`<text x="${MARGIN.left + plotW / 2}" y="${MARGIN.top + plotH / 2}" text-anchor="middle" class="note">no finite values</text></svg>`);
    return parts.join('');
  }
  let x0 = Math.min(...finite.map((p) => p[0])), x1 = Math.max(...finite.map((p) => p[0]));
  let y0 = Math.min(...finite.map((p) => p[1])), y1 = Math.max(...finite.map((p) => p[1]));
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { const pad = Math.abs(y0) * 0.1 || 1; y0 -= pad; y1 += pad; }
  const padY = (y1 - y0) * 0.05;
  y0 -= padY; y1 += padY;
  const sx = (x: number) => MARGIN.left + ((x - x0) / (x1 - x0)) * plotW;
  const sy = (y: number) => MARGIN.top + (1 - (y - y0) / (y1 - y0)) * plotH;
  for (const t of niceTicks(y0, y1)) {
    parts.push(`<line x1="${MARGIN.left}" x2="${MARGIN.left + plotW}" y1="${sy(t).toFixed(1)}" y2="${sy(t).toFixed(1)}" class="grid"/>`);
    parts.push(`<text x="${MARGIN.left - 6}" y="${(sy(t) + 4).toFixed(1)}" text-anchor="end" class="tick">${tickLabel(t)}</text>`);
  }
  for (const t of axis.xTicks ?? niceTicks(x0, x1, 6)) {
    parts.push(`<text x="${sx(t).toFixed(1)}" y="${MARGIN.top + plotH + 16}" text-anchor="middle" class="tick">${escapeXml((axis.xLabel ?? tickLabel)(t))}</text>`);
  }
  parts.push(`<text x="${MARGIN.left + plotW}" y="${HEIGHT - 3}" text-anchor="end" class="axis">${escapeXml(axis.xName ?? 'step')}</text>`);
  for (const s of series) {
    for (const segment of segments(s.points)) {
      const pts = thinned(segment).map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ');
      if (segment.length > 1) {
        parts.push(`<polyline points="${pts}" fill="none" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''} class="series"/>`);
      }
      if (s.dots || segment.length === 1) {
        for (const [x, y] of segment) {
          const at = axis.xLabel ? axis.xLabel(x) : `step ${x}`;
          parts.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3.5" fill="${s.color}" class="dot"><title>${escapeXml(`${s.label}, ${at}: ${y}`)}</title></circle>`);
        }
      }
    }
  }
  if (gaps > 0) parts.push(`<text x="${MARGIN.left + plotW}" y="17" text-anchor="end" class="warn">${gaps} non-finite value${gaps > 1 ? 's' : ''}</text>`);
  parts.push('</svg>');
  return parts.join('');
}
