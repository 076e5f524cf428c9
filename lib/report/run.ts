/**
 * A run folder as the report reads it: `metrics.jsonl` (train lines, and `eval_` lines from the
 * evaluations), `samples.jsonl` (the sample generations), and the options the trainer recorded
 * in `run.json`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { TrainingFileError } from '../train/files';

/** One point of a metric: the step, and the value (null where it was not finite: JSON has no NaN). */
export type MetricRow = Record<string, number | null>;

/** The generations of a few prompts at one step: the policy's, and the reference's for preference runs. */
export interface SampleLog {
  step: number;
  samples: { prompt: string; policy: string; reference?: string }[];
}

export interface RunRecord {
  directory: string;
  /** The folder's name, or the label given. */
  name: string;
  kind: 'sft' | 'preference' | null;
  /** The options as given (loss parameters included) and the settings they resolved to (defaults filled), from trainer_state.json; null without a checkpoint. */
  options: Record<string, unknown> | null;
  settings: Record<string, unknown> | null;
  /** Logged training steps. */
  train: MetricRow[];
  /** Evaluations, with the `eval_` prefix taken off: the same keys as train's. */
  eval: MetricRow[];
  samples: SampleLog[];
  /** The run's colour in the report (default: the palette's, in order). */
  color?: string;
}

function jsonLines(file: string): unknown[] {
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').split('\n').map((line, i) => [line, i + 1] as const).filter(([line]) => line.trim() !== '').map(([line, n]) => {
    try {
      return JSON.parse(line) as unknown;
    } catch (error) {
      throw new TrainingFileError(`${file}:${n}`, `not valid JSON: ${(error as Error).message}`);
    }
  });
}

/** Reads a run folder (`fusedpo sft/train --out`); `label` names it in the report (default: the folder's name). */
export function readRun(directory: string, label?: string): RunRecord {
  const metricsFile = path.join(directory, 'metrics.jsonl');
  if (!fs.existsSync(metricsFile)) throw new TrainingFileError(directory, 'no metrics.jsonl: not the folder of a fusedpo sft or train run (its --out)');
  const train: MetricRow[] = [];
  const evaluations: MetricRow[] = [];
  for (const line of jsonLines(metricsFile)) {
    const row = line as MetricRow;
    if (typeof row !== 'object' || row === null || typeof row.step !== 'number') continue;
    const evalKeys = Object.keys(row).filter((k) => k.startsWith('eval_'));
    if (evalKeys.length > 0) evaluations.push(Object.fromEntries([['step', row.step], ...evalKeys.map((k) => [k.slice(5), row[k]])]));
    else train.push(row);
  }
  let kind: RunRecord['kind'] = null;
  let options: Record<string, unknown> | null = null;
  let settings: Record<string, unknown> | null = null;
  // run.json (every run with an output folder writes it), else an older run's checkpoint state
  const stateFile = [path.join(directory, 'run.json'), path.join(directory, 'checkpoint', 'trainer_state.json')].find((f) => fs.existsSync(f));
  if (stateFile) {
    try {
      const state = JSON.parse(fs.readFileSync(stateFile, 'utf8')) as Record<string, unknown>;
      kind = state.kind === 'sft' || state.kind === 'preference' ? state.kind : null;
      options = (state.options as Record<string, unknown> | undefined) ?? null;
      settings = (state.settings as Record<string, unknown> | undefined) ?? null;
    } catch {
      // a damaged state file costs the report its options table, not the charts
    }
  }
  const samples = jsonLines(path.join(directory, 'samples.jsonl')).filter((s): s is SampleLog =>
    typeof s === 'object' && s !== null && typeof (s as SampleLog).step === 'number' && Array.isArray((s as SampleLog).samples));
  return { directory, name: label ?? path.basename(path.resolve(directory)), kind, options, settings, train, eval: evaluations, samples };
}
