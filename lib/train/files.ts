/**
 * The files a training run reads and writes (docs/training.md, "The output folder"; the rules that
 * keep a user's files safe are lib/train/run_folder.ts's).
 *
 * A model folder: a Hugging Face folder for the architectures of lib/nn/architectures.ts other
 * than the GPT (lib/nn/pretrained.ts: config.json with its model_type, the weights in the source's
 * dtype and shards, generation_config.json, the tokenizer's files), or for a GPT:
 *   config.json          { "format": "fusedpo-model", "version": 1, "model": GPTConfig,
 *                          "tokenizer": { "kind": "byte" } | { "kind": "bpe", "file": "tokenizer.json" },
 *                          "fusedpo": "<package version>" }
 *   model.safetensors    the GPT's parameters by name (f32)
 *   tokenizer.json       for a bpe tokenizer, its files(): the tokenizer.json it was built from
 *   tokenizer_config.json  (held in memory, never read again from where they came) and its
 *                        tokenizer_config.json, special tokens and chat template
 *
 * A run's folder is a model folder (written at the end) plus `metrics.jsonl` (one JSON object per
 * logged step), `timings.jsonl` (the same steps' wall-clock figures, which differ run to run),
 * `samples.jsonl`, `report.html`, `run.json` and `checkpoint/`, itself a model folder (the policy
 * at `step`, so that a run resumes from it alone) with:
 *   trainer_state.json   { "format": "fusedpo-trainer-state", "version": 2, "kind", "step",
 *                          "cursor" (examples consumed), "numTokens", "totalSteps", "identity" (what
 *                          a resumed run must match: lib/train/resume.ts), "command" (the CLI's),
 *                          "metricsBytes" (the length of metrics.jsonl at this step), ... }
 *   optimizer.safetensors  AdamW's moments: `m.<parameter>`, `v.<parameter>`; metadata stepCount
 *   reference.safetensors  the reference model when the run has one (frozen copy or synced)
 *   reference_logps.safetensors  the precomputed reference log-probs (chosen, rejected, and the eval
 *                        set's evalChosen, evalRejected), when precomputed
 *
 * Every file is written to a temporary name, flushed and renamed (lib/atomic_write.ts); a
 * checkpoint folder is written whole beside the old one and swapped in by renames, so an
 * interruption leaves the previous checkpoint or the new one, never half of either, and a failed
 * write removes what it wrote.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { Tokenizer, TokenizerDescription } from '../data/tokenizer';
import { tokenizerFrom } from '../data/tokenizer';
import type { CausalLM } from '../nn/causal_lm';
import { GPT, type GPTConfig } from '../nn/gpt';
import { isHuggingFaceFolder, loadPretrained, savePretrained } from '../nn/pretrained';
import { AdamW, type AdamWState } from '../optim';
import { loadSafetensors, readSafetensors, readSafetensorsHeader, saveSafetensors } from '../safetensors';
import { writeFileAtomic } from '../atomic_write';
import { FusedpoError } from '../errors';
import { version } from '../version';
import { resolvedPath, type RunInput } from './run_folder';

/** A file or folder of a run or a model that cannot be used; the message starts with its path. */
export class TrainingFileError extends FusedpoError {
  override name = 'TrainingFileError';
  constructor(readonly file: string, message: string) {
    super(`${file}: ${message}`);
  }
}

export { writeFileAtomic };

/**
 * Writes an output file a user named (a report, an evaluation) without ever replacing a file that
 * is not one of ours: where `file` exists and `ours(its first 64 KiB)` is false, it is refused,
 * naming `overwriteFlag`, unless `overwrite` is set; one of the command's `inputs` always is.
 */
