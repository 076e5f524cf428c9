/**
 * The Llama family's ops (lib/ops: rmsNorm, rope, glu, grouped-query attention) on small odd
 * shapes: forward against float64 references (test/nn-fp64.ts), backward against central finite
 * differences of them, both implementations, fast against reference (test/support/ops.ts), at
 * every SIMD level the CPU has (this file runs itself again under FUSEDPO_SIMD); the same bits
 * for 1, 2 and 3 threads; and GPT-2's packed attention is the same kernel as the grouped form with
 * one key/value head per query head.
 */
import { spawnSync } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { native } from '../../lib/native';
import * as nn from '../../lib/ops';
import { assertClose } from '../batch';
import { glu64, groupedAttention64, randomFloats, rmsnorm64, rope64 } from '../nn-fp64';
import { IMPLS, assertThreadInvariant, checkOp } from '../support/ops';

const f64 = (x: Float32Array) => Float64Array.from(x);

for (const [rows, C, offset, eps] of [[7, 13, 0, 1e-6], [3, 64, 1, 1e-5], [1, 1, 0, 1e-6], [33, 100, 0, 1e-5]]) {
  test(`rmsNorm rows ${rows} C ${C} offset ${offset}: forward and backward`, () => {
    const inputs = { inp: randomFloats(rows * C, 3, 2), weight: randomFloats(C, 4, 1) };
    const forward = (implementation: nn.Implementation) => nn.rmsNormForward({ ...inputs, rows, channels: C, eps, offset, implementation });
    checkOp({
      name: `rmsNorm [${rows}, ${C}]`,
      inputs,
      forward64: (x) => rmsnorm64(x.inp, x.weight, C, eps, offset),
      forward: (implementation) => forward(implementation).out,
      backward: (implementation, dout, g) => {
        const { rstd } = forward(implementation);
        nn.rmsNormBackward({ ...inputs, rstd, dout, dinp: g.inp, dweight: g.weight, rows, channels: C, offset, implementation });
      },
    });
  });
}

/** Angle tables [T, D/2] and the same angles as a function, for the reference. */
function angles(T: number, D: number, theta: number) {
  const angle = (t: number, i: number) => t * theta ** (-2 * i / D);
  const cos = new Float32Array(T * (D / 2)), sin = new Float32Array(T * (D / 2));
  for (let t = 0; t < T; t++) for (let i = 0; i < D / 2; i++) [cos[t * (D / 2) + i], sin[t * (D / 2) + i]] = [Math.cos(angle(t, i)), Math.sin(angle(t, i))];
  // the kernel sees the f32 tables: the reference takes their angles back exactly
  const exact = (t: number, i: number) => Math.atan2(sin[t * (D / 2) + i], cos[t * (D / 2) + i]);
  return { cos, sin, angle: exact, theta: angle };
}

for (const [B, T, H, D] of [[2, 5, 3, 6], [1, 17, 2, 34], [3, 1, 1, 2]]) {
  test(`rope B ${B} T ${T} H ${H} D ${D}: forward and backward`, () => {
    const { cos, sin, angle } = angles(T, D, 10000);
    const inputs = { inp: randomFloats(B * T * H * D, 5, 2) };
    checkOp({
      name: `rope [${B}, ${T}, ${H}, ${D}]`,
      inputs,
      forward64: (x) => rope64(x.inp, B, T, H, D, angle),
      forward: (implementation) => nn.ropeForward({ inp: inputs.inp, cos, sin, batch: B, tokens: T, heads: H, headDim: D, implementation }),
      backward: (implementation, dout, g) => nn.ropeBackward({ dout, cos, sin, dinp: g.inp, batch: B, tokens: T, heads: H, headDim: D, implementation }),
      forwardTolerance: 2e-6,
    });
  });
}

