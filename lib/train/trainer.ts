/**
 * The trainers: `SftTrainer` (next-token cross-entropy on completions) and `PreferenceTrainer`
 * (any loss of the registry through the fused kernel), one loop between them (docs/training.md).
 *
 * A step: the learning rate of the schedule (linear warmup, cosine decay to lr * minLrRatio),
 * `gradientAccumulation` micro-batches of `batchSize` examples (pairs for the preference
 * trainer), each forward, loss and backward, weighted so that the update is the one of the whole
 * batch; the global gradient norm clipped to maxGradNorm; AdamW. The data are visited in a seeded
 * order, reshuffled each epoch; the position in it is `cursor`, the examples consumed so far.
 *
 * Deterministic: the same options and seed give the same bytes of model and metrics, and a run
 * resumed from a checkpoint gives those of an unbroken one (wall-clock figures go to
 * timings.jsonl, apart).
 *
 * Nothing a user had is lost (docs/training.md, "Your files"): every record and every option is
 * checked before the output folder is touched; the folder is claimed (new or empty, or
 * `overwrite`, or the run's own when resuming; locked; never one of the inputs) before anything is
 * written; `signal` stops the run at a step boundary after a checkpoint; a checkpoint is also
 * written every `checkpointMinutes`; a resumed run must match its checkpoint in everything but
 * its length and cadence.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { noGrad } from '../autograd';
import { collatePreferences, collateSft, tokenizePreferences, tokenizeSft, type PreferenceBatch, type TokenBatch, type TokenizeOptions, type TokenizedPair, type TokenizedSft,
  type TruncationReport } from '../data/batch';
import { DEFAULT_MAX_LINE_BYTES, DatasetError, readPreferenceDataset, readSftDataset, type DatasetRead, type PreferenceRecord, type ReadOptions, type SftRecord } from '../data/dataset';
import type { Tokenizer } from '../data/tokenizer';
import { mulberry32 } from '../example';
import { preferenceLoss, type LossParameterArgs } from '../losses';
import { LOSS_PARAMETER_KEYS, checkLoss } from '../losses/parameters';
import { parametersOf } from '../losses/registry';
import { CausalLM } from '../nn/causal_lm';
import { crossEntropy } from '../ops/cross_entropy';
import { scale } from '../ops/elementwise';
import { AdamW, clipGradNorm, cosineSchedule } from '../optim';
import { withScope } from '../tensor';
import { checkBoolean, checkInteger, checkNumber, describe, readArgs } from '../validate';
import { TrainingFileError, checkpointDirectory, loadCheckpoint, readTrainerState, saveCheckpoint, saveModelFolder, tokenizerIdentity, writeFileAtomic } from './files';
import { writeReport } from '../report/html';
import type { SampleLog } from '../report/run';
import { formatSummary } from '../report/summary';
import { greedyCompletion } from './evaluate';
import { Progress } from './progress';
import { frozenCopy, modelLogps, pairLogps, precomputeReference, syncReference, type PairLogps } from './reference';
import { checkTrainerState, fingerprintData, identityDifferences, type DataFingerprint } from './resume';
import { claimRunFolder, resolvedPath, type RunFolder, type RunInput } from './run_folder';

/** One logged step: TRL's metric names (docs/training.md). */
export type StepMetrics = Record<string, number>;

/** A record left out of training under skipBadLines, and why. */
export interface SkippedRecord {
  file: string;
  line: number;
  reason: string;
}

/** What the data gave, known before the first step: the `onData` callback's argument. */
export interface DataReport {
  /** The training data's tokenization (records, kept, truncated). */
  train: TruncationReport;
  /** The eval data's, or null without an eval set. */
  eval: TruncationReport | null;
  /** Every record skipped (skipBadLines), in both sets. */
  skipped: SkippedRecord[];
}

export interface TrainerCallbacks {
  /** Once the data are read and tokenized, before the first step: what was kept, truncated and skipped. */
  onData?(report: DataReport): void;
  /** After every logged step, with its metrics (the line of metrics.jsonl). */
  onLog?(metrics: StepMetrics): void;
  /** After every evaluation, with its `eval_` metrics. */
  onEval?(metrics: StepMetrics): void;
  /** After every checkpoint, with the step and the folder. */
  onCheckpoint?(step: number, directory: string): void;
}

/** The options both trainers take. */
export interface TrainerOptions {
  /** The model to train (updated in place): a GPT, a LlamaModel, any CausalLM. */
  model: CausalLM;
  tokenizer: Tokenizer;
  /**
   * Where the run's files go (config.json, model.safetensors, metrics.jsonl, checkpoint/); none
   * without. It must not exist yet or be empty (see `overwrite` and `resume`), and may not be,
   * hold or lie inside the data files or `inputs`.
   */
  out?: string;
  /** Replace what an earlier run wrote in `out` (its model, metrics, checkpoint, report), keeping every other file (default false). */
  overwrite?: boolean;
  /** Paths the run reads besides its data files (the starting model's folder): `out` may not be, hold or lie inside one. */
  inputs?: readonly RunInput[];
  /** Optimizer steps (default: one epoch). */
  steps?: number;
  /** Examples per micro-batch (pairs for the preference trainer; default 8; at most the training examples). */
  batchSize?: number;
  /** Micro-batches per step (default 1): the update equals one batch of batchSize * gradientAccumulation. */
  gradientAccumulation?: number;
  /** The peak learning rate, > 0 (default 1e-3 for SFT, 5e-4 for preferences: small models; TRL's 1e-6 is for large ones). */
  lr?: number;
  /** Steps of linear warmup (default 0; at most the run's steps). */
  warmupSteps?: number;
  /** The rate at the last step, as a fraction of lr (default 0.1). */
  minLrRatio?: number;
  /** AdamW's decoupled weight decay (default 0). */
  weightDecay?: number;
  /** The global gradient norm is clipped to this (default 1). */
  maxGradNorm?: number;
  /** The seed of the data order (default 0). */
  seed?: number;
  /** Tokens of prompt + completion kept (default: the model's context + 1). */
  maxLength?: number;
  /** Log every n steps (default 1). */
  logEvery?: number;
  /** Evaluate every n steps and at the end (default 0: at the end only, when there is an eval set). */
  evalEvery?: number;
  /** Checkpoint every n steps (default 0: by time and at the end only, when out is given). */
  saveEvery?: number;
  /** Checkpoint at the first step boundary this many minutes after the last one (default 10; 0: not by time), when out is given. */
  checkpointMinutes?: number;
  /** Checkpoint at this step and stop there, as an interruption after it would (for testing resume). */
  stopAfter?: number;
  /** Continue the run whose checkpoint is in `out`: every option must match the checkpoint's but steps and cadence. */
  resume?: boolean;
  /** false: out gets the metrics, samples and report only, no model and no checkpoint (sweeps of many runs; default true). */
  save?: boolean;
  /** Skip (and list) bad records of the data instead of stopping at the first (default false). */
  skipBadLines?: boolean;
  /** The longest line of a JSONL data file, in bytes (default 64 MiB): a longer one is a bad record. */
  maxLineBytes?: number;
  /**
   * Prompts whose greedy generations (policy, and reference for preference runs) are logged at the
   * start, at each evaluation and at the end, to samples.jsonl and the report: the first n of the
   * eval set, else of the training set (default 3; 0: none).
   */
  samples?: number;
  /** Tokens generated at most per sample (default 32). */
  sampleTokens?: number;
  /** A progress line on stderr: true, false, or 'auto' (default: when stderr is a terminal, else plain lines when out is given). */
  progress?: boolean | 'auto';
  callbacks?: TrainerCallbacks;
  /**
   * Read at every step boundary: once `aborted` is true, the run writes a checkpoint (with out)
   * and returns with `interrupted: true`. An AbortSignal fits; the CLI passes its SIGINT/SIGTERM watch.
   */
  signal?: { readonly aborted: boolean };
  /** What started the run (the CLI's command and options), kept in run.json and the checkpoint for a resume by the folder alone. */
  command?: { name: string; options: Record<string, unknown> };
}

