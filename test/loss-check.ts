/**
 * The check of one loss call against float64 (test/fp64.ts) and the native scalar reference:
 * loss, logps, token counts and dlogits, for losses.test.ts and losses-round2.test.ts.
 */
import * as assert from 'uvu/assert';

import { preferenceLoss, type LossName, type PreferenceLossArgs } from '../lib/index';
import { assertClose, decoded, makeBatch, UNIT, type BatchSpec, type TestBatch } from './batch';
import { batchLoss64, coefByFiniteDifference, defaultOptions, dlogits64, tokenLogps, type LossOptions } from './fp64';

/** Reference log-probs a little off the policy's, so that every loss sees both signs of u. */
export function refNear(pi: Float64Array, seed: number): Float32Array {
  const ref = new Float32Array(pi.length);
  for (let s = 0; s < pi.length; s++) ref[s] = pi[s] + Math.sin(seed * 7.3 + s * 1.9) * 1.5;
  return ref;
}

export interface Checked {
  batch: TestBatch;
  args: PreferenceLossArgs;
}

/**
 * Runs one loss on one batch with both implementations and checks loss, logps, token counts,
 * metrics and dlogits against float64, and the fast path against the reference.
 */
export function checkAgainstFp64(spec: BatchSpec, loss: LossName, overrides: Partial<LossOptions> = {}): Checked {
  const batch = makeBatch(spec);
  const { z, shape, labels, dtype } = batch;
  const exact = tokenLogps(z, shape, labels);
  const refLogps = loss === 'simpo' || loss === 'orpo' ? undefined : refNear(exact.pi, spec.seed ?? 1);
  const ref64 = refLogps ? Float64Array.from(refLogps) : null;
  const options = defaultOptions(loss, overrides);
  const args: PreferenceLossArgs = { loss, logits: batch.logits, dtype, shape, labels, refLogps, ...overrides };
  const fast = preferenceLoss(args);
  const scalar = preferenceLoss({ ...args, implementation: 'reference' });
  const where = `${loss} ${dtype} [${shape}]${Object.keys(overrides).length ? ' ' + JSON.stringify(overrides) : ''}`;

  // Per row: fp32 arithmetic on each token, sums in fp64.
  const [R, T, V] = shape;
  const piTolerance = new Float64Array(R);
  for (let s = 0; s < R; s++) {
    for (let t = 0; t < T; t++) {
      const k = s * T + t;
      if (labels[k] !== -100) piTolerance[s] += 16 * 2 ** -24 * (Math.abs(exact.lse[k]) + Math.abs(z[k * V + labels[k]]) + 1);
    }
  }
  assert.equal(Array.from(fast.tokenCounts), Array.from(exact.n), `${where}: tokenCounts`);
  assertClose(`${where}: logps (fast)`, fast.logps, exact.pi, (s) => piTolerance[s] + Math.abs(exact.pi[s]) * 2 ** -23);
  assertClose(`${where}: logps (reference)`, scalar.logps, exact.pi, (s) => piTolerance[s] + Math.abs(exact.pi[s]) * 2 ** -23);
  assert.equal(fast.emptyRows, Array.from(exact.n).flatMap((n, s) => (n === 0 ? [s] : [])), `${where}: emptyRows`);

  const coef = coefByFiniteDifference(loss, options, exact.pi, exact.n, ref64);
  const loss64 = batchLoss64(loss, options, exact.pi, exact.n, ref64);
  const lossTolerance = coef.reduce((sum, c, s) => sum + Math.abs(c) * piTolerance[s], 0) + 1e-6 * (1 + Math.abs(loss64));
  assertClose(`${where}: loss`, [fast.loss, scalar.loss], [loss64, loss64], () => lossTolerance);

  const maxCoef = coef.reduce((m, c) => Math.max(m, Math.abs(c)), 0);
  // How far the coefficients move when every logps moves within its tolerance (the loss's
  // curvature times the fp32 error of the logps: large for logits of magnitude 1e4).
  const coefShift = [1, -1].map((sign) =>
    coefByFiniteDifference(loss, options, exact.pi.map((p, s) => p + sign * piTolerance[s]), exact.n, ref64));
  const coefError = coef.map((c, s) => Math.max(...coefShift.map((shifted) => Math.abs(shifted[s] - c))));
  const expected = dlogits64(z, shape, labels, exact.lse, coef);
  // fp32 softmax (a few ulp), the coefficient's own error (finite differences and the fp32 logps),
  // then the rounding of the stored dtype.
  const unit = UNIT[dtype];
  const rowOf = (i: number) => Math.floor(i / (T * V));
  const gradTolerance = (i: number) =>
    Math.abs(expected[i]) * unit + maxCoef * 2e-5 + coefError[rowOf(i)] + (dtype === 'f16' ? 2 ** -24 : 0);
  assertClose(`${where}: dlogits (fast) vs fp64`, decoded(fast.dlogits!, dtype), expected, gradTolerance);
  // The fast path against the scalar spec: the same to within one step of the storage dtype.
  const scalarGrad = decoded(scalar.dlogits!, dtype);
  assertClose(`${where}: dlogits fast vs reference`, decoded(fast.dlogits!, dtype), scalarGrad,
    (i) => Math.abs(scalarGrad[i]) * 2 * unit + maxCoef * 2 ** -20 + (dtype === 'f16' ? 2 ** -24 : 0));
  return { batch, args };
}

