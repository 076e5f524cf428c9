/**
 * The fused losses against float64 values computed in TypeScript (test/fp64.ts) and against the
 * native scalar reference, over every loss, dtype, odd shapes, masks, empty rows and extreme
 * logits; a finite-difference check of dlogits; MinorDPO's kink; determinism across threads.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { LOSS_NAMES, preferenceLoss, sequenceLogps, setThreads, type LogitsDType, type LossName, type PreferenceLossArgs } from '../lib/index';
import { assertClose, assertSameValues, decoded, encode, makeBatch, UNIT, type BatchSpec } from './batch';
import { batchLoss64, coefByFiniteDifference, defaultOptions, dlogits64, tokenLogps } from './fp64';
import { checkAgainstFp64, refNear } from './loss-check';

const DTYPES: LogitsDType[] = ['f32', 'bf16', 'f16'];

for (const loss of LOSS_NAMES) {
  test(`${loss}: loss, logps and dlogits against float64 and the scalar reference, every dtype`, () => {
    for (const dtype of DTYPES) {
      checkAgainstFp64({ pairs: 2, tokens: 5, vocab: 123, dtype, seed: 3 }, loss);
    }
  });
}

test('odd shapes: V = 1, 2, 15, 16, 17, 123 and T = 1, 47', () => {
  for (const [tokens, vocab] of [[3, 1], [1, 2], [47, 2], [4, 15], [4, 16], [4, 17], [47, 123], [1, 123]]) {
    for (const dtype of DTYPES) {
      checkAgainstFp64({ pairs: 1, tokens, vocab, dtype, promptFraction: 0, seed: tokens + vocab }, 'minordpo');
    }
  }
});

test('V = 50257 (GPT-2) in every dtype', () => {
  for (const dtype of DTYPES) {
    checkAgainstFp64({ pairs: 1, tokens: 3, vocab: 50257, dtype, seed: 11 }, 'dpo', { nllWeight: 0.5 });
  }
});

test('averageLogProb, nllWeight, label smoothing and the other parameters', () => {
  const spec: BatchSpec = { pairs: 3, tokens: 9, vocab: 40, seed: 5 };
  checkAgainstFp64(spec, 'dpo', { averageLogProb: true });
  checkAgainstFp64(spec, 'minordpo', { averageLogProb: true, nllWeight: 1, beta: 0.5 });
  checkAgainstFp64(spec, 'dpo', { labelSmoothing: 0.2 });
  checkAgainstFp64(spec, 'minordpo', { labelSmoothing: 0.1 });
  checkAgainstFp64(spec, 'robust', { labelSmoothing: 0.3 });
  checkAgainstFp64(spec, 'exo_pair', { labelSmoothing: 0.25 });
  checkAgainstFp64(spec, 'dpop', { dpopLambda: 5 });
  checkAgainstFp64(spec, 'simpo', { simpoGamma: 1.5, beta: 2.5 });
  checkAgainstFp64(spec, 'orpo', { orpoLambda: 0.7, nllWeight: 0.1 });
  checkAgainstFp64(spec, 'discopop', { discopopTau: 0.5 });
  checkAgainstFp64(spec, 'bco_pair', { bcoDelta: 0.3 });
  checkAgainstFp64(spec, 'ipo', { beta: 1 });
});

test('prompt masks, empty rows and a batch with every token masked never give NaN', () => {
  for (const loss of LOSS_NAMES) {
    if (loss === 'orpo') continue; // its log-odds need a token; empty orpo rows are checked below
    const { batch } = checkAgainstFp64({ pairs: 2, tokens: 6, vocab: 20, emptyRows: [1, 2], seed: 2 }, loss);
    assert.ok(batch.labels.includes(-100));
  }
  const all = makeBatch({ pairs: 2, tokens: 4, vocab: 10, emptyRows: [0, 1, 2, 3] });
  for (const loss of LOSS_NAMES) {
    const refLogps = loss === 'simpo' || loss === 'orpo' ? undefined : new Float32Array(4);
    const r = preferenceLoss({ loss, logits: all.logits, shape: all.shape, labels: all.labels, refLogps, nllWeight: 0.5 });
    assert.ok(Number.isFinite(r.loss), `${loss}: loss ${r.loss} with every token masked`);
    assert.equal(r.emptyRows, [0, 1, 2, 3]);
    assert.ok((r.dlogits as Float32Array).every((g) => g === 0), `${loss}: nonzero gradient with every token masked`);
  }
  const orpo = makeBatch({ pairs: 2, tokens: 4, vocab: 10, emptyRows: [3] });
  const r = preferenceLoss({ loss: 'orpo', logits: orpo.logits, shape: orpo.shape, labels: orpo.labels });
  assert.ok(Number.isFinite(r.loss) && (r.dlogits as Float32Array).every(Number.isFinite), 'orpo with an empty row');
});

test('logits up to +-1e4 in f32 and the full finite range of bf16 give finite results', () => {
  for (const loss of ['dpo', 'minordpo', 'ipo', 'discopop', 'simpo'] as LossName[]) {
    checkAgainstFp64({ pairs: 2, tokens: 7, vocab: 33, scale: 1e4, seed: 9 }, loss);
  }
  const huge = makeBatch({ pairs: 1, tokens: 3, vocab: 17, dtype: 'bf16', scale: 3.3e38 });
  for (const loss of LOSS_NAMES) {
    const refLogps = loss === 'simpo' || loss === 'orpo' ? undefined : new Float32Array([-1e3, -2e3]);
    for (const implementation of ['fast', 'reference'] as const) {
      const args = { loss, logits: huge.logits, dtype: 'bf16' as const, shape: huge.shape, labels: huge.labels, refLogps, implementation };
      if (loss === 'sppo_hard') {
        // Its gradient grows with the unnormalized margin, here about 1e39: past what bf16 (or
        // f32) holds. That is an error naming the row, never infinities written into dlogits.
        assert.throws(() => preferenceLoss(args), (e: Error) => e instanceof RangeError &&
          /Expected a gradient that fits bf16 but the loss's derivative for row 0 \(pair 0\) is -Infinity/.test(e.message));
        continue;
      }
      const r = preferenceLoss(args);
      assert.ok(Number.isFinite(r.loss), `${loss} (${implementation}): loss ${r.loss} on bf16 logits near 3.3e38`);
      assert.ok(decoded(r.dlogits!, 'bf16').every(Number.isFinite), `${loss} (${implementation}): non-finite dlogits`);
    }
  }
});

test('in place: dlogits written over the logits, equal to the out-of-place result', () => {
  for (const dtype of DTYPES) {
    const batch = makeBatch({ pairs: 2, tokens: 6, vocab: 70, dtype });
    const refLogps = new Float32Array([-30, -31, -29, -33]);
    const args = { loss: 'minordpo' as const, dtype, shape: batch.shape, labels: batch.labels, refLogps };
    const outOfPlace = preferenceLoss({ ...args, logits: batch.logits });
    const copy = batch.logits.slice();
    const inPlace = preferenceLoss({ ...args, logits: copy, inPlace: true });
    assert.ok(inPlace.dlogits === copy, 'in place returns the logits array itself');
    assertSameValues(`${dtype}: in place vs out of place`, copy, outOfPlace.dlogits!);
    assert.is(inPlace.loss, outOfPlace.loss);
  }
});

test('finite differences on the logits match dlogits (f32, small shapes)', () => {
  for (const loss of LOSS_NAMES) {
    const batch = makeBatch({ pairs: 1, tokens: 3, vocab: 5, seed: 21, promptFraction: 0.34 });
    const { z, shape, labels } = batch;
    const exact = tokenLogps(z, shape, labels);
    const refLogps = loss === 'simpo' || loss === 'orpo' ? undefined : refNear(exact.pi, 4);
    const options = defaultOptions(loss);
    const r = preferenceLoss({ loss, logits: batch.logits, shape, labels, refLogps });
    const lossAt = (x: Float64Array) => {
      const t = tokenLogps(x, shape, labels);
      return batchLoss64(loss, options, t.pi, t.n, refLogps ? Float64Array.from(refLogps) : null);
    };
    const numeric = new Float64Array(z.length);
    const x = Float64Array.from(z);
    for (let i = 0; i < x.length; i++) {
      const h = 1e-4;
      x[i] = z[i] + h;
      const up = lossAt(x);
      x[i] = z[i] - h;
      const down = lossAt(x);
      x[i] = z[i];
      numeric[i] = (up - down) / (2 * h);
    }
    const scale = numeric.reduce((m, g) => Math.max(m, Math.abs(g)), 0);
    assertClose(`${loss}: dlogits vs finite differences`, r.dlogits!, numeric, () => 1e-4 * scale + 1e-7);
  }
});

test("MinorDPO's kink: at ul = 0 its gradient equals DPO's, at ul < 0 the rejected rows get none", () => {
  // All-zero logits over V = 2 and two counted tokens per row: every pi is -2 fl(ln 2), exact in
  // fp32, so refLogps = logps gives ul = 0 exactly.
  const shape: [number, number, number] = [4, 2, 2];
  const logits = new Float32Array(4 * 2 * 2);
  logits[1] = 0.5; // a chosen row off the reference, so the gradient is not trivially symmetric
  const labels = new Int32Array([0, 1, 1, 0, 0, 0, 1, 1]);
  const { logps } = sequenceLogps({ logits, shape, labels });
  const atKink = Float32Array.from(logps);
  const dpo = preferenceLoss({ loss: 'dpo', logits, shape, labels, refLogps: atKink });
  const minor = preferenceLoss({ loss: 'minordpo', logits, shape, labels, refLogps: atKink });
  assertSameValues('ul = 0: MinorDPO vs DPO gradients', minor.dlogits!, dpo.dlogits!);
  assert.ok(Array.from(minor.dlogits!.subarray(8)).some((g) => g !== 0), 'ul = 0: rejected rows must get a gradient');

  const below = Float32Array.from(logps);
  below[2] += 1; // rejected rows: the policy already rates them below the reference (ul = -1)
  below[3] += 1;
  const pushedDown = preferenceLoss({ loss: 'minordpo', logits, shape, labels, refLogps: below });
  assert.ok(Array.from(pushedDown.dlogits!.subarray(8)).every((g) => g === 0), 'ul < 0: rejected rows got a gradient');
  assert.ok(Array.from(pushedDown.dlogits!.subarray(0, 8)).some((g) => g !== 0), 'ul < 0: chosen rows lost their gradient');
  const dpoBelow = preferenceLoss({ loss: 'dpo', logits, shape, labels, refLogps: below });
  assert.ok(Array.from(dpoBelow.dlogits!.subarray(8)).some((g) => g !== 0), 'DPO keeps pushing rejected rows down');
});

test("MinorDPO's first step is DPO's: a reference equal to the policy's reported logps gives ul = 0 exactly", () => {
  for (const dtype of DTYPES) {
    const batch = makeBatch({ pairs: 4, tokens: 33, vocab: 301, dtype, seed: 31 });
    const args = { dtype, logits: batch.logits, shape: batch.shape, labels: batch.labels };
    const refLogps = sequenceLogps(args).logps; // the frozen copy of the policy, as reported
    const dpo = preferenceLoss({ ...args, loss: 'dpo', refLogps });
    const minor = preferenceLoss({ ...args, loss: 'minordpo', refLogps });
    assertSameValues(`${dtype}: MinorDPO vs DPO at policy == reference`, minor.dlogits!, dpo.dlogits!);
    assert.is(minor.loss, dpo.loss);
    assert.is(minor.metrics.rewardsMargin, 0);
  }
});

test('metrics follow TRL: rewards, accuracy, margin, logps and nll', () => {
  const batch = makeBatch({ pairs: 3, tokens: 6, vocab: 30, seed: 8 });
  const exact = tokenLogps(batch.z, batch.shape, batch.labels);
  const refLogps = refNear(exact.pi, 2);
  const b = 0.25;
  const r = preferenceLoss({ loss: 'dpo', beta: b, nllWeight: 0.5, logits: batch.logits, shape: batch.shape, labels: batch.labels, refLogps });
  const P = 3;
  let uw = 0, ul = 0, wins = 0, pw = 0, pl = 0, chosenTokens = 0;
  for (let i = 0; i < P; i++) {
    const w = exact.pi[i] - refLogps[i];
    const l = exact.pi[P + i] - refLogps[P + i];
    uw += w / P; ul += l / P; wins += (w > l ? 1 : 0) / P;
    pw += exact.pi[i] / P; pl += exact.pi[P + i] / P; chosenTokens += exact.n[i];
  }
  const m = r.metrics;
  const close = (a: number, e: number, what: string) => assert.ok(Math.abs(a - e) <= 1e-4 * (1 + Math.abs(e)), `${what}: ${a} vs ${e}`);
  close(m.rewardsChosen, b * uw, 'rewardsChosen');
  close(m.rewardsRejected, b * ul, 'rewardsRejected');
  close(m.rewardsMargin, b * (uw - ul), 'rewardsMargin');
  assert.is(m.rewardsAccuracy, wins);
  close(m.logpsChosen, pw, 'logpsChosen');
  close(m.logpsRejected, pl, 'logpsRejected');
  close(m.nll, (-pw * P) / chosenTokens, 'nll');
});

test('the same inputs give bit-identical results whatever the thread count and SIMD path', () => {
  const batch = makeBatch({ pairs: 3, tokens: 37, vocab: 1001, dtype: 'bf16', seed: 13 });
  const args = { loss: 'minordpo' as const, dtype: 'bf16' as const, logits: batch.logits, shape: batch.shape, labels: batch.labels, refLogps: new Float32Array([-200, -210, -190, -205, -220, -199]) };
  const results = [1, 2, 3, 7].map((threads) => {
    setThreads(threads);
    return preferenceLoss(args);
  });
  setThreads(2);
  for (const r of results.slice(1)) {
    assert.is(r.loss, results[0].loss);
    assert.equal(Array.from(r.logps), Array.from(results[0].logps));
    assertSameValues('dlogits across thread counts', r.dlogits!, results[0].dlogits!);
  }
});

test('sequenceLogps: sums, counts, averages and odd row counts', () => {
  const batch = makeBatch({ pairs: 2, tokens: 5, vocab: 9, seed: 4, emptyRows: [3] });
  const shape: [number, number, number] = [3, 5, 9]; // an odd number of rows is fine here
  const logits = batch.logits.subarray(0, 3 * 5 * 9) as Float32Array;
  const labels = batch.labels.subarray(0, 15);
  const exact = tokenLogps(batch.z.subarray(0, 3 * 5 * 9), shape, labels);
  const r = sequenceLogps({ logits, shape, labels });
  assertClose('logps', r.logps, exact.pi, () => 1e-5);
  const avg = sequenceLogps({ logits, shape, labels, averageLogProb: true });
  assertClose('averaged logps', avg.logps, Array.from(exact.pi, (p, s) => p / exact.n[s]), () => 1e-6);
  const bf = encode(Array.from(logits), 'bf16');
  const rb = sequenceLogps({ logits: bf, dtype: 'bf16', shape, labels });
  const exactBf = tokenLogps(decoded(bf, 'bf16'), shape, labels);
  assertClose('bf16 logps', rb.logps, exactBf.pi, () => 1e-5);
});

test.run();