export interface SftTrainerOptions extends TrainerOptions {
  /** A JSONL/JSON file of {prompt, completion}, {text} or {messages}, or the records. */
  train: string | readonly SftRecord[];
  eval?: string | readonly SftRecord[];
}

export interface PreferenceTrainerOptions extends TrainerOptions, LossParameterArgs {
  /** A JSONL/JSON file of {prompt, chosen, rejected} (or implicit-prompt, or conversational), or the records. */
  train: string | readonly PreferenceRecord[];
  eval?: string | readonly PreferenceRecord[];
  /** `copy` (default): a frozen copy of the starting model; `precompute`: its log-probs, once, cached on disk. */
  reference?: 'copy' | 'precompute';
  /** Where precomputed reference log-probs are cached (default: FUSEDPO_CACHE, else ~/.cache/fusedpo). */
  referenceCache?: string;
  /** TR-DPO: every `every` steps, `ref <- alpha * policy + (1 - alpha) * ref` (copy reference only). */
  referenceSync?: { every: number; alpha: number };
}

export interface TrainResult {
  /** The metrics of every logged step, in order. */
  history: StepMetrics[];
  /** The last evaluation's metrics, if any. */
  eval: StepMetrics | null;
  /** Steps taken (all of them, with a resumed run's earlier ones). */
  steps: number;
  /** The truncation report of the training data. */
  data: TruncationReport;
  /** The records skipped as bad (skipBadLines), with their file, line and reason. */
  skipped: SkippedRecord[];
  /** False when stopAfter or the signal ended the run early. */
  finished: boolean;
  /** True when the signal ended the run (after a checkpoint, when out is given). */
  interrupted: boolean;
  /** The folder of the last checkpoint written, or null (none written: no out, save false, or stopped before the output folder was touched). */
  checkpoint: string | null;
}

const COMMON_KEYS = ['model', 'tokenizer', 'out', 'overwrite', 'inputs', 'steps', 'batchSize', 'gradientAccumulation', 'lr', 'warmupSteps', 'minLrRatio',
  'weightDecay', 'maxGradNorm', 'seed', 'maxLength', 'logEvery', 'evalEvery', 'saveEvery', 'checkpointMinutes', 'stopAfter', 'resume', 'save', 'skipBadLines',
  'maxLineBytes', 'samples', 'sampleTokens', 'progress', 'callbacks', 'signal', 'command', 'train', 'eval'] as const;

/** The options as given, recorded in run.json for the report's table. */
const RECORDED = ['steps', 'batchSize', 'gradientAccumulation', 'lr', 'warmupSteps', 'minLrRatio', 'weightDecay', 'maxGradNorm', 'seed', 'maxLength',
  'logEvery', 'evalEvery', 'saveEvery', 'skipBadLines'] as const;

/**
 * The settings that shape the run's bytes: a resumed run must have the checkpoint's. Left out:
 * the length (`steps`: a run may be extended) and the cadence of logging, evaluation and
 * checkpoints, which a resumed run may change.
 */
const IDENTITY_SETTINGS = ['batchSize', 'gradientAccumulation', 'lr', 'warmupSteps', 'minLrRatio', 'weightDecay', 'maxGradNorm', 'seed', 'maxLength',
  'samples', 'sampleTokens', 'skipBadLines', 'maxLineBytes'] as const;

interface CommonSettings {
  batchSize: number;
  gradientAccumulation: number;
  lr: number;
  warmupSteps: number;
  minLrRatio: number;
  weightDecay: number;
  maxGradNorm: number;
  seed: number;
  maxLength: number;
  logEvery: number;
  evalEvery: number;
  saveEvery: number;
  checkpointMinutes: number;
  stopAfter: number | null;
  steps: number | null;
  samples: number;
  sampleTokens: number;
  skipBadLines: boolean;
  maxLineBytes: number;
}

function positive(name: string, value: unknown, fallback: number): number {
  return checkInteger(name, value ?? fallback, 1, Number.MAX_SAFE_INTEGER);
}

function commonSettings(o: Record<string, unknown>, model: CausalLM, defaultLr: number): CommonSettings {
  const maxLength = positive('maxLength', o.maxLength, model.config.context + 1);
  if (maxLength - 1 > model.config.context) {
    throw new RangeError(`Expected at most the model's context + 1 = ${model.config.context + 1} (the model reads maxLength - 1 tokens) for maxLength but received ${maxLength}`);
  }
  if (maxLength < 2) throw new RangeError(`Expected at least 2 for maxLength but received ${maxLength}`);
  const nonNegative = (name: string, fallback: number) => checkInteger(name, o[name] ?? fallback, 0, Number.MAX_SAFE_INTEGER);
  return {
    steps: o.steps === undefined ? null : positive('steps', o.steps, 1),
    batchSize: positive('batchSize', o.batchSize, 8),
    gradientAccumulation: positive('gradientAccumulation', o.gradientAccumulation, 1),
    lr: checkNumber('lr', o.lr ?? defaultLr, { min: 0, minExclusive: true }),
    warmupSteps: nonNegative('warmupSteps', 0),
    minLrRatio: checkNumber('minLrRatio', o.minLrRatio ?? 0.1, { min: 0, max: 1 }),
    weightDecay: checkNumber('weightDecay', o.weightDecay ?? 0, { min: 0 }),
    maxGradNorm: checkNumber('maxGradNorm', o.maxGradNorm ?? 1, { min: 0, minExclusive: true }),
    seed: checkInteger('seed', o.seed ?? 0, 0, 2 ** 32 - 1),
    maxLength,
    logEvery: positive('logEvery', o.logEvery, 1),
    evalEvery: nonNegative('evalEvery', 0),
    saveEvery: nonNegative('saveEvery', 0),
    checkpointMinutes: checkNumber('checkpointMinutes', o.checkpointMinutes ?? 10, { min: 0 }),
    stopAfter: o.stopAfter === undefined ? null : positive('stopAfter', o.stopAfter, 1),
    samples: nonNegative('samples', 3),
    sampleTokens: positive('sampleTokens', o.sampleTokens, 32),
    skipBadLines: checkBoolean('skipBadLines', o.skipBadLines ?? false),
    maxLineBytes: positive('maxLineBytes', o.maxLineBytes, DEFAULT_MAX_LINE_BYTES),
  };
}

