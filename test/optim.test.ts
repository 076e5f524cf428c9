/**
 * lib/optim.ts against float64 references: AdamW's fused native update over a module's
 * parameters (bias corrections, decoupled decay on matrices only), clipGradNorm's global norm
 * and scaling, and the warmup-cosine schedule's shape.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { AdamW, F, Linear, Tensor, clipGradNorm, cosineSchedule, withScope } from '../lib/index';
import { normalRandom } from '../lib/nn/layers';
import { assertClose } from './batch';

/** One float64 AdamW step of torch.optim.AdamW: decay first, then the Adam update. */
function adamw64(p: Float64Array, g: ArrayLike<number>, m: Float64Array, v: Float64Array, t: number, lr: number, wd: number): void {
  const [b1, b2, eps] = [0.9, 0.999, 1e-8];
  for (let i = 0; i < p.length; i++) {
    m[i] = b1 * m[i] + (1 - b1) * g[i];
    v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
    const mhat = m[i] / (1 - b1 ** t);
    const vhat = v[i] / (1 - b2 ** t);
    p[i] -= lr * (mhat / (Math.sqrt(vhat) + eps) + wd * p[i]);
  }
}

test('AdamW: three steps of a Linear equal the float64 update; the bias does not decay', () => {
  const layer = new Linear(5, 3, { random: normalRandom(3), std: 0.5 });
  const random = normalRandom(4);
  const x = Float32Array.from({ length: 4 * 5 }, () => random());
  const lr = 0.05;
  const wd = 0.1;
  const optimizer = new AdamW(layer, { lr, weightDecay: wd });
  const refs = layer.parameters().map(([name, t]) => ({ name, p: Float64Array.from(t.toArray()), m: new Float64Array(t.size), v: new Float64Array(t.size), decay: t.shape.length >= 2 }));
  for (let step = 1; step <= 3; step++) {
    layer.zeroGrad();
    withScope(() => {
      const y = layer.forward(Tensor.from(x, [4, 5]));
      F.sum(F.mul(y, y)).backward();
    });
    layer.parameters().forEach(([, t], k) => adamw64(refs[k].p, t.grad!.toArray(), refs[k].m, refs[k].v, step, lr, refs[k].decay ? wd : 0));
    optimizer.step();
    assert.is(optimizer.stepCount, step);
    layer.parameters().forEach(([name, t], k) => {
      assertClose(`${name} after step ${step}`, t.toArray(), refs[k].p, (i) => 1e-6 * (1 + Math.abs(refs[k].p[i])));
    });
  }
  optimizer.zeroGrad();
  assert.is(layer.weight.grad, null);
  optimizer.dispose();
  layer.dispose();
});

test('clipGradNorm: the global norm over every gradient, scaled to maxNorm when above it', () => {
  const layer = new Linear(6, 4, { random: normalRandom(9), std: 1 });
  withScope(() => {
    const y = layer.forward(Tensor.from(Float32Array.from({ length: 12 }, (_, i) => Math.sin(i)), [2, 6]));
    F.sum(F.mul(y, y)).backward();
  });
  const grads = layer.parameters().map(([, t]) => Float64Array.from(t.grad!.toArray()));
  const norm64 = Math.sqrt(grads.reduce((s, g) => s + g.reduce((a, x) => a + x * x, 0), 0));
  assert.ok(norm64 > 1, `the test needs a norm above 1, got ${norm64}`);
  const norm = clipGradNorm(layer, 1.0);
  assert.ok(Math.abs(norm - norm64) <= 1e-6 * norm64, `norm ${norm} vs ${norm64}`);
  const factor = 1 / (norm64 + 1e-6);
  layer.parameters().forEach(([name, t], k) => {
    assertClose(`clipped ${name}`, t.grad!.toArray(), grads[k].map((g) => g * factor), (i) => 1e-6 * (1 + Math.abs(grads[k][i] * factor)));
  });
  const after = clipGradNorm(layer, 10);
  assert.ok(Math.abs(after - 1) < 1e-5, `norm after clipping ${after}`);
  layer.dispose();
});

test('cosineSchedule: linear warmup, cosine to minLr at totalSteps, minLr after', () => {
  const options = { maxLr: 1e-3, minLr: 1e-4, warmupSteps: 10, totalSteps: 110 };
  assert.is(cosineSchedule(0, options), 1e-4);
  assert.is(cosineSchedule(9, options), 1e-3);
  assert.is(cosineSchedule(10, options), 1e-3);
  assert.ok(Math.abs(cosineSchedule(60, options) - 5.5e-4) < 1e-12);
  assert.ok(Math.abs(cosineSchedule(110, options) - 1e-4) < 1e-15);
  assert.is(cosineSchedule(500, options), 1e-4);
  let previous = Infinity;
  for (let s = 10; s <= 110; s++) {
    const lr = cosineSchedule(s, options);
    assert.ok(lr <= previous, `not decreasing at step ${s}`);
    previous = lr;
  }
  assert.throws(() => cosineSchedule(-1, options), /Expected a non-negative integer for step but received -1/);
  assert.throws(() => cosineSchedule(0, { ...options, minLr: 1 }), /for minLr but received 1/);
});

test.run();
