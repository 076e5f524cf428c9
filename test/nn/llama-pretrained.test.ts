/**
 * The Llama family from Hugging Face folders (test/fixtures/hf-llama, made with
 * test/fixtures/make_llama_goldens.py from an independent float64 PyTorch forward): tiny random
 * checkpoints in each layout (GQA; llama3 rope scaling with a small original context; tied and
 * untied heads; q/k/v and o biases; Qwen 3's q/k norms with an odd head_dim; Gemma 3's norms,
 * GeGLU and sliding windows; F32, F16 and BF16 storage; a sharded folder with the rotary buffers
 * older conversions carry). Each must give PyTorch's logits and the gradients of
 * sum(logits * probe); savePretrained must write the same layout back; the key-value cache must
 * give the full forward's logits; and configurations this package cannot run are refused by name.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { mul, sum } from '../../lib/functional';
import { type CausalLM } from '../../lib/nn/causal_lm';
import { LlamaModel, type LlamaConfig } from '../../lib/nn/llama';
import { llamaConfigJson, llamaConfigOf } from '../../lib/nn/llama_config';
import { PretrainedError, generationStopIds, loadPretrained, pretrainedSource, savePretrained } from '../../lib/nn/pretrained';
import { readSafetensors, readSafetensorsHeader } from '../../lib/safetensors';
import { Tensor, hostStorage, withScope } from '../../lib/tensor';

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'hf-llama');
const FOLDERS = ['llama-llama3-tied', 'llama-untied-bias', 'qwen2-sharded', 'qwen3-bf16', 'gemma3'];

function temporaryFolder(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'fusedpo-llama-'));
}

function golden(name: string) {
  const file = readSafetensors(path.join(FIXTURES, name, 'golden.safetensors'));
  const tokens = JSON.parse(file.metadata.tokens) as number[][];
  return { tokens, tensors: file.tensors };
}

/** The largest |a - b| / (scale + |b|) and where. */
function worst(a: ArrayLike<number>, b: ArrayLike<number>, scale: number): { error: number; at: number } {
  let error = 0, at = -1;
  for (let i = 0; i < a.length; i++) {
    const e = Math.abs(a[i] - b[i]) / (scale + Math.abs(b[i]));
    if (!(e <= error)) [error, at] = [e, i];
  }
  return { error, at };
}

function assertClose(what: string, got: ArrayLike<number>, want: ArrayLike<number>, tolerance: number, scale = 1): void {
  assert.is(got.length, want.length, `${what}: length`);
  const { error, at } = worst(got, want, scale);
  assert.ok(error < tolerance, `${what}: differs by ${error.toExponential(2)} (relative) at ${at}: ${got[at]} against ${want[at]}`);
}

function logitsOf(model: CausalLM, tokens: number[][]): Float32Array {
  return withScope(() => model.forward(Int32Array.from(tokens.flat()), [tokens.length, tokens[0].length]).toArray() as Float32Array);
}

for (const name of FOLDERS) {
  test(`${name}: PyTorch's logits and the gradients of sum(logits * probe)`, () => {
    const { tokens, tensors } = golden(name);
    const { model } = loadPretrained(path.join(FIXTURES, name));
    try {
      assertClose(`${name} logits`, logitsOf(model, tokens), tensors.get('logits')!.data, 1e-4);
      const params = new Map(model.parameters());
      withScope(() => {
        const logits = model.forward(Int32Array.from(tokens.flat()), [tokens.length, tokens[0].length]);
        const probe = tensors.get('probe')!;
        sum(mul(logits, Tensor.from(probe.data, probe.shape))).backward();
      });
      const grads = [...tensors.keys()].filter((k) => k.startsWith('grad.'));
      assert.ok(grads.length >= 8, `${name}: the golden has ${grads.length} gradients`);
      for (const key of grads) {
        const param = params.get(key.slice(5));
        assert.ok(param, `${name}: ${key.slice(5)} is a parameter`);
        const want = tensors.get(key)!.data;
        const scale = want.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
        // relative to the gradient's largest entry: small entries are sums of cancelling terms
        assertClose(`${name} ${key}`, param!.grad!.toArray() as Float32Array, want, 2e-4, scale);
      }
    } finally {
      model.dispose();
    }
  });
}

