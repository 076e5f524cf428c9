/**
 * Generation (lib/nn/generate.ts): the key-value cache gives the tokens and logits of decoding
 * the whole prefix again; greedy at temperature 0; seeded draws repeat; top-k 1 is greedy; stop
 * tokens and the context end generation; bad options are named.
 */
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { GPT } from '../lib/index';
import { loadPretrained } from '../lib/nn/pretrained';

const { model, tokenizer } = loadPretrained(path.join(__dirname, 'fixtures', 'hf-gpt2'));
const prompt = tokenizer!.encode('a b');

test('cached and uncached decoding give the same tokens (greedy and sampled)', () => {
  const greedy = model.generate(prompt, { maxNewTokens: 10, temperature: 0 });
  assert.equal(model.generate(prompt, { maxNewTokens: 10, temperature: 0, cache: false }), greedy);
  assert.is(greedy.length, 10);
  const sampled = model.generate(prompt, { maxNewTokens: 10, temperature: 1.2, topK: 50, topP: 0.9, seed: 3 });
  assert.equal(model.generate(prompt, { maxNewTokens: 10, temperature: 1.2, topK: 50, topP: 0.9, seed: 3, cache: false }), sampled);
  assert.equal(model.generate(prompt, { maxNewTokens: 10, temperature: 1.2, topK: 50, topP: 0.9, seed: 3 }), sampled, 'the same seed, the same tokens');
  assert.not.equal(model.generate(prompt, { maxNewTokens: 10, temperature: 1.2, seed: 4 }), sampled, 'another seed, other tokens');
  assert.equal(model.generate(prompt, { maxNewTokens: 10, temperature: 5, topK: 1, seed: 9 }), greedy, 'top-k 1 is greedy');
});

test('greedy decoding follows the full forward\'s argmax at every step', () => {
  const tokens = [...prompt];
  const out = model.generate(prompt, { maxNewTokens: 6, temperature: 0 });
  for (const next of out) {
    const logits = model.forward(Int32Array.from(tokens), [1, tokens.length]).toArray() as Float32Array;
    const last = logits.subarray((tokens.length - 1) * 270);
    let best = 0;
    for (let v = 1; v < 270; v++) if (last[v] > last[best]) best = v;
    assert.is(next, best);
    tokens.push(next);
  }
});

test('stop tokens and the context end generation; bad options are named', () => {
  const greedy = model.generate(prompt, { maxNewTokens: 10, temperature: 0 });
  assert.equal(model.generate(prompt, { maxNewTokens: 10, temperature: 0, stop: [greedy[2]] }), greedy.slice(0, greedy.indexOf(greedy[2]) + 1));
  assert.is(model.generate(prompt, { maxNewTokens: 100, temperature: 0 }).length, 17 - prompt.length, 'the context (16) ends it: its last position still predicts one token');
  assert.equal(model.generate(prompt, { maxNewTokens: 100, temperature: 0, cache: false }), model.generate(prompt, { maxNewTokens: 100, temperature: 0 }), 'cached to the full context');
  assert.throws(() => model.generate([], {}), /a prompt of 1 to 16 tokens but received 0/);
  assert.throws(() => model.generate([270], {}), /prompt token ids in \[0, 270\) but received 270/);
  assert.throws(() => model.generate(prompt, { temperature: -1 }), /for temperature but received -1/);
  assert.throws(() => model.generate(prompt, { topP: 0 }), /for topP but received 0/);
  assert.throws(() => model.generate(prompt, { beam: 2 } as never), /'beam', which it does not take/);
  const small = new GPT({ layers: 1, width: 8, heads: 2, context: 4, vocab: 5 });
  assert.is(small.generate([1], { maxNewTokens: 3, temperature: 0 }).length, 3);
  small.dispose();
});

test.after(() => model.dispose());
test.run();
