/**
 * The check every op of lib/ops gets in the tests (test/nn-ops.test.ts, test/nn/llama-ops.test.ts):
 * forward against a float64 reference, backward against central finite differences of it
 * (accumulating into non-zero gradients), both implementations, fast against reference.
 */
import * as assert from 'uvu/assert';

import { setThreads } from '../../lib/native';
import * as nn from '../../lib/ops';
import { assertClose } from '../batch';
import { numericGrad, randomFloats, type Vec } from '../nn-fp64';

const f64 = (x: Float32Array): Vec => Float64Array.from(x);
const maxAbs = (x: ArrayLike<number>) => Array.from(x).reduce((m, v) => Math.max(m, Math.abs(v)), 0);
export const IMPLS: nn.Implementation[] = ['fast', 'reference'];

export interface OpSpec {
  name: string;
  /** The differentiable inputs. */
  inputs: Record<string, Float32Array>;
  forward64(x: Record<string, Vec>): Vec;
  forward(impl: nn.Implementation): Float32Array;
  /** Runs forward (for what it saves) then backward with dout, accumulating into grads. */
  backward(impl: nn.Implementation, dout: Float32Array, grads: Record<string, Float32Array>): void;
  /** Relative to the largest expected magnitude. */
  forwardTolerance?: number;
  gradTolerance?: number;
}

export function checkOp(spec: OpSpec): void {
  const { forwardTolerance = 1e-5, gradTolerance = 2e-4 } = spec;
  const x64: Record<string, Vec> = Object.fromEntries(Object.entries(spec.inputs).map(([k, v]) => [k, f64(v)]));
  const expected = spec.forward64(x64);
  const scale = maxAbs(expected) + 1e-30;
  const outs = IMPLS.map((impl) => {
    const out = spec.forward(impl);
    assertClose(`${spec.name} forward (${impl}) vs fp64`, out, expected, (i) => forwardTolerance * (Math.abs(expected[i]) + scale));
    return out;
  });
  assertClose(`${spec.name} forward fast vs reference`, outs[0], outs[1], () => 2 * forwardTolerance * scale);

  const dout = randomFloats(expected.length, 99);
  const grads = IMPLS.map((impl) => {
    const start = Object.fromEntries(Object.entries(spec.inputs).map(([k, v], j) => [k, randomFloats(v.length, 50 + j)]));
    const grads = Object.fromEntries(Object.entries(start).map(([k, v]) => [k, Float32Array.from(v)]));
    spec.backward(impl, dout, grads);
    for (const name of Object.keys(spec.inputs)) {
      const numeric = numericGrad((x) => spec.forward64({ ...x64, [name]: x }), x64[name], f64(dout));
      const added = f64(grads[name]).map((g, i) => g - start[name][i]);
      const gScale = maxAbs(numeric) + 1e-30;
      assertClose(`${spec.name} d${name} (${impl}) vs finite differences`, added, numeric,
        (i) => gradTolerance * (Math.abs(numeric[i]) + gScale) + 2e-7);
    }
    return grads;
  });
  for (const name of Object.keys(spec.inputs)) {
    const gScale = maxAbs(grads[1][name]);
    assertClose(`${spec.name} d${name} fast vs reference`, grads[0][name], grads[1][name], () => 2e-5 * gScale + 1e-7);
  }
}


/**
 * `runAll` at 1, 2 and 3 threads (then back to 2): every array it returns has the same bits, and
 * every number the same value, whatever the pool's split.
 */
export function assertThreadInvariant(runAll: () => Record<string, Float32Array | number>): void {
  const runs = [1, 2, 3].map((threads) => {
    setThreads(threads);
    return runAll();
  });
  setThreads(2);
  for (const [threads, run] of [[2, runs[1]], [3, runs[2]]] as const) {
    for (const [name, value] of Object.entries(runs[0])) {
      const other = run[name];
      if (typeof value === 'number') {
        assert.is(other, value, `${name}: ${threads} threads vs 1`);
        continue;
      }
      const i = value.findIndex((x, k) => !Object.is(x, (other as Float32Array)[k]));
      assert.is(i, -1, `${name}: ${threads} threads differ from 1 at [${i}]: ${(other as Float32Array)[i]} vs ${value[i]}`);
    }
  }
}