/** The seeded order of epoch `epoch` over n examples (Fisher-Yates with mulberry32). */
function epochOrder(n: number, seed: number, epoch: number): Uint32Array {
  const order = Uint32Array.from({ length: n }, (_, i) => i);
  const random = mulberry32((seed ^ Math.imul(epoch + 1, 0x9e3779b1)) >>> 0);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/** The examples at positions [cursor, cursor + count) of the seeded order, across epochs. */
class DataOrder {
  private cachedEpoch = -1;
  private cachedOrder: Uint32Array = new Uint32Array(0);
  constructor(private readonly n: number, private readonly seed: number) {}
  take(cursor: number, count: number): number[] {
    const indices: number[] = [];
    for (let j = cursor; j < cursor + count; j++) {
      const epoch = Math.floor(j / this.n);
      if (epoch !== this.cachedEpoch) {
        this.cachedOrder = epochOrder(this.n, this.seed, epoch);
        this.cachedEpoch = epoch;
      }
      indices.push(this.cachedOrder[j % this.n]);
    }
    return indices;
  }
}

/** Each sum divided by count. */
function average(sums: Record<string, number>, count: number): Record<string, number> {
  return Object.fromEntries(Object.entries(sums).map(([k, v]) => [k, v / count]));
}

/** The memory a machine lets this process have: the cgroup's limit where one is set, else the physical memory. */
function memoryLimit(): number {
  for (const file of ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes']) {
    try {
      const limit = Number(fs.readFileSync(file, 'utf8').trim());
      if (Number.isFinite(limit) && limit > 0 && limit < os.totalmem()) return limit;
    } catch {
      // no such cgroup file: the next, else the machine's memory
    }
  }
  return os.totalmem();
}

/**
 * A lower bound of the bytes one training step holds: the weights with their gradients and
 * AdamW's two moments (and a frozen copy for a reference), and the activations the forward
 * keeps for the backward over `rows` rows of `tokens` tokens (the model's
 * activationFloatsPerToken: for GPT-2, per token and layer about 17 x width floats and the
 * attention's `heads x tokens` weights, then the logits and their gradient).
 */
export function stepMemoryBytes(model: CausalLM, rows: number, tokens: number, withReference: boolean): number {
  return 4 * (model.parameterCount() * (withReference ? 5 : 4) + rows * tokens * model.activationFloatsPerToken(tokens));
}

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(bytes < 2 ** 30 ? 2 : 1)} GiB`;
}

/** A user's name for a field of the run's identity (a resume's differences). */
function identityName(key: string): string {
  if (key === 'data.train') return 'the training data (train)';
  if (key === 'data.eval') return 'the eval data (eval)';
  if (key === 'model') return 'the model\'s config';
  if (key === 'tokenizer') return 'the tokenizer';
  return key.split('.').at(-1)!;
}

/** What a trainer's data gave: the examples, and the tokenization reports. */
interface Prepared<Example> {
  train: Example[];
  eval: Example[];
  report: TruncationReport;
  evalReport: TruncationReport | null;
}

/** The shared loop; the two trainers say what a micro-batch is and what it logs. */
abstract class Trainer<Example extends { prompt: number[] }> {
  protected readonly model: CausalLM;
  protected readonly tokenizer: Tokenizer;
  protected readonly out: string | null;
  protected readonly settings: CommonSettings;
  protected readonly callbacks: TrainerCallbacks;
  protected readonly progressSetting: boolean | 'auto';
  protected readonly resume: boolean;
  protected readonly overwrite: boolean;
  protected readonly save: boolean;
  protected readonly inputs: readonly RunInput[];
  protected readonly signal: { readonly aborted: boolean } | null;
  protected readonly command: { name: string; options: Record<string, unknown> } | null;
  /** The data: a file path or records, for the training and the eval set. */
  protected readonly sources: { train: string | readonly unknown[]; eval?: string | readonly unknown[] };
  /** The options as given, written to run.json (the report's table). */
  protected readonly recordedOptions: Record<string, unknown>;
  /** What the objective adds to the run's identity (the loss, the reference). */
  protected objectiveIdentity: Record<string, unknown> = {};
  protected optimizer: AdamW | null = null;
  /** Bad records skipped while reading and tokenizing (with skipBadLines), reported before the first step. */
  protected skipped: SkippedRecord[] = [];
  /** The reference's sample generations when they do not change (a frozen reference): those of the start. */
  private referenceSamples: string[] | null = null;

  protected constructor(readonly kind: 'sft' | 'preference', options: Record<string, unknown>, defaultLr: number) {
    if (!(options.model instanceof CausalLM)) throw new TypeError(`Expected a model (GPT, LlamaModel: a CausalLM) for model but received ${describe(options.model)}`);
    const tokenizer = options.tokenizer as Tokenizer | undefined;
    if (!tokenizer || typeof tokenizer.encode !== 'function' || typeof tokenizer.eosId !== 'number' || typeof tokenizer.padId !== 'number'
      || typeof tokenizer.applyChatTemplate !== 'function') {
      throw new TypeError(`Expected a Tokenizer (lib/data/tokenizer: ByteTokenizer, BpeTokenizer) for tokenizer but received ${describe(tokenizer)}`);
    }
    this.model = options.model;
    this.tokenizer = tokenizer;
    if (tokenizer.vocabSize > this.model.config.vocab) {
      throw new RangeError(`Expected a model whose vocab (${this.model.config.vocab}) holds the tokenizer's ${tokenizer.vocabSize} ids`);
    }
    this.settings = commonSettings(options, this.model, defaultLr);
    if (options.out !== undefined && (typeof options.out !== 'string' || options.out === '')) {
      throw new TypeError(`Expected a folder path for out but received ${describe(options.out)}`);
    }
    this.out = (options.out as string | undefined) ?? null;
    this.resume = checkBoolean('resume', options.resume ?? false);
    this.overwrite = checkBoolean('overwrite', options.overwrite ?? false);
    this.save = checkBoolean('save', options.save ?? true);
    if (!this.save && (this.resume || this.settings.stopAfter !== null || this.settings.saveEvery > 0)) {
      throw new TypeError('Expected save: true (the default) with resume, stopAfter or saveEvery: they need checkpoints');
    }
    if (this.resume && !this.out) throw new TypeError('Expected out (the run folder holding the checkpoint) with resume: true');
    if (this.resume && this.overwrite) throw new TypeError('Expected resume or overwrite, not both: resume continues the run in out, overwrite replaces it');
    if (this.settings.stopAfter !== null && !this.out) throw new TypeError('Expected out (where the checkpoint goes) with stopAfter');
    const progress = options.progress ?? 'auto';
    if (progress !== true && progress !== false && progress !== 'auto') throw new TypeError(`Expected true, false or 'auto' for progress but received ${describe(progress)}`);
    this.progressSetting = progress;
    this.callbacks = (options.callbacks as TrainerCallbacks | undefined) ?? {};
    this.inputs = readInputs(options.inputs);
    const signal = options.signal as { aborted?: unknown } | undefined;
    if (signal !== undefined && (typeof signal !== 'object' || signal === null || !('aborted' in signal))) {
      throw new TypeError(`Expected an AbortSignal (or an object with aborted) for signal but received ${describe(signal)}`);
    }
    this.signal = (signal as { readonly aborted: boolean } | undefined) ?? null;
    const command = options.command as TrainerOptions['command'];
    if (command !== undefined && (typeof command !== 'object' || command === null || typeof command.name !== 'string' || typeof command.options !== 'object')) {
      throw new TypeError(`Expected { name, options } for command but received ${describe(command)}`);
    }
    this.command = command ?? null;
    this.recordedOptions = Object.fromEntries(RECORDED.map((k) => [k, options[k] ?? null]));
    for (const name of ['train', 'eval'] as const) {
      const value = options[name];
      if (!(value === undefined && name === 'eval') && typeof value !== 'string' && !Array.isArray(value)) {
        throw new TypeError(`Expected a file path or an array of records for ${name} but received ${describe(value)}`);
      }
      if (value === '') throw new TypeError(`Expected a file path or an array of records for ${name} but received an empty string`);
    }
    this.sources = { train: options.train as string | readonly unknown[], eval: options.eval as string | readonly unknown[] | undefined };
  }

  /** The records of `source` (a file, read with `reader`, its skipped records kept for the report; or the records), and its name for errors. */
  protected async records<T>(source: string | readonly T[] | undefined, name: string,
    reader: (file: string, options: ReadOptions) => Promise<DatasetRead<T>>): Promise<{ records: readonly T[]; file: string }> {
    if (source === undefined) return { records: [], file: name };
    if (typeof source === 'string') {
      const read = await reader(source, { skipBadLines: this.settings.skipBadLines, maxLineBytes: this.settings.maxLineBytes });
      this.skipped.push(...read.skipped.map((bad) => ({ file: read.file, ...bad })));
      return { records: read.records, file: read.file };
    }
    if (!Array.isArray(source)) throw new TypeError(`Expected a file path or an array of records for ${name} but received ${describe(source)}`);
    return { records: source, file: `the ${name} records` };
  }

  /**
   * Records whose prompt alone fills maxLength (no room for one completion token) are bad records
   * like any other: an error naming the first, or with skipBadLines skipped and listed.
   */
  protected checkDropped(report: TruncationReport, file: string): void {
    if (report.promptFilled === 0) return;
    const reason = `the prompt alone fills maxLength ${this.settings.maxLength} tokens (the model reads at most maxLength - 1), ` +
      'leaving no room for the completion: shorten the prompt or raise maxLength';
    if (!this.settings.skipBadLines) throw new DatasetError(file, report.droppedLines[0], `${reason}${report.promptFilled > 1 ? ` (${report.promptFilled} records are so)` : ''}`);
    this.skipped.push(...report.droppedLines.map((line) => ({ file, line, reason })));
  }

  /**
   * The training and eval data read with `reader` and tokenized with `tokenize` (lib/data/batch.ts:
   * conversations rendered with the tokenizer's chat template there), every record checked: one
   * whose rendering fails, or whose prompt fills maxLength, is a bad record too.
   */
  protected async readAndTokenize<R>(reader: (file: string, options: ReadOptions) => Promise<DatasetRead<R>>,
    tokenize: (records: readonly R[], options: TokenizeOptions) => { examples: Example[]; report: TruncationReport }): Promise<Prepared<Example>> {
    const sources = this.sources as { train: string | readonly R[]; eval?: string | readonly R[] };
    const trainRead = await this.records(sources.train, 'train', reader);
    const evalRead = await this.records(sources.eval, 'eval', reader);
    const options = (file: string): TokenizeOptions => ({
      file, ...(this.settings.skipBadLines ? { skip: (line: number, reason: string) => this.skipped.push({ file, line, reason }) } : {}),
    });
    const train = tokenize(trainRead.records, options(trainRead.file));
    this.checkDropped(train.report, trainRead.file);
    const evaluation = sources.eval === undefined ? null : tokenize(evalRead.records, options(evalRead.file));
    if (evaluation) this.checkDropped(evaluation.report, evalRead.file);
    return { train: train.examples, eval: evaluation?.examples ?? [], report: train.report, evalReport: evaluation?.report ?? null };
  }

  /** Tokenized training and eval examples, every record checked. */
  protected abstract prepare(): Promise<Prepared<Example>>;
  /** Runs once data are ready (the reference's setup); `resumed` holds what the checkpoint saved. */
  protected abstract setUp(train: Example[], evalSet: Example[], resumedLogps: Record<string, Float32Array> | null): void;
  /** One micro-batch forward and backward, weighted by `weight`; returns its metric sums. */
  protected abstract microStep(examples: Example[], indices: number[], weight: number, stepTokens: number): Record<string, number>;
  /** The weight of a micro-batch in the step (the trainers differ: tokens for SFT, pairs for preferences). */
  protected abstract stepTokens(batches: Example[][]): number;
  /** Evaluation metrics over the eval set, averaged. */
  protected abstract evaluate(evalSet: Example[]): Record<string, number>;
  /** The rows of one micro-batch of `examples` (2 per pair for preferences) and its longest row. */
  protected abstract batchShape(examples: Example[]): { rows: number; tokens: number };
  /** After the optimizer step (the reference's sync). */
  protected afterStep(_step: number): void {}
  /** What a checkpoint saves beside the policy and the optimizer. */
  protected abstract checkpointExtras(): { reference?: CausalLM | null; referenceLogps?: Record<string, Float32Array> | null };
  protected abstract resumeInto(): CausalLM | null;
  /** Input tokens (not padding) of a micro-batch, for num_tokens. */
  protected abstract inputTokens(examples: Example[]): number;
  protected abstract dispose(): void;
  /** Whether samples show a reference beside the policy. */
  protected hasReference(): boolean { return false; }
  /** Whether the run keeps a frozen copy of the model (its memory counts). */
  protected holdsReferenceCopy(): boolean { return false; }
  /** A reference that changes during the run (TR-DPO's synced copy), sampled anew each time; null when it is frozen. */
  protected changingReference(): CausalLM | null { return null; }
  /** A frozen reference to sample from when the start's samples are not known (a resumed run without samples.jsonl). */
  protected referenceModel(): CausalLM | null { return null; }

  /** The sample log of `step`: each prompt's greedy completion by the policy (and the reference). */
  private sampleLog(step: number, prompts: number[][]): SampleLog {
    const n = this.settings.sampleTokens;
    const policy = prompts.map((p) => greedyCompletion(this.model, this.tokenizer, p, n));
    let reference: string[] | null = null;
    if (this.hasReference()) {
      const changing = this.changingReference();
      if (changing) reference = prompts.map((p) => greedyCompletion(changing, this.tokenizer, p, n));
      else {
        if (step === 0) this.referenceSamples ??= policy;  // at the start the policy is the reference
        const frozen = this.referenceModel();
        this.referenceSamples ??= frozen ? prompts.map((p) => greedyCompletion(frozen, this.tokenizer, p, n)) : null;
        reference = this.referenceSamples;
      }
    }
    return {
      step,
      samples: prompts.map((p, i) => ({ prompt: this.tokenizer.decode(p), policy: policy[i], ...(reference ? { reference: reference[i] } : {}) })),
    };
  }

  /**
   * Everything about the run that the data and options decide, checked before the output folder
   * is touched: examples left, the batch within the data, the warmup within the run, the memory
   * of a step within the machine's.
   */
  private checkRun(train: Example[], report: TruncationReport, totalSteps: number): void {
    const s = this.settings;
    if (train.length === 0) throw new RangeError(`Expected training examples but every one of the ${report.records} records was left out`);
    if (s.batchSize > train.length) {
      throw new RangeError(`Expected at most the ${train.length} training examples for batchSize but received ${s.batchSize}`);
    }
    if (s.warmupSteps > totalSteps) {
      throw new RangeError(`Expected at most the run's ${totalSteps} steps for warmupSteps but received ${s.warmupSteps}`);
    }
    // the longest micro-batch the data can make: the batch's rows at the longest example's length
    const longest = train.reduce((best, e) => {
      const shape = this.batchShape([e]);
      return shape.tokens > best ? shape.tokens : best;
    }, 1);
    const rows = this.batchShape(train.slice(0, 1)).rows * s.batchSize;
    const needed = stepMemoryBytes(this.model, rows, longest, this.holdsReferenceCopy());
    const limit = memoryLimit();
    if (needed > limit) {
      throw new RangeError(`Expected a batch whose step fits in this machine's ${gib(limit)} of memory for batchSize but received ${s.batchSize}: ` +
        `${rows} rows of up to ${longest} tokens need at least ${gib(needed)}; lower it (and raise gradientAccumulation), or lower maxLength`);
    }
  }

  /** The run's identity: what its checkpoint records and a resumed run must match (lib/train/resume.ts). */
  private async identity(): Promise<Record<string, unknown>> {
    const source = this.sources;
    return {
      kind: this.kind,
      settings: Object.fromEntries(IDENTITY_SETTINGS.map((k) => [k, this.settings[k]])),
      ...this.objectiveIdentity,
      model: { ...this.model.config },
      tokenizer: tokenizerIdentity(this.tokenizer),
      data: { train: await fingerprintData(source.train), eval: source.eval === undefined ? null : await fingerprintData(source.eval) },
    };
  }

  async train(): Promise<TrainResult> {
    const { train, eval: evalSet, report, evalReport } = await this.prepare();
    const s = this.settings;
    const perStep = s.batchSize * s.gradientAccumulation;
    const totalSteps = s.steps ?? Math.max(1, Math.ceil(train.length / perStep));
    this.checkRun(train, report, totalSteps);
    this.callbacks.onData?.({ train: report, eval: evalReport, skipped: this.skipped });
    const identity = this.out && this.save ? await this.identity() : null;
    // stopped while the data were read: nothing has been written, and nothing is
    if (this.signal?.aborted) return { history: [], eval: null, steps: 0, data: report, skipped: this.skipped, finished: false, interrupted: true, checkpoint: null };
    const folder = this.out ? this.claim() : null;
    try {
      return await this.loop(train, evalSet, report, totalSteps, identity);
    } finally {
      folder?.release();
    }
  }

  /** The output folder, claimed: new or empty, or overwrite, or the run's own to resume; never one of the inputs. */
  private claim(): RunFolder {
    const source = this.sources;
    const dataInputs: RunInput[] = [];
    if (typeof source.train === 'string') dataInputs.push({ name: 'the training data', path: source.train });
    if (typeof source.eval === 'string') dataInputs.push({ name: 'the eval data', path: source.eval });
    const description = this.tokenizer.describe();
    // a resumed run's tokenizer was read from its own checkpoint: the run's file, not an input to keep out of the folder
    const ownCheckpoint = this.resume && description.kind === 'bpe' && resolvedPath(description.file).startsWith(resolvedPath(this.out!) + path.sep);
    if (description.kind === 'bpe' && fs.existsSync(description.file) && !ownCheckpoint) dataInputs.push({ name: 'the tokenizer file', path: description.file });
    return claimRunFolder(this.out!, {
      mode: this.resume ? 'resume' : this.overwrite ? 'overwrite' : 'new',
      inputs: [...this.inputs, ...dataInputs],
      what: 'the output folder (out)',
      note: (line) => process.stderr.write(`fusedpo: ${line}\n`),
    });
  }

  private async loop(train: Example[], evalSet: Example[], report: TruncationReport, totalSteps: number,
    identity: Record<string, unknown> | null): Promise<TrainResult> {
    const s = this.settings;
    const perStep = s.batchSize * s.gradientAccumulation;
    this.optimizer = new AdamW(this.model, { lr: s.lr, weightDecay: s.weightDecay });
    const optimizer = this.optimizer;
    let step = 0, cursor = 0, numTokens = 0;
    const history: StepMetrics[] = [];
    let resumedLogps: Record<string, Float32Array> | null = null;
    const metricsFile = this.out ? path.join(this.out, 'metrics.jsonl') : null;
    const timingsFile = this.out ? path.join(this.out, 'timings.jsonl') : null;
    const samplesFile = this.out ? path.join(this.out, 'samples.jsonl') : null;
    const sizeOf = (file: string | null) => (file && fs.existsSync(file) ? fs.statSync(file).size : 0);
    /** The settings the options resolved to (the report's table): fixed for the run. */
    const settings = { ...s, steps: totalSteps, stopAfter: null };
    const state = (): Record<string, unknown> => ({
      format: 'fusedpo-trainer-state', version: 2, kind: this.kind, step, cursor, numTokens, totalSteps,
      identity, command: this.command, options: this.recordedOptions, settings,
      metricsBytes: sizeOf(metricsFile), timingsBytes: sizeOf(timingsFile), samplesBytes: sizeOf(samplesFile),
    });
    let lastSamples: SampleLog | null = null;
    /** When and at which step the last checkpoint was written (-1: none by this process). */
    let checkpointedAt = Date.now();
    let checkpointedStep = -1;
    try {
      let checkpointAt: string | null = null;
      if (this.resume) {
        checkpointAt = checkpointDirectory(this.out!);
        const stateFile = path.join(checkpointAt, 'trainer_state.json');
        const saved = readTrainerState(checkpointAt);
        if (saved.kind !== this.kind) throw new TrainingFileError(stateFile, `the checkpoint is of a ${String(saved.kind)} run, not ${this.kind}`);
        const differences = identityDifferences(saved.identity, identity, identityName);
        if (differences.length > 0) throw new TrainingFileError(stateFile, `resuming with other settings than the run's: ${differences.join('; ')}`);
        const point = checkTrainerState(saved, stateFile, { totalSteps, perStep, sizes: { metrics: sizeOf(metricsFile), timings: sizeOf(timingsFile), samples: sizeOf(samplesFile) } });
        ({ step, cursor, numTokens } = point);
        for (const [file, bytes] of [[metricsFile!, point.fileBytes.metrics], [timingsFile!, point.fileBytes.timings], [samplesFile!, point.fileBytes.samples]] as const) {
          if (fs.existsSync(file)) fs.truncateSync(file, bytes);
        }
        const logs = readJsonLines<SampleLog>(samplesFile!);
        const start = logs.find((l) => l.step === 0);
        if (start?.samples?.every((x) => x.reference !== undefined)) this.referenceSamples = start.samples.map((x) => x.reference!);
        lastSamples = logs.at(-1) ?? null;
        history.push(...readJsonLines<StepMetrics>(metricsFile!).filter((m) => !Object.keys(m).some((k) => k.startsWith('eval_'))));
      }
      if (checkpointAt) {
        // the reference's starting weights and the precomputed log-probs come from the checkpoint
        const loaded = loadCheckpoint(checkpointAt, { model: this.model, optimizer, reference: this.resumeInto(), step });
        resumedLogps = loaded.referenceLogps;
      }
      // what the report reads: the run's kind, its options and their resolved settings (with or without checkpoints)
      if (this.out) {
        const run = { format: 'fusedpo-run', version: 1, kind: this.kind, options: this.recordedOptions, settings, command: this.command };
        writeFileAtomic(path.join(this.out, 'run.json'), `${JSON.stringify(run, null, 2)}\n`);
      }
      this.setUp(train, evalSet, resumedLogps);
      const progress = new Progress(this.progressSetting, totalSteps, this.out !== null);
      progress.start(this.kind, report, train.length, evalSet.length, step, this.skipped);
      const order = new DataOrder(train.length, s.seed);
      let lastEval: StepMetrics | null = null;
      const samplePrompts = (evalSet.length > 0 ? evalSet : train).slice(0, s.samples).map((e) => e.prompt);
      const logSamples = () => {
        if (samplePrompts.length === 0) return;
        lastSamples = noGrad(() => this.sampleLog(step, samplePrompts));
        if (samplesFile) fs.appendFileSync(samplesFile, `${JSON.stringify(lastSamples)}\n`);
      };
      const finish = (message: string) => {
        progress.summary(formatSummary(history, lastEval, lastSamples));
        if (this.out) progress.note(`report: ${writeReport([this.out], path.join(this.out, 'report.html'))}`);
        progress.end(message);
      };
      const result = (finished: boolean, interrupted: boolean): TrainResult => ({
        history, eval: lastEval, steps: step, data: report, skipped: this.skipped, finished, interrupted,
        checkpoint: checkpointedStep >= 0 || checkpointAt ? path.join(this.out!, 'checkpoint') : null,
      });
      if (step === 0) logSamples();
      const runEval = () => {
        const metrics = { step, ...Object.fromEntries(Object.entries(noGrad(() => this.evaluate(evalSet))).map(([k, v]) => [`eval_${k}`, v])) };
        lastEval = metrics;
        if (metricsFile) fs.appendFileSync(metricsFile, `${JSON.stringify(metrics)}\n`);
        logSamples();
        this.callbacks.onEval?.(metrics);
        progress.eval(metrics);
      };
      const checkpoint = () => {
        checkpointedAt = Date.now();
        if (!this.out || !this.save || checkpointedStep === step) return;
        saveCheckpoint(this.out, { state: state(), model: this.model, tokenizer: this.tokenizer, optimizer, ...this.checkpointExtras() });
        checkpointedStep = step;
        this.callbacks.onCheckpoint?.(step, path.join(this.out, 'checkpoint'));
      };
      /** Stops at a step boundary when the signal came: a checkpoint, then a line saying how to go on. */
      const interrupted = (): TrainResult | null => {
        if (!this.signal?.aborted) return null;
        checkpoint();
        const where = this.out && this.save ? `; checkpoint in ${path.join(this.out, 'checkpoint')}; resume with --resume ${this.out}` : '';
        finish(`interrupted at step ${step} of ${totalSteps}${where}`);
        return result(false, true);
      };
      while (step < totalSteps) {
        const stop = interrupted();
        if (stop) return stop;
        const started = process.hrtime.bigint();
        optimizer.lr = cosineSchedule(step, { maxLr: s.lr, minLr: s.lr * s.minLrRatio, warmupSteps: Math.min(s.warmupSteps, totalSteps), totalSteps });
        const micro: number[][] = [];
        for (let k = 0; k < s.gradientAccumulation; k++) micro.push(order.take(cursor + k * s.batchSize, s.batchSize));
        const batches = micro.map((indices) => indices.map((i) => train[i]));
        const stepTokens = this.stepTokens(batches);
        const sums: Record<string, number> = {};
        let tokensThisStep = 0;
        batches.forEach((examples, k) => {
          const got = this.microStep(examples, micro[k], 1 / s.gradientAccumulation, stepTokens);
          for (const [key, value] of Object.entries(got)) sums[key] = (sums[key] ?? 0) + value;
          tokensThisStep += this.inputTokens(examples);
        });
        const gradNorm = clipGradNorm(this.model, s.maxGradNorm);
        const learningRate = optimizer.lr;
        optimizer.step();
        optimizer.zeroGrad();
        cursor += perStep;
        numTokens += tokensThisStep;
        step += 1;
        this.afterStep(step);
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        if (step % s.logEvery === 0 || step === totalSteps) {
          const metrics: StepMetrics = {
            step, epoch: cursor / train.length, ...this.orderMetrics(average(sums, s.gradientAccumulation), learningRate, gradNorm), num_tokens: numTokens,
          };
          history.push(metrics);
          if (metricsFile) fs.appendFileSync(metricsFile, `${JSON.stringify(metrics)}\n`);
          if (timingsFile) fs.appendFileSync(timingsFile, `${JSON.stringify({ step, seconds, tokens_per_second: tokensThisStep / seconds })}\n`);
          this.callbacks.onLog?.(metrics);
          progress.step(metrics, tokensThisStep / seconds);
        }
        if (evalSet.length > 0 && s.evalEvery > 0 && step % s.evalEvery === 0 && step !== totalSteps) runEval();
        if (s.stopAfter !== null && step === s.stopAfter && step < totalSteps) {
          checkpoint();
          finish(`stopped after step ${step} (checkpoint in ${path.join(this.out!, 'checkpoint')}; --resume continues it)`);
          return result(false, false);
        }
        const due = (s.saveEvery > 0 && step % s.saveEvery === 0) || (s.checkpointMinutes > 0 && Date.now() - checkpointedAt >= s.checkpointMinutes * 60_000);
        if (due && step !== totalSteps) checkpoint();
        // a turn of the event loop between steps: an AbortController's abort() (or a signal
        // listener where the native watch is not available) is seen at the next boundary
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      if (evalSet.length > 0) runEval();
      else logSamples();
      if (this.out && this.save) {
        checkpoint();
        saveModelFolder(this.out, this.model, this.tokenizer);
      }
      finish(this.out ? `done: ${totalSteps} steps; model in ${this.out}` : `done: ${totalSteps} steps`);
      return result(true, false);
    } finally {
      optimizer.dispose();
      this.optimizer = null;
      this.dispose();
    }
  }

  /** The log's fields in TRL's order. */
  protected abstract orderMetrics(averaged: Record<string, number>, learningRate: number, gradNorm: number): StepMetrics;
}

