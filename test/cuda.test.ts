/**
 * cuda tensors and the fused loss on the GPU, checked against the CPU's scalar reference on the
 * same logits: every loss, every dtype, odd shapes, masks, empty rows, non-finite logits, in
 * place, the autograd and async forms, errors (out of memory), and memory given back.
 *
 * Without a CUDA device (CI) only the refusals run: a cuda tensor must say why it cannot exist.
 * FUSEDPO_REQUIRE_CUDA=1 (bench/gpu/run-device.sh sets it) turns a missing device into a failure,
 * so that a GPU machine never passes by skipping.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { referenceNear } from '../lib/example';
import {
  LOSS_NAMES,
  NonFiniteLogitError,
  Tensor,
  cudaAvailable,
  cudaEmptyCache,
  cudaMemory,
  preferenceLoss,
  preferenceLossAsync,
  sequenceLogps,
  F,
  type LogitsDType,
  type LossName,
  type PreferenceLossResult,
} from '../lib/index';
import { native } from '../lib/native';
import { assertClose, assertSameValues, decoded, makeBatch, UNIT, type TestBatch } from './batch';

const hasCuda = cudaAvailable();

function throwsWith(fn: () => unknown, kind: ErrorConstructor, message: string | RegExp): void {
  try {
    fn();
  } catch (error) {
    assert.instance(error, kind, `expected a ${kind.name}, got ${(error as Error).name}: ${(error as Error).message}`);
    if (typeof message === 'string') assert.ok((error as Error).message.includes(message), `message was: ${(error as Error).message}`);
    else assert.match((error as Error).message, message);
    return;
  }
  assert.unreachable(`no error (expected ${message})`);
}

if (!hasCuda) {
  test('without a usable CUDA device, a cuda tensor is refused with the reason', () => {
    assert.not.ok(process.env.FUSEDPO_REQUIRE_CUDA === '1', 'FUSEDPO_REQUIRE_CUDA=1 but no CUDA device is usable');
    throwsWith(() => Tensor.zeros([2, 3, 4], 'bf16', 'cuda'), Error, /needs a usable CUDA device, but CUDA is not usable here: .+/);
    throwsWith(() => Tensor.from(new Float32Array(4), [4], 'f32', 'cuda'), Error, 'CUDA is not usable here');
    throwsWith(() => Tensor.zeros([2], 'f32', 'gpu' as 'cuda'), TypeError, "Expected one of 'cpu', 'cuda' for device but received 'gpu'");
    const cpu = Tensor.zeros([2], 'f32');
    assert.is(cpu.to('cpu'), cpu);
    throwsWith(() => cpu.to('cuda'), Error, 'CUDA is not usable here');
    cpu.dispose();
  });
}

test('preferenceLossAsync takes cpu tensors too: the functional form, with the synchronous result', async () => {
  const batch = makeBatch({ pairs: 1, tokens: 3, vocab: 4 });
  const refLogps = new Float32Array([-3, -2]);
  const sync = preferenceLoss({ loss: 'minordpo', logits: batch.logits as Float32Array, shape: batch.shape, labels: batch.labels, refLogps });
  const logits = Tensor.from(batch.logits, batch.shape);
  const r = await preferenceLossAsync({ loss: 'minordpo', logits, labels: batch.labels, refLogps });
  assert.is(r.loss, sync.loss);
  assert.is(r.dlogits!.device, 'cpu');
  assertSameValues('cpu tensor async dlogits vs sync', r.dlogits!.toArray(), sync.dlogits!);
  r.dlogits!.dispose();
  logits.dispose();
});

async function rejectsWith(promise: Promise<unknown>, kind: ErrorConstructor, message: string): Promise<void> {
  try {
    await promise;
  } catch (error) {
    assert.instance(error, kind, `expected a ${kind.name}, got ${(error as Error).name}: ${(error as Error).message}`);
    assert.ok((error as Error).message.includes(message), `message was: ${(error as Error).message}`);
    return;
  }
  assert.unreachable(`no error (expected ${message})`);
}

test('f16 logits as a cpu tensor: the autograd form gives the typed-array form\'s loss and gradient', () => {
  const batch = makeBatch({ pairs: 2, tokens: 5, vocab: 37, dtype: 'f16', seed: 9 });
  const refLogps = new Float32Array([-60, -61, -59, -62]);
  const arrays = preferenceLoss({ loss: 'minordpo', logits: batch.logits, dtype: 'f16', shape: batch.shape, labels: batch.labels, refLogps });
  const logits = Tensor.from(batch.logits, batch.shape, 'f16');
  logits.requiresGrad = true;
  const r = preferenceLoss({ loss: 'minordpo', logits, labels: batch.labels, refLogps });
  assert.is(r.loss.item(), Math.fround(arrays.loss));
  r.loss.backward();
  assertSameValues('f16 dlogits', logits.grad!.toArray(), arrays.dlogits!);
  logits.dispose();
});

// ---- With a device ------------------------------------------------------------------------------

/** The CPU's scalar reference on the same stored logits: the spec the GPU must match. */
function reference(batch: TestBatch, loss: LossName, refLogps: Float32Array | undefined, extra: object = {}): PreferenceLossResult {
  return preferenceLoss({
    implementation: 'reference', loss, logits: batch.logits, dtype: batch.dtype, shape: batch.shape,
    labels: batch.labels, refLogps, ...extra,
  });
}