test('the configs read: GQA, tied heads, biases, q/k norms, head_dim, rope scaling, windows', () => {
  const config = (name: string) => (loadPretrained(path.join(FIXTURES, name)).model as LlamaModel);
  const cases: [string, Partial<LlamaConfig>][] = [
    ['llama-llama3-tied', { architecture: 'llama', heads: 4, kvHeads: 2, tiedHead: true, qkvBias: false }],
    ['llama-untied-bias', { architecture: 'llama', tiedHead: false, qkvBias: true, outputBias: true, mlpBias: true, ropeTheta: 500000 }],
    ['qwen2-sharded', { architecture: 'qwen2', qkvBias: true, outputBias: false, tiedHead: false }],
    ['qwen3-bf16', { architecture: 'qwen3', qkNorm: true, headDim: 12, hidden: 32 }],
    ['gemma3', { architecture: 'gemma3_text', gemma: true, windows: [4, 4, 0], attentionScale: 1 / Math.sqrt(24) }],
  ];
  for (const [name, want] of cases) {
    const model = config(name);
    for (const [key, value] of Object.entries(want)) assert.equal(model.config[key as keyof LlamaConfig], value, `${name}: ${key}`);
    model.dispose();
  }
  const scaled = config('llama-llama3-tied');
  assert.equal(scaled.config.ropeScaling, { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalContext: 128 });
  scaled.dispose();
});

test('the key-value cache gives the full forward\'s logits, position by position (sliding windows included)', () => {
  for (const name of FOLDERS) {
    const { tokens } = golden(name);
    const { model } = loadPretrained(path.join(FIXTURES, name));
    const full = logitsOf(model, [tokens[0]]);
    const decoder = model.decoder();
    const V = model.config.vocab;
    tokens[0].forEach((token, t) => assertClose(`${name} step ${t}`, decoder.step(token), full.subarray(t * V, (t + 1) * V), 2e-5));
    // greedy generation is the argmax of the full forward at each step
    const prompt = tokens[0].slice(0, 4);
    const generated = model.generate(prompt, { maxNewTokens: 5, temperature: 0 });
    const sequence = [...prompt];
    for (const next of generated) {
      const logits = logitsOf(model, [sequence]);
      const last = logits.subarray((sequence.length - 1) * V);
      assert.is(next, last.indexOf(Math.max(...last)), `${name}: greedy token after ${sequence.length}`);
      sequence.push(next);
    }
    model.dispose();
  }
});

