/**
 * `fusedpo reproduce [--quick] [--seed N] [--out DIR]`: the study of lib/study/reproduce.ts
 * (docs/study.md). `fusedpo start` (what `npm start` runs): the pipeline on the embedded task in a
 * few minutes: SFT, then MinorDPO against DPO at one high learning rate, a before/after table and
 * the report.
 */
import * as path from 'node:path';

import { runStudy, studyConfig, studyMarkdown, type StudyResult } from '../study/reproduce';
import { freshFolderName } from '../train/run_folder';
import { UsageError, helpText, parseFlags, type Flag } from './options';

const FLAGS: Flag[] = [
  { name: 'quick', kind: 'boolean', help: 'DPO, MinorDPO and DPOP, 4 learning rates, one seed (a few minutes on 2 cores); else 6 methods and 3 seeds' },
  { name: 'seed', kind: 'integer', help: 'the task\'s and the SFT model\'s seed, and the first run seed (default 0)' },
  { name: 'out', kind: 'path', help: 'the study folder, new or empty (default: a new runs/reproduce-<date>-<time>): results.json, results.md, report.html, runs/, sft/' },
  { name: 'overwrite', kind: 'boolean', help: 'let --out be an earlier study\'s folder: its study files are replaced, every other file is kept' },
];

const START_FLAGS: Flag[] = [
  { name: 'out', kind: 'path', help: 'the folder, new or empty (default: a new runs/start-<date>-<time>): sft/, runs/, results.json, results.md, report.html' },
  { name: 'overwrite', kind: 'boolean', help: 'let --out be an earlier study\'s folder: its study files are replaced, every other file is kept' },
  { name: 'lr', kind: 'number', help: 'the preference runs\' learning rate (default 1e-3: twice the trainer\'s default; high enough for DPO to collapse here)' },
  { name: 'seed', kind: 'integer', help: 'the seed of the task, the SFT model and the data order (default 0)' },
];

/** Where progress goes: stderr, one line per event. */
const log = (line: string) => process.stderr.write(`${line}\n`);

export async function reproduceCommand(argv: readonly string[]): Promise<void> {
  const usage = 'usage: fusedpo reproduce [--quick] [--seed N] [--out DIR]';
  const { options, help } = parseFlags('reproduce', argv, FLAGS);
  if (help) return void console.log(helpText(usage, FLAGS, 'docs/study.md: the task, the methods, what each figure is'));
  const out = (options.out as string | undefined) ?? freshFolderName('runs', 'reproduce');
  const config = studyConfig({ quick: options.quick === true, seed: options.seed as number | undefined });
  const runs = config.methods.length * config.learningRates.length * config.seeds.length;
  log(`fusedpo reproduce${options.quick ? ' --quick' : ''}: ${runs} preference runs (${config.methods.join(', ')} x ${config.learningRates.length} learning rates x ` +
    `${config.seeds.length} seed${config.seeds.length > 1 ? 's' : ''}) into ${out}`);
  const study = await runStudy(config, out, { log, overwrite: options.overwrite === true });
  console.log(studyMarkdown(study));
  console.log(`results: ${path.join(out, 'results.json')}, ${path.join(out, 'results.md')}; report: ${path.join(out, 'report.html')}`);
}

/** The before/after table of `fusedpo start`. */
export function beforeAfterTable(study: StudyResult): string {
  const columns = [{ name: 'SFT model', row: null as StudyResult['rows'][number] | null }, ...study.rows.map((row) => ({ name: `${row.method} lr ${row.lr.toExponential(0)}`, row }))];
  const lines: [string, (r: StudyResult['rows'][number] | null) => string][] = [
    ['held-out task accuracy', (r) => (r ? r.taskAccuracyAfter : study.sft.taskAccuracy).toFixed(3)],
    ['chosen log-prob drift', (r) => (r ? r.chosenDrift.toFixed(2) : '0')],
    ['rejected log-prob drift', (r) => (r ? r.rejectedDrift.toFixed(2) : '0')],
    ['reward accuracy', (r) => (r ? r.rewardAccuracy.toFixed(3) : '-')],
    ['preference accuracy', (r) => (r ? r.preferenceAccuracy : study.sft.preferenceAccuracy).toFixed(3)],
    ['diverged', (r) => (r ? (r.diverged ? 'yes' : 'no') : '-')],
  ];
  const width = Math.max(...lines.map(([l]) => l.length));
  const cw = columns.map((c) => Math.max(c.name.length, 8));
  const out = [`${''.padEnd(width)}  ${columns.map((c, i) => c.name.padStart(cw[i])).join('  ')}`];
  for (const [label, cell] of lines) out.push(`${label.padEnd(width)}  ${columns.map((c, i) => cell(c.row).padStart(cw[i])).join('  ')}`);
  return out.join('\n');
}

export async function startCommand(argv: readonly string[]): Promise<void> {
  const usage = 'usage: fusedpo start [--out DIR] [--lr X] [--seed N]';
  const { options, help } = parseFlags('start', argv, START_FLAGS);
  if (help) return void console.log(helpText(usage, START_FLAGS, 'the whole pipeline on the embedded task; fusedpo reproduce runs the full comparison'));
  const out = (options.out as string | undefined) ?? freshFolderName('runs', 'start');
  const config = studyConfig({ seed: options.seed as number | undefined });
  config.methods = ['dpo', 'minordpo'];
  config.learningRates = [(options.lr as number | undefined) ?? 1e-3];
  config.seeds = [config.seed];
  log(`fusedpo start: SFT on ${config.task.sft} sums, then DPO and MinorDPO at lr ${config.learningRates[0]} from it, into ${out}`);
  const study = await runStudy(config, out, { log, overwrite: options.overwrite === true });
  console.log(`\n${beforeAfterTable(study)}\n`);
  console.log(`report: ${path.join(out, 'report.html')}  (fusedpo reproduce --quick: the comparison across learning rates)`);
}