for (const activation of ['silu', 'gelu_tanh'] as const) {
  test(`glu (${activation}): forward and backward, |gate| up to 12, an odd length`, () => {
    const n = 1000 + 37;
    const inputs = { gate: randomFloats(n, 6, 12), up: randomFloats(n, 7, 3) };
    checkOp({
      name: `glu ${activation}`,
      inputs,
      forward64: (x) => glu64(x.gate, x.up, activation),
      forward: (implementation) => nn.gluForward({ ...inputs, activation, implementation }),
      backward: (implementation, dout, g) => nn.gluBackward({ ...inputs, dout, dgate: g.gate, dup: g.up, activation, implementation }),
    });
  });
}

// [B, T, NH, NKV, D, window]: multi-head, grouped, one key/value head, odd head dims, windows
for (const [B, T, NH, NKV, D, window] of [[2, 5, 4, 2, 6, 0], [1, 19, 6, 1, 7, 0], [2, 9, 3, 3, 5, 4], [1, 13, 4, 2, 17, 1], [1, 3, 2, 2, 33, 0]]) {
  test(`grouped-query attention B ${B} T ${T} heads ${NH} kvHeads ${NKV} D ${D} window ${window}: out, att, dq, dk, dv`, () => {
    const scale = 1 / Math.sqrt(D) * 1.3;
    const shape = { batch: B, tokens: T, heads: NH, kvHeads: NKV, headDim: D, scale, window };
    const inputs = { q: randomFloats(B * T * NH * D, 11, 1.5), k: randomFloats(B * T * NKV * D, 12, 1.5), v: randomFloats(B * T * NKV * D, 13, 1.5) };
    const forward = (implementation: nn.Implementation) => nn.attentionForward({ ...inputs, ...shape, implementation });
    const reference = groupedAttention64(f64(inputs.q), f64(inputs.k), f64(inputs.v), B, T, NH, NKV, D, scale, window);
    for (const implementation of IMPLS) {
      assertClose(`att (${implementation})`, forward(implementation).att, reference.att, (i) => 1e-6 + 1e-5 * reference.att[i]);
    }
    checkOp({
      name: `attention B ${B} T ${T} NH ${NH} NKV ${NKV} D ${D} W ${window}`,
      inputs,
      forward64: (x) => groupedAttention64(x.q, x.k, x.v, B, T, NH, NKV, D, scale, window).out,
      forward: (implementation) => forward(implementation).out,
      backward: (implementation, dout, g) => {
        const { att } = forward(implementation);
        nn.attentionBackward({ ...inputs, ...shape, att, dout, dq: g.q, dk: g.k, dv: g.v, implementation });
      },
    });
  });
}

test('GPT-2\'s packed attention is the grouped kernel with one key/value head per query head: the same bits', () => {
  const B = 2, T = 7, C = 12, NH = 3, D = C / NH;
  const qkv = randomFloats(B * T * 3 * C, 21, 1.5);
  const split = (part: number) => Float32Array.from({ length: B * T * C }, (_, i) => qkv[Math.floor(i / C) * 3 * C + part * C + (i % C)]);
  const [q, k, v] = [0, 1, 2].map(split);
  for (const implementation of IMPLS) {
    const packed = nn.causalSelfAttentionForward({ qkv, batch: B, tokens: T, channels: C, heads: NH, implementation });
    const grouped = nn.attentionForward({ q, k, v, batch: B, tokens: T, heads: NH, headDim: D, implementation });
    assert.equal(Array.from(grouped.out), Array.from(packed.out), `${implementation}: out`);
    assert.equal(Array.from(grouped.att), Array.from(packed.att), `${implementation}: att`);
  }
});

