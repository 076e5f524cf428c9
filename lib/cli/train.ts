/**
 * `fusedpo sft` and `fusedpo train`: the trainers of lib/train from the command line, with the
 * same option names (docs/training.md). A run folder holds the model, metrics.jsonl and the
 * checkpoint; `--resume DIR` continues the run in DIR with the same options.
 */
import { ByteTokenizer, loadTokenizer, type Tokenizer } from '../data/tokenizer';
import { LOSS_NAMES } from '../losses/registry';
import { GPT } from '../nn/gpt';
import { loadModelFolder } from '../train/files';
import { PreferenceTrainer, SftTrainer, type TrainResult } from '../train/trainer';
import { UsageError, helpText, lossParameterFlags, parseFlags, type Flag } from './options';

const RUN_FLAGS: Flag[] = [
  { name: 'data', kind: 'path', help: 'the training data: JSONL (or a JSON array) in TRL\'s formats', option: 'train' },
  { name: 'eval', kind: 'path', help: 'held-out data of the same format, evaluated every --eval-every steps and at the end' },
  { name: 'out', kind: 'path', help: 'the run folder: config.json, model.safetensors, metrics.jsonl, samples.jsonl, report.html, checkpoint/' },
  { name: 'steps', kind: 'integer', help: 'optimizer steps (default: one epoch)' },
  { name: 'batch', kind: 'integer', help: 'examples per micro-batch (pairs for train; default 8)', option: 'batchSize' },
  { name: 'grad-accum', kind: 'integer', help: 'micro-batches per step (default 1): the update of one batch of batch * grad-accum', option: 'gradientAccumulation' },
  { name: 'lr', kind: 'number', help: 'peak learning rate (default 1e-3 for sft, 5e-4 for train)' },
  { name: 'warmup', kind: 'integer', help: 'steps of linear warmup before the cosine decay (default 0)', option: 'warmupSteps' },
  { name: 'min-lr-ratio', kind: 'number', help: 'the last step\'s rate as a fraction of --lr (default 0.1)' },
  { name: 'weight-decay', kind: 'number', help: 'AdamW\'s decoupled weight decay (default 0)' },
  { name: 'max-grad-norm', kind: 'number', help: 'clip the global gradient norm to this (default 1)' },
  { name: 'max-length', kind: 'integer', help: 'tokens of prompt + completion kept (default: the model\'s context + 1)' },
  { name: 'seed', kind: 'integer', help: 'the data order\'s seed (default 0)' },
  { name: 'log-every', kind: 'integer', help: 'log every N steps (default 1)' },
  { name: 'eval-every', kind: 'integer', help: 'evaluate every N steps (default: at the end only)' },
  { name: 'save-every', kind: 'integer', help: 'checkpoint every N steps (default: at the end only)' },
  { name: 'stop-after', kind: 'integer', help: 'checkpoint at step N and stop there (for testing --resume)' },
  { name: 'resume', kind: 'path', help: 'continue the run in this folder from its checkpoint, with the same options (and writes there)' },
  { name: 'skip-bad-lines', kind: 'boolean', help: 'skip (and count) bad records of the data files instead of stopping at the first' },
  { name: 'samples', kind: 'integer', help: 'prompts whose greedy generations are logged at the start, each evaluation and the end (default 3; 0: none)' },
  { name: 'sample-tokens', kind: 'integer', help: 'tokens generated at most per sample (default 32)' },
  { name: 'quiet', kind: 'boolean', help: 'no progress output' },
];

const SFT_FLAGS: Flag[] = [
  { name: 'model', kind: 'path', help: 'start from this model folder; else a new GPT of --layers, --width, --heads, --context' },
  { name: 'layers', kind: 'integer', help: 'transformer blocks of a new model (default 2)' },
  { name: 'width', kind: 'integer', help: 'channels of a new model (default 64)' },
  { name: 'heads', kind: 'integer', help: 'attention heads of a new model (default 4)' },
  { name: 'context', kind: 'integer', help: 'longest sequence of a new model (default 64)' },
  { name: 'init-seed', kind: 'integer', help: 'the seed of a new model\'s weights (default 0)' },
  { name: 'tokenizer', kind: 'path', help: '"byte" (default) or a Hugging Face tokenizer.json for a new model' },
  ...RUN_FLAGS,
];