test('savePretrained writes the layout read: keys, dtype, shards, config.json, generation_config.json; reloaded, the same logits', () => {
  for (const name of FOLDERS) {
    const source = path.join(FIXTURES, name);
    const out = temporaryFolder();
    try {
      const { model } = loadPretrained(source);
      savePretrained(out, model, null);
      const sourceFiles = fs.readdirSync(source).filter((f) => f !== 'golden.safetensors' && !f.startsWith('tokenizer')).sort();
      assert.equal(fs.readdirSync(out).sort(), sourceFiles, `${name}: the same files`);
      for (const file of sourceFiles.filter((f) => f.endsWith('.safetensors'))) {
        const before = readSafetensorsHeader(path.join(source, file)).tensors;
        const after = readSafetensorsHeader(path.join(out, file)).tensors;
        const parameters = [...before].filter(([key]) => !key.includes('rotary_emb'));
        assert.equal([...after.keys()].sort(), parameters.map(([key]) => key).sort(), `${name} ${file}: the same keys, buffers left out`);
        for (const [key, entry] of parameters) assert.equal([after.get(key)!.dtype, after.get(key)!.shape], [entry.dtype, entry.shape], `${name} ${key}`);
        // stored values come back bit for bit: f32 master weights of f16/bf16 values round to themselves
        const a = readSafetensors(path.join(source, file)).tensors, b = readSafetensors(path.join(out, file)).tensors;
        for (const [key] of parameters) assert.ok(a.get(key)!.data.every((x, i) => Object.is(x, b.get(key)!.data[i])), `${name} ${key}: the same values`);
      }
      const config = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
      assert.equal(config(out), config(source), `${name}: config.json kept`);
      if (fs.existsSync(path.join(source, 'generation_config.json'))) {
        assert.is(fs.readFileSync(path.join(out, 'generation_config.json'), 'utf8'), fs.readFileSync(path.join(source, 'generation_config.json'), 'utf8'));
      }
      const again = loadPretrained(out).model;
      const { tokens } = golden(name);
      assert.equal(logitsOf(again, tokens), logitsOf(model, tokens), `${name}: the same logits`);
      model.dispose();
      again.dispose();
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  }
});

test('a checkpoint keeps f32 master weights and the source dtype: saved again, the folder\'s dtype', () => {
  const out = temporaryFolder();
  try {
    const { model } = loadPretrained(path.join(FIXTURES, 'qwen3-bf16'));
    // a step's worth of change that bf16 cannot hold
    const weight = model.parameters()[0][1];
    const values = weight.toArray() as Float32Array;
    values[0] += 1e-4;
    const { storage, byteOffset } = hostStorage(weight, 'test');
    storage.write(values, byteOffset);
    savePretrained(path.join(out, 'checkpoint'), model, null, { dtype: 'F32' });
    const header = readSafetensorsHeader(path.join(out, 'checkpoint', 'model.safetensors')).tensors;
    assert.ok([...header.values()].every((e) => e.dtype === 'F32'), 'the checkpoint in f32');
    assert.is(JSON.parse(fs.readFileSync(path.join(out, 'checkpoint', 'config.json'), 'utf8')).torch_dtype, 'bfloat16');
    const resumed = loadPretrained(path.join(out, 'checkpoint')).model;
    assert.is((resumed.parameters()[0][1].toArray() as Float32Array)[0], values[0], 'the f32 master weight exactly');
    assert.is(pretrainedSource(resumed)!.dtype, 'BF16');
    savePretrained(path.join(out, 'final'), resumed, null);
    const final = readSafetensorsHeader(path.join(out, 'final', 'model.safetensors')).tensors;
    assert.ok([...final.values()].every((e) => e.dtype === 'BF16'), 'the tuned model in the source\'s bf16');
    model.dispose();
    resumed.dispose();
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});

test('a model made here: config.json as transformers writes it, read back to the same config, the same logits', () => {
  const base: LlamaConfig = {
    architecture: 'llama', vocab: 61, context: 32, hidden: 24, layers: 2, heads: 6, kvHeads: 2, headDim: 4, intermediate: 40,
    rmsEps: 1e-5, ropeTheta: 10000, ropeScaling: { type: 'llama3', factor: 4, lowFreqFactor: 1, highFreqFactor: 4, originalContext: 16 },
    tiedHead: false, qkvBias: true, outputBias: true, mlpBias: true, qkNorm: false, gemma: false, attentionScale: 0.5, windows: [0, 0], localRopeTheta: 10000,
  };
  const variants: LlamaConfig[] = [
    base,
    { ...base, architecture: 'qwen2', ropeScaling: { type: 'default' }, outputBias: false, mlpBias: false, tiedHead: true },
    { ...base, architecture: 'qwen3', headDim: 6, attentionScale: 1 / Math.sqrt(6), qkvBias: false, outputBias: false, mlpBias: false, qkNorm: true, ropeScaling: { type: 'default' } },
    { ...base, architecture: 'gemma3_text', headDim: 8, qkNorm: true, gemma: true, qkvBias: false, outputBias: false, mlpBias: false, tiedHead: true,
      ropeScaling: { type: 'linear', factor: 2 }, attentionScale: 1 / Math.sqrt(10), windows: [3, 0], localRopeTheta: 5000 },
  ];
  for (const config of variants) {
    const json = llamaConfigJson(config, { bos: 1, eos: 2 });
    assert.equal(llamaConfigOf(JSON.parse(JSON.stringify(json))), config, `${config.architecture}: read back`);
    const model = new LlamaModel(config, { seed: 3 });
    const out = temporaryFolder();
    try {
      savePretrained(out, model, null);
      const again = loadPretrained(out).model;
      const tokens = [[1, 5, 60, 0, 33, 7, 7, 2]];
      assert.equal(logitsOf(again, tokens), logitsOf(model, tokens), `${config.architecture}: the same logits`);
      again.dispose();
    } finally {
      model.dispose();
      fs.rmSync(out, { recursive: true, force: true });
    }
  }
});

/** A copy of a fixture folder with config.json changed, for a loadPretrained that must refuse it. */
function refused(name: string, change: (config: Record<string, unknown>) => void, pattern: RegExp, files?: (dir: string) => void): void {
  const out = temporaryFolder();
  try {
    for (const file of fs.readdirSync(path.join(FIXTURES, name))) fs.copyFileSync(path.join(FIXTURES, name, file), path.join(out, file));
    const config = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    change(config);
    fs.writeFileSync(path.join(out, 'config.json'), JSON.stringify(config));
    files?.(out);
    const error = (() => {
      try {
        loadPretrained(out);
      } catch (e) {
        return e as Error;
      }
      return null;
    })();
    assert.ok(error instanceof PretrainedError, `${name}: expected a PretrainedError matching ${pattern} but ${error ? `got ${error.name}: ${error.message}` : 'it loaded'}`);
    assert.match(error!.message, pattern);
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
}

test('what changes the math and is not supported is refused, naming the key and the value', () => {
  refused('llama-llama3-tied', (c) => { c.hidden_act = 'gelu'; }, /config\.json: hidden_act: expected silu or swish but found "gelu"/);
  refused('llama-llama3-tied', (c) => { (c.rope_scaling as Record<string, unknown>).rope_type = 'yarn'; }, /rope_scaling\.rope_type: expected default, linear or llama3 .* but found "yarn"/);
  refused('llama-llama3-tied', (c) => { c.num_local_experts = 8; }, /num_local_experts: 8 means a mixture of experts, which is not supported/);
  refused('llama-llama3-tied', (c) => { c.pretraining_tp = 2; }, /pretraining_tp: 2 means tensor-parallel slices/);
  refused('llama-llama3-tied', (c) => { c.num_key_value_heads = 3; }, /num_key_value_heads: 3 does not divide num_attention_heads 4/);
  refused('qwen2-sharded', (c) => { c.use_sliding_window = true; }, /use_sliding_window: true: sliding-window attention on a Qwen model is not supported/);
  refused('gemma3', (c) => { c.final_logit_softcapping = 30; }, /final_logit_softcapping: 30 means soft-capped final logits/);
  refused('gemma3', (c) => { c.layer_types = ['sliding_attention']; }, /layer_types: expected 3 of sliding_attention or full_attention/);
  refused('qwen3-bf16', (c) => { c.model_type = 'qwen3_moe'; }, /model_type: expected one of gpt2, llama, qwen2, qwen3, gemma3_text .* but found "qwen3_moe"/);
  refused('qwen3-bf16', (c) => { c.head_dim = 8; }, /tensor model\.layers\.0\.self_attn\.q_proj\.weight has shape \[48,32\] but config\.json makes it \[32,32\]/);
  refused('qwen3-bf16', (c) => { c.num_hidden_layers = 60000; }, /missing tensor model\.layers\.2\.input_layernorm\.weight/);
  refused('qwen3-bf16', (c) => { c.num_hidden_layers = 1e9; }, /num_hidden_layers: expected at most 65536 .* but found 1000000000/);
  refused('qwen3-bf16', (c) => { c.tie_word_embeddings = false; }, /missing tensor lm_head\.weight/);
  refused('llama-untied-bias', (c) => { c.tie_word_embeddings = true; }, /lm_head\.weight differs from model\.embed_tokens\.weight, but config\.json ties the head to the embedding/);
  refused('qwen2-sharded', () => {}, /model\.safetensors\.index\.json: names the shard model-00002-of-00002\.safetensors, which the folder lacks/,
    (dir) => fs.rmSync(path.join(dir, 'model-00002-of-00002.safetensors')));
  refused('qwen2-sharded', () => {}, /weight_map\.model\.norm\.weight: expected a file name beside the index but found "\.\.\/x\.safetensors"/, (dir) => {
    const index = JSON.parse(fs.readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8'));
    index.weight_map['model.norm.weight'] = '../x.safetensors';
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify(index));
  });
  refused('llama-llama3-tied', () => {}, /expected model\.safetensors, or model\.safetensors\.index\.json and its shards \(found pytorch_model\.bin/, (dir) => {
    fs.renameSync(path.join(dir, 'model.safetensors'), path.join(dir, 'pytorch_model.bin'));
  });
});

test('savePretrained never takes one layout for the other: a folder with the other layout is refused, nothing removed', () => {
  const out = temporaryFolder();
  try {
    const { model } = loadPretrained(path.join(FIXTURES, 'qwen2-sharded'));
    fs.writeFileSync(path.join(out, 'model.safetensors'), 'a user\'s file');
    assert.throws(() => savePretrained(out, model, null), /model\.safetensors: is there, and the model is written sharded/);
    assert.is(fs.readFileSync(path.join(out, 'model.safetensors'), 'utf8'), 'a user\'s file');
    model.dispose();
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});

test('generation stops where generation_config.json says: its eos_token_id list (an end of turn besides the end of text)', () => {
  const { model } = loadPretrained(path.join(FIXTURES, 'llama-llama3-tied'));
  assert.equal(JSON.parse(fs.readFileSync(path.join(FIXTURES, 'llama-llama3-tied', 'generation_config.json'), 'utf8')).eos_token_id, [2, 3]);
  assert.equal(generationStopIds(model), [2, 3]);
  const made = model.like();
  assert.equal(generationStopIds(made), [], 'a model made here has no generation config');
  model.dispose();
  made.dispose();
});

test.run();
