/**
 * The seed's claim, measured (`fusedpo reproduce`, docs/study.md): DPO against MinorDPO (and
 * DPOP; IPO, chipo and DPO + NLL as extra rows) across learning rates and seeds, on the embedded
 * arithmetic task (lib/study/task.ts), every run from the same SFT model, with the same data,
 * steps and evaluation.
 *
 * Per run: held-out task accuracy by greedy generation before (the SFT model) and after; the
 * held-out log-prob drift of chosen and rejected answers from the reference, at the end and at
 * its lowest over the evaluations; reward accuracy and margin; whether the run diverged (a
 * non-finite loss, or task accuracy fallen below half the SFT model's). Written to `results.json`
 * (byte for byte the same for the same options: no clock in it), `results.md`, `report.html`,
 * and `timings.json` (the clock, apart).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { ByteTokenizer } from '../data/tokenizer';
import type { LossParameterArgs } from '../losses';
import type { CausalLM } from '../nn/causal_lm';
import { GPT, type GPTConfig } from '../nn/gpt';
import { escapeXml, lineChart } from '../report/chart';
import { legend, renderReport } from '../report/html';
import { readRun, type RunRecord } from '../report/run';
import { evaluatePreferences } from '../train/evaluate';
import { loadModelFolder, saveModelFolder, writeFileAtomic } from '../train/files';
import { defaultCacheDirectory } from '../train/reference';
import { claimRunFolder, type RunFolder } from '../train/run_folder';
import { PreferenceTrainer, SftTrainer } from '../train/trainer';
import { version } from '../version';
import { arithmeticTask, type TaskOptions } from './task';

/** The methods compared: the row's name and the trainer's loss arguments. */
export const STUDY_METHODS: Readonly<Record<string, LossParameterArgs>> = {
  dpo: { loss: 'dpo' },
  minordpo: { loss: 'minordpo' },
  dpop: { loss: 'dpop' },
  ipo: { loss: 'ipo' },
  chipo: { loss: 'chipo' },
  'dpo+nll': { loss: 'dpo', nllWeight: 1 },
};

/** Each method's colour in the report: the same across learning rates. */
const METHOD_COLORS: Record<string, string> = {
  dpo: '#1f77b4', minordpo: '#d62728', dpop: '#2ca02c', ipo: '#ff7f0e', chipo: '#9467bd', 'dpo+nll': '#8c564b',
};

export interface StudyConfig {
  /** The task's and the SFT model's seed. */
  seed: number;
  methods: string[];
  learningRates: number[];
  /** The preference runs' seeds (their data order). */
  seeds: number[];
  steps: number;
  batchSize: number;
  beta: number;
  evalEvery: number;
  task: Required<TaskOptions>;
  model: GPTConfig;
  sft: { steps: number; batchSize: number; lr: number; warmupSteps: number };
}

/**
 * The study's settings: `quick` runs DPO, MinorDPO and DPOP at 4 learning rates (30x apart end to
 * end) with one seed; the full run adds IPO, chipo and DPO + NLL and 3 seeds. Both share the task,
 * the SFT model and the steps, so a quick run's rows are rows of the full run.
 */
export function studyConfig(options: { quick?: boolean; seed?: number } = {}): StudyConfig {
  const seed = options.seed ?? 0;
  const quick = options.quick ?? false;
  return {
    seed,
    methods: quick ? ['dpo', 'minordpo', 'dpop'] : ['dpo', 'minordpo', 'dpop', 'ipo', 'chipo', 'dpo+nll'],
    learningRates: [3e-4, 1e-3, 3e-3, 1e-2],
    seeds: quick ? [seed] : [seed, seed + 1, seed + 2],
    steps: 150,
    batchSize: 16,
    beta: 0.1,
    evalEvery: 25,
    task: { seed, maxOperand: 99, sft: 6000, preferences: 2000, heldOut: 300 },
    model: { layers: 2, width: 128, heads: 4, context: 12, vocab: new ByteTokenizer().vocabSize },
    sft: { steps: 3000, batchSize: 32, lr: 3e-3, warmupSteps: 50 },
  };
}

