/**
 * `fusedpo sft` and `fusedpo train`: the trainers of lib/train from the command line, with the
 * same option names (docs/training.md). A run folder holds the model, metrics.jsonl and the
 * checkpoint.
 *
 * What the command line adds to the trainers, so that a user's work is never lost:
 * - without `--out`, a new folder `runs/<command>-<date>-<time>` is made and named on stderr;
 * - `--resume DIR` alone continues the run in DIR: the options it was started with are read
 *   from its checkpoint; options given again must match them (each difference is named), but
 *   for those a run may change between its pieces (MUTABLE: more steps, logging, evaluation and
 *   checkpoint cadence);
 * - the first SIGINT (Ctrl-C) or SIGTERM finishes the step, writes a checkpoint and exits with a
 *   line saying how to resume (status 130 or 143); a second one stops at once.
 */
import * as path from 'node:path';

import { ByteTokenizer, loadTokenizer, type Tokenizer } from '../data/tokenizer';
import { LOSS_NAMES } from '../losses/registry';
import type { CausalLM } from '../nn/causal_lm';
import { GPT } from '../nn/gpt';
import { TrainingFileError, checkpointDirectory, loadModelFolder, readTrainerState } from '../train/files';
import { watchInterrupts } from '../train/interrupt';
import { freshFolderName, resolvedPath, type RunInput } from '../train/run_folder';
import { PreferenceTrainer, SftTrainer, type DataReport, type TrainResult } from '../train/trainer';
import { UsageError, camelCase, helpText, lossParameterFlags, parseFlags, type Flag } from './options';

const RUN_FLAGS: Flag[] = [
  { name: 'data', kind: 'path', help: 'the training data: JSONL (or a JSON array) in TRL\'s formats', option: 'train' },
  { name: 'eval', kind: 'path', help: 'held-out data of the same format, evaluated every --eval-every steps and at the end' },
  { name: 'out', kind: 'path', help: 'the run folder, new or empty (default: a new runs/<command>-<date>-<time>): config.json, model.safetensors, metrics.jsonl, checkpoint/, ...' },
  { name: 'overwrite', kind: 'boolean', help: 'let --out be an earlier run\'s folder: its run files are replaced, every other file is kept' },
  { name: 'steps', kind: 'integer', help: 'optimizer steps (default: one epoch)' },
  { name: 'batch', kind: 'integer', help: 'examples per micro-batch (pairs for train; default 8; at most the data\'s examples)', option: 'batchSize' },
  { name: 'grad-accum', kind: 'integer', help: 'micro-batches per step (default 1): the update of one batch of batch * grad-accum', option: 'gradientAccumulation' },
  { name: 'lr', kind: 'number', help: 'peak learning rate, > 0 (default 1e-3 for sft, 5e-4 for train)' },
  { name: 'warmup', kind: 'integer', help: 'steps of linear warmup before the cosine decay (default 0; at most --steps)', option: 'warmupSteps' },
  { name: 'min-lr-ratio', kind: 'number', help: 'the last step\'s rate as a fraction of --lr (default 0.1)' },
  { name: 'weight-decay', kind: 'number', help: 'AdamW\'s decoupled weight decay (default 0)' },
  { name: 'max-grad-norm', kind: 'number', help: 'clip the global gradient norm to this (default 1)' },
  { name: 'max-length', kind: 'integer', help: 'tokens of prompt + completion kept (default: the model\'s context + 1)' },
  { name: 'seed', kind: 'integer', help: 'the data order\'s seed (default 0)' },
  { name: 'log-every', kind: 'integer', help: 'log every N steps (default 1)' },
  { name: 'eval-every', kind: 'integer', help: 'evaluate every N steps (default: at the end only)' },
  { name: 'save-every', kind: 'integer', help: 'checkpoint every N steps (default: by time, and at the end)' },
  { name: 'checkpoint-minutes', kind: 'number', help: 'checkpoint at the first step this many minutes after the last checkpoint (default 10; 0: not by time)' },
  { name: 'stop-after', kind: 'integer', help: 'checkpoint at step N and stop there (for testing --resume)' },
  { name: 'resume', kind: 'path', help: 'continue the run in this folder from its checkpoint: its options are the run\'s, options given again must match' },
  { name: 'skip-bad-lines', kind: 'boolean', help: 'skip (and list) bad records of the data instead of stopping at the first' },
  { name: 'max-line-bytes', kind: 'integer', help: 'the longest JSONL line read, in bytes (default 67108864: 64 MiB)' },
  { name: 'samples', kind: 'integer', help: 'prompts whose greedy generations are logged at the start, each evaluation and the end (default 3; 0: none)' },
  { name: 'sample-tokens', kind: 'integer', help: 'tokens generated at most per sample (default 32)' },
  { name: 'quiet', kind: 'boolean', help: 'no progress output (what was skipped or cut from the data is still said)' },
];

