/**
 * GPT against PyTorch: the tiny model of test/fixtures/make_gpt_golden.py (2 layers, width 32,
 * 4 heads, context 8, vocabulary 11, head tied to wte), its weights loaded from the fixture's
 * safetensors file, gives the logits, the mean cross-entropy and every parameter's gradient that
 * torch 1.13 computed in float64. Tolerances: |ours - torch| <= atol + rtol |torch| with rtol
 * 1e-4 and atol 1e-4 x (the largest |value| of that tensor). Measured with the native matmul:
 * at most 1.1e-6 of a tensor's largest value (blocks.0.ln1.weight's gradient), logits 4e-7,
 * the loss 4e-8 relative; anything structural (a transposed weight, a wrong head split, a
 * missing residual) is off by O(1).
 */
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { F, GPT, loadSafetensors, readSafetensors, withScope } from '../lib/index';
import { assertClose } from './batch';

const fixtures = path.join(__dirname, 'fixtures');

function maxAbs(values: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < values.length; i++) m = Math.max(m, Math.abs(values[i]));
  return m;
}

function closeTo(what: string, actual: ArrayLike<number>, expected: ArrayLike<number>): void {
  const scale = maxAbs(expected);
  assertClose(what, actual, expected, (i) => 1e-4 * Math.abs(expected[i]) + 1e-4 * scale);
}

test('GPT forward and backward match PyTorch (logits, loss, every gradient)', () => {
  const weights = path.join(fixtures, 'gpt_weights.safetensors');
  const golden = readSafetensors(path.join(fixtures, 'gpt_golden.safetensors'));
  const config = JSON.parse(readSafetensors(weights).metadata.config);
  const model = new GPT(config, { seed: 123 });
  loadSafetensors(model, weights);
  const meta = golden.metadata;
  const tokens = Int32Array.from(JSON.parse(meta.tokens) as number[]);
  const targets = Int32Array.from(JSON.parse(meta.targets) as number[]);
  const shape = JSON.parse(meta.shape) as [number, number];

  withScope(() => {
    const logits = model.forward(tokens, shape);
    assert.equal([...logits.shape], [...shape, config.vocab]);
    closeTo('logits', logits.toArray(), golden.tensors.get('logits')!.data);
    const loss = F.crossEntropy(logits, targets);
    const torchLoss = Number(meta.loss);
    assert.ok(Math.abs(loss.item() - torchLoss) <= 1e-5 * torchLoss, `loss ${loss.item()} vs torch ${torchLoss}`);
    loss.backward();
  });
  const params = model.parameters();
  assert.is(params.length, [...golden.tensors.keys()].filter((k) => k.startsWith('grad.')).length);
  for (const [name, tensor] of params) {
    const expected = golden.tensors.get(`grad.${name}`);
    assert.ok(expected, `no golden gradient for ${name}`);
    assert.ok(tensor.grad, `no gradient for ${name}`);
    closeTo(`gradient of ${name}`, tensor.grad!.toArray(), expected!.data);
  }
  model.dispose();
});

test.run();
