/**
 * The ops on Tensors (lib/functional.ts) through the autograd tape: for each op, the gradients
 * that loss.backward() leaves in its inputs equal central finite differences of the float64
 * reference (test/nn-fp64.ts) of sum(op(inputs) * w); gradients meeting at a tensor are summed;
 * scopes free a step's tensors.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { add, causalSelfAttention, crossEntropy, embedding, gelu, layerNorm, linear, matmul, mean, mul, scale, softmax, sum } from '../lib/functional';
import { Tensor, hostMemory, noGrad, withScope } from '../lib/index';
import { SANITIZED, residentMiB } from './memory';
import { assertClose } from './batch';
import { add64, attention64, gelu64, layernorm64, mul64, numericGrad, randomFloats, softmax64, type Vec } from './nn-fp64';

function param(values: Float32Array, shape: number[]): Tensor {
  const t = Tensor.from(values, shape);
  t.requiresGrad = true;
  return t;
}

/**
 * Checks the gradients of `op` against finite differences of `reference`: the inputs listed in
 * `inputs` (values and shapes) each get a gradient; `reference(xs)` is the float64 forward.
 */
function checkGradients(name: string, inputs: { values: Float32Array; shape: number[] }[],
  op: (ts: Tensor[]) => Tensor, reference: (xs: Vec[]) => Vec, tolerance = 2e-3): void {
  withScope(() => {
    const tensors = inputs.map((x) => param(x.values, x.shape));
    const out = op(tensors);
    const w = randomFloats(out.size, 99);
    const loss = sum(mul(out, Tensor.from(w, [...out.shape])));
    assertClose(`${name}: forward`, out.toArray(), reference(inputs.map((x) => Float64Array.from(x.values))), (i) => 1e-4 * (1 + Math.abs(out.toArray()[i])));
    loss.backward();
    inputs.forEach((x, k) => {
      const xs = inputs.map((y) => Float64Array.from(y.values));
      const numeric = numericGrad((v) => reference(xs.map((y, j) => (j === k ? v : y))), xs[k], Float64Array.from(w), 1e-3);
      const scaleOf = numeric.reduce((m, g) => Math.max(m, Math.abs(g)), 0);
      assertClose(`${name}: gradient of input ${k}`, tensors[k].grad!.toArray(), numeric, () => tolerance * (1 + scaleOf));
    });
    tensors.forEach((t) => t.dispose());
  });
}

test('add and mul with broadcasting, scale', () => {
  const a = { values: randomFloats(2 * 3 * 4, 1), shape: [2, 3, 4] };
  const b = { values: randomFloats(4, 2), shape: [4] };
  const b2 = { values: randomFloats(12, 3), shape: [3, 4] };
  checkGradients('add [2,3,4]+[4]', [a, b], ([x, y]) => add(x, y), ([x, y]) => add64(x, y));
  checkGradients('add [2,3,4]+[3,4]', [a, b2], ([x, y]) => add(x, y), ([x, y]) => add64(x, y));
  checkGradients('mul [2,3,4]*[4]', [a, b], ([x, y]) => mul(x, y), ([x, y]) => mul64(x, y));
  checkGradients('scale', [a], ([x]) => scale(x, -2.5), ([x]) => x.map((v) => v * -2.5));
  assert.throws(() => withScope(() => add(Tensor.zeros([2, 3]), Tensor.zeros([2]))), /add: expected the second shape to be the trailing dims of the first .* received \[2,3\] and \[2\]/);
});

/** float64 a [B, M, K] @ b ([K, N] shared, or [B, K, N]; transposed [N, K] / [B, N, K] with transB). */
function matmul64(a: Vec, b: Vec, batch: number, m: number, k: number, n: number, transB: boolean, shared: boolean): Vec {
  const out = new Float64Array(batch * m * n);
  for (let p = 0; p < batch; p++) {
    const bOffset = shared ? 0 : p * k * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let acc = 0;
        for (let q = 0; q < k; q++) acc += a[p * m * k + i * k + q] * b[bOffset + (transB ? j * k + q : q * n + j)];
        out[p * m * n + i * n + j] = acc;
      }
    }
  }
  return out;
}

