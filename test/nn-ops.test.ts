/**
 * The GPT's ops of lib/ops/nn.ts on small odd shapes (B = 2, T = 5, C = 12, NH = 3, vocab 7):
 * forward against float64 references (test/nn-fp64.ts), backward against central finite
 * differences of those references (accumulating into non-zero gradients), both
 * implementations, fast against reference.
 * Thread counts, AdamW, clipping and bad inputs: test/nn-ops-more.test.ts.
 */
import { test } from 'uvu';

import * as nn from '../lib/ops';
import { assertClose } from './batch';
import { checkOp } from './support/ops';
import { add64, attention64, embedding64, gelu64, layernorm64, mul64, randomFloats, reduce64, softmax64, type Vec } from './nn-fp64';

const f64 = (x: Float32Array): Vec => Float64Array.from(x);
const IMPLS: nn.Implementation[] = ['fast', 'reference'];

const B = 2, T = 5, C = 12, NH = 3, V = 7;

for (const [aShape, bShape] of [[[B, T, C], [C]], [[B, T, C], [T, C]], [[B, T, C], [B, T, C]], [[13], [13]]] as number[][][]) {
  for (const op of ['add', 'mul'] as const) {
    test(`${op}: [${aShape}] ${op === 'add' ? '+' : '*'} [${bShape}], forward and backward`, () => {
      const n = aShape.reduce((p, d) => p * d, 1), m = bShape.reduce((p, d) => p * d, 1);
      const inputs = { a: randomFloats(n, 1, 2), b: randomFloats(m, 2, 2) };
      checkOp({
        name: `${op} [${aShape}] [${bShape}]`,
        inputs,
        forward64: (x) => (op === 'add' ? add64 : mul64)(x.a, x.b),
        forward: (implementation) => (op === 'add' ? nn.addForward : nn.mulForward)({ ...inputs, aShape, bShape, implementation }),
        backward: (implementation, dout, g) =>
          op === 'add'
            ? nn.addBackward({ aShape, bShape, dout, da: g.a, db: g.b, implementation })
            : nn.mulBackward({ ...inputs, aShape, bShape, dout, da: g.a, db: g.b, implementation }),
      });
    });
  }
}

test('scale: forward and backward', () => {
  const inputs = { a: randomFloats(61, 3, 3) };
  checkOp({
    name: 'scale',
    inputs,
    forward64: (x) => x.a.map((v) => -0.37 * v),
    forward: (implementation) => nn.scaleForward({ a: inputs.a, s: -0.37, implementation }),
    backward: (implementation, dout, g) => nn.scaleBackward({ dout, s: -0.37, da: g.a, implementation }),
  });
});

for (const reduction of ['sum', 'mean'] as const) {
  for (const over of ['all', 'last'] as const) {
    test(`${reduction} over ${over}: forward and backward`, () => {
      const shape = [B, T, C];
      const inputs = { a: randomFloats(B * T * C, 4, 2) };
      checkOp({
        name: `${reduction} ${over}`,
        inputs,
        forward64: (x) => reduce64(x.a, over === 'all' ? B * T * C : C, reduction === 'mean'),
        forward: (implementation) => nn.reduceForward(reduction, { a: inputs.a, shape, over, implementation }),
        backward: (implementation, dout, g) => nn.reduceBackward(reduction, { shape, over, dout, da: g.a, implementation }),
      });
    });
  }
}

test('embedding: forward and backward, repeated indices', () => {
  const idx = Int32Array.from([3, 0, 6, 3, 3, 1, 0, 5, 2, 6]);
  const inputs = { table: randomFloats(V * C, 5) };
  checkOp({
    name: 'embedding',
    inputs,
    forward64: (x) => embedding64(idx, x.table, C),
    forward: (implementation) => nn.embeddingForward({ idx, table: inputs.table, vocab: V, channels: C, implementation }),
    backward: (implementation, dout, g) => nn.embeddingBackward({ idx, dout, dtable: g.table, vocab: V, channels: C, implementation }),
  });
});

for (const channels of [C, 37]) {
  test(`layernorm over C = ${channels}: forward and backward (dinp, dweight, dbias)`, () => {
    const rows = B * T;
    const inputs = { inp: randomFloats(rows * channels, 6, 3), weight: randomFloats(channels, 7), bias: randomFloats(channels, 8) };
    for (let i = 0; i < inputs.inp.length; i++) inputs.inp[i] += 0.5; // a non-zero mean
    const forward = (implementation: nn.Implementation) =>
      nn.layerNormForward({ inp: inputs.inp, weight: inputs.weight, bias: inputs.bias, rows, channels, implementation });
    checkOp({
      name: `layernorm C ${channels}`,
      inputs,
      forward64: (x) => layernorm64(x.inp, x.weight, x.bias, channels),
      forward: (implementation) => forward(implementation).out,
      backward: (implementation, dout, g) => {
        const { mean, rstd } = forward(implementation);
        nn.layerNormBackward({ dout, inp: inputs.inp, weight: inputs.weight, mean, rstd, dinp: g.inp, dweight: g.weight, dbias: g.bias, rows, channels, implementation });
      },
    });
  });
}

test('gelu: forward and backward, |x| up to 6 and an odd length', () => {
  const inputs = { inp: randomFloats(B * T * C + 7, 9, 6) };
  checkOp({
    name: 'gelu',
    inputs,
    forward64: (x) => gelu64(x.inp),
    forward: (implementation) => nn.geluForward({ inp: inputs.inp, implementation }),
    backward: (implementation, dout, g) => nn.geluBackward({ inp: inputs.inp, dout, dinp: g.inp, implementation }),
  });
});

for (const cols of [V, 13, 40]) {
  test(`softmax over ${cols}: forward and backward`, () => {
    const rows = B * T;
    const inputs = { inp: randomFloats(rows * cols, 10, 4) };
    const forward = (implementation: nn.Implementation) => nn.softmaxForward({ inp: inputs.inp, rows, cols, implementation });
    checkOp({
      name: `softmax ${cols}`,
      inputs,
      forward64: (x) => softmax64(x.inp, cols),
      forward,
      backward: (implementation, dout, g) => nn.softmaxBackward({ out: forward(implementation), dout, dinp: g.inp, rows, cols, implementation }),
    });
  });
}

for (const [batch, tokens, channels, heads] of [[B, T, C, NH], [1, 19, 40, 2], [2, 3, 8, 8]]) {
  test(`attention B=${batch} T=${tokens} C=${channels} NH=${heads}: out, att and dqkv`, () => {
    const shape = { batch, tokens, channels, heads };
    const inputs = { qkv: randomFloats(batch * tokens * 3 * channels, 11, 1.5) };
    const forward = (implementation: nn.Implementation) => nn.causalSelfAttentionForward({ qkv: inputs.qkv, ...shape, implementation });
    const att64 = attention64(f64(inputs.qkv), batch, tokens, channels, heads).att;
    for (const implementation of IMPLS) {
      assertClose(`att (${implementation})`, forward(implementation).att, att64, (i) => 1e-6 + 1e-5 * att64[i]);
    }
    checkOp({
      name: `attention [${batch}, ${tokens}, ${channels}] NH ${heads}`,
      inputs,
      forward64: (x) => attention64(x.qkv, batch, tokens, channels, heads).out,
      forward: (implementation) => forward(implementation).out,
      backward: (implementation, dout, g) => {
        const { att } = forward(implementation);
        nn.causalSelfAttentionBackward({ qkv: inputs.qkv, att, dout, dqkv: g.qkv, ...shape, implementation });
      },
    });
  });
}

test.run();