function refLogpsFor(batch: TestBatch): Float32Array {
  const { logps } = sequenceLogps({ logits: batch.logits, dtype: batch.dtype, shape: batch.shape, labels: batch.labels });
  return referenceNear(logps);
}

function onCuda(batch: TestBatch): Tensor {
  return Tensor.from(batch.logits, batch.shape, batch.dtype, 'cuda');
}

/** GPU result vs the CPU reference: loss, logps, metrics, and dlogits to a unit or two of the dtype. */
function assertMatches(what: string, gpu: { loss: number; logps: Float32Array; tokenCounts: Int32Array; metrics: object; dlogits?: Tensor },
  cpu: PreferenceLossResult, dtype: LogitsDType): void {
  const near = (x: number) => 2e-5 * (1 + Math.abs(x));
  assertClose(`${what}: loss`, [gpu.loss], [cpu.loss], () => near(cpu.loss));
  assertClose(`${what}: logps`, gpu.logps, cpu.logps, (i) => near(cpu.logps[i]));
  assertSameValues(`${what}: tokenCounts`, gpu.tokenCounts, cpu.tokenCounts);
  const gm = gpu.metrics as Record<string, number>;
  const cm = cpu.metrics as unknown as Record<string, number>;
  for (const key of Object.keys(cm)) assertClose(`${what}: metrics.${key}`, [gm[key]], [cm[key]], () => near(cm[key]));
  if (cpu.dlogits) {
    assert.ok(gpu.dlogits, `${what}: no dlogits`);
    const actual = decoded(gpu.dlogits!.toArray() as Float32Array | Uint16Array, dtype);
    const expected = decoded(cpu.dlogits, dtype);
    let largest = 0;
    for (const x of expected) largest = Math.max(largest, Math.abs(x));
    assertClose(`${what}: dlogits`, actual, expected, (i) => 2 * UNIT[dtype] * Math.abs(expected[i]) + 1e-6 * largest);
  }
}

