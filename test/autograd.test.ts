/**
 * The autograd tape (lib/autograd.ts) with the fused loss as one node: the gradient it writes
 * into a Tensor of logits equals the typed-array API's dlogits, noGrad records nothing, the
 * graph is cut after backward, and misuse gives clear errors.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { Tensor, noGrad, preferenceLoss, preferenceLossAsync, withScope } from '../lib/index';
import { assertSameValues, makeBatch } from './batch';

const spec = { pairs: 2, tokens: 5, vocab: 37, seed: 17 } as const;

for (const dtype of ['f32', 'bf16'] as const) {
  test(`preferenceLoss on a ${dtype} Tensor: loss.backward() fills logits.grad with the kernel's dlogits`, () => {
    const batch = makeBatch({ ...spec, dtype });
    const refLogps = new Float32Array([-14, -15, -13.5, -16]);
    const args = { loss: 'minordpo' as const, beta: 0.3, labels: batch.labels, refLogps };
    const direct = preferenceLoss({ ...args, dtype, logits: batch.logits, shape: batch.shape });
    withScope(() => {
      const logits = Tensor.from(batch.logits, batch.shape, dtype);
      logits.requiresGrad = true;
      const r = preferenceLoss({ ...args, logits, labels: Tensor.from(batch.labels, [4, 5], 'i32'), refLogps: Tensor.from(refLogps, [4]) });
      assert.equal(r.loss.shape, []);
      assert.is(r.loss.item(), Math.fround(direct.loss));
      assert.equal(Array.from(r.logps), Array.from(direct.logps));
      assert.equal(r.metrics, direct.metrics);
      r.loss.backward();
      assert.ok(logits.grad, 'no gradient');
      assertSameValues('logits.grad vs dlogits', logits.grad!.toArray(), direct.dlogits!);
      assert.is(Tensor.nodeOf(r.loss), null, 'the graph is cut after backward');
      logits.dispose();
    });
  });
}

test('noGrad records nothing; backward on it says why', () => {
  const batch = makeBatch(spec);
  const logits = Tensor.from(batch.logits, batch.shape);
  logits.requiresGrad = true;
  const r = noGrad(() => preferenceLoss({ loss: 'dpo', logits, labels: batch.labels, refLogps: new Float32Array(4) }));
  assert.is(Tensor.nodeOf(r.loss), null);
  assert.throws(() => r.loss.backward(), /does not depend on any tensor that requires a gradient/);
  logits.dispose();
  r.loss.dispose();
});

test('misuse: wrong tensor shapes or dtypes, disposed logits before backward', () => {
  const batch = makeBatch(spec);
  const logits = Tensor.from(batch.logits, batch.shape);
  logits.requiresGrad = true;
  assert.throws(() => preferenceLoss({ logits: logits.reshape([4, 185]) as Tensor, labels: batch.labels, refLogps: new Float32Array(4) }),
    /Expected an f32, bf16 or f16 tensor of shape \[2P, T, V\] for logits but received Tensor\(shape \[4,185\], f32, cpu\)/);
  assert.throws(() => preferenceLoss({ logits, labels: Tensor.from(batch.labels, [20], 'i32'), refLogps: new Float32Array(4) }),
    /Expected a i32 tensor of shape \[4,5\] for labels/);
  const r = preferenceLoss({ logits, labels: batch.labels, refLogps: new Float32Array([-1, -2, -3, -4]) });
  logits.dispose();
  assert.throws(() => r.loss.backward(), /backward: the tensor of shape \[4,5,37\] \(f32\) that requires a gradient was disposed before backward\(\)/);
  r.loss.dispose();
});

test('a disposed Tensor is refused before any native call', () => {
  const gone = Tensor.from([1], [1, 1, 1]);
  gone.dispose();
  assert.throws(() => preferenceLoss({ logits: gone, labels: new Int32Array(1), refLogps: new Float32Array(1) }), /preferenceLoss: the tensor of shape \[1,1,1\] \(f32\) was disposed/);
});

test.run();