/** The inputs option, checked: an array of { name, path }. */
function readInputs(value: unknown): RunInput[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'object' && v !== null && typeof v.name === 'string' && typeof v.path === 'string' && v.path !== '')) {
    throw new TypeError(`Expected an array of { name, path } for inputs but received ${describe(value)}`);
  }
  return value.map((v: RunInput) => ({ name: v.name, path: v.path }));
}

/** The JSON lines of a run file (none when it is absent); a line that is not JSON is an error naming the file and line. */
function readJsonLines<T>(file: string): T[] {
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').split('\n').flatMap((line, i) => {
    if (line === '') return [];
    try {
      return [JSON.parse(line) as T];
    } catch (error) {
      throw new TrainingFileError(`${file}:${i + 1}`, `not valid JSON (${(error as Error).message}); the run folder was changed since the checkpoint`);
    }
  });
}

// ---- SFT ------------------------------------------------------------------------------------------

/**
 * Supervised fine-tuning: the mean cross-entropy of the completion tokens (prompt and padding
 * masked). With gradient accumulation each micro-batch is weighted by its share of the step's
 * completion tokens, so the update is the token mean of the whole batch (not the mean of
 * per-micro-batch means, which differs when lengths differ).
 */
export class SftTrainer extends Trainer<TokenizedSft> {
  private readonly options: SftTrainerOptions;