/** One preference run's figures (a row of results.json). */
export interface StudyRow {
  method: string;
  loss: string;
  nllWeight: number;
  lr: number;
  seed: number;
  steps: number;
  beta: number;
  /** Held-out task accuracy (greedy generation, exact match) of the SFT model and of the tuned one. */
  taskAccuracyBefore: number;
  taskAccuracyAfter: number;
  /** Held-out: the tuned model's chosen log-prob above its rejected one. */
  preferenceAccuracy: number;
  rewardAccuracy: number;
  rewardMargin: number;
  /** Held-out mean log-prob of chosen (rejected) minus the reference's, at the end. */
  chosenDrift: number;
  rejectedDrift: number;
  /** The lowest held-out chosen drift over the evaluations. */
  minChosenDrift: number;
  /** A loss or gradient norm that was not finite at some step. */
  nonFinite: boolean;
  /** nonFinite, or task accuracy fallen below half the SFT model's. */
  diverged: boolean;
}

export interface StudyResult {
  config: StudyConfig;
  sft: { taskAccuracy: number; preferenceAccuracy: number; logpsChosen: number; logpsRejected: number };
  rows: StudyRow[];
}

export interface StudyCallbacks {
  /** A line of progress (the SFT model, each run). */
  log?(line: string): void;
  /** Let `out` be an earlier study's folder: its study files are replaced, every other file is kept (default false: new or empty). */
  overwrite?: boolean;
  /** Where the SFT model is cached by its settings (default: FUSEDPO_CACHE, else ~/.cache/fusedpo). */
  cacheDirectory?: string;
}

const fixed = (x: number, digits = 3) => (Number.isFinite(x) ? x.toFixed(digits) : String(x));
const lrLabel = (lr: number) => lr.toExponential(0);
export const runName = (method: string, lr: number, seed: number) => `${method}-lr${lrLabel(lr)}-seed${seed}`;

