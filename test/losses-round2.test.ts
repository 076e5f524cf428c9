/**
 * The seed's other methods (docs/losses.md): chipo with and without its clip and at its
 * boundary, several references (MRPO), exo over K = 2, 3, 5 responses with and without rewards,
 * nllReduction both ways, orpo's batch-token-mean NLL, the rejectedBelowReference metric and the
 * summed metrics of the length-normalized losses; against float64 (test/fp64.ts) and the scalar
 * reference in every dtype; bad input for every new parameter; sequenceLogps on tensors.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { LOSSES, Tensor, preferenceLoss, sequenceLogps, withScope, type LogitsDType, type PreferenceLossArgs } from '../lib/index';
import { staleFiles } from '../lib/losses/generate';
import { assertClose, decoded, makeBatch } from './batch';
import { batchLoss64, defaultOptions, tokenLogps } from './fp64';
import { checkAgainstFp64, refNear } from './loss-check';

const DTYPES: LogitsDType[] = ['f32', 'bf16', 'f16'];

function throwsWith(args: unknown, kind: typeof TypeError | typeof RangeError, text: string): void {
  try {
    preferenceLoss(args as PreferenceLossArgs);
  } catch (error) {
    assert.instance(error, kind, `expected a ${kind.name}, got ${String(error)}`);
    assert.ok((error as Error).message.includes(text), `message was: ${(error as Error).message}\nexpected it to include: ${text}`);
    return;
  }
  assert.unreachable(`no error; expected ${kind.name}: ${text}`);
}

test('the generated header and tables match the registry (npm run generate)', () => {
  assert.equal(staleFiles(), [], 'run npm run generate');
});

// ---- chipo ------------------------------------------------------------------------------------

/** chipo's h per pair, in float64, from the kernel's own logps (the same values it saw). */
function chipoH(logps: Float32Array, ref: Float32Array, beta: number): number[] {
  const P = logps.length / 2;
  return Array.from({ length: P }, (_, i) => {
    const uw = logps[i] - ref[i], ul = logps[P + i] - ref[P + i];
    return beta * (Math.exp(uw) + uw - Math.exp(ul) - ul);
  });
}

test('chipo: clipped and unclipped branches against float64, every dtype', () => {
  for (const dtype of DTYPES) {
    checkAgainstFp64({ pairs: 3, tokens: 6, vocab: 50, dtype, seed: 8 }, 'chipo', { beta: 0.5 });
    checkAgainstFp64({ pairs: 3, tokens: 6, vocab: 50, dtype, seed: 8, emptyRows: [1] }, 'chipo', { beta: 0.5, chipoClip: 0.3 });
    checkAgainstFp64({ pairs: 3, tokens: 6, vocab: 50, dtype, seed: 9 }, 'chipo', { averageLogProb: true, chipoClip: 2 });
  }
});

test("chipo's clip boundary: inclusive, and the clipped pair's rows get no gradient", () => {
  const batch = makeBatch({ pairs: 2, tokens: 4, vocab: 30, seed: 12, promptFraction: 0 });
  const { logits, shape, labels } = batch;
  const { logps } = sequenceLogps({ logits: logits as Float32Array, shape, labels });
  const refLogps = refNear(Float64Array.from(logps), 3);
  const [h0, h1] = chipoH(logps, refLogps, 1);
  assert.ok(Math.abs(h0) !== Math.abs(h1) && Math.abs(h0) > 1e-3, `two distinct |h|: ${h0}, ${h1}`);
  const rowGrad = (r: { dlogits?: Float32Array | Uint16Array }, row: number) => {
    const size = shape[1] * shape[2];
    return Math.max(...Array.from((r.dlogits as Float32Array).subarray(row * size, (row + 1) * size), Math.abs));
  };
  const run = (chipoClip: number) => preferenceLoss({ loss: 'chipo', beta: 1, chipoClip, logits, shape, labels, refLogps });
  const above = run(Math.abs(h0) * (1 + 1e-6));
  const below = run(Math.abs(h0) * (1 - 1e-6));
  assert.ok(rowGrad(above, 0) > 0 && rowGrad(above, 2) > 0, 'at |h| <= c the pair has a gradient');
  assert.is(rowGrad(below, 0), 0, 'clipped: no gradient on the chosen row');
  assert.is(rowGrad(below, 2), 0, 'clipped: no gradient on the rejected row');
  const ls = (x: number) => Math.min(x, 0) - Math.log1p(Math.exp(-Math.abs(x)));
  const c = Math.abs(h0) * (1 - 1e-6);
  const pair1 = Math.abs(h1) > c ? -ls(Math.sign(h1) * c) : -ls(h1);
  assertClose('clipped loss', [below.loss], [(-ls(Math.sign(h0) * c) + pair1) / 2], () => 1e-6);
});