  constructor(options: SftTrainerOptions) {
    const o = readArgs('SftTrainer', options, COMMON_KEYS) as unknown as SftTrainerOptions;
    super('sft', o as unknown as Record<string, unknown>, 1e-3);
    this.options = o;
  }

  protected prepare() {
    return this.readAndTokenize(readSftDataset, (records, options) => tokenizeSft(records, this.tokenizer, this.settings.maxLength, options));
  }

  protected setUp(): void {}
  protected resumeInto(): CausalLM | null { return null; }
  protected checkpointExtras() { return {}; }
  protected dispose(): void {}

  protected batchShape(examples: TokenizedSft[]): { rows: number; tokens: number } {
    return { rows: examples.length, tokens: examples.reduce((t, e) => Math.max(t, e.prompt.length + e.completion.length - 1), 1) };
  }

  protected stepTokens(batches: TokenizedSft[][]): number {
    return batches.reduce((n, examples) => n + examples.reduce((m, e) => m + e.completion.length, 0), 0);
  }

  protected inputTokens(examples: TokenizedSft[]): number {
    return examples.reduce((n, e) => n + e.prompt.length + e.completion.length - 1, 0);
  }

  protected microStep(examples: TokenizedSft[], _indices: number[], _weight: number, stepTokens: number): Record<string, number> {
    const batch = collateSft(examples, { padId: this.tokenizer.padId });
    return withScope(() => {
      const loss = crossEntropy(this.model.forward(batch.tokens, batch.shape), batch.labels);
      const share = batch.completionTokens / stepTokens;
      scale(loss, share).backward();
      return { loss: loss.item() * share * this.settings.gradientAccumulation };
    });
  }