function clock(seconds: number): string {
  const s = Math.round(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/**
 * The SFT model of the study: read back from the cache (`<cache>/study-sft/<key>`, the key a hash
 * of the settings that make it) when an earlier study made it, else trained and cached; copied
 * into `out/sft` either way, so that the study folder holds its starting model.
 */
async function sftModel(config: StudyConfig, task: ReturnType<typeof arithmeticTask>, out: string, cacheDirectory: string, log: (line: string) => void): Promise<CausalLM> {
  const key = createHash('sha256').update(JSON.stringify({ version: 1, task: config.task, model: config.model, sft: config.sft })).digest('hex');
  const cached = path.join(cacheDirectory, 'study-sft', key);
  const tokenizer = new ByteTokenizer();
  let model: CausalLM;
  if (fs.existsSync(path.join(cached, 'model.safetensors'))) {
    log(`sft: reading the SFT model of these settings from the cache (${cached})`);
    model = loadModelFolder(cached).model;
  } else {
    model = new GPT(config.model, { seed: config.seed });
    const started = Date.now();
    log(`sft: training the starting model (${config.sft.steps} steps on ${task.sft.length} sums; about a minute on 2 cores)`);
    await new SftTrainer({
      model, tokenizer, train: task.sft, steps: config.sft.steps, batchSize: config.sft.batchSize, lr: config.sft.lr, warmupSteps: config.sft.warmupSteps,
      seed: config.seed, samples: 0, progress: false, callbacks: {
        onLog: (m) => {
          if (m.step % 500 === 0) log(`sft: step ${m.step}/${config.sft.steps}  loss ${fixed(m.loss, 4)}  ${clock((Date.now() - started) / 1000)}`);
        },
      },
    }).train();
    // into the cache whole or not at all: written beside it, then renamed (a concurrent study's copy may win)
    const partial = `${cached}.${process.pid}.partial`;
    try {
      saveModelFolder(partial, model, tokenizer);
      fs.renameSync(partial, cached);
    } catch {
      log(`sft: the SFT model could not be cached in ${cached}; the next study trains it again`);
    } finally {
      fs.rmSync(partial, { recursive: true, force: true });
    }
  }
  saveModelFolder(path.join(out, 'sft'), model, tokenizer);
  return model;
}

/** What a study writes in its folder: what `overwrite` replaces, and nothing else. */
export const STUDY_ENTRIES: readonly string[] = ['sft', 'runs', 'results.json', 'results.md', 'report.html', 'timings.json'];

/** Runs the study into `out`; returns its rows (also in out/results.json). */
export async function runStudy(config: StudyConfig, out: string, callbacks: StudyCallbacks = {}): Promise<StudyResult> {
  const log = callbacks.log ?? (() => {});
  const begun = Date.now();
  const folder = claimStudyFolder(out, callbacks.overwrite === true, log);
  try {
    return await studyIn(config, out, log, begun, callbacks.cacheDirectory ?? defaultCacheDirectory());
  } finally {
    folder.release();
  }
}

/**
 * The study folder, claimed as a run folder is (lib/train/run_folder.ts): new or empty, or with
 * `overwrite` an earlier study's, whose entries (STUDY_ENTRIES) are removed and no other file;
 * locked while the study runs.
 */
function claimStudyFolder(out: string, overwrite: boolean, log: (line: string) => void): RunFolder {
  return claimRunFolder(out, { mode: overwrite ? 'overwrite' : 'new', inputs: [], what: 'the study folder', note: log, entries: STUDY_ENTRIES, overwriteFlag: '--overwrite' });
}

async function studyIn(config: StudyConfig, out: string, log: (line: string) => void, begun: number, cacheDirectory: string): Promise<StudyResult> {
  const tokenizer = new ByteTokenizer();
  const task = arithmeticTask(config.task);
  const reference = await sftModel(config, task, out, cacheDirectory, log);
  const timings: Record<string, number> = {};
  try {
    const before = await evaluatePreferences({ model: reference, tokenizer, data: task.heldOut, beta: config.beta, maxNewTokens: 5 });
    const sft = {
      taskAccuracy: before.metrics['task/accuracy'], preferenceAccuracy: before.metrics['preference/accuracy'],
      logpsChosen: before.metrics['logps/chosen'], logpsRejected: before.metrics['logps/rejected'],
    };
    log(`sft model: held-out task accuracy ${fixed(sft.taskAccuracy)}, preference accuracy ${fixed(sft.preferenceAccuracy)}`);
    const rows: StudyRow[] = [];
    const runsBegun = Date.now();
    const plan = config.seeds.flatMap((seed) => config.learningRates.flatMap((lr) => config.methods.map((method) => ({ method, lr, seed }))));
    for (const [k, { method, lr, seed }] of plan.entries()) {
      const args = STUDY_METHODS[method];
      if (!args) throw new RangeError(`Expected a method among ${Object.keys(STUDY_METHODS).join(', ')} but received '${method}'`);
      const started = Date.now();
      const model = new GPT(config.model);
      model.copyFrom(reference);
      const dir = path.join(out, 'runs', runName(method, lr, seed));
      try {
        const result = await new PreferenceTrainer({
          ...args, beta: config.beta, model, tokenizer, train: task.preferences, eval: task.heldOut, steps: config.steps, batchSize: config.batchSize, lr,
          seed, evalEvery: config.evalEvery, out: dir, save: false, samples: 3, sampleTokens: 5, progress: false,
        }).train();
        const after = await evaluatePreferences({ model, tokenizer, data: task.heldOut, reference, beta: config.beta, maxNewTokens: 5, generateReference: false });
        const nonFinite = result.history.some((m) => !Number.isFinite(m.loss) || !Number.isFinite(m.grad_norm));
        const evals = fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number | null>)
          .filter((m) => 'eval_loss' in m);
        const drifts = evals.map((m) => (m['eval_logps/chosen'] ?? NaN) - sft.logpsChosen);
        const row: StudyRow = {
          method, loss: args.loss ?? 'dpo', nllWeight: args.nllWeight ?? 0, lr, seed, steps: config.steps, beta: config.beta,
          taskAccuracyBefore: sft.taskAccuracy, taskAccuracyAfter: after.metrics['task/accuracy'],
          preferenceAccuracy: after.metrics['preference/accuracy'], rewardAccuracy: after.metrics['rewards/accuracies'], rewardMargin: after.metrics['rewards/margins'],
          chosenDrift: after.metrics['logps/chosen'] - sft.logpsChosen, rejectedDrift: after.metrics['logps/rejected'] - sft.logpsRejected,
          minChosenDrift: Math.min(...drifts), nonFinite, diverged: false,
        };
        row.diverged = nonFinite || !(row.taskAccuracyAfter >= sft.taskAccuracy / 2);
        rows.push(row);
      } finally {
        model.dispose();
      }
      const seconds = (Date.now() - started) / 1000;
      timings[runName(method, lr, seed)] = seconds;
      const r = rows.at(-1)!;
      const eta = ((Date.now() - runsBegun) / 1000 / (k + 1)) * (plan.length - k - 1);
      log(`[${k + 1}/${plan.length}] ${method} lr ${lrLabel(lr)} seed ${seed}: task accuracy ${fixed(r.taskAccuracyBefore)} -> ${fixed(r.taskAccuracyAfter)}, ` +
        `chosen drift ${fixed(r.chosenDrift, 2)}, rejected drift ${fixed(r.rejectedDrift, 2)}, reward accuracy ${fixed(r.rewardAccuracy)}${r.diverged ? ', DIVERGED' : ''}` +
        `  (${seconds.toFixed(1)} s; ETA ${clock(eta)})`);
    }
    const study: StudyResult = { config, sft, rows };
    writeFileAtomic(path.join(out, 'results.json'), `${JSON.stringify({ format: 'fusedpo-study', version: 1, fusedpo: version, ...study }, null, 2)}\n`);
    writeFileAtomic(path.join(out, 'results.md'), studyMarkdown(study));
    writeStudyReport(study, out);
    timings.total = (Date.now() - begun) / 1000;
    writeFileAtomic(path.join(out, 'timings.json'), `${JSON.stringify(timings, null, 2)}\n`);
    return study;
  } finally {
    reference.dispose();
  }
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** The rows grouped by method and learning rate (means over seeds), in the config's order. */
export function summarize(study: StudyResult): { method: string; lr: number; runs: number; diverged: number; mean: Record<string, number> }[] {
  const { config, rows } = study;
  const keys = ['taskAccuracyAfter', 'chosenDrift', 'rejectedDrift', 'minChosenDrift', 'rewardAccuracy', 'rewardMargin', 'preferenceAccuracy'] as const;
  return config.methods.flatMap((method) => config.learningRates.map((lr) => {
    const group = rows.filter((r) => r.method === method && r.lr === lr);
    return {
      method, lr, runs: group.length, diverged: group.filter((r) => r.diverged).length,
      mean: Object.fromEntries(keys.map((k) => [k, mean(group.map((r) => r[k]))])),
    };
  })).filter((g) => g.runs > 0);
}

/** The settings above the summary table, one sentence a line. */
function settingsLines(study: StudyResult): string[] {
  const { config, sft } = study;
  return [
    `DPO family on the embedded arithmetic task (fusedpo ${version}): ${config.methods.join(', ')}; learning rates ${config.learningRates.map(lrLabel).join(', ')}; ` +
      `seeds ${config.seeds.join(', ')}; ${config.steps} steps of ${config.batchSize} pairs, beta ${config.beta}; held-out ${config.task.heldOut} sums.`,
    `The SFT model (the start and reference of every run): held-out task accuracy ${fixed(sft.taskAccuracy)}, preference accuracy ${fixed(sft.preferenceAccuracy)}.`,
    'Means over seeds; drift: held-out mean log-prob minus the reference\'s; diverged: a non-finite loss or task accuracy below half the SFT model\'s.',
  ];
}

/** The summary table's header and cells: one row per method and learning rate. */
function summaryTable(study: StudyResult): { head: string[]; rows: string[][] } {
  return {
    head: ['method', 'lr', 'task accuracy after', 'chosen drift', 'lowest chosen drift', 'rejected drift', 'reward accuracy', 'reward margin', 'diverged'],
    rows: summarize(study).map(({ method, lr, mean: m, diverged, runs }) => [
      method, lrLabel(lr), fixed(m.taskAccuracyAfter), fixed(m.chosenDrift, 2), fixed(m.minChosenDrift, 2), fixed(m.rejectedDrift, 2),
      fixed(m.rewardAccuracy), fixed(m.rewardMargin, 2), `${diverged}/${runs}`,
    ]),
  };
}

/** The summary as a Markdown table, with the settings above it. */
export function studyMarkdown(study: StudyResult): string {
  const { head, rows } = summaryTable(study);
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return `${[...settingsLines(study), '', line(head), line(head.map(() => '---')).replace(/ /g, ''), ...rows.map(line)].join('\n')}\n`;
}

/** The study at a glance: per method, held-out task accuracy and the lowest chosen drift against the learning rate (means over seeds). */
export function summaryCharts(study: StudyResult): string {
  const groups = summarize(study);
  const lrs = study.config.learningRates;
  const axis = { xTicks: lrs.map(Math.log10), xLabel: (x: number) => lrLabel(10 ** x), xName: 'learning rate (log scale)' };
  const series = (key: string) => study.config.methods.map((method) => ({
    label: method, color: METHOD_COLORS[method] ?? '#555', dots: true,
    points: groups.filter((g) => g.method === method).map((g) => [Math.log10(g.lr), g.mean[key]] as [number, number]),
  }));
  return `${legend(study.config.methods.map((m) => ({ label: m, color: METHOD_COLORS[m] ?? '#555' })))}<div class="charts">` +
    `${lineChart(`held-out task accuracy after (SFT model: ${fixed(study.sft.taskAccuracy)})`, series('taskAccuracyAfter'), axis)}` +
    `${lineChart('lowest held-out chosen drift (0: the reference)', series('minChosenDrift'), axis)}</div>`;
}

/** report.html: the summary charts and table, then per learning rate the methods' curves overlaid (the first seed). */
export function writeStudyReport(study: StudyResult, out: string): string {
  const { config } = study;
  const seed = config.seeds[0];
  const runs: RunRecord[] = [];
  const groups = config.learningRates.map((lr) => {
    const group = config.methods.map((method) => {
      const run = readRun(path.join(out, 'runs', runName(method, lr, seed)), `${method} lr ${lrLabel(lr)}`);
      run.color = METHOD_COLORS[method];
      runs.push(run);
      return run;
    });
    return { heading: `learning rate ${lrLabel(lr)} (seed ${seed})`, runs: group };
  });
  const { head, rows } = summaryTable(study);
  const intro = `<p>${settingsLines(study).map(escapeXml).join('<br>')}</p><table><tr>${head.map((c) => `<th>${escapeXml(c)}</th>`).join('')}</tr>` +
    `${rows.map((cells) => `<tr>${cells.map((c, i) => `<td${i >= 1 ? ' class="num"' : ''}>${escapeXml(c)}</td>`).join('')}</tr>`).join('')}</table>`;
  const file = path.join(out, 'report.html');
  writeFileAtomic(file, renderReport(runs, {
    title: 'DPO against MinorDPO across learning rates', intro: `${summaryCharts(study)}${intro}`, groups, runsTable: false,
    charts: ['rewards/accuracies', 'rewards/margins', 'logps/chosen', 'logps/rejected', 'rejectedBelowReference', 'grad_norm'], samples: false,
  }));
  return file;
}
