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
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { noGrad } from '../autograd';
import { collatePreferences, collateSft, tokenizePreferences, tokenizeSft, type PreferenceBatch, type TokenBatch, type TokenizedPair, type TokenizedSft,
  type TruncationReport } from '../data/batch';
import { readPreferenceDataset, readSftDataset, type DatasetRead, type PreferenceRecord, type SftRecord } from '../data/dataset';
import type { Tokenizer } from '../data/tokenizer';
import { mulberry32 } from '../example';
import { preferenceLoss, type LossParameterArgs } from '../losses';
import { LOSS_PARAMETER_KEYS, checkLoss } from '../losses/parameters';
import { GPT } from '../nn/gpt';
import { crossEntropy } from '../ops/cross_entropy';
import { scale } from '../ops/elementwise';
import { AdamW, clipGradNorm, cosineSchedule } from '../optim';
import { withScope } from '../tensor';
import { checkBoolean, checkInteger, checkNumber, describe, readArgs } from '../validate';
import { checkpointDirectory, loadCheckpoint, readTrainerState, saveCheckpoint, saveModelFolder, writeFileAtomic } from './files';
import { writeReport } from '../report/html';
import type { SampleLog } from '../report/run';
import { formatSummary } from '../report/summary';
import { greedyCompletion } from './evaluate';
import { Progress } from './progress';
import { frozenCopy, modelLogps, pairLogps, precomputeReference, syncReference, type PairLogps } from './reference';

/** One logged step: TRL's metric names (docs/training.md). */
export type StepMetrics = Record<string, number>;

export interface TrainerCallbacks {
  /** After every logged step, with its metrics (the line of metrics.jsonl). */
  onLog?(metrics: StepMetrics): void;
  /** After every evaluation, with its `eval_` metrics. */
  onEval?(metrics: StepMetrics): void;
  /** After every checkpoint, with the step and the folder. */
  onCheckpoint?(step: number, directory: string): void;
}

/** The options both trainers take. */
export interface TrainerOptions {
  /** The model to train (updated in place). */
  model: GPT;
  tokenizer: Tokenizer;
  /** Where the run's files go (config.json, model.safetensors, metrics.jsonl, checkpoint/); none without. */
  out?: string;
  /** Optimizer steps (default: one epoch). */
  steps?: number;
  /** Examples per micro-batch (pairs for the preference trainer; default 8). */
  batchSize?: number;
  /** Micro-batches per step (default 1): the update equals one batch of batchSize * gradientAccumulation. */
  gradientAccumulation?: number;
  /** The peak learning rate (default 1e-3 for SFT, 5e-4 for preferences: small models; TRL's 1e-6 is for large ones). */
  lr?: number;
  /** Steps of linear warmup (default 0). */
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
  /** Checkpoint every n steps (default 0: at the end only, when out is given). */
  saveEvery?: number;
  /** Checkpoint at this step and stop there, as an interruption after it would (for testing resume). */
  stopAfter?: number;
  /** Continue the run whose checkpoint is in `out`, with the same options. */
  resume?: boolean;
  /** false: out gets the metrics, samples and report only, no model and no checkpoint (sweeps of many runs; default true). */
  save?: boolean;
  /** Skip (and count, and report) bad records of the data files instead of stopping at the first (default false). */
  skipBadLines?: boolean;
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
  /** False when stopAfter ended the run early. */
  finished: boolean;
}

const COMMON_KEYS = ['model', 'tokenizer', 'out', 'steps', 'batchSize', 'gradientAccumulation', 'lr', 'warmupSteps', 'minLrRatio', 'weightDecay',
  'maxGradNorm', 'seed', 'maxLength', 'logEvery', 'evalEvery', 'saveEvery', 'stopAfter', 'resume', 'save', 'skipBadLines', 'samples', 'sampleTokens', 'progress', 'callbacks',
  'train', 'eval'] as const;

/** The options that shape the run's bytes: what a resumed run must share with its checkpoint. */
const RUN_SHAPING = ['steps', 'batchSize', 'gradientAccumulation', 'lr', 'warmupSteps', 'minLrRatio', 'weightDecay', 'maxGradNorm', 'seed', 'maxLength',
  'logEvery', 'evalEvery', 'saveEvery', 'skipBadLines'] as const;

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
  stopAfter: number | null;
  steps: number | null;
  samples: number;
  sampleTokens: number;
}

function positive(name: string, value: unknown, fallback: number): number {
  return checkInteger(name, value ?? fallback, 1, Number.MAX_SAFE_INTEGER);
}