test('chipo: huge log-ratios are an error naming the pair unclipped, finite and gradient-free clipped; never NaN', () => {
  const batch = makeBatch({ pairs: 2, tokens: 3, vocab: 9, seed: 4 });
  const { logits, shape, labels } = batch;
  const { logps } = sequenceLogps({ logits: logits as Float32Array, shape, labels });
  const refLogps = Float32Array.from(logps);
  refLogps[3] = logps[3] - 200;  // ul = 200 for pair 1: e^200 overflows fp32
  throwsWith({ loss: 'chipo', logits, shape, labels, refLogps }, RangeError, 'pair 1');
  const clipped = preferenceLoss({ loss: 'chipo', chipoClip: 5, logits, shape, labels, refLogps });
  assert.ok(Number.isFinite(clipped.loss), `finite clipped loss: ${clipped.loss}`);
  assert.ok(Array.from(clipped.dlogits as Float32Array).every(Number.isFinite), 'finite gradient');
  // a large log-ratio on the chosen side: h is huge and positive, the loss tends to 0, the
  // coefficient b exp(ls(-h) + softplus(uw)) underflows to 0 instead of 0 * inf
  const high = Float32Array.from(logps);
  high[0] = logps[0] - 800;
  const r = preferenceLoss({ loss: 'chipo', logits, shape, labels, refLogps: high });
  assert.ok(Number.isFinite(r.loss) && Array.from(r.dlogits as Float32Array).every(Number.isFinite), `finite: ${r.loss}`);
  for (const ratio of [-1e4, -50, 0, 50, 88, 1e4]) {
    for (const chipoClip of [Infinity, 1, 1e3]) {
      const ref = Float32Array.from(logps, (p, s) => p - (s % 2 ? ratio : -ratio / 3));
      try {
        const out = preferenceLoss({ loss: 'chipo', chipoClip, logits, shape, labels, refLogps: ref });
        assert.ok(Number.isFinite(out.loss), `loss finite at ratio ${ratio}, clip ${chipoClip}`);
        assert.ok(Array.from(out.dlogits as Float32Array).every(Number.isFinite), `gradient finite at ratio ${ratio}, clip ${chipoClip}`);
      } catch (error) {
        assert.instance(error, RangeError, `only a RangeError: ${String(error)}`);
        assert.ok(chipoClip === Infinity, `an error only unclipped (ratio ${ratio}, clip ${chipoClip}): ${String(error)}`);
      }
    }
  }
});

// ---- exo over K responses -----------------------------------------------------------------------

test('exo with K = 2 and no rewards is exo_pair, to rounding, every dtype', () => {
  for (const dtype of DTYPES) {
    const batch = makeBatch({ pairs: 3, tokens: 5, vocab: 40, dtype, seed: 6, emptyRows: [4] });
    const { logits, shape, labels } = batch;
    const refLogps = refNear(tokenLogps(batch.z, shape, labels).pi, 2);
    for (const labelSmoothing of [1e-3, 0.2]) {
      const args = { logits, dtype, shape, labels, refLogps, beta: 0.7, labelSmoothing };
      const pair = preferenceLoss({ ...args, loss: 'exo_pair' });
      const group = preferenceLoss({ ...args, loss: 'exo', groupSize: 2 });
      assertClose(`${dtype} loss`, [group.loss], [pair.loss], () => 1e-12 * (1 + Math.abs(pair.loss)));
      const a = decoded(group.dlogits!, dtype), b = decoded(pair.dlogits!, dtype);
      assertClose(`${dtype} dlogits`, a, b, (i) => Math.abs(b[i]) * 2 ** -20 + 1e-30);
      assert.equal(group.metrics, pair.metrics, 'the same metrics');
    }
  }
});