test('bad arguments are named: heads not divisible by kvHeads, an odd headDim, a non-positive scale, short tables', () => {
  const q = new Float32Array(2 * 3 * 4), k = new Float32Array(2 * 3 * 4);
  assert.throws(() => nn.attentionForward({ q, k, v: k, batch: 1, tokens: 2, heads: 3, kvHeads: 2, headDim: 4 }), /Expected kvHeads dividing heads \(3\)/);
  assert.throws(() => nn.attentionForward({ q, k, v: k, batch: 1, tokens: 2, heads: 3, headDim: 4, scale: 0 }), /Expected a finite number > 0 for scale/);
  assert.throws(() => nn.attentionForward({ q, k: q.subarray(1), v: k, batch: 1, tokens: 2, heads: 3, headDim: 4 }), /k/);
  assert.throws(() => nn.ropeForward({ inp: new Float32Array(6), cos: new Float32Array(3), sin: new Float32Array(3), batch: 1, tokens: 2, heads: 1, headDim: 3 }), /even headDim/);
  assert.throws(() => nn.ropeForward({ inp: new Float32Array(8), cos: new Float32Array(3), sin: new Float32Array(4), batch: 1, tokens: 2, heads: 1, headDim: 4 }), /for cos/);
  assert.throws(() => nn.rmsNormForward({ inp: new Float32Array(4), weight: new Float32Array(4), rows: 1, channels: 4, eps: 0 }), /for eps but received 0/);
  assert.throws(() => nn.gluForward({ gate: new Float32Array(4), up: new Float32Array(3) }), /for up/);
  assert.throws(() => nn.gluForward({ gate: new Float32Array(4), up: new Float32Array(4), activation: 'relu' as never }), /for activation/);
});

test('every op: the same bits for 1, 2 and 3 threads (sizes the pool splits)', () => {
  const B = 4, T = 64, NH = 8, NKV = 2, D = 32, rows = B * T, C = 2048;
  const { cos, sin } = angles(T, D, 10000);
  const x = randomFloats(rows * C, 31, 2), w = randomFloats(C, 32), g = randomFloats(rows * C, 33);
  const q = randomFloats(B * T * NH * D, 34), kv = randomFloats(B * T * NKV * D, 35), dout = randomFloats(B * T * NH * D, 36);
  const runAll = () => {
    const norm = nn.rmsNormForward({ inp: x, weight: w, rows, channels: C });
    const dinp = new Float32Array(rows * C), dweight = new Float32Array(C);
    nn.rmsNormBackward({ dout: g, inp: x, weight: w, rstd: norm.rstd, dinp, dweight, rows, channels: C });
    const rotated = nn.ropeForward({ inp: x, cos, sin, batch: rows / T, tokens: T, heads: C / D, headDim: D });
    const gated = nn.gluForward({ gate: x, up: g });
    const dgate = new Float32Array(rows * C), dup = new Float32Array(rows * C);
    nn.gluBackward({ gate: x, up: g, dout: g, dgate, dup });
    const att = nn.attentionForward({ q, k: kv, v: kv, batch: B, tokens: T, heads: NH, kvHeads: NKV, headDim: D });
    const dq = new Float32Array(q.length), dk = new Float32Array(kv.length), dv = new Float32Array(kv.length);
    nn.attentionBackward({ q, k: kv, v: kv, att: att.att, dout, dq, dk, dv, batch: B, tokens: T, heads: NH, kvHeads: NKV, headDim: D });
    return { out: norm.out, dinp, dweight, rotated, gated, dgate, dup, attOut: att.out, dq, dk, dv };
  };
  assertThreadInvariant(runAll);
});

// This file again under each lower SIMD level the CPU has (the levels below the one in use).
if (!process.env.FUSEDPO_SIMD) {
  const order = ['generic', 'avx2', 'avx512'];
  for (const level of order.slice(0, order.indexOf(native().info().simd))) {
    test(`FUSEDPO_SIMD=${level}: the same checks pass`, () => {
      const run = spawnSync(process.execPath, ['--import', 'tsx', __filename], { encoding: 'utf8', env: { ...process.env, FUSEDPO_SIMD: level } });
      assert.is(run.status, 0, `${run.stdout.slice(-3000)}\n${run.stderr.slice(-2000)}`);
      assert.match(run.stdout, /Passed:\s+\S*\d+/);
    });
  }
}

test.run();