function commonSettings(o: Record<string, unknown>, model: GPT, defaultLr: number): CommonSettings {
  const maxLength = positive('maxLength', o.maxLength, model.config.context + 1);
  if (maxLength - 1 > model.config.context) {
    throw new RangeError(`Expected maxLength <= the model's context + 1 = ${model.config.context + 1} (the model reads maxLength - 1 tokens) but received ${maxLength}`);
  }
  if (maxLength < 2) throw new RangeError(`Expected maxLength >= 2 but received ${maxLength}`);
  const nonNegative = (name: string, fallback: number) => checkInteger(name, o[name] ?? fallback, 0, Number.MAX_SAFE_INTEGER);
  return {
    steps: o.steps === undefined ? null : positive('steps', o.steps, 1),
    batchSize: positive('batchSize', o.batchSize, 8),
    gradientAccumulation: positive('gradientAccumulation', o.gradientAccumulation, 1),
    lr: checkNumber('lr', o.lr ?? defaultLr, { min: 0 }),
    warmupSteps: nonNegative('warmupSteps', 0),
    minLrRatio: checkNumber('minLrRatio', o.minLrRatio ?? 0.1, { min: 0, max: 1 }),
    weightDecay: checkNumber('weightDecay', o.weightDecay ?? 0, { min: 0 }),
    maxGradNorm: checkNumber('maxGradNorm', o.maxGradNorm ?? 1, { min: 0, minExclusive: true }),
    seed: checkInteger('seed', o.seed ?? 0, 0, 2 ** 32 - 1),
    maxLength,
    logEvery: positive('logEvery', o.logEvery, 1),
    evalEvery: nonNegative('evalEvery', 0),
    saveEvery: nonNegative('saveEvery', 0),
    stopAfter: o.stopAfter === undefined ? null : positive('stopAfter', o.stopAfter, 1),
    samples: nonNegative('samples', 3),
    sampleTokens: positive('sampleTokens', o.sampleTokens, 32),
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

/** The shared loop; the two trainers say what a micro-batch is and what it logs. */
abstract class Trainer<Example extends { prompt: number[] }> {
  protected readonly model: GPT;
  protected readonly tokenizer: Tokenizer;
  protected readonly out: string | null;
  protected readonly settings: CommonSettings;
  protected readonly callbacks: TrainerCallbacks;
  protected readonly progressSetting: boolean | 'auto';
  protected readonly resume: boolean;
  protected readonly save: boolean;
  /** The options as written to trainer_state.json: a resumed run must match them. */
  protected readonly recordedOptions: Record<string, unknown>;
  protected optimizer: AdamW | null = null;
  protected readonly skipBadLines: boolean;
  /** Bad records skipped while reading (with skipBadLines), reported at the start. */
  protected skipped: { file: string; line: number; reason: string }[] = [];
  /** The reference's sample generations when they do not change (a frozen reference): those of the start. */
  private referenceSamples: string[] | null = null;

  protected constructor(readonly kind: 'sft' | 'preference', options: Record<string, unknown>, defaultLr: number) {
    if (!(options.model instanceof GPT)) throw new TypeError(`Expected a GPT for model but received ${describe(options.model)}`);
    const tokenizer = options.tokenizer as Tokenizer | undefined;
    if (!tokenizer || typeof tokenizer.encode !== 'function' || typeof tokenizer.eosId !== 'number') {
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
    this.skipBadLines = checkBoolean('skipBadLines', options.skipBadLines ?? false);
    this.save = checkBoolean('save', options.save ?? true);
    if (!this.save && (this.resume || this.settings.stopAfter !== null || this.settings.saveEvery > 0)) {
      throw new TypeError('Expected save: true (the default) with resume, stopAfter or saveEvery: they need checkpoints');
    }
    if (this.resume && !this.out) throw new TypeError('Expected out (the run folder holding the checkpoint) with resume: true');
    if (this.settings.stopAfter !== null && !this.out) throw new TypeError('Expected out (where the checkpoint goes) with stopAfter');
    const progress = options.progress ?? 'auto';
    if (progress !== true && progress !== false && progress !== 'auto') throw new TypeError(`Expected true, false or 'auto' for progress but received ${describe(progress)}`);
    this.progressSetting = progress;
    this.callbacks = (options.callbacks as TrainerCallbacks | undefined) ?? {};
    this.recordedOptions = Object.fromEntries(RUN_SHAPING.map((k) => [k, options[k] ?? null]));
  }

  /** The records of `source` (a file, read with `reader`, its skipped records remembered for the report; or the records). */
  protected async records<T>(source: string | readonly T[] | undefined, name: string,
    reader: (file: string, options: { skipBadLines: boolean }) => Promise<DatasetRead<T>>): Promise<readonly T[]> {
    if (source === undefined) return [];
    if (typeof source === 'string') {
      const read = await reader(source, { skipBadLines: this.skipBadLines });
      this.skipped.push(...read.skipped.map((bad) => ({ file: read.file, ...bad })));
      return read.records;
    }
    if (!Array.isArray(source)) throw new TypeError(`Expected a file path or an array of records for ${name} but received ${describe(source)}`);
    return source;
  }

  /** Tokenized training and eval examples. */
  protected abstract prepare(): Promise<{ train: Example[]; eval: Example[]; report: TruncationReport }>;
  /** Runs once data are ready (the reference's setup); `resumed` holds what the checkpoint saved. */
  protected abstract setUp(train: Example[], evalSet: Example[], resumedLogps: Record<string, Float32Array> | null): void;
  /** One micro-batch forward and backward, weighted by `weight`; returns its metric sums. */
  protected abstract microStep(examples: Example[], indices: number[], weight: number, stepTokens: number): Record<string, number>;
  /** The weight of a micro-batch in the step (the trainers differ: tokens for SFT, pairs for preferences). */
  protected abstract stepTokens(batches: Example[][]): number;
  /** Evaluation metrics over the eval set, averaged. */
  protected abstract evaluate(evalSet: Example[]): Record<string, number>;
  /** After the optimizer step (the reference's sync). */
  protected afterStep(_step: number): void {}
  /** What a checkpoint saves beside the policy and the optimizer. */
  protected abstract checkpointExtras(): { reference?: GPT | null; referenceLogps?: Record<string, Float32Array> | null };
  protected abstract resumeInto(): GPT | null;
  /** Input tokens (not padding) of a micro-batch, for num_tokens. */
  protected abstract inputTokens(examples: Example[]): number;
  protected abstract dispose(): void;
  /** Whether samples show a reference beside the policy. */
  protected hasReference(): boolean { return false; }
  /** A reference that changes during the run (TR-DPO's synced copy), sampled anew each time; null when it is frozen. */
  protected changingReference(): GPT | null { return null; }
  /** A frozen reference to sample from when the start's samples are not known (a resumed run without samples.jsonl). */
  protected referenceModel(): GPT | null { return null; }

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

  async train(): Promise<TrainResult> {
    const { train, eval: evalSet, report } = await this.prepare();
    if (train.length === 0) throw new RangeError(`Expected training examples but every one of the ${report.records} records was dropped (its prompt fills maxLength ${this.settings.maxLength})`);
    const s = this.settings;
    const perStep = s.batchSize * s.gradientAccumulation;
    const totalSteps = s.steps ?? Math.max(1, Math.ceil(train.length / perStep));
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
      format: 'fusedpo-trainer-state', version: 1, kind: this.kind, step, cursor, numTokens, totalSteps,
      options: this.recordedOptions, settings,
      metricsBytes: sizeOf(metricsFile), timingsBytes: sizeOf(timingsFile), samplesBytes: sizeOf(samplesFile),
    });
    let lastSamples: SampleLog | null = null;
    try {
      if (this.out) fs.mkdirSync(this.out, { recursive: true });
      let checkpointAt: string | null = null;
      if (this.resume) {
        checkpointAt = checkpointDirectory(this.out!);
        const saved = readTrainerState(checkpointAt);
        this.checkResumable(saved, checkpointAt);
        step = saved.step as number;
        cursor = saved.cursor as number;
        numTokens = saved.numTokens as number;
        for (const [file, bytes] of [[metricsFile!, saved.metricsBytes], [timingsFile!, saved.timingsBytes], [samplesFile!, saved.samplesBytes ?? 0]] as const) {
          if (fs.existsSync(file)) fs.truncateSync(file, bytes as number);
        }
        if (fs.existsSync(samplesFile!)) {
          const logs = fs.readFileSync(samplesFile!, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as SampleLog);
          const start = logs.find((l) => l.step === 0);
          if (start?.samples.every((x) => x.reference !== undefined)) this.referenceSamples = start.samples.map((x) => x.reference!);
          lastSamples = logs.at(-1) ?? null;
        }
        if (fs.existsSync(metricsFile!)) {
          history.push(...fs.readFileSync(metricsFile!, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as StepMetrics));
        }
      } else if (this.out) {
        for (const file of [metricsFile!, timingsFile!, samplesFile!, path.join(this.out, 'report.html')]) fs.rmSync(file, { force: true });
      }
      if (checkpointAt) {
        // the reference's starting weights and the precomputed log-probs come from the checkpoint
        const loaded = loadCheckpoint(checkpointAt, { model: this.model, optimizer, reference: this.resumeInto() });
        resumedLogps = loaded.referenceLogps;
      }
      // what the report reads: the run's kind, its options and their resolved settings (with or without checkpoints)
      if (this.out) {
        const run = { format: 'fusedpo-run', version: 1, kind: this.kind, options: this.recordedOptions, settings };
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
        if (!this.out || !this.save) return;
        saveCheckpoint(this.out, { state: state(), model: this.model, optimizer, ...this.checkpointExtras() });
        this.callbacks.onCheckpoint?.(step, path.join(this.out, 'checkpoint'));
      };
      while (step < totalSteps) {
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
          return { history, eval: lastEval, steps: step, data: report, finished: false };
        }
        if (s.saveEvery > 0 && step % s.saveEvery === 0 && step !== totalSteps) checkpoint();
      }
      if (evalSet.length > 0) runEval();
      else logSamples();
      if (this.out && this.save) {
        checkpoint();
        saveModelFolder(this.out, this.model, this.tokenizer);
      }
      finish(this.out ? `done: ${totalSteps} steps; model in ${this.out}` : `done: ${totalSteps} steps`);
      return { history, eval: lastEval, steps: step, data: report, finished: true };
    } finally {
      optimizer.dispose();
      this.optimizer = null;
      this.dispose();
    }
  }

  /** The log's fields in TRL's order. */
  protected abstract orderMetrics(averaged: Record<string, number>, learningRate: number, gradNorm: number): StepMetrics;

  private checkResumable(saved: Record<string, unknown>, directory: string): void {
    if (saved.kind !== this.kind) throw new TypeError(`${directory}: the checkpoint is of a ${String(saved.kind)} run, not ${this.kind}`);
    const savedOptions = saved.options as Record<string, unknown>;
    const differing = Object.keys(this.recordedOptions).filter((k) => JSON.stringify(savedOptions?.[k] ?? null) !== JSON.stringify(this.recordedOptions[k]));
    if (differing.length > 0) {
      throw new TypeError(`${directory}: resuming with other options than the checkpoint's: ${differing.map((k) =>
        `${k} ${JSON.stringify(this.recordedOptions[k])} (the checkpoint's: ${JSON.stringify(savedOptions?.[k] ?? null)})`).join(', ')}`);
    }
  }
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

  protected async prepare(): Promise<{ train: TokenizedSft[]; eval: TokenizedSft[]; report: TruncationReport }> {
    const trainRecords = await this.records(this.options.train, 'train', readSftDataset);
    const { examples, report } = tokenizeSft(trainRecords, this.tokenizer, this.settings.maxLength);
    const evalExamples = tokenizeSft(await this.records(this.options.eval, 'eval', readSftDataset), this.tokenizer, this.settings.maxLength).examples;
    return { train: examples, eval: evalExamples, report };
  }

  protected setUp(): void {}
  protected resumeInto(): GPT | null { return null; }
  protected checkpointExtras() { return {}; }
  protected dispose(): void {}

  protected stepTokens(batches: TokenizedSft[][]): number {
    return batches.reduce((n, examples) => n + examples.reduce((m, e) => m + e.completion.length, 0), 0);
  }

  protected inputTokens(examples: TokenizedSft[]): number {
    return examples.reduce((n, e) => n + e.prompt.length + e.completion.length - 1, 0);
  }

  protected microStep(examples: TokenizedSft[], _indices: number[], _weight: number, stepTokens: number): Record<string, number> {
    const batch = collateSft(examples);
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
      const batch: TokenBatch = collateSft(evalSet.slice(start, start + this.settings.batchSize));
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
  private reference: GPT | null = null;
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
  }

  protected async prepare(): Promise<{ train: TokenizedPair[]; eval: TokenizedPair[]; report: TruncationReport }> {
    const { pairs, report } = tokenizePreferences(await this.records(this.options.train, 'train', readPreferenceDataset), this.tokenizer, this.settings.maxLength);
    const evalPairs = tokenizePreferences(await this.records(this.options.eval, 'eval', readPreferenceDataset), this.tokenizer, this.settings.maxLength).pairs;
    return { train: pairs, eval: evalPairs, report };
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
  protected resumeInto(): GPT | null {
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
    const batch = collatePreferences(pairs);
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
      const batch = collatePreferences(pairs);
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
  protected override changingReference(): GPT | null { return this.sync ? this.reference : null; }
  protected override referenceModel(): GPT | null { return this.reference; }

  protected override afterStep(step: number): void {
    if (this.sync && this.reference && step % this.sync.every === 0) syncReference(this.reference, this.model, this.sync.alpha);
  }

}
