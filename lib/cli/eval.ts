/**
 * `fusedpo eval --model DIR --data FILE [--ref DIR]`: the evaluation of lib/train/evaluate.ts
 * printed as a table (the model and the reference side by side) and, with --out, written as
 * JSON (every figure and every pair's log-probs and completions).
 */
import * as path from 'node:path';

import type { CausalLM } from '../nn/causal_lm';
import { TrainingFileError, loadModelFolder, tokenizerIdentity, writeOutputFile } from '../train/files';
import { evaluatePreferences, formatEvaluation } from '../train/evaluate';
import { UsageError, helpText, parseFlags, type Flag } from './options';

/** A tokenizer's identity in words. */
function describeTokenizer(t: ReturnType<typeof tokenizerIdentity>): string {
  return `${t.kind}, ${t.vocabSize} ids${t.sha256 ? `, tokenizer files ${t.sha256.slice(0, 12)}...` : ''}`;
}

export const EVAL_FLAGS: Flag[] = [
  { name: 'model', kind: 'path', help: 'the model folder to evaluate (fusedpo sft/train --out, or a Hugging Face folder)' },
  { name: 'data', kind: 'path', help: 'held-out preference pairs: JSONL (or a JSON array) in TRL\'s formats' },
  { name: 'ref', kind: 'path', help: 'the reference model folder: rewards and reward accuracy against it, and its own figures beside' },
  { name: 'beta', kind: 'number', help: 'the reward\'s beta (default 0.1)' },
  { name: 'batch', kind: 'integer', help: 'pairs per forward (default 8)', option: 'batchSize' },
  { name: 'max-new-tokens', kind: 'integer', help: 'tokens generated at most per prompt (default: the longest chosen answer + 8)' },
  { name: 'no-generate', kind: 'boolean', help: 'skip task accuracy by generation' },
  { name: 'show', kind: 'integer', help: 'examples printed under the table (default 3)' },
  { name: 'out', kind: 'path', help: 'write the evaluation as JSON to this file' },
  { name: 'json', kind: 'boolean', help: 'print the JSON instead of the table' },
  { name: 'overwrite', kind: 'boolean', help: 'let --out replace a file that is not an earlier fusedpo eval' },
];

export async function evalCommand(argv: readonly string[]): Promise<void> {
  const usage = 'usage: fusedpo eval --model DIR --data FILE [--ref DIR] [--beta X] [--no-generate] [--out FILE.json]';
  const { options, help } = parseFlags('eval', argv, EVAL_FLAGS);
  if (help) return void console.log(helpText(usage, EVAL_FLAGS, 'task accuracy: the greedy completion equals the chosen answer (trimmed); the API takes any checker (docs/evaluation.md)'));
  if (options.model === undefined) throw new UsageError('expected --model DIR');
  if (options.data === undefined) throw new UsageError('expected --data FILE (held-out preference pairs)');
  const { model, tokenizer } = loadModelFolder(options.model as string);
  let reference: CausalLM | null = null;
  try {
    if (options.ref !== undefined) {
      const ref = loadModelFolder(options.ref as string);
      reference = ref.model;
      // a reference's log-probs are compared with the model's token by token: one tokenizer for both
      const [ours, theirs] = [tokenizerIdentity(tokenizer), tokenizerIdentity(ref.tokenizer)];
      if (JSON.stringify(ours) !== JSON.stringify(theirs)) {
        throw new TrainingFileError(options.ref as string, `its tokenizer (${describeTokenizer(theirs)}) is not --model's (${describeTokenizer(ours)}): ` +
          'the two models would read different ids for the same text, so their log-probs and rewards cannot be compared');
      }
    }
    const evaluation = await evaluatePreferences({
      model, tokenizer, data: options.data as string, ...(reference ? { reference } : {}),
      beta: options.beta as number | undefined, batchSize: options.batchSize as number | undefined,
      generate: !options.noGenerate, maxNewTokens: options.maxNewTokens as number | undefined,
    });
    const record = { format: 'fusedpo-eval', version: 1, model: options.model, reference: options.ref ?? null, data: options.data, beta: (options.beta as number | undefined) ?? 0.1, ...evaluation };
    const json = `${JSON.stringify(record, null, 2)}\n`;
    if (options.out !== undefined) {
      const folders = [['--model', options.model], ['--ref', options.ref]].filter(([, d]) => typeof d === 'string') as [string, string][];
      const inputs = [{ name: '--data', path: options.data as string },
        ...folders.flatMap(([flag, d]) => ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'chat_template.jinja', 'vocab.json', 'merges.txt'].map((f) => ({ name: `${flag}'s ${f}`, path: path.join(d, f) })))];
      writeOutputFile(options.out as string, json, { overwrite: options.overwrite === true, ours: (head) => /^\{\s*"format": "fusedpo-eval"/.test(head), what: 'the evaluation (--out)', inputs });
    }
    if (options.json) {
      process.stdout.write(json);
    } else {
      console.log(`fusedpo eval: ${options.model}${options.ref ? ` against ${options.ref}` : ''} on ${path.basename(options.data as string)}`);
      console.log(formatEvaluation(evaluation, (options.show as number | undefined) ?? 3));
      if (options.out !== undefined) console.log(`\nwritten to ${options.out}`);
    }
  } finally {
    model.dispose();
    reference?.dispose();
  }
}