  protected evaluate(evalSet: TokenizedSft[]): Record<string, number> {
    let sum = 0, tokens = 0;
    for (let start = 0; start < evalSet.length; start += this.settings.batchSize) {
      const batch: TokenBatch = collateSft(evalSet.slice(start, start + this.settings.batchSize), { padId: this.tokenizer.padId });
      sum += withScope(() => crossEntropy(this.model.forward(batch.tokens, batch.shape), batch.labels).item()) * batch.completionTokens;
      tokens += batch.completionTokens;
    }
    return { loss: sum / tokens };
  }

  protected orderMetrics(averaged: Record<string, number>, learningRate: number, gradNorm: number): StepMetrics {
    return { loss: averaged.loss, learning_rate: learningRate, grad_norm: gradNorm };
  }
}

// ---- Preferences ----------------------------------------------------------------------------------

const PREFERENCE_KEYS = [...COMMON_KEYS, ...LOSS_PARAMETER_KEYS, 'reference', 'referenceCache', 'referenceSync'] as const;

/** TRL's names for the kernel's metrics. */
const METRIC_NAMES: Record<string, string> = {
  rewardsChosen: 'rewards/chosen', rewardsRejected: 'rewards/rejected', rewardsAccuracy: 'rewards/accuracies', rewardsMargin: 'rewards/margins',
  logpsChosen: 'logps/chosen', logpsRejected: 'logps/rejected', rejectedBelowReference: 'rejectedBelowReference', nll: 'nll',
};

