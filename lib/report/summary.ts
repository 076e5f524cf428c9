/**
 * The terminal summary at the end of training: per metric a sparkline of its course, first and
 * last value and the extreme, then the last evaluation and the last sample generations.
 *
 *   loss                ▇█▇▆▅▄▃▂▂▁▁▁  0.6931 -> 0.1204  (min 0.1011 at step 87)
 */
import type { SampleLog } from './run';

const BARS = '▁▂▃▄▅▆▇█';

/** The values as a sparkline of at most `width` characters (bucket means); non-finite values are spaces. */
export function sparkline(values: readonly (number | null)[], width = 40): string {
  const n = values.length;
  if (n === 0) return '';
  const buckets = Math.min(width, n);
  const means: (number | null)[] = [];
  for (let b = 0; b < buckets; b++) {
    const slice = values.slice(Math.floor((b * n) / buckets), Math.floor(((b + 1) * n) / buckets)).filter((v): v is number => v !== null && Number.isFinite(v));
    means.push(slice.length ? slice.reduce((a, c) => a + c, 0) / slice.length : null);
  }
  const finite = means.filter((v): v is number => v !== null);
  const lo = Math.min(...finite), hi = Math.max(...finite);
  return means.map((v) => (v === null ? ' ' : BARS[hi > lo ? Math.min(7, Math.floor(((v - lo) / (hi - lo)) * 8)) : 3])).join('');
}

const num = (x: number | null | undefined) => (x === null || x === undefined || !Number.isFinite(x) ? String(x) : Math.abs(x) >= 1e4 || (x !== 0 && Math.abs(x) < 1e-3) ? x.toExponential(3) : x.toFixed(4));

/** What to summarize, in order: the key, and whether its best is the lowest. */
const SUMMARIZED: readonly [string, 'min' | 'max' | null][] = [
  ['loss', 'min'], ['rewards/accuracies', 'max'], ['rewards/margins', 'max'], ['logps/chosen', null], ['logps/rejected', null],
  ['rejectedBelowReference', null], ['grad_norm', 'max'],
];

export function formatSummary(history: readonly Record<string, number | null>[], lastEval: Record<string, number> | null, samples: SampleLog | null): string {
  const lines: string[] = [];
  for (const [key, best] of SUMMARIZED) {
    const rows = history.filter((r) => key in r);
    if (rows.length === 0) continue;
    const values = rows.map((r) => r[key]);
    let extreme = '';
    if (best) {
      let at = -1;
      values.forEach((v, i) => {
        if (v !== null && Number.isFinite(v) && (at < 0 || (best === 'min' ? v < values[at]! : v > values[at]!))) at = i;
      });
      if (at >= 0) extreme = `  (${best} ${num(values[at])} at step ${rows[at].step})`;
    }
    lines.push(`${key.padEnd(24)}${sparkline(values).padEnd(42)}${num(values[0])} -> ${num(values.at(-1))}${extreme}`);
  }
  if (lastEval) {
    const keys = ['eval_loss', 'eval_rewards/accuracies', 'eval_rewards/margins'].filter((k) => lastEval[k] !== undefined);
    lines.push(`eval at step ${lastEval.step}: ${keys.map((k) => `${k.slice(5)} ${num(lastEval[k])}`).join(', ')}`);
  }
  if (samples && samples.samples.length > 0) {
    lines.push(`samples at step ${samples.step} (prompt -> policy${samples.samples[0].reference !== undefined ? ' | reference' : ''}):`);
    for (const s of samples.samples) {
      lines.push(`  ${JSON.stringify(s.prompt)} -> ${JSON.stringify(s.policy)}${s.reference !== undefined ? ` | ${JSON.stringify(s.reference)}` : ''}`);
    }
  }
  return lines.join('\n');
}
