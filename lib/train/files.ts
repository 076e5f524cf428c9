/**
 * The files a training run reads and writes (docs/training.md, "The output folder").
 *
 * A model folder:
 *   config.json          { "format": "fusedpo-model", "version": 1, "model": GPTConfig,
 *                          "tokenizer": { "kind": "byte" } | { "kind": "bpe", "file": "tokenizer.json" },
 *                          "fusedpo": "<package version>" }
 *   model.safetensors    the GPT's parameters by name (f32)
 *   tokenizer.json       for a bpe tokenizer: a copy of the one trained with
 *
 * A run's folder is a model folder (written at the end) plus `metrics.jsonl` (one JSON object per
 * logged step), `timings.jsonl` (the same steps' wall-clock figures, which differ run to run) and
 * `checkpoint/`:
 *   trainer_state.json   { "format": "fusedpo-trainer-state", "version": 1, "kind", "step",
 *                          "cursor" (pairs consumed), "options" (what the run was started with),
 *                          "metricsBytes" (the length of metrics.jsonl at this step), ... }
 *   model.safetensors    the policy at `step`
 *   optimizer.safetensors  AdamW's moments: `m.<parameter>`, `v.<parameter>`; metadata stepCount
 *   reference.safetensors  the reference model when the run has one (frozen copy or synced)
 *   reference_logps.safetensors  the precomputed reference log-probs (chosen, rejected, and the eval
 *                        set's evalChosen, evalRejected), when precomputed
 *
 * Every file is written to a temporary name, flushed and renamed; a checkpoint folder is written
 * whole beside the old one and swapped in by renames, so an interruption leaves the previous
 * checkpoint or the new one, never half of either.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { Tokenizer, TokenizerDescription } from '../data/tokenizer';
import { tokenizerFrom } from '../data/tokenizer';
import { GPT, type GPTConfig } from '../nn/gpt';
import { isHuggingFaceFolder, loadPretrained } from '../nn/pretrained';
import { AdamW, type AdamWState } from '../optim';
import { loadSafetensors, readSafetensors, saveSafetensors } from '../safetensors';
import { version } from '../version';

export class TrainingFileError extends Error {
  constructor(readonly file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'TrainingFileError';
  }
}

/** Writes text through a temporary file in the same folder, flushed, then renamed over `file`. */
export function writeFileAtomic(file: string, text: string | Uint8Array): void {
  const temporary = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.partial`);
  const fd = fs.openSync(temporary, 'w');
  try {
    fs.writeSync(fd, typeof text === 'string' ? Buffer.from(text) : text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temporary, file);
}

function readJson(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new TrainingFileError(file, code === 'ENOENT' ? 'no such file' : `cannot be read (${code ?? String(error)})`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new TrainingFileError(file, `not valid JSON: ${(error as Error).message}`);
  }
}

export interface ModelFolder {
  model: GPT;
  tokenizer: Tokenizer;
  config: GPTConfig;
}

/** Writes config.json, model.safetensors (and tokenizer.json for bpe) into `directory`. */
export function saveModelFolder(directory: string, model: GPT, tokenizer: Tokenizer, tokenizerSource?: string): void {
  fs.mkdirSync(directory, { recursive: true });
  const description: TokenizerDescription = tokenizer.describe();
  if (description.kind === 'bpe') {
    const target = path.join(directory, 'tokenizer.json');
    const source = tokenizerSource ?? description.file;
    if (path.resolve(source) !== path.resolve(target)) writeFileAtomic(target, fs.readFileSync(source));
  }
  saveSafetensors(path.join(directory, 'model.safetensors'), model, { format: 'pt' });
  const config = {
    format: 'fusedpo-model',
    version: 1,
    model: model.config,
    tokenizer: description.kind === 'bpe' ? { kind: 'bpe', file: 'tokenizer.json' } : description,
    fusedpo: version,
  };
  writeFileAtomic(path.join(directory, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
}

/**
 * Reads a model folder (a fusedpo one, or a Hugging Face GPT-2 one: lib/nn/pretrained.ts); every
 * mismatch between config.json and the weights is an error naming the file.
 */
export function loadModelFolder(directory: string): ModelFolder {
  const configFile = path.join(directory, 'config.json');
  if (isHuggingFaceFolder(directory)) {
    const { model, tokenizer } = loadPretrained(directory);
    if (!tokenizer) {
      model.dispose();
      throw new TrainingFileError(directory, 'a Hugging Face model folder without its tokenizer (tokenizer.json, or vocab.json and merges.txt)');
    }
    return { model, tokenizer, config: model.config };
  }
  if (!fs.existsSync(directory) || !fs.statSync(directory).isDirectory()) {
    throw new TrainingFileError(directory, 'expected a model folder (config.json and model.safetensors) but there is no such folder');
  }
  const value = readJson(configFile) as Record<string, unknown> | null;
  if (!value || typeof value !== 'object' || value.format !== 'fusedpo-model') {
    throw new TrainingFileError(configFile, 'expected a fusedpo model config ({"format": "fusedpo-model", ...})');
  }
  if (value.version !== 1) throw new TrainingFileError(configFile, `expected version 1 but found ${JSON.stringify(value.version)}`);
  let model: GPT;
  try {
    model = new GPT(value.model as GPTConfig);
  } catch (error) {
    throw new TrainingFileError(configFile, `model: ${(error as Error).message}`);
  }
  let tokenizer: Tokenizer;
  try {
    tokenizer = tokenizerFrom(value.tokenizer as TokenizerDescription, directory);
  } catch (error) {
    model.dispose();
    throw new TrainingFileError(configFile, `tokenizer: ${(error as Error).message}`);
  }
  if (tokenizer.vocabSize > model.config.vocab) {
    model.dispose();
    throw new TrainingFileError(configFile, `the tokenizer has ${tokenizer.vocabSize} ids but the model's vocab is ${model.config.vocab}`);
  }
  try {
    loadSafetensors(model, path.join(directory, 'model.safetensors'));
  } catch (error) {
    model.dispose();
    throw new TrainingFileError(path.join(directory, 'model.safetensors'), `does not match config.json: ${(error as Error).message}`);
  }
  return { model, tokenizer, config: model.config };
}