/**
 * Preference optimization with any loss of the registry (docs/losses.md) through the fused
 * kernel: per micro-batch, the policy's logits `[2B, T, V]` (chosen rows, then rejected), the
 * reference's sequence log-probs, and `preferenceLoss`, whose backward writes the logits'
 * gradient without a log-softmax tensor.
 */
export class PreferenceTrainer extends Trainer<TokenizedPair> {
  private readonly options: PreferenceTrainerOptions;
  private readonly lossArgs: LossParameterArgs;
  private readonly needsReference: boolean;
  private readonly referenceMode: 'copy' | 'precompute';
  private readonly sync: { every: number; alpha: number } | null;
  private reference: CausalLM | null = null;
  private precomputed: Record<string, Float32Array> | null = null;
  private evalReferenceLogps: PairLogps | null = null;

  constructor(options: PreferenceTrainerOptions) {
    const o = readArgs('PreferenceTrainer', options, PREFERENCE_KEYS) as unknown as PreferenceTrainerOptions;
    super('preference', o as unknown as Record<string, unknown>, 5e-4);
    this.options = o;
    const source = o as unknown as Record<string, unknown>;
    this.lossArgs = Object.fromEntries(LOSS_PARAMETER_KEYS.filter((k) => source[k] !== undefined).map((k) => [k, source[k]])) as LossParameterArgs;
    const loss = checkLoss(this.lossArgs);  // every loss parameter checked now, before any data is read
    if (loss.rowsPerPrompt !== 2) throw new RangeError(`Expected groupSize 2 (the datasets are pairs) but received ${loss.rowsPerPrompt}`);
    this.needsReference = loss.entry.reference;
    this.referenceMode = o.reference ?? 'copy';
    if (this.referenceMode !== 'copy' && this.referenceMode !== 'precompute') {
      throw new TypeError(`Expected 'copy' or 'precompute' for reference but received ${describe(o.reference)}`);
    }
    if (o.referenceSync !== undefined) {
      const sync = readArgs('referenceSync', o.referenceSync, ['every', 'alpha'] as const);
      this.sync = { every: checkInteger('referenceSync.every', sync.every, 1, Number.MAX_SAFE_INTEGER), alpha: checkNumber('referenceSync.alpha', sync.alpha, { min: 0, max: 1 }) };
      if (this.referenceMode === 'precompute') throw new TypeError('Expected no referenceSync with reference: \'precompute\' (a synced reference changes: it cannot be precomputed)');
    } else {
      this.sync = null;
    }
    Object.assign(this.recordedOptions, { ...this.lossArgs, reference: this.referenceMode, referenceSync: this.sync });
    // the loss as it resolved (defaults filled in: writing out a default is the same run)
    const taken = parametersOf(loss.entry);
    this.objectiveIdentity = {
      loss: {
        loss: loss.name, ...Object.fromEntries(taken.map((name) => [name, loss.fields[name]])),
        averageLogProb: loss.fields.averageLogProb, nllWeight: loss.fields.nllWeight, nllReduction: loss.fields.nllReduction === 1 ? 'sum' : 'tokenMean',
      },
      reference: this.needsReference ? { mode: this.referenceMode, sync: this.sync } : null,
    };
  }