test('exo with K = 3 and 5, with and without rewards, against float64, every dtype', () => {
  for (const K of [3, 5]) {
    for (const dtype of DTYPES) {
      const spec = { pairs: K, tokens: 5, vocab: 33, dtype, seed: K * 3 + 1 };  // 2K rows: 2 prompts
      checkAgainstFp64(spec, 'exo', { groupSize: K });
      const rewards = Float32Array.from({ length: 2 * K }, (_, s) => Math.sin(s * 1.7) * 2);
      checkAgainstFp64(spec, 'exo', { groupSize: K, rewards, exoRewardBeta: 0.8, beta: 0.4 });
      checkAgainstFp64({ ...spec, emptyRows: [1] }, 'exo', { groupSize: K, labelSmoothing: 0.3, averageLogProb: true });
    }
  }
  // metrics: response 0 is chosen, response 1 rejected
  const batch = makeBatch({ pairs: 3, tokens: 4, vocab: 20, seed: 1 });
  const { logits, shape, labels } = batch;
  const exact = tokenLogps(batch.z, shape, labels);
  const refLogps = refNear(exact.pi, 5);
  const r = preferenceLoss({ loss: 'exo', groupSize: 3, beta: 0.5, logits, shape, labels, refLogps });
  const G = 2;
  const u = (row: number) => exact.pi[row] - refLogps[row];
  assertClose('rewardsChosen', [r.metrics.rewardsChosen], [0.5 * (u(0) + u(1)) / G], () => 1e-5);
  assertClose('rewardsRejected', [r.metrics.rewardsRejected], [0.5 * (u(2) + u(3)) / G], () => 1e-5);
});

// ---- several references (MRPO) --------------------------------------------------------------------

/** r = -log sum_k w_k exp(-clip(r_k)), in float64, straight from docs/losses.md. */
function combined64(refs: Float32Array[], weights: number[], clip: number | undefined): Float64Array {
  const total = weights.reduce((a, b) => a + b, 0);
  return Float64Array.from(refs[0], (r0, s) => {
    let sum = 0;
    refs.forEach((ref, k) => {
      let r = ref[s];
      if (k > 0 && clip !== undefined) r = Math.min(Math.max(r, r0 - clip * Math.abs(r0)), r0 + clip * Math.abs(r0));
      sum += (weights[k] / total) * Math.exp(-(r - r0));  // scaled by e^r0 for range
    });
    return r0 - Math.log(sum);
  });
}

test('several references: one and three, with and without clip, weights, against float64', () => {
  const batch = makeBatch({ pairs: 3, tokens: 6, vocab: 30, seed: 21 });
  const { logits, shape, labels } = batch;
  const exact = tokenLogps(batch.z, shape, labels);
  const refs = [refNear(exact.pi, 1), refNear(exact.pi, 2), refNear(exact.pi, 3)];
  const single = preferenceLoss({ loss: 'minordpo', logits, shape, labels, refLogps: refs[0] });
  const listed = preferenceLoss({ loss: 'minordpo', logits, shape, labels, refLogps: [refs[0]] });
  assert.is(listed.loss, single.loss, 'an array of one reference is that reference');
  for (const [weights, clip] of [[[1, 1, 1], undefined], [[0.5, 0.3, 0.2], undefined], [[2, 1, 1], 0.01], [[1, 1, 1], 0]] as const) {
    for (const loss of ['dpo', 'minordpo', 'chipo', 'exo'] as const) {
      const r = preferenceLoss({
        loss, logits, shape, labels, refLogps: refs, referenceWeights: [...weights],
        ...(clip === undefined ? {} : { referenceClip: clip }),
      });
      const ref64 = combined64(refs, [...weights], clip);
      const want = batchLoss64(loss, defaultOptions(loss), exact.pi, exact.n, ref64);
      assertClose(`${loss} with weights ${weights}, clip ${clip}`, [r.loss], [want], () => 1e-5 * (1 + Math.abs(want)));
      // the same call with the combined reference, rounded to fp32, is bit-identical
      const direct = preferenceLoss({ loss, logits, shape, labels, refLogps: Float32Array.from(ref64) });
      assert.is(r.loss, direct.loss, `${loss}: combined before any loss`);
    }
  }
  // clip 0 makes every reference the first: the plain single-reference loss
  const clipped = preferenceLoss({ loss: 'dpo', logits, shape, labels, refLogps: refs, referenceClip: 0 });
  assertClose('clip 0', [clipped.loss], [preferenceLoss({ loss: 'dpo', logits, shape, labels, refLogps: refs[0] }).loss], () => 1e-6);
});

