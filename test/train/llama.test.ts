/**
 * The trainer end to end on a Llama-family folder as a user runs it (the compiled dist/cli.js):
 * the SmolLM2-Instruct-layout chat folder of test/fixtures/hf-llama/smollm2-chat (bf16 weights,
 * a byte-level BPE with ChatML's tokens, its chat template) and conversational data. The run folder
 * is a Hugging Face folder again (the source's config.json, bf16 weights, its tokenizer and
 * template, generation_config.json) that loadPretrained reads back; a stopped run resumes to the
 * bytes of an unbroken one; `generate --chat` and `eval` take the tuned folder; SFT on messages;
 * and a Qwen3-layout folder with Qwen3's real tokenizer and template trains, reloads and chats.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { BpeTokenizer } from '../../lib/data/tokenizer';
import { LlamaModel } from '../../lib/nn/llama';
import { loadPretrained, savePretrained } from '../../lib/nn/pretrained';
import { readSafetensorsHeader } from '../../lib/safetensors';
import { withScope } from '../../lib/tensor';
import { fusedpo, root, temporaryDirectory } from '../support/runs';

const CHAT_MODEL = path.join(root, 'test', 'fixtures', 'hf-llama', 'smollm2-chat');
const CHAT_DATA = path.join(root, 'examples', 'data', 'chat-preferences.jsonl');
const base = temporaryDirectory('llama');

test('fusedpo train on a SmolLM2-layout folder and conversational data: a Hugging Face folder out, read back with the same logits', () => {
  const out = path.join(base, 'minordpo');
  const run = fusedpo(base, 'train', '--model', CHAT_MODEL, '--data', CHAT_DATA, '--out', out, '--loss', 'minordpo', '--beta', '0.1',
    '--lr', '1e-3', '--steps', '4', '--batch', '4', '--max-length', '128', '--quiet');
  assert.is(run.status, 0, run.stderr);
  const summary = JSON.parse(run.stdout);
  assert.is(summary.steps, 4);
  assert.ok(Number.isFinite(summary.last.loss), 'a finite loss');
  // the source's layout: its config.json (model_type, bf16), bf16 weights, tokenizer and template, generation config
  const config = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
  const source = JSON.parse(fs.readFileSync(path.join(CHAT_MODEL, 'config.json'), 'utf8'));
  assert.equal(config, source, 'config.json kept');
  const header = readSafetensorsHeader(path.join(out, 'model.safetensors')).tensors;
  assert.ok([...header.values()].every((e) => e.dtype === 'BF16'), 'the weights in bf16, as the source');
  for (const file of ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) assert.ok(fs.existsSync(path.join(out, file)), file);
  const checkpoint = readSafetensorsHeader(path.join(out, 'checkpoint', 'model.safetensors')).tensors;
  assert.ok([...checkpoint.values()].every((e) => e.dtype === 'F32'), 'the checkpoint keeps the f32 master weights');
  // read back: a tuned model (logits moved), its tokenizer renders the same template
  const tuned = loadPretrained(out), original = loadPretrained(CHAT_MODEL);
  const tokens = Int32Array.from([270, 5, 17, 100, 271]);
  const logits = (m: typeof tuned.model) => withScope(() => m.forward(tokens, [1, tokens.length]).toArray() as Float32Array);
  assert.not.equal(logits(tuned.model), logits(original.model), 'training changed the model');
  const messages = [{ role: 'user' as const, content: 'What is 6+9?' }];
  assert.is(tuned.tokenizer!.applyChatTemplate(messages, { addGenerationPrompt: true }),
    original.tokenizer!.applyChatTemplate(messages, { addGenerationPrompt: true }));
  tuned.model.dispose();
  original.model.dispose();
});

test('a stopped run on a Llama folder resumes to the bytes of an unbroken one', () => {
  const args = ['--model', CHAT_MODEL, '--data', CHAT_DATA, '--loss', 'dpo', '--steps', '4', '--batch', '2', '--max-length', '128', '--save-every', '2', '--quiet'];
  assert.is(fusedpo(base, 'train', ...args, '--out', path.join(base, 'whole')).status, 0);
  const stopped = fusedpo(base, 'train', ...args, '--out', path.join(base, 'broken'), '--stop-after', '2');
  assert.is(stopped.status, 0, stopped.stderr);
  const resumed = fusedpo(base, 'train', '--resume', path.join(base, 'broken'));
  assert.is(resumed.status, 0, resumed.stderr);
  for (const file of ['model.safetensors', 'metrics.jsonl']) {
    assert.ok(fs.readFileSync(path.join(base, 'broken', file)).equals(fs.readFileSync(path.join(base, 'whole', file))), `${file}: the same bytes`);
  }
});

test('--overwrite on a Hugging Face run folder replaces the run\'s 11 files (generation_config.json, tokenizer_config.json too) and keeps the user\'s', () => {
  const out = path.join(base, 'overwritten');
  const args = ['--model', CHAT_MODEL, '--data', CHAT_DATA, '--loss', 'dpo', '--steps', '1', '--batch', '2', '--max-length', '128', '--quiet', '--out', out];
  assert.is(fusedpo(base, 'train', ...args).status, 0);
  fs.writeFileSync(path.join(out, 'notes.txt'), 'mine');
  const refused = fusedpo(base, 'train', ...args);
  assert.is(refused.status, 1, 'a finished run is refused without --overwrite');
  const again = fusedpo(base, 'train', ...args, '--overwrite');
  assert.is(again.status, 0, again.stderr);
  assert.match(again.stderr, /replacing checkpoint, config\.json, generation_config\.json, metrics\.jsonl and 7 more, written by an earlier run/);
  assert.is(fs.readFileSync(path.join(out, 'notes.txt'), 'utf8'), 'mine', 'the user\'s file kept');
});

test('generate --chat, eval and sft take a Llama folder', () => {
  const tuned = path.join(base, 'minordpo');
  const generated = fusedpo(base, 'generate', '--model', tuned, '--chat', '--prompt', 'What is 6+9?', '--max-new-tokens', '8', '--temperature', '0');
  assert.is(generated.status, 0, generated.stderr);
  const evaluated = fusedpo(base, 'eval', '--model', tuned, '--ref', CHAT_MODEL, '--data', CHAT_DATA, '--no-generate', '--json');
  assert.is(evaluated.status, 0, evaluated.stderr);
  assert.type(JSON.parse(evaluated.stdout).metrics['rewards/accuracies'], 'number');
  const sftData = path.join(base, 'chat-sft.jsonl');
  fs.writeFileSync(sftData, ['What is 2+3?', 'What is 4+4?'].map((q, i) => JSON.stringify({
    messages: [{ role: 'user', content: q }, { role: 'assistant', content: String([5, 8][i]) }],
  })).join('\n') + '\n');
  const sft = fusedpo(base, 'sft', '--model', CHAT_MODEL, '--data', sftData, '--out', path.join(base, 'sft'), '--steps', '2', '--batch', '2', '--quiet');
  assert.is(sft.status, 0, sft.stderr);
  assert.is(JSON.parse(fs.readFileSync(path.join(base, 'sft', 'config.json'), 'utf8')).model_type, 'llama');
});

test('with a real tokenizer (Qwen3\'s files, fetched once by test/tokenizers/fetch.js): a Qwen3-layout folder trains on conversations, saves, reloads and chats', () => {
  const { tokenizerFolder } = require('../tokenizers/fetch.js') as { tokenizerFolder: (name: string) => string };
  const tokenizer = BpeTokenizer.fromFolder(tokenizerFolder('qwen3'));
  const model = new LlamaModel({
    architecture: 'qwen3', vocab: 151936, context: 128, hidden: 16, layers: 1, heads: 2, kvHeads: 1, headDim: 10, intermediate: 24,
    rmsEps: 1e-6, ropeTheta: 1000000, ropeScaling: { type: 'default' }, tiedHead: true, qkvBias: false, outputBias: false, mlpBias: false,
    qkNorm: true, gemma: false, attentionScale: 1 / Math.sqrt(10), windows: [0], localRopeTheta: 1000000,
  }, { seed: 5 });
  const folder = path.join(base, 'qwen3-tiny');
  savePretrained(folder, model, tokenizer, { dtype: 'BF16' });
  model.dispose();
  const out = path.join(base, 'qwen3-minordpo');
  const run = fusedpo(base, 'train', '--model', folder, '--data', CHAT_DATA, '--out', out, '--loss', 'minordpo', '--steps', '2', '--batch', '2', '--quiet');
  assert.is(run.status, 0, run.stderr);
  const reloaded = loadPretrained(out);
  assert.is(reloaded.model.architecture, 'qwen3');
  assert.is(reloaded.tokenizer!.chatTemplate, tokenizer.chatTemplate, 'the template kept');
  reloaded.model.dispose();
  const chat = fusedpo(base, 'generate', '--model', out, '--chat', '--prompt', 'What is 6+9?', '--max-new-tokens', '3', '--json');
  assert.is(chat.status, 0, chat.stderr);
  const printed = JSON.parse(chat.stdout);
  assert.match(JSON.stringify(printed), /<\|im_start\|>user\\nWhat is 6\+9\?<\|im_end\|>\\n<\|im_start\|>assistant\\n/);
  assert.ok(printed.tokens.length <= 3);
});

test.after(() => fs.rmSync(base, { recursive: true, force: true }));

test.run();