if (hasCuda) {
  test('cuda tensors: from, toArray, zeros, to, reshape and dispose, in every dtype', () => {
    for (const dtype of ['f32', 'bf16', 'f16', 'i32'] as const) {
      const data = dtype === 'f32' ? Float32Array.from([1.5, -2, 3e30, 0]) : dtype === 'i32' ? Int32Array.from([1, -2, 3, 2 ** 31 - 1]) : Uint16Array.from([1, 0x7f80, 0xffff, 0x3c00]);
      const t = Tensor.from(data, [2, 2], dtype, 'cuda');
      assert.is(t.device, 'cuda');
      assert.is(`${t}`, `Tensor(shape [2,2], ${dtype}, cuda)`);
      assertSameValues(`${dtype} round trip`, t.toArray(), data);
      const back = t.to('cpu');
      assert.is(back.device, 'cpu');
      assertSameValues(`${dtype} to cpu`, back.toArray(), data);
      assertSameValues(`${dtype} to cuda again`, back.to('cuda').toArray(), data);
      assertSameValues(`${dtype} reshape view`, t.reshape([4]).toArray(), data);
      assertSameValues(`${dtype} zeros`, Tensor.zeros([3], dtype, 'cuda').toArray(), [0, 0, 0]);
      t.dispose();
      assert.ok(t.disposed);
      throwsWith(() => t.toArray(), Error, 'toArray: the tensor of shape [2,2]');
    }
  });

  test('a CPU op given a cuda tensor says where the tensor is and how to move it', () => {
    const a = Tensor.zeros([2, 3], 'f32', 'cuda');
    throwsWith(() => F.add(a, a), TypeError, "is on cuda: copy it with .to('cpu')");
    a.dispose();
  });

  test('every loss in bf16 with masks and an empty row matches the CPU reference', async () => {
    const batch = makeBatch({ pairs: 3, tokens: 47, vocab: 123, dtype: 'bf16', emptyRows: [1], seed: 11 });
    const ref = refLogpsFor(batch);
    const logits = onCuda(batch);
    for (const loss of LOSS_NAMES) {
      const refLogps = loss === 'simpo' || loss === 'orpo' ? undefined : ref;
      const gpu = await preferenceLossAsync({ loss, logits, labels: batch.labels, refLogps });
      assertMatches(loss, gpu, reference(batch, loss, refLogps), 'bf16');
      gpu.dlogits!.dispose();
    }
    logits.dispose();
  });

  test("the seed's other methods on cuda: chipo's clip, exo over K = 3 with rewards, references as cuda tensors, nllReduction", async () => {
    const batch = makeBatch({ pairs: 3, tokens: 9, vocab: 301, dtype: 'bf16', emptyRows: [4], seed: 5 });
    const ref = refLogpsFor(batch);
    const second = Float32Array.from(ref, (r, s) => r + Math.cos(s) * 0.7);
    const rewards = Float32Array.from({ length: 6 }, (_, s) => Math.sin(s * 1.3));
    const logits = onCuda(batch);
    const cudaRefs = [Tensor.from(ref, [6], 'f32', 'cuda'), Tensor.from(second, [6], 'f32', 'cuda')];
    const cases: [string, Record<string, unknown>][] = [
      ['chipo', { loss: 'chipo', chipoClip: 0.02 }],
      ['chipo unclipped', { loss: 'chipo' }],
      ['exo K = 3', { loss: 'exo', groupSize: 3 }],
      ['exo K = 3 with rewards', { loss: 'exo', groupSize: 3, rewards, exoRewardBeta: 0.7 }],
      ['dpo, nllReduction sum', { loss: 'dpo', nllWeight: 0.5, nllReduction: 'sum' }],
      ['orpo with nllWeight', { loss: 'orpo', nllWeight: 0.2 }],
    ];
    for (const [what, extra] of cases) {
      const refLogps = extra.loss === 'orpo' ? undefined : ref;
      const gpu = await preferenceLossAsync({ ...extra, logits, labels: batch.labels, refLogps } as never);
      assertMatches(what, gpu as never, reference(batch, extra.loss as LossName, refLogps, extra), 'bf16');
      (gpu as { dlogits?: Tensor }).dlogits!.dispose();
    }
    const several = await preferenceLossAsync({ loss: 'minordpo', logits, labels: batch.labels, refLogps: cudaRefs, referenceWeights: [3, 1], referenceClip: 0.05 });
    const cpuSeveral = reference(batch, 'minordpo', undefined, { refLogps: [ref, second], referenceWeights: [3, 1], referenceClip: 0.05 });
    assertMatches('references as cuda tensors', several, cpuSeveral, 'bf16');
    several.dlogits!.dispose();
    // the reference model's pass on cuda: sequenceLogps reads the logits where they lie
    const onDevice = sequenceLogps({ logits, labels: batch.labels });
    const onHost = sequenceLogps({ logits: batch.logits, dtype: 'bf16', shape: batch.shape, labels: batch.labels, implementation: 'reference' });
    assertClose('sequenceLogps on cuda', onDevice.logps, onHost.logps, (i) => 2e-5 * (1 + Math.abs(onHost.logps[i])));
    assertSameValues('sequenceLogps tokenCounts on cuda', onDevice.tokenCounts, onHost.tokenCounts);
    assert.equal(onDevice.emptyRows, [4]);
    cudaRefs.forEach((t) => t.dispose());
    logits.dispose();
  });

  test('dpo and minordpo in f32, bf16 and f16 over odd shapes (V = 1, 2, 2049, 50257, 128256)', async () => {
    const shapes = [
      { pairs: 1, tokens: 5, vocab: 1 },
      { pairs: 2, tokens: 1, vocab: 2 },
      { pairs: 2, tokens: 9, vocab: 2049 },
      { pairs: 1, tokens: 3, vocab: 50257, emptyRows: [0, 1] },  // an all-empty pair
      { pairs: 1, tokens: 2, vocab: 128256, promptFraction: 0 },
    ];
    for (const dtype of ['f32', 'bf16', 'f16'] as const) {
      for (const spec of shapes) {
        const batch = makeBatch({ ...spec, dtype, seed: spec.vocab, scale: dtype === 'f16' ? 8 : 30 });
        const ref = refLogpsFor(batch);
        const logits = onCuda(batch);
        for (const loss of ['dpo', 'minordpo'] as const) {
          const gpu = await preferenceLossAsync({ loss, logits, labels: batch.labels, refLogps: ref });
          assertMatches(`${loss} ${dtype} [${batch.shape}]`, gpu, reference(batch, loss, ref), dtype);
          gpu.dlogits!.dispose();
        }
        logits.dispose();
      }
    }
  });

  test('autograd, in place, out and repeated runs give the same bits as the async form', async () => {
    const batch = makeBatch({ pairs: 2, tokens: 33, vocab: 5000, dtype: 'bf16', seed: 3 });
    const ref = refLogpsFor(batch);
    const logits = onCuda(batch);
    const first = await preferenceLossAsync({ loss: 'minordpo', logits, labels: batch.labels, refLogps: ref });
    const bits = first.dlogits!.toArray();
    const again = await preferenceLossAsync({ loss: 'minordpo', logits, labels: batch.labels, refLogps: ref });
    assertSameValues('repeat', again.dlogits!.toArray(), bits);
    assert.is(again.loss, first.loss);

    logits.requiresGrad = true;
    const labels = Tensor.from(batch.labels, [batch.shape[0], batch.shape[1]], 'i32', 'cuda');
    const sync = preferenceLoss({ loss: 'minordpo', logits, labels, refLogps: Tensor.from(ref, [ref.length], 'f32', 'cuda') });
    assert.is(sync.loss.device, 'cpu');
    assert.is(sync.loss.item(), Math.fround(first.loss));
    sync.loss.backward();
    assert.is(logits.grad!.device, 'cuda');
    assertSameValues('autograd grad', logits.grad!.toArray(), bits);

    const out = Tensor.zeros(batch.shape, 'bf16', 'cuda');
    const viaOut = await preferenceLossAsync({ loss: 'minordpo', logits, labels: batch.labels, refLogps: ref, out });
    assert.is(viaOut.dlogits, out);
    assertSameValues('out', out.toArray(), bits);
    await rejectsWith(preferenceLossAsync({ loss: 'minordpo', logits, labels: batch.labels, refLogps: ref, out: Tensor.zeros([1], 'bf16', 'cuda') }),
      TypeError, 'Expected a cuda bf16 tensor of shape [4,33,5000] (like logits) for out but received Tensor(shape [1], bf16, cuda)');
    await rejectsWith(preferenceLossAsync({ loss: 'minordpo', logits, labels: batch.labels, refLogps: ref, out: logits }),
      TypeError, 'does not share memory with logits');

    const inPlace = onCuda(batch);
    const written = await preferenceLossAsync({ loss: 'minordpo', logits: inPlace, labels: batch.labels, refLogps: ref, inPlace: true });
    assert.is(written.dlogits, inPlace);
    assertSameValues('in place', inPlace.toArray(), bits);
    for (const t of [logits, labels, out, inPlace, first.dlogits!, again.dlogits!]) t.dispose();
  });

  test('non-finite logits: a NonFiniteLogitError with the place and value; in place, the logits are untouched', async () => {
    const batch = makeBatch({ pairs: 1, tokens: 4, vocab: 300, dtype: 'f32', promptFraction: 0, seed: 5 });
    const [, T, V] = batch.shape;
    (batch.logits as Float32Array)[(1 * T + 2) * V + 77] = Infinity;
    const ref = new Float32Array([-20, -21]);
    const logits = onCuda(batch);
    try {
      await preferenceLossAsync({ logits, labels: batch.labels, refLogps: ref, inPlace: true });
      assert.unreachable('no error');
    } catch (error) {
      assert.instance(error, NonFiniteLogitError);
      const e = error as NonFiniteLogitError;
      assert.equal([e.row, e.token, e.vocab, e.value], [1, 2, 77, Infinity]);
    }
    assertSameValues('logits after the refused in-place call', logits.toArray(), batch.logits);
    const allowed = await preferenceLossAsync({ logits, labels: batch.labels, refLogps: ref, allowNonFinite: true });
    const cpu = reference(batch, 'dpo', ref, { allowNonFinite: true });
    assert.equal(allowed.nonFiniteRows, [1]);
    assert.equal(allowed.nonFiniteRows, cpu.nonFiniteRows);
    assert.ok(Number.isNaN(allowed.loss) === Number.isNaN(cpu.loss), `loss ${allowed.loss} vs CPU ${cpu.loss}`);
    logits.dispose();
  });

  test('out of device memory: an Error naming the size; the context keeps working', async () => {
    const bytes = 2 ** 44;  // 16 TiB
    throwsWith(() => Tensor.zeros([bytes / 4], 'f32', 'cuda'), Error, /cuda tensor: .*17592186044416 bytes.*MiB free/);
    const batch = makeBatch({ pairs: 1, tokens: 3, vocab: 50, dtype: 'f32' });
    const logits = onCuda(batch);
    const r = await preferenceLossAsync({ logits, labels: batch.labels, refLogps: new Float32Array([-9, -9]) });
    assert.ok(Number.isFinite(r.loss));
    logits.dispose();
  });

  test('dispose gives the device memory back (to the cache, then to the device); a tensor disposed while the GPU works is freed after', async () => {
    const free = () => native().cudaInfo!().devices[0].freeMemoryBytes!;
    cudaEmptyCache();
    const before = free();
    const held = cudaMemory().tensorBytes;
    const big = Tensor.zeros([2 ** 28], 'f32', 'cuda');  // 1 GiB
    assert.ok(before - free() >= 2 ** 30 - 2 ** 24, `free memory fell by ${before - free()} bytes for 1 GiB`);
    assert.is(cudaMemory().tensorBytes, held + 2 ** 30);
    big.dispose();
    assert.equal(cudaMemory(), { tensorBytes: held, cachedBytes: 2 ** 30 });
    const again = Tensor.zeros([2 ** 28], 'f32', 'cuda');  // the cached block, zeroed
    assert.is(cudaMemory().cachedBytes, 0);
    assertSameValues('a reused block is zeroed', again.toArray().subarray(0, 1 << 20), new Float32Array(1 << 20));
    again.dispose();
    cudaEmptyCache();
    assert.is(cudaMemory().cachedBytes, 0);
    assert.ok(Math.abs(before - free()) < 2 ** 26, `free memory ${free()} after emptying the cache, ${before} before`);

    const batch = makeBatch({ pairs: 2, tokens: 16, vocab: 4000, dtype: 'bf16' });
    const logits = onCuda(batch);
    const pending = preferenceLossAsync({ logits, labels: batch.labels, refLogps: new Float32Array(4).fill(-130) });
    logits.dispose();
    const r = await pending;
    assert.ok(Number.isFinite(r.loss));
    assertMatches('disposed while running', r, reference(batch, 'dpo', new Float32Array(4).fill(-130)), 'bf16');
    r.dlogits!.dispose();
    assert.ok(logits.disposed);
  });

  test('the async form leaves the event loop free while the GPU works', async () => {
    const batch = makeBatch({ pairs: 1, tokens: 8, vocab: 1000, dtype: 'bf16' });
    const small = onCuda(batch);
    const big = Tensor.zeros([8, 1024, 128256], 'bf16', 'cuda');  // 2 GiB: several ms a call
    const labels = new Int32Array(8 * 1024).map((_, i) => (i * 7919) % 128256);
    let ticks = 0;
    let running = true;
    const tick = () => {
      ticks++;
      if (running) setImmediate(tick);
    };
    setImmediate(tick);
    const jobs = Array.from({ length: 12 }, () => preferenceLossAsync({ logits: big, labels, refLogps: new Float32Array(8).fill(-1e4), inPlace: true }));
    await Promise.all(jobs);
    running = false;
    assert.ok(ticks >= 5, `the event loop ran ${ticks} times during 12 GPU calls`);
    big.dispose();
    small.dispose();
  });
}

test.run();
