/**
 * The GPT's ops, continued: bit-identical results for 1, 2 and 3 threads (shapes with SIMD
 * tails, long sums over several blocks), AdamW against float64, the global gradient norm and
 * clipping, and bad inputs (wrong lengths, out-of-range indices, heads not dividing C, aliasing).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import * as nn from '../lib/ops';
import { assertClose } from './batch';
import { randomFloats } from './nn-fp64';
import { assertThreadInvariant } from './support/ops';

/**
 * Every output and gradient of every op, fast path, at shapes with 16-lane tails, each op above
 * native/cpu/nn_parallel.h's threshold (2^19 element-visits) so that the pool does split it.
 */
function runAll(): Record<string, Float32Array | number> {
  const rows = 2053, C = 259, shape = [rows, C];
  const a = randomFloats(rows * C, 1, 2), b = randomFloats(C, 2), dout = randomFloats(rows * C, 3);
  const r: Record<string, Float32Array | number> = {};
  r.add = nn.addForward({ a, aShape: shape, b, bShape: [C] });
  r.mul = nn.mulForward({ a, aShape: shape, b, bShape: [C] });
  r.da = new Float32Array(rows * C); r.db = new Float32Array(C);
  nn.mulBackward({ a, b, aShape: shape, bShape: [C], dout, da: r.da, db: r.db });
  nn.addBackward({ aShape: shape, bShape: [C], dout, da: r.da, db: r.db });
  const long = randomFloats(130 * 4096 + 77, 4);
  r.sumAll = nn.reduceForward('sum', { a: long, shape: [long.length], over: 'all' });
  r.meanLast = nn.reduceForward('mean', { a, shape, over: 'last' });
  const idx = Int32Array.from({ length: 2100 }, (_, i) => (i * 7) % 11);
  r.emb = nn.embeddingForward({ idx, table: randomFloats(11 * C, 5), vocab: 11, channels: C });
  r.dtable = new Float32Array(11 * C);
  nn.embeddingBackward({ idx, dout: randomFloats(2100 * C, 6), dtable: r.dtable, vocab: 11, channels: C });
  const weight = randomFloats(C, 7), bias = randomFloats(C, 8);
  const ln = nn.layerNormForward({ inp: a, weight, bias, rows, channels: C });
  r.ln = ln.out; r.lnMean = ln.mean; r.lnRstd = ln.rstd;
  r.dinp = new Float32Array(rows * C); r.dweight = new Float32Array(C); r.dbias = new Float32Array(C);
  nn.layerNormBackward({ dout, inp: a, weight, mean: ln.mean, rstd: ln.rstd, dinp: r.dinp, dweight: r.dweight, dbias: r.dbias, rows, channels: C });
  r.gelu = nn.geluForward({ inp: a });
  r.dgelu = new Float32Array(rows * C);
  nn.geluBackward({ inp: a, dout, dinp: r.dgelu });
  r.softmax = nn.softmaxForward({ inp: a, rows, cols: C });
  r.dsoftmax = new Float32Array(rows * C);
  nn.softmaxBackward({ out: r.softmax, dout, dinp: r.dsoftmax, rows, cols: C });
  const att = { batch: 3, tokens: 33, channels: 48, heads: 4 };
  const qkv = randomFloats(3 * 33 * 144, 9);
  const fwd = nn.causalSelfAttentionForward({ qkv, ...att });
  r.attOut = fwd.out; r.att = fwd.att;
  r.dqkv = new Float32Array(qkv.length);
  nn.causalSelfAttentionBackward({ qkv, att: fwd.att, dout: randomFloats(3 * 33 * 48, 10), dqkv: r.dqkv, ...att });
  const n = 140001, param = randomFloats(n, 11), m = new Float32Array(n), v = new Float32Array(n);
  for (let step = 1; step <= 3; step++) nn.adamwUpdate({ param, grad: randomFloats(n, 11 + step), m, v, lr: 1e-3, weightDecay: 0.1, step });
  r.param = param;
  r.norm = nn.globalGradNorm([long, a, b]);
  return r;
}

