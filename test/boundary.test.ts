/**
 * The native boundary against a hostile caller (issue: memory safety and lifetimes): arguments
 * that change between reads, typed arrays that lie about themselves, shared and detached
 * buffers, tensors whose fields are assigned, arguments a form does not take, and the small
 * cases (plain arrays to toBf16, a parameter listed twice, a NaN seed, sizes checked before any
 * copy). Each case gives a clear Error or the right result; the crashes these cases caused are
 * observed in child processes by test/fuzz (a crash here would end the runner).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import {
  AdamW, F, GPT, Tensor, fromBf16, preferenceLoss, preferenceLossAsync, sequenceLogps, toBf16, toF16, withScope,
  type PreferenceLossArgs,
} from '../lib/index';
import * as ops from '../lib/ops';
import { assertSameValues, makeBatch } from './batch';
import { throwsLike } from './throws';

const batch = makeBatch({ pairs: 2, tokens: 3, vocab: 7, seed: 4 });
const good = (): PreferenceLossArgs => ({
  loss: 'minordpo', logits: batch.logits as Float32Array, shape: batch.shape, labels: batch.labels, refLogps: new Float32Array([-9, -8, -9.5, -7]),
});
const expectedLoss = preferenceLoss(good()).loss;


test('every argument is read once: getters that change their answer cannot bypass the checks', () => {
  // labels answers with a valid array on the first read only: the snapshot is what is used.
  let reads = 0;
  const evil = new Int32Array(batch.labels.length).fill(1e9);
  const args = { ...good(), get labels() { return reads++ === 0 ? batch.labels : evil; } };
  assert.is(preferenceLoss(args as PreferenceLossArgs).loss, expectedLoss);
  assert.is(reads, 1, 'labels was read once');
  // A shape whose element turns negative after the first read.
  let shapeReads = 0;
  const shape = [4, 3, 7];
  Object.defineProperty(shape, 2, { get: () => (shapeReads++ === 0 ? 7 : -1e9), enumerable: true });
  assert.is(preferenceLoss({ ...good(), shape: shape as [number, number, number] }).loss, expectedLoss);
  // A Proxy of args: each key read once.
  const gets: string[] = [];
  const proxy = new Proxy(good(), { get: (target, key) => { gets.push(String(key)); return Reflect.get(target, key); } });
  preferenceLoss(proxy);
  assert.equal(gets.filter((k) => k === 'labels'), ['labels']);
});

test('a typed array that lies about its length, kind or buffer is judged by what V8 knows', () => {
  const labels = batch.labels.slice();
  Object.defineProperty(labels, 'length', { get: () => 2 });
  assert.is(preferenceLoss({ ...good(), labels }).loss, expectedLoss, 'the real length is 12: accepted');
  const short = batch.labels.slice(0, 5);
  Object.defineProperty(short, 'length', { get: () => 12 });
  throwsLike(() => preferenceLoss({ ...good(), labels: short }), RangeError, /Expected a Int32Array of length 12 .* for labels but received Int32Array of length 5/);
  const fake = Object.create(Float32Array.prototype) as Float32Array;
  throwsLike(() => preferenceLoss({ ...good(), logits: fake }), TypeError, /Expected a Float32Array .* for logits but received an object of type Object/);
  throwsLike(() => preferenceLoss({ ...good(), logits: new Proxy(batch.logits, {}) as Float32Array }), TypeError, /for logits/);
  // A length-12 view at an odd offset of a larger buffer is a fine argument.
  const wide = new Int32Array(40);
  wide.set(batch.labels, 13);
  assert.is(preferenceLoss({ ...good(), labels: wide.subarray(13, 25) }).loss, expectedLoss);
});

test('typed arrays over a SharedArrayBuffer are supported, sync and async, and by Tensor.from', async () => {
  const logits = new Float32Array(new SharedArrayBuffer(batch.logits.byteLength));
  logits.set(batch.logits as Float32Array);
  const labels = new Int32Array(new SharedArrayBuffer(batch.labels.byteLength));
  labels.set(batch.labels);
  assert.is(preferenceLoss({ ...good(), logits, labels }).loss, expectedLoss);
  assert.is((await preferenceLossAsync({ ...good(), logits, labels })).loss, expectedLoss);
  const t = Tensor.from(logits, batch.shape);
  assertSameValues('a tensor from shared memory', t.toArray(), batch.logits);
  const back = new Float32Array(new SharedArrayBuffer(t.size * 4));
  t.dispose();
  assert.ok(back.every((x) => x === 0));
  assert.equal(Array.from(sequenceLogps({ logits, shape: batch.shape, labels }).logps), Array.from(preferenceLoss(good()).logps));
});

test('preferenceLossAsync copies the labels when it is called: overwriting them meanwhile changes nothing', async () => {
  const labels = batch.labels.slice();
  const pending = preferenceLossAsync({ ...good(), labels });
  labels.fill(1e9); // out of range: had the job read them now, it would have read past the logits
  assert.is((await pending).loss, expectedLoss);
});

test('preferenceLossAsync keeps its logits: a transfer meanwhile copies instead of moving, the result is right', async () => {
  const big = makeBatch({ pairs: 2, tokens: 64, vocab: 4000, seed: 8 });
  const args = { loss: 'dpo' as const, logits: (big.logits as Float32Array).slice(), shape: big.shape, labels: big.labels, refLogps: new Float32Array(4) };
  const expected = preferenceLoss({ ...args, logits: big.logits as Float32Array }).loss;
  const pending = preferenceLossAsync(args);
  const moved = structuredClone(args.logits.buffer, { transfer: [args.logits.buffer] });
  assert.is(args.logits.length, big.logits.length, 'the buffer was not detached: it is marked untransferable');
  assert.is(moved.byteLength, args.logits.byteLength);
  assert.is((await pending).loss, expected);
  const Resizable = ArrayBuffer as unknown as new (bytes: number, options: { maxByteLength: number }) => ArrayBuffer;
  const resizable = new Float32Array(new Resizable(args.logits.byteLength, { maxByteLength: args.logits.byteLength * 2 }));
  resizable.set(args.logits);
  await preferenceLossAsync({ ...args, logits: resizable }).then(
    () => assert.unreachable('a resizable buffer went to an async job'),
    (e: Error) => assert.match(e.message, /Expected logits over a fixed-length ArrayBuffer for preferenceLossAsync/),
  );
  assert.is(preferenceLoss({ ...args, logits: resizable }).loss, expected, 'the synchronous call takes it');
});

test('arguments a form does not take are errors, never silently ignored', () => {
  throwsLike(() => preferenceLoss({ ...good(), lables: batch.labels } as PreferenceLossArgs), TypeError, /received 'lables', which it does not take/);
  const logits = Tensor.from(batch.logits, batch.shape);
  logits.requiresGrad = true;
  const tensorArgs = { logits, labels: batch.labels, refLogps: new Float32Array(4) };
  throwsLike(() => preferenceLoss({ ...tensorArgs, out: new Float32Array(84) } as never), TypeError, /Expected no out with Tensor logits/);
  throwsLike(() => preferenceLoss({ ...tensorArgs, inPlace: true } as never), TypeError, /Expected no inPlace with Tensor logits/);
  throwsLike(() => preferenceLoss({ ...tensorArgs, shape: [4, 3, 8] }), TypeError, /Expected the logits' shape \[4,3,7\] \(or no shape\) for shape/);
  throwsLike(() => preferenceLoss({ ...tensorArgs, dtype: 'bf16' }), TypeError, /Expected the logits' dtype 'f32'/);
  const same = preferenceLoss({ ...tensorArgs, shape: [4, 3, 7], dtype: 'f32' });
  assert.ok(Tensor.nodeOf(same.loss) !== null, 'the matching shape and dtype are accepted');
  const noGraph = preferenceLoss({ ...tensorArgs, grad: false });
  assert.is(Tensor.nodeOf(noGraph.loss), null, 'grad: false records no graph');
  throwsLike(() => noGraph.loss.backward(), Error, /does not depend on any tensor that requires a gradient/);
  [same.loss, noGraph.loss, logits].forEach((t) => t.dispose());
  throwsLike(() => ops.geluForward({ inp: new Float32Array(3), output: new Float32Array(3) } as never), TypeError, /received 'output'/);
});

test("a tensor's shape, dtype, size and storage cannot be changed; .grad and .requiresGrad are checked", () => {
  const t = Tensor.from([1, 2, 3], [3]);
  throwsLike(() => { (t as unknown as { size: number }).size = 5e7; }, TypeError, /size/);
  throwsLike(() => { (t as unknown as { shape: number[] }).shape = [50000000]; }, TypeError, /shape/);
  throwsLike(() => { (t as unknown as { dtype: string }).dtype = 'i32'; }, TypeError, /dtype/);
  throwsLike(() => (t.shape as number[]).push(4), TypeError, /object is not extensible/);
  assert.equal([t.size, [...t.shape], t.dtype], [3, [3], 'f32']);
  t.requiresGrad = true;
  throwsLike(() => { t.requiresGrad = 1 as unknown as boolean; }, TypeError, /Expected a boolean for requiresGrad/);
  throwsLike(() => { t.grad = Tensor.from([1], [1]); }, TypeError, /Expected a cpu f32 tensor of shape \[3\] for grad but received Tensor\(shape \[1\]/);
  throwsLike(() => { t.grad = Tensor.from(new Int32Array(3), [3], 'i32'); }, TypeError, /for grad but received Tensor\(shape \[3\], i32/);
  throwsLike(() => { t.grad = t; }, TypeError, /storage of its own/);
  throwsLike(() => { t.grad = { shape: [3] } as unknown as Tensor; }, TypeError, /Expected a Tensor or null for grad/);
  const dead = Tensor.zeros([3]);
  dead.dispose();
  throwsLike(() => { t.grad = dead; }, Error, /grad: the tensor of shape \[3\] \(f32\) was disposed/);
  const ok = Tensor.zeros([3]);
  t.grad = ok;
  assert.is(t.grad, ok);
  const i = Tensor.from(new Int32Array(2), [2], 'i32');
  throwsLike(() => { i.requiresGrad = true; }, TypeError, /an i32 tensor cannot have a gradient/);
  [t, i].forEach((x) => x.dispose());
  assert.ok(ok.disposed, 'the assigned gradient is disposed with its tensor');
  throwsLike(() => new Tensor([2], 'f32', { fake: true }), TypeError, /Expected one of 'cpu', 'cuda' for device/);
});

test('Tensor.from checks the sizes before it copies anything', () => {
  const huge = { length: 2 ** 32 };
  const t0 = performance.now();
  throwsLike(() => Tensor.from(huge as ArrayLike<number>, [3]), RangeError, /Expected 3 elements for shape \[3\]/);
  throwsLike(() => Tensor.from([1, 2, 3], [2 ** 30, 2 ** 30]), RangeError, /at most 2\^50 elements/);
  assert.ok(performance.now() - t0 < 100, 'refused at once');
  throwsLike(() => Tensor.from(['1', 2] as unknown as number[], [2]), TypeError, /Expected a number for data\[0\] but received '1'/);
  throwsLike(() => Tensor.from([1.5], [1], 'i32'), RangeError, /an int32 integer for data\[0\]/);
  throwsLike(() => Tensor.from([70000], [1], 'bf16'), RangeError, /a 16-bit pattern/);
});

test('toBf16 and toF16 take plain arrays and other typed arrays by value; the 16-bit side is checked', () => {
  const expected = toBf16(Float32Array.from([1.5, 2, 3]));
  assert.equal(Array.from(expected), [0x3fc0, 0x4000, 0x4040]);
  assert.equal(Array.from(toBf16([1.5, 2, 3])), Array.from(expected));
  assert.equal(Array.from(toBf16(new Float64Array([1.5, 2, 3]))), Array.from(expected));
  assert.equal(Array.from(toF16([1.5, -2])), Array.from(toF16(Float32Array.from([1.5, -2]))));
  assert.equal(Array.from(fromBf16([0x3fc0])), [1.5]);
  throwsLike(() => toBf16('1.5' as never), TypeError, /toBf16: expected a Float32Array or an array of numbers/);
  throwsLike(() => toBf16([1, 'x'] as never), TypeError, /expected numbers but received 'x' of type string at position 1/);
  throwsLike(() => fromBf16([70000]), RangeError, /16-bit patterns/);
  throwsLike(() => fromBf16(new Float32Array(2) as never), TypeError, /expected a Uint16Array/);
});

test('AdamW refuses a parameter listed twice; a GPT seed must be an integer', () => {
  const w = Tensor.from([1], [1]);
  w.requiresGrad = true;
  throwsLike(() => new AdamW([w, w]), TypeError, /AdamW: params\[0\] and params\[1\] are the same parameter/);
  throwsLike(() => new AdamW([w, w.reshape([1, 1])]), TypeError, /views of one storage/);
  throwsLike(() => new AdamW([w], { lr: 0.1, momentum: 0.9 } as never), TypeError, /received 'momentum'/);
  w.dispose();
  const config = { layers: 1, width: 8, heads: 2, context: 4, vocab: 16 };
  for (const seed of [NaN, 1.5, -1, 2 ** 32, '1']) {
    throwsLike(() => new GPT(config, { seed: seed as number }), RangeError, /Expected an integer in \[0, 2\^32\) for options.seed/);
  }
  const a = new GPT(config, { seed: 3 });
  const b = new GPT(config, { seed: 3 });
  assert.equal(Array.from(a.wte.weight.toArray()), Array.from(b.wte.weight.toArray()));
  a.dispose();
  b.dispose();
});

test('the ops refuse tensors at an offset, views of each other, and fakes', () => {
  withScope(() => {
    const x = Tensor.from([1, 2, 3, 4], [2, 2]);
    const fake = Object.create(Tensor.prototype) as Tensor;
    throwsLike(() => F.gelu(fake), TypeError, /Expected a Tensor for gelu x/);
    throwsLike(() => ops.scaleForward({ a: new Float32Array(2), s: 2, out: new Float32Array(3) }), RangeError, /Float32Array of length 2 for out/);
    const view = x.reshape([4]);
    throwsLike(() => ops.addForward({ a: new Float32Array(4), aShape: [4], b: new Float32Array(4), bShape: [4], out: new Float32Array(5) }), RangeError, /for out/);
    assert.equal(Array.from(F.add(x, x).toArray()), [2, 4, 6, 8], 'an input used twice is fine');
    assert.equal(Array.from(F.sum(view).toArray()), [10]);
  });
});

test.run();
