/**
 * The training report: one self-contained HTML file (inline CSS and SVG, no script, nothing
 * fetched at view time) with a chart per metric (train and eval, every run overlaid in its own
 * colour), the runs' options and last figures, and the sample generations logged at each
 * evaluation. `fusedpo train` writes it as `report.html` in its folder; `fusedpo report DIR...`
 * overlays several runs.
 */
import * as path from 'node:path';

import { lossEntry, parameterFor } from '../losses/registry';
import { writeOutputFile } from '../train/files';
import { version } from '../version';
import { escapeXml, lineChart, type Series } from './chart';
import { readRun, type RunRecord } from './run';

/** Distinct colours, the first for the first run. */
export const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'] as const;

/** The charts, in order: the metric's key in metrics.jsonl and its title. Absent metrics are skipped. */
export const CHARTS: readonly [string, string][] = [
  ['loss', 'loss'],
  ['rewards/accuracies', 'reward accuracy (rewards/accuracies)'],
  ['rewards/margins', 'reward margin (rewards/margins)'],
  ['rewards/chosen', 'reward of chosen (rewards/chosen)'],
  ['rewards/rejected', 'reward of rejected (rewards/rejected)'],
  ['logps/chosen', 'log-prob of chosen (logps/chosen)'],
  ['logps/rejected', 'log-prob of rejected (logps/rejected)'],
  ['rejectedBelowReference', 'rejected below the reference (share)'],
  ['nll', 'chosen NLL (nll)'],
  ['learning_rate', 'learning rate'],
  ['grad_norm', 'gradient norm (before clipping)'],
];

const STYLE = `
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #222; background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 28px 0 8px; }
.sub { color: #666; margin-bottom: 16px; }
table { border-collapse: collapse; margin: 6px 0; } th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f5f5f5; font-weight: 600; } td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.swatch { display: inline-block; width: 14px; height: 4px; vertical-align: middle; margin-right: 6px; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); gap: 12px; }
svg.chart { background: #fff; }
svg .title { font-size: 13px; font-weight: 600; fill: #222; } svg .tick { font-size: 11px; fill: #555; } svg .axis { font-size: 11px; fill: #888; }
svg .frame { fill: none; stroke: #ccc; } svg .grid { stroke: #eee; } svg .note { fill: #999; font-size: 12px; } svg .warn { fill: #b00; font-size: 11px; }
code, .gen { font-family: ui-monospace, "SF Mono", Menlo, Consolas, monospace; white-space: pre-wrap; }
details { margin: 8px 0; } summary { cursor: pointer; font-weight: 600; }
`;

const fmt = (x: unknown) => (typeof x === 'number' ? (Number.isInteger(x) ? String(x) : Number(x.toPrecision(4)).toString()) : x === null || x === undefined ? '' : escapeXml(String(x)));

function last(rows: RunRecord['train'], key: string): number | null | undefined {
  for (let i = rows.length - 1; i >= 0; i--) if (key in rows[i]) return rows[i][key];
  return undefined;
}

/** The loss's own beta when the run left it at the default; '' for a loss without beta. */
function betaDefault(loss: string): number | string {
  const entry = lossEntry(loss);
  return entry && entry.parameters.beta ? parameterFor(entry, 'beta').default : '';
}

function runsTable(runs: readonly RunRecord[], colorOf: (run: RunRecord) => string): string {
  const optionKeys = ['loss', 'beta', 'lr', 'batchSize', 'steps', 'seed'];
  const head = ['run', 'kind', ...optionKeys, 'steps logged', 'last loss', 'eval loss', 'eval reward accuracy'];
  const rows = runs.map((run) => {
    const o: Record<string, unknown> = { ...(run.options ?? {}), ...(run.settings ?? {}), loss: run.options?.loss ?? (run.kind === 'preference' ? 'dpo' : run.kind === 'sft' ? 'cross-entropy' : '') };
    const cells = [
      `<span class="swatch" style="background:${colorOf(run)}"></span>${escapeXml(run.name)}`,
      run.kind ?? '',
      ...optionKeys.map((k) => fmt(o[k] ?? (k === 'beta' ? betaDefault(String(o.loss)) : ''))),
      String(run.train.length), fmt(last(run.train, 'loss')), fmt(last(run.eval, 'loss')), fmt(last(run.eval, 'rewards/accuracies')),
    ];
    return `<tr>${cells.map((c, k) => `<td${k >= 2 ? ' class="num"' : ''}>${c}</td>`).join('')}</tr>`;
  });
  return `<table><tr>${head.map((h) => `<th>${escapeXml(h)}</th>`).join('')}</tr>${rows.join('')}</table>`;
}

function charts(runs: readonly RunRecord[], keys: readonly string[] | null, colorOf: (run: RunRecord) => string): string {
  const out: string[] = [];
  for (const [key, title] of CHARTS) {
    if (keys && !keys.includes(key)) continue;
    const series: Series[] = [];
    for (const run of runs) {
      const color = colorOf(run);
      const train = run.train.filter((r) => key in r).map((r) => [r.step as number, r[key]] as [number, number | null]);
      const evaluations = run.eval.filter((r) => key in r).map((r) => [r.step as number, r[key]] as [number, number | null]);
      if (train.length > 0) series.push({ label: `${run.name} train`, color, points: train });
      if (evaluations.length > 0) series.push({ label: `${run.name} eval`, color, points: evaluations, dashed: true, dots: true });
    }
    if (series.length > 0) out.push(lineChart(title, series));
  }
  return `<div class="charts">${out.join('\n')}</div>`;
}

