/**
 * `fusedpo generate --model DIR --prompt TEXT`: the model folder's tokenizer encodes the prompt,
 * the GPT samples with its key-value cache (lib/nn/generate.ts) until end-of-text, the token
 * limit or the context, and the completion is printed (with --json: prompt, completion, tokens).
 */
import { loadModelFolder } from '../train/files';
import { UsageError, helpText, parseFlags, type Flag } from './options';

const FLAGS: Flag[] = [
  { name: 'model', kind: 'path', help: 'a model folder (fusedpo sft/train --out, or a Hugging Face GPT-2 folder)' },
  { name: 'prompt', kind: 'string', help: 'the text to continue' },
  { name: 'max-new-tokens', kind: 'integer', help: 'tokens to add at most (default 32)' },
  { name: 'temperature', kind: 'number', help: '0: greedy (default 0)' },
  { name: 'top-k', kind: 'integer', help: 'sample among the k most likely tokens' },
  { name: 'top-p', kind: 'number', help: 'sample among the most likely tokens whose probabilities sum to p' },
  { name: 'seed', kind: 'integer', help: 'the seed of the draws (default 0): the same tokens on every machine' },
  { name: 'json', kind: 'boolean', help: 'print {prompt, completion, tokens} as JSON' },
];

export function generateCommand(argv: readonly string[]): void {
  const usage = 'usage: fusedpo generate --model DIR --prompt TEXT [--max-new-tokens N] [--temperature X] [--top-k N] [--top-p X] [--seed N]';
  const { options, help } = parseFlags('generate', argv, FLAGS);
  if (help) return void console.log(helpText(usage, FLAGS));
  if (options.model === undefined) throw new UsageError('expected --model DIR');
  if (typeof options.prompt !== 'string') throw new UsageError('expected --prompt TEXT');
  const { model, tokenizer } = loadModelFolder(options.model as string);
  try {
    const prompt = tokenizer.encode(options.prompt);
    const tokens = model.generate(prompt, {
      maxNewTokens: options.maxNewTokens as number | undefined, temperature: (options.temperature as number | undefined) ?? 0,
      topK: options.topK as number | undefined, topP: options.topP as number | undefined, seed: options.seed as number | undefined,
      stop: [tokenizer.eosId],
    });
    const completion = tokenizer.decode(tokens.filter((t) => t !== tokenizer.eosId));
    console.log(options.json ? JSON.stringify({ prompt: options.prompt, completion, tokens }) : completion);
  } finally {
    model.dispose();
  }
}
