/**
 * Tensor (lib/tensor.ts): data in and out, views, dispose, scopes, memory freed without the
 * garbage collector, and clear errors on misuse.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { native } from '../lib/native';
import { Tensor, hostEmptyCache, hostMemory, hostStorage, keep, withScope } from '../lib/tensor';
import { SANITIZED } from './memory';

test('from and toArray round-trip every dtype', () => {
  const f = Tensor.from([1.5, -2, 3.25, 0, 7, 8], [2, 3]);
  assert.equal(Array.from(f.toArray()), [1.5, -2, 3.25, 0, 7, 8]);
  assert.equal(f.shape, [2, 3]);
  assert.is(f.size, 6);
  const i = Tensor.from(new Int32Array([5, -1, 2]), [3], 'i32');
  assert.instance(i.toArray(), Int32Array);
  assert.equal(Array.from(i.toArray()), [5, -1, 2]);
  const b = Tensor.from(new Uint16Array([0x3f80, 0xc000]), [2], 'bf16');
  assert.equal(Array.from(b.toArray()), [0x3f80, 0xc000]);
  assert.is(Tensor.from([42], [1]).item(), 42);
  assert.equal(Array.from(Tensor.zeros([2, 2]).toArray()), [0, 0, 0, 0]);
  [f, i, b].forEach((t) => t.dispose());
});

test('reshape is a view sharing storage; storage lives until its last tensor is disposed', () => {
  const t = Tensor.from([1, 2, 3, 4, 5, 6], [2, 3]);
  const v = t.reshape([3, 2]);
  assert.equal(v.shape, [3, 2]);
  t.dispose();
  assert.ok(t.disposed);
  assert.equal(Array.from(v.toArray()), [1, 2, 3, 4, 5, 6], 'the view keeps the storage alive');
  v.dispose();
});

test('misuse gives errors naming the operation, the shape and what was expected', () => {
  const t = Tensor.from([1, 2, 3, 4], [2, 2]);
  assert.throws(() => t.reshape([3]), /reshape: expected a shape of 4 elements \(from \[2,2\]\) but received \[3\]/);
  assert.throws(() => t.item(), /item: expected a tensor of one element but its shape is \[2,2\]/);
  t.dispose();
  t.dispose(); // idempotent
  assert.throws(() => t.toArray(), /toArray: the tensor of shape \[2,2\] \(f32\) was disposed/);
  assert.throws(() => Tensor.from([1, 2, 3], [2, 2]), /Expected 4 elements for shape \[2,2\] but received an array of length 3/);
  assert.throws(() => Tensor.from(new Float32Array(2), [2], 'i32'), /Expected a Int32Array \(dtype i32\) or an array of numbers for data but received Float32Array/);
  assert.throws(() => Tensor.zeros([2, -1]), /Expected an array of non-negative integers for shape/);
  assert.throws(() => Tensor.zeros([2], 'f64' as never), /Expected one of 'f32', 'bf16', 'f16', 'i32' for dtype but received 'f64'/);
});

test('withScope disposes what it created, except its result and what was kept', () => {
  let inner: Tensor | undefined;
  let kept: Tensor | undefined;
  const outer = Tensor.zeros([1]);
  const result = withScope(() => {
    inner = Tensor.zeros([4]);
    kept = keep(Tensor.zeros([2]));
    const nested = withScope(() => ({ a: Tensor.zeros([3]), list: [Tensor.zeros([1])] }));
    assert.not.ok(nested.a.disposed, 'a nested scope hands its result to the outer one');
    return nested.a;
  });
  assert.ok(inner!.disposed);
  assert.not.ok(kept!.disposed);
  assert.not.ok(result.disposed);
  assert.not.ok(outer.disposed, 'tensors made before the scope are not its own');
  assert.throws(() => withScope(() => {
    inner = Tensor.zeros([8]);
    throw new Error('boom');
  }), /boom/);
  assert.ok(inner!.disposed, 'a scope that throws still disposes its tensors');
  [kept!, result, outer].forEach((t) => t.dispose());
});

test('memory reused after dispose is zeroed again, for every size class', () => {
  for (const elements of [3, 2 ** 14, 2 ** 16 + 5, 2 ** 20]) {
    const dirty = Tensor.zeros([elements]);
    hostStorage(dirty, 'test').storage.fill(0xff);
    dirty.dispose();
    const fresh = Tensor.zeros([elements]);
    const values = fresh.toArray();
    assert.ok(values.every((v) => v === 0), `${elements} elements: a reused allocation was not zeroed`);
    fresh.dispose();
  }
});

test('dispose returns storage to the pool, reported to V8; hostEmptyCache gives it back; 1,000 scoped steps of 16 MB hold memory flat', () => {
  if (SANITIZED) return;  // no pool under the sanitizers
  hostEmptyCache();
  const externalBefore = native().externalMemory();
  const heldBefore = hostMemory().tensorBytes;  // tensors of the tests above, still alive
  const big = Tensor.zeros([4 * 2 ** 20]);
  assert.is(native().externalMemory() - externalBefore, 16 * 2 ** 20, 'native bytes are reported to V8');
  assert.is(hostMemory().tensorBytes - heldBefore, 16 * 2 ** 20);
  big.dispose();
  assert.is(hostMemory().tensorBytes, heldBefore);
  assert.is(hostMemory().cachedBytes, 16 * 2 ** 20, 'the storage waits in the pool for the next tensor of its size class');
  const again = Tensor.zeros([4 * 2 ** 20 - 100]);  // the same size class: the same storage
  assert.equal([hostMemory().tensorBytes - heldBefore, hostMemory().cachedBytes], [16 * 2 ** 20, 0], 'served from the pool');
  again.dispose();
  hostEmptyCache();
  assert.is(hostMemory().cachedBytes, 0);
  const left = native().externalMemory() - externalBefore;
  assert.ok(left < 4096, `the report drops once the cache is emptied (${left} bytes left)`);
  const rssBefore = process.memoryUsage().rss;
  for (let step = 0; step < 1000; step++) {
    withScope(() => {
      // Touch every page, so that memory not given back would show in the resident set.
      hostStorage(Tensor.zeros([4 * 2 ** 20]), 'test').storage.fill(1);
      hostStorage(Tensor.zeros([2 ** 16]).reshape([2 ** 8, 2 ** 8]), 'test').storage.fill(1);
    });
  }
  const grown = (process.memoryUsage().rss - rssBefore) / 2 ** 20;
  assert.ok(grown < 64, `resident memory grew by ${grown.toFixed(0)} MiB over 1,000 steps (16 GB allocated in all)`);
});

test.run();
