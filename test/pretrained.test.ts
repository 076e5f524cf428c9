/**
 * Hugging Face GPT-2 folders (lib/nn/pretrained.ts) against an independent PyTorch GPT-2 forward
 * (test/fixtures/make_hf_gpt2_golden.py: a small random checkpoint in GPT2LMHeadModel's layout,
 * Conv1D weights [in, out], the transformer. prefix, the attn.bias buffers, a tied lm_head, a
 * vocabulary of 270); the round trip through savePretrained; the trainer's --model taking such a
 * folder; and the errors naming the key.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { GPT, readSafetensors, withScope, type CausalLM } from '../lib/index';
import { loadPretrained, savePretrained } from '../lib/nn/pretrained';
import { loadModelFolder } from '../lib/train/files';
import { PreferenceTrainer } from '../lib/train/trainer';

const folder = path.join(__dirname, 'fixtures', 'hf-gpt2');
const golden = readSafetensors(path.join(folder, 'golden.safetensors'));
const tokens = JSON.parse(golden.metadata.tokens) as number[][];

function logitsOf(model: CausalLM): Float32Array {
  return withScope(() => model.forward(Int32Array.from(tokens.flat()), [tokens.length, tokens[0].length]).toArray() as Float32Array);
}

function assertGolden(what: string, logits: Float32Array): void {
  const want = golden.tensors.get('logits')!.data;
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(logits[i] - want[i]) / (1 + Math.abs(want[i])));
  assert.ok(worst < 1e-4, `${what}: logits differ from PyTorch's by ${worst} (relative)`);
}

test('a Hugging Face GPT-2 folder: the logits of PyTorch\'s forward, and its tokenizer', () => {
  const { model, tokenizer } = loadPretrained(folder);
  assert.equal(model.config, { layers: 2, width: 32, heads: 4, context: 16, vocab: 270 });
  assertGolden('fromPretrained', logitsOf(model));
  assert.is(tokenizer!.vocabSize, 270);
  assert.is(GPT.fromPretrained(folder).config.vocab, 270);
  model.dispose();
});

test('savePretrained writes the same layout back: the Hugging Face keys, Conv1D [in, out], the same logits', () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'fusedpo-hf-'));
  const { model, tokenizer } = loadPretrained(folder);
  savePretrained(base, model, tokenizer);
  const original = readSafetensors(path.join(folder, 'model.safetensors')).tensors;
  const written = readSafetensors(path.join(base, 'model.safetensors')).tensors;
  for (const [key, tensor] of written) {
    const source = original.get(key);
    assert.ok(source, `${key} is a key of the original`);
    assert.equal(tensor.shape, source!.shape, key);
    assert.ok(tensor.data.every((x, i) => x === source!.data[i]), `${key}: the same values`);
  }
  assert.is(written.size, 2 + 2 + 2 * 12, 'every parameter once; the tied head and the buffers left out');
  const config = JSON.parse(fs.readFileSync(path.join(base, 'config.json'), 'utf8'));
  assert.is(config.model_type, 'gpt2');
  assert.is(config.n_embd, 32);
  const again = loadPretrained(base);
  assertGolden('round trip', logitsOf(again.model));
  assert.equal(again.tokenizer!.encode('a  b\n'), tokenizer!.encode('a  b\n'));
  model.dispose();
  again.model.dispose();
  fs.rmSync(base, { recursive: true, force: true });
});

test('the trainer takes a Hugging Face folder as its model; vocab.json + merges.txt work as the tokenizer', async () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'fusedpo-hf-'));
  const { model, tokenizer } = loadModelFolder(folder);
  const r = await new PreferenceTrainer({ model, tokenizer, train: [{ prompt: 'ab', chosen: 'c', rejected: 'd', line: 1 }], steps: 2, batchSize: 1, progress: false }).train();
  assert.is(r.steps, 2);
  assert.is(r.history[0].loss.toFixed(4), Math.LN2.toFixed(4));
  // GPT-2's original tokenizer files, made from the tokenizer.json's model
  const json = JSON.parse(fs.readFileSync(path.join(folder, 'tokenizer.json'), 'utf8'));
  for (const file of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(folder, file), path.join(base, file));
  fs.writeFileSync(path.join(base, 'vocab.json'), JSON.stringify({ ...json.model.vocab, '<|endoftext|>': 269 }));
  const merges = (json.model.merges as (string | string[])[]).map((m) => (Array.isArray(m) ? m.join(' ') : m));
  fs.writeFileSync(path.join(base, 'merges.txt'), `#version: 0.2\n${merges.join('\n')}\n`);
  const fromFiles = loadPretrained(base);
  assert.equal(fromFiles.tokenizer!.encode('a  b\n the'), tokenizer.encode('a  b\n the'));
  model.dispose();
  fromFiles.model.dispose();
  fs.rmSync(base, { recursive: true, force: true });
});

test('unsupported configurations and mismatched weights: errors naming the key', () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'fusedpo-hf-'));
  const config = JSON.parse(fs.readFileSync(path.join(folder, 'config.json'), 'utf8'));
  fs.copyFileSync(path.join(folder, 'model.safetensors'), path.join(base, 'model.safetensors'));
  const attempt = (changes: Record<string, unknown>, pattern: RegExp) => {
    fs.writeFileSync(path.join(base, 'config.json'), JSON.stringify({ ...config, ...changes }));
    assert.throws(() => loadPretrained(base), pattern);
  };
  attempt({ activation_function: 'relu' }, /activation_function: expected one of gelu_new, gelu_pytorch_tanh .* but found "relu"/);
  attempt({ model_type: 'mistral' }, /config\.json: model_type: expected one of gpt2, llama, qwen2, qwen3, gemma3_text .* but found "mistral"/);
  attempt({ model_type: 'llama' }, /config\.json: hidden_size: expected a positive integer but found undefined/);
  attempt({ layer_norm_epsilon: 1e-6 }, /layer_norm_epsilon: expected 1e-5/);
  attempt({ n_embd: 64 }, /tensor transformer\.wte\.weight has shape \[270,32\] but config\.json makes it \[270,64\]/);
  attempt({ n_layer: 3 }, /missing tensor transformer\.h\.2\.ln_1\.weight \(config\.json makes blocks\.2\.ln1\.weight\)/);
  attempt({ n_head: 5 }, /n_head: 5 does not divide n_embd 32/);
  fs.rmSync(base, { recursive: true, force: true });
});

test.run();