export const SFT_FLAGS: Flag[] = [
  { name: 'model', kind: 'path', help: 'start from this model folder; else a new GPT of --layers, --width, --heads, --context' },
  { name: 'layers', kind: 'integer', help: 'transformer blocks of a new model (default 2)' },
  { name: 'width', kind: 'integer', help: 'channels of a new model (default 64)' },
  { name: 'heads', kind: 'integer', help: 'attention heads of a new model (default 4)' },
  { name: 'context', kind: 'integer', help: 'longest sequence of a new model (default 64)' },
  { name: 'init-seed', kind: 'integer', help: 'the seed of a new model\'s weights (default 0)' },
  { name: 'tokenizer', kind: 'path', help: '"byte" (default) or a Hugging Face tokenizer.json for a new model' },
  ...RUN_FLAGS,
];

export const TRAIN_FLAGS: Flag[] = [
  { name: 'model', kind: 'path', help: 'the starting model folder (a fusedpo sft output, or a Hugging Face folder: llama, qwen2, qwen3, gemma3_text, gpt2); also the frozen reference' },
  { name: 'loss', kind: 'string', help: `the preference loss (default dpo): ${LOSS_NAMES.join(', ')}`, choices: [...LOSS_NAMES, 'sigmoid'] },
  ...lossParameterFlags(),
  { name: 'nll-weight', kind: 'number', help: 'weight of the chosen rows\' NLL added to the loss (RPO; default 0)' },
  { name: 'nll-reduction', kind: 'string', help: 'tokenMean (default) or sum', choices: ['tokenMean', 'sum'] },
  { name: 'average-log-prob', kind: 'boolean', help: 'divide each row\'s log-probs by its token count (TRL\'s average_log_prob)' },
  { name: 'precompute-ref', kind: 'boolean', help: 'compute the reference log-probs once before training and cache them on disk' },
  { name: 'ref-cache', kind: 'path', help: 'where --precompute-ref caches (default: $FUSEDPO_CACHE, else ~/.cache/fusedpo)', option: 'referenceCache' },
  { name: 'ref-sync-every', kind: 'integer', help: 'TR-DPO: every N steps, ref <- alpha * policy + (1 - alpha) * ref' },
  { name: 'ref-sync-alpha', kind: 'number', help: 'TR-DPO\'s alpha (default 0.6)' },
  ...RUN_FLAGS,
];

const NOTES = `environment: FUSEDPO_THREADS (threads), FUSEDPO_CACHE (reference log-probs cache), FUSEDPO_DEBUG=1 (stack traces of errors)
docs: docs/training.md (the trainer, the output folder, interrupting and resuming), docs/losses.md (every loss)`;

/** Options a resumed run may change: its length and its cadence, nothing that shapes its bytes. */
const MUTABLE = new Set(['steps', 'logEvery', 'evalEvery', 'saveEvery', 'checkpointMinutes', 'stopAfter', 'quiet']);
/** Options that say where this invocation writes and how, not what the run is. */
const PER_INVOCATION = new Set(['resume', 'out', 'overwrite', 'stopAfter', 'quiet']);