test('several references as tensors, with tensor logits', () => {
  withScope(() => {
    const batch = makeBatch({ pairs: 2, tokens: 3, vocab: 11, seed: 2 });
    const { shape, labels } = batch;
    const refs = [refNear(tokenLogps(batch.z, shape, labels).pi, 1), refNear(tokenLogps(batch.z, shape, labels).pi, 7)];
    const logits = Tensor.from(batch.logits as Float32Array, [...shape]);
    logits.requiresGrad = true;
    const r = preferenceLoss({ loss: 'minordpo', logits, labels, refLogps: refs.map((ref) => Tensor.from(ref, [ref.length])) });
    const typed = preferenceLoss({ loss: 'minordpo', logits: batch.logits, shape, labels, refLogps: refs });
    assert.is(r.loss.item(), Math.fround(typed.loss), 'the loss tensor holds the fp32 of the same loss');
    r.loss.backward();
    assertClose('tensor gradient', logits.grad!.toArray() as Float32Array, typed.dlogits!, () => 1e-9);
  });
});

// ---- the NLL terms, the metrics ---------------------------------------------------------------

test('nllReduction tokenMean and sum, and orpo with rows of different lengths, against float64', () => {
  const spec = { pairs: 3, tokens: 7, vocab: 25, seed: 31, emptyRows: [4] };
  for (const nllReduction of ['tokenMean', 'sum'] as const) {
    checkAgainstFp64(spec, 'dpo', { nllWeight: 0.5, nllReduction });
    checkAgainstFp64(spec, 'minordpo', { nllWeight: 1, nllReduction, averageLogProb: true });
    checkAgainstFp64({ pairs: 3, tokens: 7, vocab: 25, seed: 31 }, 'exo', { groupSize: 3, nllWeight: 0.3, nllReduction });
  }
  // orpo: the NLL is the batch's chosen-token mean (rows of different lengths: a prompt mask per row)
  const batch = makeBatch({ pairs: 2, tokens: 6, vocab: 17, seed: 3 });
  const labels = batch.labels.slice();
  labels[0] = labels[1] = labels[2] = -100;  // chosen row 0 has 3 tokens, row 1 has 6
  const exact = tokenLogps(batch.z, batch.shape, labels);
  const r = preferenceLoss({ loss: 'orpo', logits: batch.logits, shape: batch.shape, labels });
  const want = batchLoss64('orpo', defaultOptions('orpo'), exact.pi, exact.n, null);
  assertClose('orpo loss', [r.loss], [want], () => 1e-5);
  assertClose('orpo nll metric', [r.metrics.nll], [-(exact.pi[0] + exact.pi[1]) / (exact.n[0] + exact.n[1])], () => 1e-5);
});

test('rejectedBelowReference, and ipo/sigmoid_norm report the summed metrics, as dpo', () => {
  const batch = makeBatch({ pairs: 4, tokens: 5, vocab: 21, seed: 17 });
  const { logits, shape, labels } = batch;
  const exact = tokenLogps(batch.z, shape, labels);
  const refLogps = refNear(exact.pi, 9);
  const P = 4;
  let below = 0;
  for (let i = 0; i < P; i++) if (exact.pi[P + i] - refLogps[P + i] < 0) below += 1;
  assert.ok(below > 0 && below < P, `a mix of signs: ${below}`);
  const dpo = preferenceLoss({ loss: 'dpo', logits, shape, labels, refLogps });
  assert.is(dpo.metrics.rejectedBelowReference, below / P);
  for (const loss of ['ipo', 'sigmoid_norm', 'minordpo', 'chipo'] as const) {
    const r = preferenceLoss({ loss, logits, shape, labels, refLogps });
    assert.equal({ ...r.metrics, nll: 0 }, { ...dpo.metrics, nll: 0 }, `${loss}: the metrics of dpo`);
  }
  const simpo = preferenceLoss({ loss: 'simpo', logits, shape, labels });
  assert.is(simpo.metrics.rejectedBelowReference, undefined, 'no reference: no rejectedBelowReference');
});