function samples(runs: readonly RunRecord[]): string {
  const withSamples = runs.filter((r) => r.samples.length > 0);
  if (withSamples.length === 0) return '';
  const blocks = withSamples.map((run, i) => {
    const hasRef = run.samples.some((s) => s.samples.some((x) => x.reference !== undefined));
    const rows = run.samples.flatMap((log) => log.samples.map((x, k) =>
      `<tr>${k === 0 ? `<td class="num" rowspan="${log.samples.length}">${log.step}</td>` : ''}<td class="gen">${escapeXml(x.prompt)}</td>` +
      `<td class="gen">${escapeXml(x.policy)}</td>${hasRef ? `<td class="gen">${escapeXml(x.reference ?? '')}</td>` : ''}</tr>`));
    return `<details${i === 0 ? ' open' : ''}><summary>${escapeXml(run.name)}: ${run.samples.length} logs</summary>` +
      `<table><tr><th>step</th><th>prompt</th><th>policy</th>${hasRef ? '<th>reference</th>' : ''}</tr>${rows.join('')}</table></details>`;
  });
  return `<h2>Sample generations (greedy, at the start, at each evaluation and at the end)</h2>${blocks.join('\n')}`;
}

/** A row of colour swatches with their labels, above a group of charts. */
export function legend(entries: readonly { label: string; color: string }[]): string {
  return `<div style="margin:10px 0">${entries.map((e) => `<span style="margin-right:16px"><span class="swatch" style="background:${e.color}"></span>${escapeXml(e.label)}</span>`).join('')}</div>`;
}

export interface ReportOptions {
  /** The page's title (default: the runs' names). */
  title?: string;
  /** HTML placed under the title, before the runs' table (a study's summary); trusted, not escaped. */
  intro?: string;
  /** Charts in groups of runs, each under a heading (default: one group of every run). */
  groups?: readonly { heading: string; runs: readonly RunRecord[] }[];
  /** The metrics charted (default: every one of CHARTS the runs logged). */
  charts?: readonly string[];
  /** The sample generations section (default true). */
  samples?: boolean;
  /** The table of every run's options and last figures (default true). */
  runsTable?: boolean;
}

/** The report of `runs` as one HTML document. */
export function renderReport(runs: readonly RunRecord[], options: ReportOptions = {}): string {
  if (runs.length === 0) throw new RangeError('Expected at least one run for the report');
  const title = options.title ?? (runs.length === 1 ? `fusedpo run: ${runs[0].name}` : `fusedpo runs: ${runs.map((r) => r.name).join(', ')}`);
  const index = new Map(runs.map((run, i) => [run, i]));
  const colorOf = (run: RunRecord) => run.color ?? PALETTE[(index.get(run) ?? 0) % PALETTE.length];
  const groups = options.groups ?? [{ heading: '', runs }];
  const body = groups.map((g) => `${g.heading ? `<h2>${escapeXml(g.heading)}</h2>` : ''}` +
    `${legend(g.runs.map((run) => ({ label: run.name, color: colorOf(run) })))}${charts(g.runs, options.charts ?? null, colorOf)}`).join('\n');
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="${GENERATOR}"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeXml(title)}</title><style>${STYLE}</style></head>
<body>
<h1>${escapeXml(title)}</h1>
<div class="sub">fusedpo ${escapeXml(version)}: solid lines are training steps, dashed lines with dots are evaluations on the held-out set.</div>
${options.intro ?? ''}
${options.runsTable === false ? '' : runsTable(runs, colorOf)}
${body}
${options.samples === false ? '' : samples(runs)}
</body></html>
`;
}

/** What marks a report as fusedpo's: a file holding it may be replaced by a newer report. */
const GENERATOR = 'fusedpo report';

/** Whether the start of a file is a fusedpo report's. */
export function isReport(head: string): boolean {
  return head.startsWith('<!DOCTYPE html>') && head.includes(`<meta name="generator" content="${GENERATOR}">`);
}

/**
 * Reads the run folders and writes their report to `file` (atomically); returns the file. A file
 * there that is not a fusedpo report is refused unless `overwrite` (a report never replaces a
 * user's file: `--out metrics.jsonl` is an error).
 */
export function writeReport(directories: readonly (string | { directory: string; label: string })[], file: string, options: { overwrite?: boolean } = {}): string {
  const runs = directories.map((d) => (typeof d === 'string' ? readRun(d) : readRun(d.directory, d.label)));
  const inputs = runs.flatMap((run) => ['metrics.jsonl', 'samples.jsonl', 'run.json'].map((name) => ({ name: `${run.directory}'s ${name}`, path: path.join(run.directory, name) })));
  writeOutputFile(file, renderReport(runs), { overwrite: options.overwrite ?? false, ours: isReport, what: 'the report', inputs });
  return path.resolve(file);
}