// ---- Checkpoints --------------------------------------------------------------------------------

export interface CheckpointContents {
  state: Record<string, unknown>;
  model: GPT;
  optimizer: AdamW;
  reference?: GPT | null;
  /** Precomputed reference log-probs by name (e.g. chosen, rejected, evalChosen, evalRejected). */
  referenceLogps?: Record<string, Float32Array> | null;
}

/** Writes `<run>/checkpoint` whole, then swaps it in (the previous one stays until the new one is complete). */
export function saveCheckpoint(runDirectory: string, contents: CheckpointContents): void {
  const final = path.join(runDirectory, 'checkpoint');
  const temporary = path.join(runDirectory, `.checkpoint.${process.pid}.partial`);
  const old = path.join(runDirectory, '.checkpoint.old');
  fs.rmSync(temporary, { recursive: true, force: true });
  fs.mkdirSync(temporary, { recursive: true });
  saveSafetensors(path.join(temporary, 'model.safetensors'), contents.model);
  const optimizerState = contents.optimizer.state();
  saveSafetensors(path.join(temporary, 'optimizer.safetensors'),
    optimizerState.moments.flatMap(({ name, m, v }) => [[`m.${name}`, { shape: [m.length], data: m }], [`v.${name}`, { shape: [v.length], data: v }]] as const),
    { stepCount: String(optimizerState.stepCount) });
  if (contents.reference) saveSafetensors(path.join(temporary, 'reference.safetensors'), contents.reference);
  if (contents.referenceLogps) {
    saveSafetensors(path.join(temporary, 'reference_logps.safetensors'),
      Object.entries(contents.referenceLogps).map(([name, data]) => [name, { shape: [data.length], data }] as const));
  }
  writeFileAtomic(path.join(temporary, 'trainer_state.json'), `${JSON.stringify(contents.state, null, 2)}\n`);
  fs.rmSync(old, { recursive: true, force: true });
  if (fs.existsSync(final)) fs.renameSync(final, old);
  fs.renameSync(temporary, final);
  fs.rmSync(old, { recursive: true, force: true });
}

/** The checkpoint folder of a run: `checkpoint/`, or the previous one if an interruption fell between the two renames. */
export function checkpointDirectory(runDirectory: string): string {
  const final = path.join(runDirectory, 'checkpoint');
  if (fs.existsSync(path.join(final, 'trainer_state.json'))) return final;
  const old = path.join(runDirectory, '.checkpoint.old');
  if (fs.existsSync(path.join(old, 'trainer_state.json'))) return old;
  throw new TrainingFileError(runDirectory, 'expected a run folder with a checkpoint (checkpoint/trainer_state.json) to resume from, but found none');
}

export function readTrainerState(directory: string): Record<string, unknown> {
  const file = path.join(directory, 'trainer_state.json');
  const state = readJson(file) as Record<string, unknown> | null;
  if (!state || typeof state !== 'object' || state.format !== 'fusedpo-trainer-state' || state.version !== 1) {
    throw new TrainingFileError(file, 'expected a fusedpo trainer state ({"format": "fusedpo-trainer-state", "version": 1, ...})');
  }
  return state;
}

/** Restores the policy, the optimizer and (when saved) the reference from a checkpoint folder. */
export function loadCheckpoint(directory: string, into: { model: GPT; optimizer: AdamW; reference?: GPT | null }): { referenceLogps: Record<string, Float32Array> | null } {
  loadSafetensors(into.model, path.join(directory, 'model.safetensors'));
  const optimizerFile = readSafetensors(path.join(directory, 'optimizer.safetensors'));
  const names = new Set([...optimizerFile.tensors.keys()].filter((k) => k.startsWith('m.')).map((k) => k.slice(2)));
  const state: AdamWState = {
    stepCount: Number(optimizerFile.metadata.stepCount),
    moments: [...names].map((name) => {
      const m = optimizerFile.tensors.get(`m.${name}`), v = optimizerFile.tensors.get(`v.${name}`);
      if (!m || !v) throw new TrainingFileError(path.join(directory, 'optimizer.safetensors'), `expected m.${name} and v.${name}`);
      return { name, m: m.data, v: v.data };
    }),
  };
  into.optimizer.loadState(state);
  if (into.reference) loadSafetensors(into.reference, path.join(directory, 'reference.safetensors'));
  const logpsFile = path.join(directory, 'reference_logps.safetensors');
  if (!fs.existsSync(logpsFile)) return { referenceLogps: null };
  const logps = readSafetensors(logpsFile).tensors;
  return { referenceLogps: Object.fromEntries([...logps].map(([name, t]) => [name, t.data])) };
}