test('matmul: shared and batched b, transposed or not; linear', () => {
  const a = { values: randomFloats(2 * 3 * 5, 20), shape: [2, 3, 5] };
  const b = { values: randomFloats(5 * 4, 21), shape: [5, 4] };
  const bt = { values: randomFloats(4 * 5, 22), shape: [4, 5] };
  const bb = { values: randomFloats(2 * 5 * 4, 23), shape: [2, 5, 4] };
  const bbt = { values: randomFloats(2 * 4 * 5, 24), shape: [2, 4, 5] };
  checkGradients('matmul [2,3,5]@[5,4]', [a, b], ([x, y]) => matmul(x, y), ([x, y]) => matmul64(x, y, 2, 3, 5, 4, false, true));
  checkGradients('matmul [2,3,5]@[4,5]^T', [a, bt], ([x, y]) => matmul(x, y, { transB: true }), ([x, y]) => matmul64(x, y, 2, 3, 5, 4, true, true));
  checkGradients('matmul [2,3,5]@[2,5,4]', [a, bb], ([x, y]) => matmul(x, y), ([x, y]) => matmul64(x, y, 2, 3, 5, 4, false, false));
  checkGradients('matmul [2,3,5]@[2,4,5]^T', [a, bbt], ([x, y]) => matmul(x, y, { transB: true }), ([x, y]) => matmul64(x, y, 2, 3, 5, 4, true, false));
  const bias = { values: randomFloats(4, 25), shape: [4] };
  checkGradients('linear', [a, bt, bias], ([x, w, c]) => linear(x, w, c), ([x, w, c]) => add64(matmul64(x, w, 2, 3, 5, 4, true, true), c));
  assert.throws(() => withScope(() => matmul(Tensor.zeros([3, 5]), Tensor.zeros([4, 4]))), /matmul: expected b's K \(second to last dim\) to be 5 but received \[4,4\] with a of \[3,5\]/);
  assert.throws(() => withScope(() => matmul(Tensor.zeros([2, 3, 5]), Tensor.zeros([3, 5, 4]))), /matmul: expected b of shape \[K, N\] or \[2, K, N\] but received \[3,5,4\]/);
});

test('layerNorm, gelu, softmax, attention', () => {
  const x = { values: randomFloats(3 * 8, 4, 2), shape: [3, 8] };
  const w = { values: randomFloats(8, 5), shape: [8] };
  const b = { values: randomFloats(8, 6), shape: [8] };
  checkGradients('layerNorm', [x, w, b], ([t, tw, tb]) => layerNorm(t, tw, tb), ([t, tw, tb]) => layernorm64(t, tw, tb, 8));
  checkGradients('gelu', [x], ([t]) => gelu(t), ([t]) => gelu64(t));
  checkGradients('softmax', [x], ([t]) => softmax(t), ([t]) => softmax64(t, 8));
  const qkv = { values: randomFloats(2 * 5 * 3 * 6, 7), shape: [2, 5, 18] };
  checkGradients('causalSelfAttention', [qkv], ([t]) => causalSelfAttention(t, 3), ([t]) => attention64(t, 2, 5, 6, 3).out);
  assert.throws(() => withScope(() => causalSelfAttention(Tensor.zeros([1, 2, 18]), 4)), /expected a head count dividing C = 6 but received 4/);
});

test('embedding: rows gathered, gradients scattered and summed for repeated indices', () => {
  const table = param(randomFloats(5 * 3, 8), [5, 3]);
  withScope(() => {
    const out = embedding(table, new Int32Array([4, 0, 4]));
    assert.equal(out.shape, [3, 3]);
    assert.equal(Array.from(out.toArray().subarray(0, 3)), Array.from(table.toArray().subarray(12, 15)));
    sum(out).backward();
    assert.equal(Array.from(table.grad!.toArray()), [1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2]);
    assert.throws(() => embedding(table, new Int32Array([5])), /embedding: expected indices in \[0, 5\) but received 5 at position 0/);
  });
  table.dispose();
});

test('crossEntropy through the fused kernel: the mean NLL and its gradient', () => {
  const values = randomFloats(2 * 3 * 7, 10, 3);
  const labels = new Int32Array([1, 6, -100, 0, 3, 2]);
  const reference = ([z]: Vec[]) => {
    let total = 0;
    let count = 0;
    for (let r = 0; r < 6; r++) {
      if (labels[r] === -100) continue;
      const row = z.subarray(r * 7, r * 7 + 7);
      const max = Math.max(...row);
      const lse = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
      total += lse - row[labels[r]];
      count++;
    }
    return Float64Array.of(total / count);
  };
  checkGradients('crossEntropy', [{ values, shape: [2, 3, 7] }], ([t]) => crossEntropy(t, labels), reference);
});

test('a tensor used twice gets the sum of both gradients; noGrad records nothing', () => {
  const x = param(Float32Array.of(1, 2, 3), [3]);
  withScope(() => {
    sum(add(mul(x, x), x)).backward(); // d/dx (x^2 + x) = 2x + 1
    assert.equal(Array.from(x.grad!.toArray()), [3, 5, 7]);
    sum(x).backward(); // accumulates into .grad across calls
    assert.equal(Array.from(x.grad!.toArray()), [4, 6, 8]);
    const y = noGrad(() => mean(scale(x, 2)));
    assert.is(Tensor.nodeOf(y), null);
    assert.is(y.item(), 4);
  });
  assert.not.ok(x.grad!.disposed, 'a leaf keeps its gradient past the scope');
  x.dispose();
  assert.ok(x.grad === null);
});

test('a scoped step frees every intermediate: 1,000 steps hold memory flat', () => {
  const w = param(randomFloats(256 * 256, 11), [256, 256]);
  const bias = param(randomFloats(256, 12), [256]);
  const step = () => withScope(() => {
    const h = gelu(add(mul(w, w), bias));
    mean(softmax(h)).backward();
  });
  for (let i = 0; i < 50; i++) step();
  const live = hostMemory().liveTensors;
  const before = residentMiB();
  for (let i = 0; i < 1000; i++) step();
  // Every intermediate freed by the scope, exactly; that holds under the sanitizers too.
  assert.is(hostMemory().liveTensors, live, 'tensors alive after 1,000 steps');
  const grown = residentMiB() - before;
  // Under ASan, freed memory sits in its quarantine: resident memory is not the allocator's there.
  if (!SANITIZED) assert.ok(grown < 32, `resident memory grew by ${grown.toFixed(1)} MiB over 1,000 steps`);
  w.dispose();
  bias.dispose();
});

test.run();
