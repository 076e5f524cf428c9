/**
 * Run in a child process by simd.test.ts with FUSEDPO_SIMD set (it is read once per process):
 * the fast path at that level against the scalar reference, every dtype, odd shapes, extreme
 * logits and a few losses; then the GPT's ops (gelu, layernorm, softmax, causal self-attention,
 * forward and backward) at lengths with 8- and 16-lane tails. Prints one JSON line; exits 1 with
 * the first mismatches on failure. SIMD_CHECK_WORST=1 prints each op's largest difference as a
 * fraction of its tolerance (on stderr).
 */
import { preferenceLoss, sequenceLogps, type LogitsDType, type LossName } from '../lib/index';
import { native } from '../lib/native';
import * as nn from '../lib/ops';
import { decoded, encode, makeBatch, UNIT } from './batch';
import { randomFloats } from './nn-fp64';

const failures: string[] = [];
let compared = 0;
for (const dtype of ['f32', 'bf16', 'f16'] as LogitsDType[]) {
  for (const [pairs, tokens, vocab, scale] of [[1, 3, 1, 3], [1, 47, 2, 3], [2, 5, 15, 3], [2, 5, 16, 3], [2, 5, 17, 3], [1, 4, 123, 1e4], [1, 2, 4097, 5], [1, 2, 50257, 3]]) {
    const batch = makeBatch({ pairs, tokens, vocab, dtype, scale: dtype === 'f16' ? Math.min(scale, 6e4) : scale, seed: vocab + tokens });
    const refLogps = sequenceLogps({ logits: batch.logits, dtype, shape: batch.shape, labels: batch.labels, implementation: 'reference' }).logps.map((p, s) => p + Math.cos(s));
    for (const loss of ['dpo', 'minordpo', 'ipo'] as LossName[]) {
      const args = { loss, dtype, logits: batch.logits, shape: batch.shape, labels: batch.labels, refLogps };
      const fast = preferenceLoss(args);
      const reference = preferenceLoss({ ...args, implementation: 'reference' });
      const where = `${loss} ${dtype} [${batch.shape}] scale ${scale}`;
      const a = decoded(fast.dlogits!, dtype);
      const b = decoded(reference.dlogits!, dtype);
      const maxGrad = b.reduce((m, g) => Math.max(m, Math.abs(g)), 0);
      for (let i = 0; i < a.length; i++) {
        compared++;
        const tolerance = Math.abs(b[i]) * 2 * UNIT[dtype] + maxGrad * 2 ** -20 + (dtype === 'f16' ? 2 ** -24 : 0);
        if (!(Math.abs(a[i] - b[i]) <= tolerance) && failures.length < 8) failures.push(`${where}: dlogits[${i}] fast ${a[i]} reference ${b[i]}`);
      }
      for (let s = 0; s < fast.logps.length; s++) {
        const tolerance = 1e-6 * (1 + Math.abs(reference.logps[s])) * batch.shape[1];
        if (!(Math.abs(fast.logps[s] - reference.logps[s]) <= tolerance) && failures.length < 8) failures.push(`${where}: logps[${s}] fast ${fast.logps[s]} reference ${reference.logps[s]}`);
      }
      if (!(Math.abs(fast.loss - reference.loss) <= 1e-5 * (1 + Math.abs(reference.loss))) && failures.length < 8) failures.push(`${where}: loss fast ${fast.loss} reference ${reference.loss}`);
    }
  }
}