const TRAIN_FLAGS: Flag[] = [
  { name: 'model', kind: 'path', help: 'the starting model folder (a fusedpo sft output); also the frozen reference' },
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

const NOTES = `environment: FUSEDPO_THREADS (threads), FUSEDPO_CACHE (reference log-probs cache)
docs: docs/training.md (the trainer, the output folder), docs/losses.md (every loss)`;

function printSummary(result: TrainResult, out: string | undefined): void {
  const last = result.history.at(-1);
  const summary = { finished: result.finished, steps: result.steps, out: out ?? null, last: last ?? null, eval: result.eval };
  console.log(JSON.stringify(summary, null, 2));
}

function common(options: Record<string, unknown>): Record<string, unknown> {
  const { quiet, resume, ...rest } = options;
  const out: Record<string, unknown> = { ...rest, progress: quiet ? false : 'auto' };
  if (resume !== undefined) {
    if (rest.out !== undefined && rest.out !== resume) throw new UsageError(`expected --out to be the --resume folder (or absent) but received --out ${String(rest.out)} --resume ${String(resume)}`);
    out.out = resume;
    out.resume = true;
  }
  if (out.train === undefined) throw new UsageError('expected --data FILE (the training data)');
  return out;
}

export async function sftCommand(argv: readonly string[]): Promise<void> {
  const usage = 'usage: fusedpo sft --data FILE --out DIR [--model DIR | --layers N --width N --heads N --context N] [--steps N] [--lr X] [--batch N] [--seed N]';
  const { options, help } = parseFlags('sft', argv, SFT_FLAGS);
  if (help) return void console.log(helpText(usage, SFT_FLAGS, NOTES));
  const { model: modelDir, layers, width, heads, context, initSeed, tokenizer: tokenizerSpec, ...rest } = options;
  let model: GPT;
  let tokenizer: Tokenizer;
  if (modelDir !== undefined) {
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
  try {
    const trainerOptions = common(rest);
    const result = await new SftTrainer({ ...trainerOptions, model, tokenizer } as never).train();
    printSummary(result, trainerOptions.out as string | undefined);
  } finally {
    model.dispose();
  }
}

export async function trainCommand(argv: readonly string[]): Promise<void> {
  const usage = 'usage: fusedpo train --model DIR --data FILE --out DIR [--eval FILE] [--loss NAME] [--beta X] [--lr X] [--batch N] [--steps N]\n' +
    '                     [--eval-every N] [--save-every N] [--stop-after N] [--resume DIR] [--seed N] [--precompute-ref]';
  const { options, help } = parseFlags('train', argv, TRAIN_FLAGS);
  if (help) return void console.log(helpText(usage, TRAIN_FLAGS, NOTES));
  const { model: modelDir, precomputeRef, refSyncEvery, refSyncAlpha, ...rest } = options;
  if (modelDir === undefined) throw new UsageError('expected --model DIR (the starting model, e.g. the folder of fusedpo sft --out)');
  if (refSyncAlpha !== undefined && refSyncEvery === undefined) throw new UsageError('expected --ref-sync-every N with --ref-sync-alpha');
  const { model, tokenizer } = loadModelFolder(modelDir as string);
  try {
    const trainerOptions = common(rest);
    if (precomputeRef) trainerOptions.reference = 'precompute';
    if (refSyncEvery !== undefined) trainerOptions.referenceSync = { every: refSyncEvery, alpha: refSyncAlpha ?? 0.6 };
    const result = await new PreferenceTrainer({ ...trainerOptions, model, tokenizer } as never).train();
    printSummary(result, trainerOptions.out as string | undefined);
  } finally {
    model.dispose();
  }
}