// ---- bad input ----------------------------------------------------------------------------------

function good(): PreferenceLossArgs {
  const batch = makeBatch({ pairs: 3, tokens: 3, vocab: 7, seed: 1 });
  return { loss: 'dpo', logits: batch.logits, shape: batch.shape, labels: batch.labels, refLogps: new Float32Array(6).fill(-3) };
}

test('bad input: a parameter the loss does not take, and each new parameter out of range', () => {
  for (const loss of ['simpo', 'orpo', 'hinge'] as const) {
    const refLogps = loss === 'hinge' ? good().refLogps : undefined;
    throwsWith({ ...good(), loss, refLogps, labelSmoothing: 0.1 }, TypeError, `Expected no labelSmoothing with loss '${loss}', which does not take it`);
  }
  throwsWith({ ...good(), loss: 'dpo', chipoClip: 1 }, TypeError, "Expected no chipoClip with loss 'dpo'");
  throwsWith({ ...good(), loss: 'dpo', groupSize: 2 }, TypeError, "Expected no groupSize with loss 'dpo'");
  throwsWith({ ...good(), loss: 'simpo' }, TypeError, "Expected no refLogps with loss 'simpo', which uses no reference model");
  throwsWith({ ...good(), loss: 'orpo', refLogps: undefined, referenceWeights: [1] }, TypeError, 'Expected no referenceWeights');
  throwsWith({ ...good(), rewards: new Float32Array(6) }, TypeError, "Expected no rewards with loss 'dpo' (only exo takes rewards)");
  throwsWith({ ...good(), loss: 'exo', exoRewardBeta: 1 }, TypeError, 'Expected rewards with exoRewardBeta');
  throwsWith({ ...good(), loss: 'chipo', chipoClip: 0 }, RangeError, 'for chipoClip but received 0');
  throwsWith({ ...good(), loss: 'chipo', chipoClip: -Infinity }, RangeError, 'for chipoClip');
  throwsWith({ ...good(), loss: 'chipo', chipoClip: NaN }, RangeError, 'for chipoClip');
  throwsWith({ ...good(), loss: 'exo', groupSize: 1 }, RangeError, 'for groupSize but received 1');
  throwsWith({ ...good(), loss: 'exo', groupSize: 2.5 }, RangeError, 'Expected an integer for groupSize but received 2.5');
  throwsWith({ ...good(), loss: 'exo', groupSize: 4 }, RangeError, 'Expected a number of rows divisible by groupSize 4');
  throwsWith({ ...good(), loss: 'exo', labelSmoothing: 0 }, RangeError, '> 0 and < 1 for labelSmoothing');
  throwsWith({ ...good(), loss: 'exo', rewards: new Float32Array(5) }, RangeError, 'Expected a Float32Array of length 6 for rewards');
  throwsWith({ ...good(), loss: 'exo', rewards: Float32Array.of(0, 0, NaN, 0, 0, 0) }, RangeError, 'Expected finite rewards but received NaN at row 2');
  throwsWith({ ...good(), loss: 'exo', rewards: new Float32Array(6), exoRewardBeta: 0 }, RangeError, 'for exoRewardBeta');
  throwsWith({ ...good(), nllWeight: 1, nllReduction: 'mean' }, TypeError, "Expected one of 'tokenMean', 'sum' for nllReduction but received 'mean'");
  throwsWith({ ...good(), refLogps: [] }, TypeError, 'Expected between 1 and 64 reference arrays for refLogps');
  throwsWith({ ...good(), refLogps: [new Float32Array(6), new Float32Array(5)] }, RangeError, 'for refLogps[1] but received Float32Array of length 5');
  throwsWith({ ...good(), refLogps: [new Float32Array(6), Float32Array.of(0, 0, 0, Infinity, 0, 0)] }, RangeError, 'Expected finite refLogps[1] but received Infinity at row 3');
  throwsWith({ ...good(), refLogps: [new Float32Array(6), new Float32Array(6)], referenceWeights: [1] }, RangeError, 'Expected 2 positive finite numbers (one per reference array) for referenceWeights');
  throwsWith({ ...good(), refLogps: [new Float32Array(6), new Float32Array(6)], referenceWeights: [1, -1] }, RangeError, 'for referenceWeights');
  throwsWith({ ...good(), referenceClip: -0.1 }, RangeError, 'Expected a finite number >= 0 for referenceClip but received -0.1');
  // Infinity is chipo's default and a valid clip; the loss is the unclipped one
  const args = { ...good(), loss: 'chipo' as const };
  assert.is(preferenceLoss({ ...args, chipoClip: Infinity }).loss, preferenceLoss(args).loss);
});