// Rows longer than the kernels' chunks (the AVX2 and AVX-512 forwards work in chunks of 2048 logits): a max
// that grows in every chunk (a ramp), one that sits in the first chunk (the reverse ramp), a
// spread that sends most exponents below exp's range, and a non-finite logit (NaN, -inf, +inf)
// late in a row, where only a later chunk sees it. Fast and reference agree on which rows are
// non-finite and on every finite row's logps.
{
  const vocab = 6001, tokens = 2;
  const rows: Array<(v: number) => number> = [
    (v) => v / 600, (v) => (vocab - v) / 600, (v) => Math.sin(v) * 200,
    (v) => (v === 4500 ? NaN : Math.cos(v)), (v) => (v === 5000 ? -Infinity : Math.cos(v)), (v) => (v === 6000 ? Infinity : Math.cos(v)),
  ];
  for (const dtype of ['f32', 'bf16', 'f16'] as LogitsDType[]) {
    const raw = new Float64Array(rows.length * tokens * vocab);
    rows.forEach((f, s) => { for (let t = 0; t < tokens; t++) for (let v = 0; v < vocab; v++) raw[(s * tokens + t) * vocab + v] = f(v) + t; });
    const labels = Int32Array.from({ length: rows.length * tokens }, (_, k) => (k * 997) % vocab);
    const logits = encode(raw, dtype);
    const args = { logits, dtype, shape: [rows.length, tokens, vocab] as [number, number, number], labels, allowNonFinite: true };
    const fast = sequenceLogps(args);
    const reference = sequenceLogps({ ...args, implementation: 'reference' });
    const where = `chunked rows ${dtype}`;
    compared += rows.length;
    if (JSON.stringify(fast.nonFiniteRows) !== JSON.stringify([3, 4, 5]) || JSON.stringify(reference.nonFiniteRows) !== JSON.stringify([3, 4, 5])) {
      failures.push(`${where}: nonFiniteRows fast ${JSON.stringify(fast.nonFiniteRows)} reference ${JSON.stringify(reference.nonFiniteRows)}, expected [3,4,5]`);
    }
    for (let s = 0; s < 3; s++) {
      const tolerance = 1e-6 * (1 + Math.abs(reference.logps[s])) * tokens;
      if (!(Math.abs(fast.logps[s] - reference.logps[s]) <= tolerance)) failures.push(`${where}: logps[${s}] fast ${fast.logps[s]} reference ${reference.logps[s]}`);
    }
  }
}

// The GPT's ops (lib/ops): gelu, layernorm, softmax and causal self-attention, forward and
// backward, fast against reference, at lengths that leave 8- and 16-lane tails (1, 7, 9, 33, 100,
// ...). Backward takes the reference forward's saved values on both paths and accumulates into
// the same non-zero gradients. Tolerance per value: rel |reference| + abs max |reference|.
const worst: Record<string, number> = {};
function close(what: string, where: string, fast: Float32Array, reference: Float32Array, rel: number, abs: number,
  magnitude?: (i: number) => number): void {
  const scale = reference.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  for (let i = 0; i < reference.length; i++) {
    compared++;
    const diff = Math.abs(fast[i] - reference[i]);
    const tolerance = Math.abs(reference[i]) * rel + (magnitude ? magnitude(i) : scale) * abs;
    if (fast[i] !== reference[i]) worst[what] = Math.max(worst[what] ?? 0, diff / tolerance);
    if (!(fast[i] === reference[i] || diff <= tolerance) && failures.length < 8) {
      failures.push(`${what} ${where}: [${i}] fast ${fast[i]} reference ${reference[i]}`);
    }
  }
}
const IMPLS = ['fast', 'reference'] as const;
const ODD = [1, 7, 8, 9, 15, 16, 17, 33, 100, 259];

for (const [count, scale] of [[1, 3], [7, 3], [9, 3], [33, 3], [100, 8], [1000 + 17, 12], [70001, 6]]) {
  const inp = randomFloats(count, count, scale);
  // Zeros, saturation (|u| large: tanh exactly -1 or 1) and the edge of exp's range.
  [0, -0, 1e-30, -1e-30, 10, -10, 50, -50, 1e4, -1e4].forEach((v, i) => { if (i < count) inp[(i * 7919) % count] = v; });
  const dout = randomFloats(count, count + 1), start = randomFloats(count, count + 2);
  const out = IMPLS.map((implementation) => nn.geluForward({ inp, implementation }));
  // Both paths round tanh to fp32 (absolute error ~2^-24): x/2 (1 + tanh) is off by ~|x| 2^-25,
  // and the derivative's x/2 (1 - tanh^2) sqrt(2/pi) (1 + 0.134 x^2) by ~(|x| + |x|^3) 2^-24,
  // up to |x| ~ 6, where tanh rounds to +-1 on both paths.
  close('gelu', `[${count}]`, out[0], out[1], 2 ** -20, 2 ** -22, (i) => Math.abs(inp[i]));
  const dinp = IMPLS.map((implementation) => { const d = Float32Array.from(start); nn.geluBackward({ inp, dout, dinp: d, implementation }); return d; });
  close('dgelu', `[${count}]`, dinp[0], dinp[1], 2 ** -20, 2 ** -20, (i) => Math.abs(dout[i]) * (1 + Math.min(Math.abs(inp[i]), 8) ** 3));
}