/** The flag of an option (`batchSize` -> `--batch`), for messages. */
function flagOf(flags: readonly Flag[], option: string): string {
  const flag = flags.find((f) => (f.option ?? camelCase(f.name)) === option);
  return `--${flag?.name ?? option}`;
}

/** The options with every path flag made absolute: the run's record, usable from any folder on resume. */
function absolutePaths(options: Record<string, unknown>, flags: readonly Flag[]): Record<string, unknown> {
  const out: Record<string, unknown> = { ...options };
  for (const flag of flags) {
    const key = flag.option ?? camelCase(flag.name);
    if (flag.kind === 'path' && typeof out[key] === 'string' && !(key === 'tokenizer' && out[key] === 'byte')) out[key] = resolvedPath(out[key] as string);
  }
  return out;
}

/** A resolved value of the run for an option it left at its default: its identity's setting or loss parameter. */
function resolvedValue(state: Record<string, unknown>, option: string): unknown {
  const identity = state.identity as { settings?: Record<string, unknown>; loss?: Record<string, unknown> } | undefined;
  return identity?.settings?.[option] ?? identity?.loss?.[option];
}

/**
 * The options of `--resume DIR`: those the run was started with (from its checkpoint), with the
 * ones given now; a given option that differs from the run's is refused, naming each.
 */
function resumeOptions(command: 'sft' | 'train', given: Record<string, unknown>, flags: readonly Flag[]): { options: Record<string, unknown>; checkpoint: string } {
  const directory = given.resume as string;
  if (given.out !== undefined && resolvedPath(given.out as string) !== resolvedPath(directory)) {
    throw new UsageError(`expected no --out with --resume (the run stays in its folder) but received --out ${String(given.out)} --resume ${directory}`);
  }
  if (given.overwrite) throw new UsageError('expected --resume or --overwrite, not both: --resume continues the run in its folder, --overwrite replaces it');
  const checkpoint = checkpointDirectory(directory);
  const state = readTrainerState(checkpoint);
  const recorded = state.command as { name?: unknown; options?: Record<string, unknown> } | null | undefined;
  const stateFile = path.join(checkpoint, 'trainer_state.json');
  if (!recorded || typeof recorded.options !== 'object' || recorded.options === null) {
    throw new TrainingFileError(stateFile, 'the run was not started by the fusedpo command (no command recorded); resume it from the API');
  }
  if (recorded.name !== command) throw new UsageError(`${directory} holds a fusedpo ${String(recorded.name)} run: resume it with fusedpo ${String(recorded.name)} --resume ${directory}`);
  const run = recorded.options;
  const now = absolutePaths(given, flags);
  const differences: string[] = [];
  for (const [key, value] of Object.entries(now)) {
    if (PER_INVOCATION.has(key) || MUTABLE.has(key)) continue;
    const theirs = key in run ? run[key] : resolvedValue(state, key);
    if (theirs !== undefined && JSON.stringify(theirs) !== JSON.stringify(value)) {
      differences.push(`${flagOf(flags, key)} ${JSON.stringify(value)} (the run's: ${JSON.stringify(theirs)})`);
    } else if (theirs === undefined && !(key in run)) {
      differences.push(`${flagOf(flags, key)} ${JSON.stringify(value)} (the run had none)`);
    }
  }
  if (differences.length > 0) {
    throw new UsageError(`--resume ${directory}: other options than the run's: ${differences.join(', ')}. ` +
      'Give --resume alone (the run\'s options are kept), or start a new run in another folder');
  }
  const options = { ...run };
  for (const key of MUTABLE) if (now[key] !== undefined) options[key] = now[key];
  return { options, checkpoint };
}

