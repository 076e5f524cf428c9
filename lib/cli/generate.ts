/**
 * `fusedpo generate --model DIR --prompt TEXT [--chat]`: the model folder's tokenizer encodes the
 * prompt (with --chat, first rendered as a user message by the model's chat template, or the
 * package's own when its tokenizer has none), the model samples with its key-value cache
 * (lib/nn/generate.ts) until end-of-text (or an id generation_config.json's eos_token_id names:
 * an instruct model's end of turn), the token limit or the context, and the completion is
 * printed (with --json: prompt, completion, tokens, and with --chat the rendered input).
 *
 * The prompt's ids are made as the trainers make them (lib/data/batch.ts `encodePrompt`): BOS
 * first where the tokenizer adds one and no template wrote it.
 */
import { encodePrompt } from '../data/batch';
import { generationStopIds } from '../nn/pretrained';
import { loadModelFolder } from '../train/files';
import { UsageError, helpText, parseFlags, type Flag } from './options';

const FLAGS: Flag[] = [
  { name: 'model', kind: 'path', help: 'a model folder (fusedpo sft/train --out, or a Hugging Face folder: llama, qwen2, qwen3, gemma3_text, gpt2)' },
  { name: 'prompt', kind: 'string', help: 'the text to continue (with --chat: the user\'s message)' },
  { name: 'chat', kind: 'boolean', help: 'take --prompt as a user message, rendered by the model\'s chat template (the package\'s own when it has none) with the assistant\'s turn opened' },
  { name: 'max-new-tokens', kind: 'integer', help: 'tokens to add at most (default 32)' },
  { name: 'temperature', kind: 'number', help: '0: greedy (default 0)' },
  { name: 'top-k', kind: 'integer', help: 'sample among the k most likely tokens' },
  { name: 'top-p', kind: 'number', help: 'sample among the most likely tokens whose probabilities sum to p' },
  { name: 'seed', kind: 'integer', help: 'the seed of the draws (default 0): the same tokens on every machine' },
  { name: 'json', kind: 'boolean', help: 'print {prompt, completion, tokens} as JSON (with --chat, the rendered input too)' },
];

export function generateCommand(argv: readonly string[]): void {
  const usage = 'usage: fusedpo generate --model DIR --prompt TEXT [--chat] [--max-new-tokens N] [--temperature X] [--top-k N] [--top-p X] [--seed N]';
  const { options, help } = parseFlags('generate', argv, FLAGS);
  if (help) return void console.log(helpText(usage, FLAGS));
  if (options.model === undefined) throw new UsageError('expected --model DIR');
  if (typeof options.prompt !== 'string') throw new UsageError('expected --prompt TEXT');
  const { model, tokenizer } = loadModelFolder(options.model as string);
  try {
    const chat = options.chat === true;
    const text = chat ? tokenizer.applyChatTemplate([{ role: 'user', content: options.prompt }], { addGenerationPrompt: true }) : options.prompt;
    const prompt = encodePrompt(tokenizer, text, { templated: chat && tokenizer.chatTemplate !== null });
    // the end of text, and an instruct model's end of turn where its generation_config.json names it
    const stop = [...new Set([tokenizer.eosId, ...generationStopIds(model)])];
    const tokens = model.generate(prompt, {
      maxNewTokens: options.maxNewTokens as number | undefined, temperature: (options.temperature as number | undefined) ?? 0,
      topK: options.topK as number | undefined, topP: options.topP as number | undefined, seed: options.seed as number | undefined,
      stop,
    });
    const completion = tokenizer.decode(tokens.filter((t) => !stop.includes(t)));
    const record = { prompt: options.prompt, ...(chat ? { rendered: text } : {}), completion, tokens };
    console.log(options.json ? JSON.stringify(record) : completion);
  } finally {
    model.dispose();
  }
}