  protected prepare() {
    return this.readAndTokenize(readPreferenceDataset, (records, options) => {
      const { pairs, report } = tokenizePreferences(records, this.tokenizer, this.settings.maxLength, options);
      return { examples: pairs, report };
    });
  }

  protected setUp(train: TokenizedPair[], evalSet: TokenizedPair[], resumed: Record<string, Float32Array> | null): void {
    if (!this.needsReference) return;
    if (this.referenceMode === 'copy') {
      this.reference ??= frozenCopy(this.model);
      return;
    }
    if (resumed) {
      this.precomputed = resumed;
    } else {
      const cache = this.options.referenceCache;
      const trainRef = precomputeReference(this.model, train, this.tokenizer, this.settings.batchSize, cache);
      const evalRef = evalSet.length ? precomputeReference(this.model, evalSet, this.tokenizer, this.settings.batchSize, cache) : null;
      this.precomputed = { chosen: trainRef.chosen, rejected: trainRef.rejected };
      if (evalRef) Object.assign(this.precomputed, { evalChosen: evalRef.chosen, evalRejected: evalRef.rejected });
    }
    if (this.precomputed.evalChosen) this.evalReferenceLogps = { chosen: this.precomputed.evalChosen, rejected: this.precomputed.evalRejected };
  }

  /** The frozen copy is made before a checkpoint is loaded, so that the checkpoint's reference lands in it. */
  protected resumeInto(): CausalLM | null {
    if (!this.needsReference || this.referenceMode !== 'copy') return null;
    this.reference = frozenCopy(this.model);
    return this.reference;
  }

  protected checkpointExtras() {
    return { reference: this.reference, referenceLogps: this.precomputed };
  }

  protected dispose(): void {
    this.reference?.dispose();
    this.reference = null;
  }

  protected batchShape(pairs: TokenizedPair[]): { rows: number; tokens: number } {
    return { rows: 2 * pairs.length, tokens: pairs.reduce((t, p) => Math.max(t, p.prompt.length + Math.max(p.chosen.length, p.rejected.length) - 1), 1) };
  }

  protected override holdsReferenceCopy(): boolean { return this.needsReference && this.referenceMode === 'copy'; }

  protected stepTokens(batches: TokenizedPair[][]): number {
    return batches.reduce((n, pairs) => n + pairs.reduce((m, p) => m + p.chosen.length, 0), 0);
  }

  protected inputTokens(pairs: TokenizedPair[]): number {
    return pairs.reduce((n, p) => n + 2 * p.prompt.length + p.chosen.length + p.rejected.length - 2, 0);
  }

  /** The reference log-probs of a batch's rows: from a table (by pair index), or from the frozen copy. */
  private referenceOf(batch: PreferenceBatch, indices: number[] | null, evaluating: boolean): Float32Array | undefined {
    if (!this.needsReference) return undefined;
    if (this.reference && !(evaluating && this.evalReferenceLogps)) return modelLogps(this.reference, batch.tokens, batch.labels, batch.shape);
    const table = evaluating ? this.evalReferenceLogps! : { chosen: this.precomputed!.chosen, rejected: this.precomputed!.rejected };
    const P = batch.pairs;
    const out = new Float32Array(2 * P);
    indices!.forEach((i, k) => {
      out[k] = table.chosen[i];
      out[P + k] = table.rejected[i];
    });
    return out;
  }

  /**
   * The NLL term's weight for this micro-batch: with the token-mean reduction the whole step's
   * NLL is `-(sum pw) / (sum nw)` over every micro-batch, so each one's weight is scaled by its
   * share of the chosen tokens (times the accumulation, which the 1/accumulation scale undoes).
   */
  private nllWeightFor(pairs: TokenizedPair[], stepTokens: number): number | undefined {
    const a = this.lossArgs.nllWeight;
    if (a === undefined || a === 0 || this.lossArgs.nllReduction === 'sum') return a;
    const chosenTokens = pairs.reduce((m, p) => m + p.chosen.length, 0);
    return a * this.settings.gradientAccumulation * chosenTokens / stepTokens;
  }

  protected microStep(pairs: TokenizedPair[], indices: number[], weight: number, stepTokens: number): Record<string, number> {
    const batch = collatePreferences(pairs, { padId: this.tokenizer.padId });
    const refLogps = this.referenceOf(batch, indices, false);
    const nllWeight = this.nllWeightFor(pairs, stepTokens);
    return withScope(() => {
      const logits = this.model.forward(batch.tokens, batch.shape);
      const r = preferenceLoss({ ...this.lossArgs, ...(nllWeight === undefined ? {} : { nllWeight }), logits, labels: batch.labels, refLogps });
      scale(r.loss, weight).backward();
      const metrics: Record<string, number> = { loss: r.loss.item() };
      for (const [key, value] of Object.entries(r.metrics)) if (value !== undefined) metrics[key] = value;
      if (!(this.lossArgs.nllWeight ?? 0)) delete metrics.nll;
      return metrics;
    });
  }

  protected evaluate(evalSet: TokenizedPair[]): Record<string, number> {
    const sums: Record<string, number> = {};
    const B = this.settings.batchSize;
    // A frozen copy's eval log-probs never change: computed at the first evaluation, in the same
    // batches as below (so the same values), then read from the table. A synced one is rerun.
    if (this.reference && !this.sync) this.evalReferenceLogps ??= pairLogps(this.reference, evalSet, B);
    for (let start = 0; start < evalSet.length; start += B) {
      const pairs = evalSet.slice(start, start + B);
      const batch = collatePreferences(pairs, { padId: this.tokenizer.padId });
      const refLogps = this.referenceOf(batch, pairs.map((_, k) => start + k), true);
      const got = withScope(() => {
        const r = preferenceLoss({ ...this.lossArgs, logits: this.model.forward(batch.tokens, batch.shape), labels: batch.labels, refLogps, grad: false });
        return { loss: r.loss.item(), ...r.metrics };
      });
      for (const [key, value] of Object.entries(got)) if (value !== undefined) sums[key] = (sums[key] ?? 0) + value * pairs.length;
    }
    if (!(this.lossArgs.nllWeight ?? 0)) delete sums.nll;
    return this.renamed(average(sums, evalSet.length));
  }

  private renamed(metrics: Record<string, number>): Record<string, number> {
    const out: Record<string, number> = { loss: metrics.loss };
    for (const [key, name] of Object.entries(METRIC_NAMES)) if (metrics[key] !== undefined) out[name] = metrics[key];
    return out;
  }

  protected orderMetrics(averaged: Record<string, number>, learningRate: number, gradNorm: number): StepMetrics {
    const { loss, ...rest } = this.renamed(averaged);
    return { loss, learning_rate: learningRate, grad_norm: gradNorm, ...rest };
  }

  protected override hasReference(): boolean { return this.needsReference; }
  protected override changingReference(): CausalLM | null { return this.sync ? this.reference : null; }
  protected override referenceModel(): CausalLM | null { return this.reference; }

  protected override afterStep(step: number): void {
    if (this.sync && this.reference && step % this.sync.every === 0) syncReference(this.reference, this.model, this.sync.alpha);
  }

}