export function writeOutputFile(file: string, text: string,
  options: { overwrite: boolean; ours: (head: string) => boolean; what: string; overwriteFlag?: string; inputs?: readonly RunInput[] }): void {
  // what the command read is never its output, --overwrite or not
  const target = resolvedPath(file);
  const input = (options.inputs ?? []).find((i) => resolvedPath(i.path) === target);
  if (input) throw new TrainingFileError(file, `${options.what}: this is ${input.name}, which the command reads; choose another name`);
  let head: string | null = null;
  try {
    const fd = fs.openSync(file, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
    try {
      if (!fs.fstatSync(fd).isFile()) throw new TrainingFileError(file, `${options.what}: exists and is not a regular file`);
      const buffer = Buffer.alloc(65536);
      head = buffer.subarray(0, fs.readSync(fd, buffer, 0, buffer.length, 0)).toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch (error) {
    if (error instanceof TrainingFileError) throw error;
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw new TrainingFileError(file, `${options.what}: cannot be checked (${(error as Error).message})`);
  }
  if (head !== null && !options.overwrite && !options.ours(head)) {
    throw new TrainingFileError(file, `${options.what}: a file is there that fusedpo did not write; choose another name, or pass ${options.overwriteFlag ?? '--overwrite'} to replace it`);
  }
  writeFileAtomic(file, text);
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
  model: CausalLM;
  tokenizer: Tokenizer;
  config: CausalLM['config'];
}

/**
 * The files of a BPE tokenizer that a model folder holds (tokenizer.json and tokenizer_config.json,
 * from memory: never read again from where they came, which may have changed or gone since); none
 * for the byte tokenizer, which config.json names alone.
 */
function tokenizerFiles(tokenizer: Tokenizer): Record<string, string> {
  return tokenizer.describe().kind === 'bpe' ? tokenizer.files() : {};
}

/**
 * What tells two tokenizers apart: kind, sizes, end-of-text id and, for a BPE, the SHA-256 of its
 * files (tokenizer.json, then tokenizer_config.json: the chat template and the special tokens
 * change the ids a record gives). Two models compare their log-probs (a reference and a policy)
 * only when theirs are equal, and a run resumes only with the tokenizer it began with.
 */
export function tokenizerIdentity(tokenizer: Tokenizer): { kind: string; vocabSize: number; eosId: number; sha256: string | null } {
  const files = Object.entries(tokenizerFiles(tokenizer));
  let sha256: string | null = null;
  if (files.length > 0) {
    const hash = createHash('sha256');
    for (const [name, text] of files) hash.update(`${name}\0${text.length}\0`).update(text);
    sha256 = hash.digest('hex');
  }
  return { kind: tokenizer.kind, vocabSize: tokenizer.vocabSize, eosId: tokenizer.eosId, sha256 };
}

/**
 * A model's files, written into an existing folder: a GPT's as a fusedpo model folder (config.json,
 * model.safetensors, tokenizer.json for bpe); any other architecture's as a Hugging Face folder
 * (lib/nn/pretrained.ts), in its source's dtype, or in f32 for a checkpoint (the master weights,
 * exactly; its config.json still names the source's dtype, which the tuned model is saved in).
 */
function writeModelFiles(directory: string, model: CausalLM, tokenizer: Tokenizer, metadata: Record<string, string>, checkpoint: boolean): void {
  if (!(model instanceof GPT)) {
    savePretrained(directory, model, tokenizer, checkpoint ? { dtype: 'F32' } : {});
    return;
  }
  for (const [name, text] of Object.entries(tokenizerFiles(tokenizer))) writeFileAtomic(path.join(directory, name), text);
  saveSafetensors(path.join(directory, 'model.safetensors'), model, metadata);
  const description = tokenizer.describe();
  const config = {
    format: 'fusedpo-model',
    version: 1,
    model: model.config,
    tokenizer: description.kind === 'bpe' ? { kind: 'bpe', file: 'tokenizer.json' } : description,
    fusedpo: version,
  };
  writeFileAtomic(path.join(directory, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
}

/** Writes config.json, model.safetensors (and tokenizer.json, tokenizer_config.json for bpe) into `directory`. */
export function saveModelFolder(directory: string, model: CausalLM, tokenizer: Tokenizer): void {
  fs.mkdirSync(directory, { recursive: true });
  writeModelFiles(directory, model, tokenizer, { format: 'pt' }, false);
}

/**
 * The header of `file` compared with the parameters a GPT of `config` has, before the GPT is
 * built: the count first (so that an absurd config is refused without listing it), then every
 * name and shape. The error names the first difference.
 */
function checkWeightsMatch(file: string, config: GPTConfig): void {
  let header: Map<string, { shape: number[] }>;
  try {
    header = readSafetensorsHeader(file).tensors;
  } catch (error) {
    throw new TrainingFileError(file, (error as Error).message.replace(/^safetensors \([^)]*\): /, ''));
  }
  const count = GPT.tensorCount(config);
  if (header.size !== count) {
    throw new TrainingFileError(file, `does not match config.json: it holds ${header.size} tensors but a GPT of ${config.layers} layers has ${count}`);
  }
  for (const [name, shape] of GPT.parameterShapes(config)) {
    const found = header.get(name);
    if (!found) throw new TrainingFileError(file, `does not match config.json: it has no tensor ${name}`);
    if (found.shape.length !== shape.length || found.shape.some((d, k) => d !== shape[k])) {
      throw new TrainingFileError(file, `does not match config.json: tensor ${name} has shape [${found.shape}] but config.json makes it [${shape}]`);
    }
  }
}

/**
 * Reads a model folder (a fusedpo one, or a Hugging Face one: lib/nn/pretrained.ts); every
 * mismatch between config.json and the weights is an error naming the file, found from the
 * weights' header before the model is built.
 */
export function loadModelFolder(directory: string): ModelFolder {
  const configFile = path.join(directory, 'config.json');
  if (isHuggingFaceFolder(directory)) {
    const { model, tokenizer } = loadPretrained(directory);
    if (!tokenizer) {
      model.dispose();
      throw new TrainingFileError(directory, 'a Hugging Face model folder without its tokenizer (tokenizer.json, or vocab.json and merges.txt)');
    }
    if (tokenizer.vocabSize > model.config.vocab) {
      model.dispose();
      throw new TrainingFileError(directory, `the tokenizer has ${tokenizer.vocabSize} ids but the model's vocab_size is ${model.config.vocab}`);
    }
    return { model, tokenizer, config: model.config };
  }
  if (!fs.existsSync(directory)) throw new TrainingFileError(directory, 'expected a model folder (config.json and model.safetensors) but there is no such folder');
  if (!fs.statSync(directory).isDirectory()) throw new TrainingFileError(directory, 'expected a model folder (config.json and model.safetensors) but this is a file');
  const value = readJson(configFile) as Record<string, unknown> | null;
  if (!value || typeof value !== 'object' || value.format !== 'fusedpo-model') {
    throw new TrainingFileError(configFile, 'expected a fusedpo model config ({"format": "fusedpo-model", ...})');
  }
  if (value.version !== 1) throw new TrainingFileError(configFile, `expected version 1 but found ${JSON.stringify(value.version)}`);
  let config: GPTConfig;
  try {
    GPT.tensorCount(value.model as GPTConfig);  // checks every field of the config
    config = value.model as GPTConfig;
  } catch (error) {
    throw new TrainingFileError(configFile, `model: ${(error as Error).message}`);
  }
  let tokenizer: Tokenizer;
  try {
    tokenizer = tokenizerFrom(value.tokenizer as TokenizerDescription, directory);
  } catch (error) {
    throw new TrainingFileError(configFile, `tokenizer: ${(error as Error).message}`);
  }
  if (tokenizer.vocabSize > config.vocab) {
    throw new TrainingFileError(configFile, `the tokenizer has ${tokenizer.vocabSize} ids but the model's vocab is ${config.vocab}`);
  }
  const weightsFile = path.join(directory, 'model.safetensors');
  checkWeightsMatch(weightsFile, config);
  const model = new GPT(config);
  try {
    loadSafetensors(model, weightsFile);
  } catch (error) {
    model.dispose();
    throw new TrainingFileError(weightsFile, `does not match config.json: ${(error as Error).message}`);
  }
  return { model, tokenizer, config: model.config };
}

// ---- Checkpoints --------------------------------------------------------------------------------

export interface CheckpointContents {
  state: Record<string, unknown>;
  model: CausalLM;
  tokenizer: Tokenizer;
  optimizer: AdamW;
  reference?: CausalLM | null;
  /** Precomputed reference log-probs by name (e.g. chosen, rejected, evalChosen, evalRejected). */
  referenceLogps?: Record<string, Float32Array> | null;
}

/**
 * Writes `<run>/checkpoint` whole, then swaps it in (the previous one stays until the new one is
 * complete). The checkpoint is also a model folder (config.json, tokenizer.json for bpe), so that
 * a run resumes from it alone. A failed write removes what it wrote and keeps the previous one.
 */
export function saveCheckpoint(runDirectory: string, contents: CheckpointContents): void {
  const final = path.join(runDirectory, 'checkpoint');
  const temporary = path.join(runDirectory, `.checkpoint.${process.pid}.partial`);
  const old = path.join(runDirectory, '.checkpoint.old');
  try {
    fs.rmSync(temporary, { recursive: true, force: true });
    fs.mkdirSync(temporary, { recursive: true });
    writeModelFiles(temporary, contents.model, contents.tokenizer, {}, true);
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
  } catch (error) {
    fs.rmSync(temporary, { recursive: true, force: true });
    throw new TrainingFileError(final, `the checkpoint could not be written (${(error as Error).message}); the previous one, if any, is unchanged`);
  }
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
  if (!state || typeof state !== 'object' || state.format !== 'fusedpo-trainer-state') {
    throw new TrainingFileError(file, 'expected a fusedpo trainer state ({"format": "fusedpo-trainer-state", "version": 2, ...})');
  }
  if (state.version === 1) {
    throw new TrainingFileError(file, 'a checkpoint of an earlier fusedpo (trainer state version 1), which recorded too little to check a resume against; ' +
      'resume it with the version that wrote it, or start the run again');
  }
  if (state.version !== 2) throw new TrainingFileError(file, `expected trainer state version 2 but found ${JSON.stringify(state.version)}`);
  return state;
}

/**
 * Restores the policy, the optimizer and (when saved) the reference from a checkpoint folder;
 * the optimizer must have taken `step` steps, as the trainer state says.
 */
export function loadCheckpoint(directory: string, into: { model: CausalLM; optimizer: AdamW; reference?: CausalLM | null; step: number }): { referenceLogps: Record<string, Float32Array> | null } {
  const inFile = <T>(file: string, read: () => T): T => {
    try {
      return read();
    } catch (error) {
      if (error instanceof TrainingFileError) throw error;
      throw new TrainingFileError(file, `${(error as Error).message.replace(/^safetensors \([^)]*\): /, '')}; the checkpoint is damaged`);
    }
  };
  const modelFile = path.join(directory, 'model.safetensors');
  inFile(modelFile, () => loadSafetensors(into.model, modelFile));
  const optimizerPath = path.join(directory, 'optimizer.safetensors');
  const optimizerFile = inFile(optimizerPath, () => readSafetensors(optimizerPath));
  const stepCount = Number(optimizerFile.metadata.stepCount);
  if (stepCount !== into.step) {
    throw new TrainingFileError(optimizerPath, `stepCount: expected ${into.step} (the trainer state's step) but found ${JSON.stringify(optimizerFile.metadata.stepCount)}; the checkpoint is damaged`);
  }
  const names = new Set([...optimizerFile.tensors.keys()].filter((k) => k.startsWith('m.')).map((k) => k.slice(2)));
  const state: AdamWState = {
    stepCount,
    moments: [...names].map((name) => {
      const m = optimizerFile.tensors.get(`m.${name}`), v = optimizerFile.tensors.get(`v.${name}`);
      if (!m || !v) throw new TrainingFileError(optimizerPath, `expected m.${name} and v.${name}`);
      return { name, m: m.data, v: v.data };
    }),
  };
  inFile(optimizerPath, () => into.optimizer.loadState(state));
  const referenceFile = path.join(directory, 'reference.safetensors');
  if (into.reference) inFile(referenceFile, () => loadSafetensors(into.reference!, referenceFile));
  const logpsFile = path.join(directory, 'reference_logps.safetensors');
  if (!fs.existsSync(logpsFile)) return { referenceLogps: null };
  const logps = inFile(logpsFile, () => readSafetensors(logpsFile)).tensors;
  return { referenceLogps: Object.fromEntries([...logps].map(([name, t]) => [name, t.data])) };
}