test('the registry: every loss has a formula, a source and a unique kind; aliases resolve', () => {
  const kinds = new Set(LOSSES.map((entry) => entry.kind));
  assert.is(kinds.size, LOSSES.length);
  for (const entry of LOSSES) assert.ok(entry.formula.length > 0 && entry.source.length > 0, entry.name);
  const batch = good();
  assert.is(preferenceLoss({ ...batch, loss: 'sigmoid' }).loss, preferenceLoss({ ...batch, loss: 'dpo' }).loss);
});

// ---- sequenceLogps on tensors -------------------------------------------------------------------

test('sequenceLogps on a cpu tensor: the typed-array result, any row count, every dtype, averaged', () => {
  withScope(() => {
    for (const dtype of DTYPES) {
      const batch = makeBatch({ pairs: 2, tokens: 5, vocab: 19, dtype, seed: 40, emptyRows: [2] });
      // three rows: an odd count is fine for sequenceLogps
      const rows = 3, { shape } = batch, size = shape[1] * shape[2];
      const logits = batch.logits.slice(0, rows * size);
      const labels = batch.labels.slice(0, rows * shape[1]);
      const tensor = Tensor.from(logits, [rows, shape[1], shape[2]], dtype);
      for (const averageLogProb of [false, true]) {
        const a = sequenceLogps({ logits: tensor, labels, averageLogProb });
        const b = sequenceLogps({ logits, dtype, shape: [rows, shape[1], shape[2]], labels, averageLogProb });
        assert.equal(Array.from(a.logps), Array.from(b.logps), `${dtype} averageLogProb ${averageLogProb}`);
        assert.equal(Array.from(a.tokenCounts), Array.from(b.tokenCounts));
        assert.equal(a.emptyRows, [2]);
      }
      const labelTensor = Tensor.from(labels, [rows, shape[1]], 'i32');
      assert.equal(Array.from(sequenceLogps({ logits: tensor, labels: labelTensor }).logps), Array.from(sequenceLogps({ logits: tensor, labels }).logps));
    }
  });
});

test('sequenceLogps on a tensor: bad input names the argument', () => {
  withScope(() => {
    const t = Tensor.from(new Float32Array(2 * 3 * 4), [2, 3, 4]);
    assert.throws(() => sequenceLogps({ logits: t, labels: new Int32Array(5) }), /for labels but received Int32Array of length 5/);
    assert.throws(() => sequenceLogps({ logits: t, labels: new Int32Array(6), dtype: 'bf16' }), /the logits' dtype 'f32'/);
    assert.throws(() => sequenceLogps({ logits: Tensor.from(new Float32Array(4), [4]), labels: new Int32Array(6) }), /tensor of shape \[rows, T, V\] for logits/);
    const nan = Tensor.from(Float32Array.of(0, 0, 0, NaN, ...new Array(20).fill(0)), [2, 3, 4]);
    assert.throws(() => sequenceLogps({ logits: nan, labels: new Int32Array(6) }), /row 0, token 0, vocabulary index 3/);
    t.dispose();
    assert.throws(() => sequenceLogps({ logits: t, labels: new Int32Array(6) }), /disposed/);
  });
});

test.run();