/** The summary on stdout: JSON, with what the data gave. */
function printSummary(result: TrainResult, out: string): void {
  const last = result.history.at(-1);
  const data = { ...result.data, skipped: result.skipped.length, skippedRecords: result.skipped.slice(0, 20) };
  const summary = { finished: result.finished, interrupted: result.interrupted, steps: result.steps, out, checkpoint: result.checkpoint, last: last ?? null, eval: result.eval, data };
  console.log(JSON.stringify(summary, null, 2));
}

/**
 * What was skipped or cut from the data, on stderr even with --quiet (the progress output
 * says it otherwise): nothing is left out silently.
 */
function dataWarnings(quiet: boolean) {
  return (report: DataReport) => {
    if (!quiet) return;
    if (report.skipped.length > 0) {
      const first = report.skipped.slice(0, 3).map((bad) => `${bad.file}:${bad.line}: ${bad.reason}`).join('; ');
      process.stderr.write(`fusedpo: skipped ${report.skipped.length} bad record${report.skipped.length > 1 ? 's' : ''} (${first}${report.skipped.length > 3 ? '; ...' : ''})\n`);
    }
    if (report.train.truncated > 0) process.stderr.write(`fusedpo: ${report.train.truncated} of ${report.train.records} training records cut to --max-length\n`);
  };
}

/**
 * Runs a trainer under an interrupt watch and reports: the summary, and after an interruption a
 * line saying how to continue, with the signal's status.
 */
async function runTrainer(command: 'sft' | 'train', out: string, make: (signal: { readonly aborted: boolean }) => { train(): Promise<TrainResult> }): Promise<void> {
  const watch = watchInterrupts(`\nfusedpo ${command}: interrupted: the current step finishes and a checkpoint is written (interrupt again to stop at once)`);
  try {
    const result = await make(watch).train();
    printSummary(result, out);
    if (result.interrupted) {
      process.stderr.write(result.checkpoint
        ? `fusedpo ${command}: interrupted (${watch.signalName}) at step ${result.steps}; the checkpoint is in ${result.checkpoint}; continue with: fusedpo ${command} --resume ${out}\n`
        : `fusedpo ${command}: interrupted (${watch.signalName}) before the first step; nothing was written\n`);
      process.exitCode = watch.exitCode;
    }
  } finally {
    watch.dispose();
  }
}

/** The options shared by both commands, as the trainers take them; `out` chosen (and said) when not given. */
function runOptions(command: 'sft' | 'train', options: Record<string, unknown>, resuming: boolean): { trainer: Record<string, unknown>; out: string } {
  const { quiet, resume: _resume, ...rest } = options;
  if (rest.train === undefined) throw new UsageError('expected --data FILE (the training data)');
  let out = rest.out as string | undefined;
  if (out === undefined) {
    out = freshFolderName('runs', command);
    process.stderr.write(`fusedpo ${command}: no --out given: the run goes to ${out}\n`);
  }
  const trainer: Record<string, unknown> = { ...rest, out, progress: quiet ? false : 'auto', callbacks: { onData: dataWarnings(quiet === true) } };
  if (resuming) trainer.resume = true;
  return { trainer, out };
}

/**
 * The command line of sft or train read: with --help the help is printed (null); with --resume
 * the run's own options merged with those given (resumeOptions) and its checkpoint; and the
 * record of the run's options kept in its checkpoint, paths absolute.
 */
function readCommand(name: 'sft' | 'train', argv: readonly string[], flags: readonly Flag[], usage: string):
  { options: Record<string, unknown>; checkpoint: string | null; record: { name: string; options: Record<string, unknown> }; resuming: boolean } | null {
  const parsed = parseFlags(name, argv, flags);
  if (parsed.help) {
    console.log(helpText(usage, flags, NOTES));
    return null;
  }
  const resuming = parsed.options.resume !== undefined;
  const { options, checkpoint } = resuming ? resumeOptions(name, parsed.options, flags) : { options: parsed.options, checkpoint: null };
  if (resuming) options.out = parsed.options.resume;
  const recorded = absolutePaths(Object.fromEntries(Object.entries(options).filter(([k]) => !PER_INVOCATION.has(k))), flags);
  return { options, checkpoint, record: { name, options: recorded }, resuming };
}

