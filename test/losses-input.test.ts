/**
 * Bad input (docs/losses.md): every case throws a TypeError/RangeError naming the argument, what was
 * expected and what came, before any native call; non-finite logits; detached buffers; the
 * async form; memory held flat over 10,000 calls.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { NonFiniteLogitError, preferenceLoss, preferenceLossAsync, sequenceLogps, type PreferenceLossArgs } from '../lib/index';
import { exampleBatch } from '../lib/example';
import { assertSameValues, decoded, makeBatch } from './batch';
import { SANITIZED } from './memory';

const good = (): PreferenceLossArgs => {
  const batch = makeBatch({ pairs: 2, tokens: 3, vocab: 7 });
  return { loss: 'minordpo', logits: batch.logits, shape: batch.shape, labels: batch.labels, refLogps: new Float32Array([-9, -8, -9.5, -7]) };
};

function throwsWith(args: unknown, kind: ErrorConstructor | RangeErrorConstructor | TypeErrorConstructor, message: string | RegExp): void {
  try {
    preferenceLoss(args as PreferenceLossArgs);
  } catch (error) {
    assert.instance(error, kind, `expected a ${kind.name}, got ${(error as Error).name}: ${(error as Error).message}`);
    if (typeof message === 'string') assert.ok((error as Error).message.includes(message), `message was: ${(error as Error).message}\nexpected it to include: ${message}`);
    else assert.match((error as Error).message, message);
    return;
  }
  assert.unreachable(`no error for ${message}`);
}

test('the good arguments work (the baseline of the cases below)', () => {
  assert.ok(Number.isFinite(preferenceLoss(good()).loss));
});

test('shape: not three positive integers, odd rows, empty batch', () => {
  throwsWith({ ...good(), shape: [4, 3] }, TypeError, 'Expected three positive integers [2P, T, V] for shape but received an array of length 2');
  throwsWith({ ...good(), shape: [4, 3, 0] }, TypeError, 'for shape');
  throwsWith({ ...good(), shape: [4, 3.5, 7] }, TypeError, 'for shape');
  throwsWith({ ...good(), shape: [0, 3, 7] }, TypeError, 'for shape');
  throwsWith({ ...good(), shape: 'big' }, TypeError, "for shape but received 'big' of type string");
  throwsWith({ ...good(), shape: [3, 3, 7] }, RangeError, 'Expected an even number of rows (2P: P chosen then P rejected) for shape but received 3 rows');
});

test('logits: wrong kind, wrong length, wrong dtype', () => {
  throwsWith({ ...good(), logits: new Float64Array(4 * 3 * 7) }, TypeError, 'Expected a Float32Array (shape [4, 3, 7], dtype f32) for logits but received Float64Array of length 84');
  throwsWith({ ...good(), logits: new Float32Array(83) }, RangeError, 'Expected a Float32Array of length 84 (shape [4, 3, 7], dtype f32) for logits but received Float32Array of length 83');
  throwsWith({ ...good(), dtype: 'bf16' }, TypeError, 'Expected a Uint16Array (shape [4, 3, 7], dtype bf16), as 16-bit patterns for logits but received Float32Array');
  throwsWith({ ...good(), dtype: 'fp8' }, TypeError, "Expected one of 'f32', 'bf16', 'f16' for dtype but received 'fp8' of type string");
  throwsWith({ ...good(), logits: [1, 2, 3] }, TypeError, 'but received an array of length 3');
});

test('labels: wrong kind or length, out of range with row and position', () => {
  throwsWith({ ...good(), labels: new Float32Array(12) }, TypeError, 'Expected a Int32Array (shape [4, 3]) for labels but received Float32Array');
  throwsWith({ ...good(), labels: new Int32Array(11) }, RangeError, 'for labels but received Int32Array of length 11');
  const labels = good().labels.slice();
  labels[2 * 3 + 1] = 7;
  throwsWith({ ...good(), labels }, RangeError, 'Expected labels in [0, 7) or ignoreIndex -100 but received 7 at row 2, position 1');
  labels[2 * 3 + 1] = -1;
  throwsWith({ ...good(), labels }, RangeError, 'received -1 at row 2, position 1');
  const r = preferenceLoss({ ...good(), labels, ignoreIndex: -1 });
  assert.is(r.tokenCounts[2], 2, 'ignoreIndex -1 masks the -1 (these rows have no prompt, so no -100)');
  throwsWith({ ...good(), ignoreIndex: 0.5 }, RangeError, 'Expected an integer between -2147483648 and 2147483647 for ignoreIndex but received 0.5');
});

test('loss and parameters: unknown names, out-of-range values, missing refLogps', () => {
  throwsWith({ ...good(), loss: 'kto' }, TypeError, "Expected one of 'dpo', 'minordpo',");
  throwsWith({ ...good(), loss: 'kto' }, TypeError, "but received 'kto' of type string");
  throwsWith({ ...good(), beta: 0 }, RangeError, 'Expected a finite number > 0 for beta but received 0 of type number');
  throwsWith({ ...good(), beta: -1 }, RangeError, 'for beta but received -1 of type number');
  throwsWith({ ...good(), beta: NaN }, RangeError, 'for beta but received NaN');
  throwsWith({ ...good(), beta: '0.1' }, TypeError, "Expected a number for beta but received '0.1' of type string");
  throwsWith({ ...good(), labelSmoothing: 0.6 }, RangeError, 'Expected a finite number >= 0 and <= 0.5 for labelSmoothing but received 0.6');
  throwsWith({ ...good(), loss: 'robust', labelSmoothing: 0.5 }, RangeError, '>= 0 and < 0.5 for labelSmoothing');
  throwsWith({ ...good(), loss: 'exo_pair', labelSmoothing: 0 }, RangeError, '> 0 and < 1 for labelSmoothing');
  throwsWith({ ...good(), nllWeight: -1 }, RangeError, 'for nllWeight');
  throwsWith({ ...good(), loss: 'discopop', discopopTau: 0 }, RangeError, 'for discopopTau');
  throwsWith({ ...good(), averageLogProb: 1 }, TypeError, 'Expected a boolean for averageLogProb but received 1 of type number');
  throwsWith({ ...good(), refLogps: undefined }, TypeError, "for refLogps, which loss 'minordpo' needs, but received undefined");
  throwsWith({ ...good(), refLogps: new Float32Array(3) }, RangeError, 'Expected a Float32Array of length 4 for refLogps but received Float32Array of length 3');
  throwsWith({ ...good(), refLogps: new Float32Array([0, NaN, 0, 0]) }, RangeError, 'Expected finite refLogps but received NaN at row 1');
  throwsWith({ ...good(), grad: false, inPlace: true }, TypeError, 'Expected grad: true with inPlace: true');
  throwsWith(null, TypeError, 'Expected an object of arguments for args but received null');
  assert.ok(Number.isFinite(preferenceLoss({ ...good(), loss: 'simpo', refLogps: undefined }).loss), 'simpo needs no reference');
});

test('a non-finite logit: an error naming row, token and vocabulary index; allowNonFinite reports it', () => {
  const args = good();
  const logits = (args.logits as Float32Array).slice();
  logits[(3 * 3 + 2) * 7 + 4] = NaN; // row 3, token 2, vocab 4 (a counted token: the prompt is token 0)
  logits[(3 * 3 + 2) * 7 + 5] = Infinity;
  try {
    preferenceLoss({ ...args, logits });
    assert.unreachable('no error for a NaN logit');
  } catch (error) {
    assert.instance(error, NonFiniteLogitError);
    const e = error as NonFiniteLogitError;
    assert.is(e.row, 3);
    assert.is(e.token, 2);
    assert.is(e.vocab, 4);
    assert.match(e.message, 'Expected finite logits but received NaN at row 3, token 2, vocabulary index 4');
  }
  const allowed = preferenceLoss({ ...args, logits, allowNonFinite: true });
  assert.equal(allowed.nonFiniteRows, [3]);
  assert.ok(Number.isNaN(allowed.logps[3]), 'the affected row yields NaN');
  assert.ok(Number.isFinite(allowed.logps[0]), 'the other rows stay finite');
  assert.ok(Number.isNaN(allowed.loss), 'the loss of the affected pair is NaN, and so the batch mean');

  const bf = makeBatch({ pairs: 1, tokens: 2, vocab: 5, dtype: 'bf16', promptFraction: 0 });
  const bits = bf.logits.slice() as Uint16Array;
  bits[1 * 2 * 5 + 3] = 0xff80; // -inf, row 1 token 0 vocab 3
  assert.throws(() => sequenceLogps({ logits: bits, dtype: 'bf16', shape: bf.shape, labels: bf.labels }),
    (e: Error) => e.message.includes('received -Infinity at row 1, token 0, vocabulary index 3'));
  assert.ok(decoded(bits, 'bf16').some((x) => x === -Infinity));
});

test('a detached buffer is refused with a clear error, sync and async', async () => {
  const args = good();
  const logits = (args.logits as Float32Array).slice();
  structuredClone(logits.buffer, { transfer: [logits.buffer] });
  throwsWith({ ...args, logits }, TypeError, 'Expected a live Float32Array for logits but its ArrayBuffer is detached');
  try {
    await preferenceLossAsync({ ...args, logits });
    assert.unreachable('no error for a detached buffer');
  } catch (error) {
    assert.match((error as Error).message, 'detached');
  }
});

test('preferenceLossAsync leaves the event loop free and gives the synchronous result', async () => {
  const batch = exampleBatch(4, 128, 32000, 3);
  const args = { loss: 'minordpo' as const, logits: batch.logits, shape: batch.shape, labels: batch.labels, refLogps: batch.refLogps };
  const t0 = performance.now();
  const sync = preferenceLoss(args);
  const syncMs = performance.now() - t0;
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  const t1 = performance.now();
  const pending = preferenceLossAsync(args);
  const result = await pending;
  const asyncMs = performance.now() - t1;
  clearInterval(timer);
  assert.ok(ticks >= 3, `only ${ticks} timer ticks during a ${asyncMs.toFixed(0)} ms async call (sync took ${syncMs.toFixed(0)} ms)`);
  assert.is(result.loss, sync.loss);
  assertSameValues('async vs sync dlogits', result.dlogits!, sync.dlogits!);
  // Several calls in flight at once stay independent.
  const many = await Promise.all([1, 2, 3].map((k) => preferenceLossAsync({ ...args, beta: 0.1 * k, grad: false })));
  many.forEach((r, i) => assert.is(r.loss, preferenceLoss({ ...args, beta: 0.1 * (i + 1), grad: false }).loss));
});

test('10,000 calls hold memory flat', () => {
  const args = good();
  const run = (n: number) => {
    for (let i = 0; i < n; i++) preferenceLoss(args);
  };
  run(2000);
  const before = process.memoryUsage().rss;
  run(10000);
  const grown = (process.memoryUsage().rss - before) / 2 ** 20;
  // Under AddressSanitizer freed memory sits in its quarantine (256 MiB by default) before reuse:
  // resident memory then measures the quarantine filling, not a leak (the sanitizer run checks
  // every access instead).
  if (SANITIZED) return;
  assert.ok(grown < 16, `resident memory grew by ${grown.toFixed(1)} MiB over 10,000 calls`);
});

test('large dlogits (allocated by the addon on huge pages) are zeroed where masked and freed by the GC', () => {
  const batch = exampleBatch(2, 64, 32000, 5); // 4 x 64 x 32000 f32: 33 MB per dlogits
  const args = { loss: 'dpo' as const, logits: batch.logits, shape: batch.shape, labels: batch.labels, refLogps: batch.refLogps };
  const first = preferenceLoss(args);
  const masked = batch.labels.findIndex((y) => y === -100);
  assert.ok(first.dlogits!.subarray(masked * 32000, (masked + 1) * 32000).every((g) => g === 0), 'a masked token got a gradient');
  const before = process.memoryUsage().rss;
  for (let i = 0; i < 40; i++) preferenceLoss(args); // 1.3 GB allocated in all
  const grown = (process.memoryUsage().rss - before) / 2 ** 20;
  assert.ok(grown < 600, `resident memory grew by ${grown.toFixed(0)} MiB over 40 calls of 33 MB each: buffers not freed`);
});

test.run();