test('every op: bit-identical results for 1, 2 and 3 threads', () => {
  assertThreadInvariant(runAll);
});

test('AdamW: three steps against float64, fast and reference identical', () => {
  const n = 203;
  const start = randomFloats(n, 20);
  const grads = [1, 2, 3].map((k) => randomFloats(n, 20 + k, 0.1));
  const o = { lr: 3e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
  const p64 = Float64Array.from(start), m64 = new Float64Array(n), v64 = new Float64Array(n);
  for (let t = 1; t <= 3; t++) {
    for (let i = 0; i < n; i++) {
      const g = grads[t - 1][i];
      m64[i] = o.beta1 * m64[i] + (1 - o.beta1) * g;
      v64[i] = o.beta2 * v64[i] + (1 - o.beta2) * g * g;
      const mhat = m64[i] / (1 - o.beta1 ** t), vhat = v64[i] / (1 - o.beta2 ** t);
      p64[i] -= o.lr * (mhat / (Math.sqrt(vhat) + o.eps) + o.weightDecay * p64[i]);
    }
  }
  const results = (['fast', 'reference'] as const).map((implementation) => {
    const param = Float32Array.from(start), m = new Float32Array(n), v = new Float32Array(n);
    for (let t = 1; t <= 3; t++) nn.adamwUpdate({ param, grad: grads[t - 1], m, v, ...o, step: t, implementation });
    assertClose(`param (${implementation})`, param, p64, (i) => 1e-6 * (1 + Math.abs(p64[i])));
    assertClose(`m (${implementation})`, m, m64, (i) => 1e-7 + 1e-6 * Math.abs(m64[i]));
    assertClose(`v (${implementation})`, v, v64, (i) => 1e-10 + 1e-5 * Math.abs(v64[i]));
    return param;
  });
  assert.equal(Array.from(results[0]), Array.from(results[1]), 'fast and reference AdamW differ');
});

test('global gradient norm (fp64, fixed order) and clipping', () => {
  const grads = [randomFloats(10000, 30), randomFloats(7, 31), randomFloats(4097, 32)];
  let sum = 0;
  for (const g of grads) for (const x of g) sum += x * x;
  const fast = nn.globalGradNorm(grads);
  const reference = nn.globalGradNorm(grads, { implementation: 'reference' });
  assert.ok(Math.abs(fast - Math.sqrt(sum)) <= 1e-12 * Math.sqrt(sum), `norm ${fast} vs ${Math.sqrt(sum)}`);
  assert.ok(Math.abs(reference - Math.sqrt(sum)) <= 1e-12 * Math.sqrt(sum), `reference norm ${reference}`);
  const copies = grads.map((g) => Float32Array.from(g));
  assert.is(nn.clipGradients(copies, 1e6), fast, 'no clipping below maxNorm');
  assert.equal(Array.from(copies[0]), Array.from(grads[0]));
  assert.is(nn.clipGradients(copies, 1.0), fast);
  const after = nn.globalGradNorm(copies);
  assert.ok(Math.abs(after - 1) < 1e-5, `norm after clipping: ${after}`);
});

test('bad inputs: wrong lengths, out-of-range indices, heads not dividing C, aliasing, bad hyper-parameters', () => {
  const throwsWith = (fn: () => unknown, pattern: RegExp) => assert.throws(fn, (e: Error) => pattern.test(e.message), `expected ${pattern}`);
  const a = new Float32Array(60);
  throwsWith(() => nn.addForward({ a, aShape: [5, 12], b: new Float32Array(11), bShape: [11] }), /trailing dims of the first .*but received \[5,12\] and \[11\]/);
  throwsWith(() => nn.addForward({ a, aShape: [5, 12], b: new Float32Array(11), bShape: [12] }), /Float32Array of length 12 .* for b but received Float32Array of length 11/);
  throwsWith(() => nn.mulForward({ a: new Float64Array(60) as unknown as Float32Array, aShape: [5, 12], b: new Float32Array(12), bShape: [12] }), /Expected a Float32Array .*for a but received Float64Array/);
  throwsWith(() => nn.addBackward({ aShape: [5, 12], bShape: [12], dout: a, da: a }), /da to share no memory with dout/);
  throwsWith(() => nn.reduceForward('sum', { a, shape: [5, 12], over: 'first' as 'all' }), /one of 'all', 'last' for over/);
  throwsWith(() => nn.embeddingForward({ idx: Int32Array.from([0, 7]), table: new Float32Array(7 * 12), vocab: 7, channels: 12 }), /idx in \[0, 7\) but received 7 at position 1/);
  throwsWith(() => nn.embeddingBackward({ idx: Int32Array.from([-1]), dout: new Float32Array(12), dtable: new Float32Array(84), vocab: 7, channels: 12 }), /received -1 at position 0/);
  throwsWith(() => nn.embeddingForward({ idx: [0, 1] as unknown as Int32Array, table: new Float32Array(84), vocab: 7, channels: 12 }), /an Int32Array for idx/);
  throwsWith(() => nn.layerNormForward({ inp: a, weight: new Float32Array(12), bias: new Float32Array(11), rows: 5, channels: 12 }), /length 12 \(\[channels 12\]\) for bias but received Float32Array of length 11/);
  throwsWith(() => nn.layerNormForward({ inp: a, weight: new Float32Array(12), bias: new Float32Array(12), rows: 0, channels: 12 }), /integer between 1 and .* for rows but received 0/);
  throwsWith(() => nn.geluForward({ inp: a, out: a }), /out to share no memory with inp/);
  throwsWith(() => nn.softmaxForward({ inp: a, rows: 6, cols: 12 }), /length 72 .* for inp but received Float32Array of length 60/);
  throwsWith(() => nn.causalSelfAttentionForward({ qkv: new Float32Array(2 * 5 * 36), batch: 2, tokens: 5, channels: 12, heads: 5 }), /heads dividing channels \(12\) but received 5 of type number/);
  throwsWith(() => nn.causalSelfAttentionForward({ qkv: new Float32Array(2 * 5 * 35), batch: 2, tokens: 5, channels: 12, heads: 3 }), /length 360 .* for qkv/);
  const qkv = new Float32Array(2 * 5 * 36);
  throwsWith(() => nn.causalSelfAttentionForward({ qkv, out: qkv.subarray(0, 120), batch: 2, tokens: 5, channels: 12, heads: 3 }), /out to share no memory with qkv/);
  const p = new Float32Array(4);
  throwsWith(() => nn.adamwUpdate({ param: p, grad: new Float32Array(4), m: new Float32Array(4), v: new Float32Array(4), lr: 1e-3, step: 0 }), /Expected a positive integer for step but received 0/);
  throwsWith(() => nn.adamwUpdate({ param: p, grad: new Float32Array(4), m: new Float32Array(4), v: new Float32Array(4), lr: 1e-3, beta2: 1, step: 1 }), /< 1 for beta2 but received 1/);
  throwsWith(() => nn.adamwUpdate({ param: p, grad: new Float32Array(3), m: new Float32Array(4), v: new Float32Array(4), lr: 1e-3, step: 1 }), /length 4 \(the length of param\) for grad/);
  throwsWith(() => nn.adamwUpdate({ param: p, grad: new Float32Array(4), m: p, v: new Float32Array(4), lr: 1e-3, step: 1 }), /param to share no memory with m/);
  throwsWith(() => nn.globalGradNorm([p, new Int32Array(2) as unknown as Float32Array]), /for grads\[1\] but received Int32Array/);
  throwsWith(() => nn.scaleForward({ a: p, s: Number.NaN }), /finite number for s but received NaN/);
  throwsWith(() => nn.layerNormForward({ inp: a, weight: new Float32Array(12), bias: new Float32Array(12), rows: 5, channels: 12, implementation: 'slow' as 'fast' }), /one of 'fast', 'reference' for implementation/);
});

test.run();