export async function sftCommand(argv: readonly string[]): Promise<void> {
  const usage = 'usage: fusedpo sft --data FILE [--out DIR] [--model DIR | --layers N --width N --heads N --context N] [--steps N] [--lr X] [--batch N] [--seed N]\n' +
    '       fusedpo sft --resume DIR';
  const command = readCommand('sft', argv, SFT_FLAGS, usage);
  if (!command) return;
  const { options, checkpoint, record, resuming } = command;
  const { model: modelDir, layers, width, heads, context, initSeed, tokenizer: tokenizerSpec, ...rest } = options;
  let model: CausalLM;
  let tokenizer: Tokenizer;
  const inputs: RunInput[] = [];
  if (checkpoint) {
    ({ model, tokenizer } = loadModelFolder(checkpoint));  // the checkpoint is a model folder: the run's own architecture and tokenizer
  } else if (modelDir !== undefined) {
    if ([layers, width, heads, context, tokenizerSpec, initSeed].some((v) => v !== undefined)) {
      throw new UsageError('expected either --model or --layers/--width/--heads/--context/--tokenizer/--init-seed (a new model), not both');
    }
    ({ model, tokenizer } = loadModelFolder(modelDir as string));
  } else {
    tokenizer = tokenizerSpec === undefined || tokenizerSpec === 'byte' ? new ByteTokenizer() : loadTokenizer(tokenizerSpec as string);
    model = new GPT({
      layers: (layers as number | undefined) ?? 2, width: (width as number | undefined) ?? 64, heads: (heads as number | undefined) ?? 4,
      context: (context as number | undefined) ?? 64, vocab: tokenizer.vocabSize,
    }, { seed: (initSeed as number | undefined) ?? 0 });
  }
  if (modelDir !== undefined) inputs.push({ name: '--model', path: modelDir as string });
  try {
    const { trainer, out } = runOptions('sft', rest, resuming);
    await runTrainer('sft', out, (signal) => new SftTrainer({ ...trainer, model, tokenizer, inputs, signal, command: record } as never));
  } finally {
    model.dispose();
  }
}

export async function trainCommand(argv: readonly string[]): Promise<void> {
  const usage = 'usage: fusedpo train --model DIR --data FILE [--out DIR] [--eval FILE] [--loss NAME] [--beta X] [--lr X] [--batch N] [--steps N]\n' +
    '                     [--eval-every N] [--save-every N] [--stop-after N] [--seed N] [--precompute-ref]\n' +
    '       fusedpo train --resume DIR';
  const command = readCommand('train', argv, TRAIN_FLAGS, usage);
  if (!command) return;
  const { options, checkpoint, record, resuming } = command;
  const { model: modelDir, precomputeRef, refSyncEvery, refSyncAlpha, ...rest } = options;
  if (modelDir === undefined) throw new UsageError('expected --model DIR (the starting model, e.g. the folder of fusedpo sft --out)');
  if (refSyncAlpha !== undefined && refSyncEvery === undefined) throw new UsageError('expected --ref-sync-every N with --ref-sync-alpha');
  if (rest.train === undefined) throw new UsageError('expected --data FILE (the training data)');
  // resuming, the checkpoint is the model folder: the policy at its step (the reference is in it too)
  const { model, tokenizer } = loadModelFolder(checkpoint ?? (modelDir as string));
  try {
    const { trainer, out } = runOptions('train', rest, resuming);
    if (precomputeRef) trainer.reference = 'precompute';
    if (refSyncEvery !== undefined) trainer.referenceSync = { every: refSyncEvery, alpha: refSyncAlpha ?? 0.6 };
    const inputs: RunInput[] = [{ name: '--model', path: modelDir as string }];
    await runTrainer('train', out, (signal) => new PreferenceTrainer({ ...trainer, model, tokenizer, inputs, signal, command: record } as never));
  } finally {
    model.dispose();
  }
}