for (const channels of ODD) {
  for (const rows of [1, 3]) {
    const where = `[${rows}, ${channels}]`;
    const inp = randomFloats(rows * channels, channels + rows, 4);
    for (let i = 0; i < inp.length; i++) inp[i] += 3;  // a mean far from 0
    const weight = randomFloats(channels, channels + 1, 2), bias = randomFloats(channels, channels + 2);
    const fwd = IMPLS.map((implementation) => nn.layerNormForward({ inp, weight, bias, rows, channels, implementation }));
    close('layernorm', where, fwd[0].out, fwd[1].out, 2 ** -17, 2 ** -19);
    close('layernorm mean', where, fwd[0].mean, fwd[1].mean, 2 ** -17, 2 ** -19);
    close('layernorm rstd', where, fwd[0].rstd, fwd[1].rstd, 2 ** -17, 0);
    const dout = randomFloats(rows * channels, channels + 3);
    const grads = IMPLS.map((implementation) => {
      const g = { dinp: randomFloats(rows * channels, 5), dweight: randomFloats(channels, 6), dbias: randomFloats(channels, 7) };
      nn.layerNormBackward({ dout, inp, weight, mean: fwd[1].mean, rstd: fwd[1].rstd, ...g, rows, channels, implementation });
      return g;
    });
    close('layernorm dinp', where, grads[0].dinp, grads[1].dinp, 2 ** -17, 2 ** -19);
    close('layernorm dweight', where, grads[0].dweight, grads[1].dweight, 0, 0);
    close('layernorm dbias', where, grads[0].dbias, grads[1].dbias, 0, 0);
  }
}

for (const cols of ODD) {
  for (const [rows, scale] of [[1, 3], [3, 30]]) {
    const where = `[${rows}, ${cols}] scale ${scale}`;
    const inp = randomFloats(rows * cols, cols + rows, scale);
    const out = IMPLS.map((implementation) => nn.softmaxForward({ inp, rows, cols, implementation }));
    close('softmax', where, out[0], out[1], 2 ** -20, 2 ** -24);
    const dout = randomFloats(rows * cols, cols + 4, 2), start = randomFloats(rows * cols, 8);
    const dinp = IMPLS.map((implementation) => {
      const d = Float32Array.from(start);
      nn.softmaxBackward({ out: out[1], dout, dinp: d, rows, cols, implementation });
      return d;
    });
    close('dsoftmax', where, dinp[0], dinp[1], 2 ** -20, 2 ** -20);
  }
}

// Head sizes 1, 3, 7, 9, 12, 23, 33, 40 and token counts 1 to 70: the long sums' blocks of 32
// (AVX2) and 64 (AVX-512) columns, full ones and tails of each size class.
for (const [batch, tokens, channels, heads] of [[1, 1, 7, 1], [2, 7, 9, 3], [1, 9, 27, 3], [1, 17, 36, 3], [1, 12, 46, 2], [2, 33, 33, 1], [1, 40, 80, 2], [1, 70, 66, 2], [1, 9, 3, 3]]) {
  const where = `B ${batch} T ${tokens} C ${channels} NH ${heads}`;
  const shape = { batch, tokens, channels, heads };
  const qkv = randomFloats(batch * tokens * 3 * channels, tokens + channels, 2);
  const fwd = IMPLS.map((implementation) => nn.causalSelfAttentionForward({ qkv, ...shape, implementation }));
  close('attention out', where, fwd[0].out, fwd[1].out, 2 ** -18, 2 ** -20);
  close('attention att', where, fwd[0].att, fwd[1].att, 2 ** -18, 2 ** -22);
  const dout = randomFloats(batch * tokens * channels, tokens + 5), start = randomFloats(qkv.length, 9);
  const dqkv = IMPLS.map((implementation) => {
    const d = Float32Array.from(start);
    nn.causalSelfAttentionBackward({ qkv, att: fwd[1].att, dout, dqkv: d, ...shape, implementation });
    return d;
  });
  close('attention dqkv', where, dqkv[0], dqkv[1], 2 ** -18, 2 ** -20);
}

if (process.env.SIMD_CHECK_WORST) console.error(Object.entries(worst).map(([k, v]) => `${k} ${v}`).join('\n'));
console.log(JSON.stringify({ simd: native().info().simd, compared, failures }));
process.exitCode = failures.length ? 1 : 0;
