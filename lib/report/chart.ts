/**
 * A line chart as an SVG string: one metric against steps, a train line per run (solid) and its
 * evaluations (dashed, with a dot per evaluation), axes with round ticks. No script and no
 * external file: the report that holds it opens anywhere, offline.
 *
 * Long runs are thinned to at most `2 * MAX_BUCKETS` points per line, keeping each bucket's
 * lowest and highest value, so that a spike stays visible. Values that were not finite (null in
 * metrics.jsonl), and points at a step that is not (1e999 reads as Infinity), break the line and
 * are counted under the chart. Any finite values and steps are placed inside the plot, from
 * denormals to +-1.8e308.
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

/**
 * Round tick values within [lo, hi], about `count` of them: steps of 1, 2 or 5 times a power of ten.
 * For finite lo < hi: 1 to 2 * count + 2 ticks, finite, strictly increasing, within [lo, hi]. Each
 * tick is its index times the step: adding the step to a tick stops moving it once the step is
 * below the spacing of doubles there. Where no round step stands apart at those values (a range a
 * few ulps wide, 1e16 to 1e16 + 2, denormals) or hi - lo overflows (-1e308 to 1e308), the ticks
 * are lo and hi.
 */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const r = raw / power;  // in [1, 10): the nearest of 1, 2, 5, 10 on a log scale
  const step = power * (r >= Math.sqrt(50) ? 10 : r >= Math.sqrt(10) ? 5 : r >= Math.sqrt(2) ? 2 : 1);
  // the spacing of doubles within [lo, hi] is at most this, so k * step and (k + 1) * step stay apart above
  // it (where it underflows to 0, any step is a whole number of the denormals' spacing)
  const resolution = Math.max(Math.abs(lo), Math.abs(hi)) * Number.EPSILON;
  // NaN or Infinity when raw overflowed or underflowed to 0
  if (!(step > resolution && step < Infinity)) return [lo, hi];
  // |lo / step| < 1 / EPSILON here: the indices are exact integers. The step is at least 0.63 * raw, so
  // [lo, hi] holds at most about 1.6 * count + 1 of them; the cap only bounds the loop.
  const first = Math.ceil(lo / step), last = Math.min(Math.floor(hi / step + 1e-9), first + 2 * count + 1);
  if (last < first) return [lo, hi];  // a count of 1 or 2 can leave no round value inside
  const ticks: number[] = [];
  for (let k = first; k <= last; k++) {
    // +0, not -0 (k = Math.ceil(-0.3)); k * step may pass lo or hi by a rounding (or by the 1e-9 allowed above)
    ticks.push(Math.min(Math.max(k === 0 ? 0 : k * step, lo), hi));
  }
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

/** Whether a point can be drawn: a finite value at a finite step. */
function drawable(p: [number, number | null]): p is [number, number] {
  return p[1] !== null && Number.isFinite(p[1]) && Number.isFinite(p[0]);
}

/** Splits a series at its gaps: runs of drawable points. */
function segments(points: [number, number | null][]): [number, number][][] {
  const out: [number, number][][] = [[]];
  for (const p of points) {
    if (!drawable(p)) {
      if (out.at(-1)!.length > 0) out.push([]);
      continue;
    }
    out.at(-1)!.push(p);
  }
  return out.filter((s) => s.length > 0);
}

/** v within the finite doubles: a pad added to 1.7e308 overflows. */
function clampFinite(v: number): number {
  return Math.min(Math.max(v, -Number.MAX_VALUE), Number.MAX_VALUE);
}

/** Where v lies from lo (0) to hi (1), lo < hi; on halves where hi - lo overflows (-1e308 to 1e308). */
function position(lo: number, hi: number): (v: number) => number {
  if (Number.isFinite(hi - lo)) return (v) => (v - lo) / (hi - lo);
  return (v) => (v / 2 - lo / 2) / (hi / 2 - lo / 2);
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
  // the extremes by loops: Math.min(...points) overflows the call stack past about 126k points
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity, gaps = 0;
  for (const s of series) {
    for (const p of s.points) {
      if (!drawable(p)) { gaps++; continue; }
      const [x, y] = p;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
    }
  }
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-label="${escapeXml(title)}">`);
  parts.push(`<text x="${MARGIN.left}" y="17" class="title">${escapeXml(title)}</text>`);
  const plotW = WIDTH - MARGIN.left - MARGIN.right, plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  parts.push(`<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotW}" height="${plotH}" class="frame"/>`);
  if (x0 === Infinity) {
    parts.push(`<text x="${MARGIN.left + plotW / 2}" y="${MARGIN.top + plotH / 2}" text-anchor="middle" class="note">no finite values</text></svg>`);
    return parts.join('');
  }
  // One step: +-1, or +-1 ulp where 1 is below the spacing of doubles (steps past 2^52). One value:
  // +-10 %, or +-1 where that is 0 (0, denormals). Each pad leaves a span above 0 when the other side
  // is clamped to the finite doubles.
  if (x1 === x0) {
    const pad = Math.max(1, Math.abs(x0) * Number.EPSILON);
    x0 = clampFinite(x0 - pad); x1 = clampFinite(x1 + pad);
  }
  if (y1 === y0) {
    const pad = Math.abs(y0) * 0.1 || 1;
    y0 = clampFinite(y0 - pad); y1 = clampFinite(y1 + pad);
  }
  const padY = (y1 - y0) * 0.05;  // Infinity where the span overflows: then the range is all finite doubles
  y0 = clampFinite(y0 - padY); y1 = clampFinite(y1 + padY);
  const atX = position(x0, x1), atY = position(y0, y1);
  const sx = (x: number) => MARGIN.left + atX(x) * plotW;
  const sy = (y: number) => MARGIN.top + (1 - atY(y)) * plotH;
  for (const t of niceTicks(y0, y1)) {
    parts.push(`<line x1="${MARGIN.left}" x2="${MARGIN.left + plotW}" y1="${sy(t).toFixed(1)}" y2="${sy(t).toFixed(1)}" class="grid"/>`);
    parts.push(`<text x="${MARGIN.left - 6}" y="${(sy(t) + 4).toFixed(1)}" text-anchor="end" class="tick">${tickLabel(t)}</text>`);
  }
  // given ticks outside the steps drawn would be placed outside the plot (or at Infinity)
  for (const t of axis.xTicks?.filter((t) => t >= x0 && t <= x1) ?? niceTicks(x0, x1, 6)) {
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
