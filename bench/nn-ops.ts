/**
 * `npx tsx bench/nn-ops.ts`: each of the GPT's ops (lib/ops/nn.ts), forward and backward, at the
 * target model's shapes (B = 8 sequences of T = 128 tokens: 1024 rows; C = 256, 4C = 1024,
 * NH = 8; vocab 50257 for the token table; AdamW on a 1M-parameter tensor), the fast path with
 * 1 and 2 threads and the scalar reference (1 thread) beside it. Median of --repeats runs after a
 * warm-up. GB/s counts the bytes an op must read and write once (memory-bound ops only).
 * Prints a table and writes bench/results/nn-ops-<date>-<commit>.json.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { loadAddon, setThreads } from '../lib/native';
import * as nn from '../lib/ops';
import { randomFloats } from '../test/nn-fp64';

const root = path.resolve(__dirname, '..');
const argv = process.argv.slice(2);
const repeatsAt = argv.indexOf('--repeats');
const REPEATS = repeatsAt >= 0 ? Number(argv[repeatsAt + 1]) : 15;
const B = 8, T = 128, C = 256, NH = 8, V = 50257, ROWS = B * T, PARAMS = 2 ** 20;

function median(times: number[]): number {
  const sorted = [...times].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function time(fn: () => void): number {
  fn();
  const times: number[] = [];
  for (let i = 0; i < REPEATS; i++) {
    const t0 = performance.now();
    fn();
    times.push(performance.now() - t0);
  }
  return median(times);
}

interface Case {
  name: string;
  shape: string;
  /** Bytes read + written once, for memory-bound ops (0: compute-bound, no GB/s). */
  forwardBytes: number;
  backwardBytes: number;
  forward(implementation: nn.Implementation): void;
  backward(implementation: nn.Implementation): void;
}

const F = 4; // bytes per float
const x = randomFloats(ROWS * C, 1, 2), bias = randomFloats(C, 2), dx = randomFloats(ROWS * C, 3);
const out = new Float32Array(ROWS * C), da = new Float32Array(ROWS * C), db = new Float32Array(C);
const wide = randomFloats(ROWS * 4 * C, 4, 3), dwide = randomFloats(ROWS * 4 * C, 5), wideOut = new Float32Array(ROWS * 4 * C), dWideIn = new Float32Array(ROWS * 4 * C);
const weight = randomFloats(C, 6), dweight = new Float32Array(C), dbias = new Float32Array(C);
const ln = nn.layerNormForward({ inp: x, weight, bias, rows: ROWS, channels: C });
const idx = Int32Array.from({ length: ROWS }, (_, i) => (i * 7919) % V);
const table = randomFloats(V * C, 7), dtable = new Float32Array(V * C);
const scores = randomFloats(B * NH * T * T, 8, 4), dscores = randomFloats(B * NH * T * T, 9), probs = new Float32Array(B * NH * T * T), dprobs = new Float32Array(B * NH * T * T);
const qkv = randomFloats(ROWS * 3 * C, 10), dqkv = new Float32Array(ROWS * 3 * C), att = new Float32Array(B * NH * T * T);
const param = randomFloats(PARAMS, 11), grad = randomFloats(PARAMS, 12, 0.01), m = new Float32Array(PARAMS), v = new Float32Array(PARAMS);
const rowSums = new Float32Array(ROWS);

const cases: Case[] = [
  {
    name: 'add (bias)', shape: `[${ROWS}, ${C}] + [${C}]`,
    forwardBytes: 2 * ROWS * C * F, backwardBytes: 3 * ROWS * C * F,
    forward: (implementation) => nn.addForward({ a: x, aShape: [ROWS, C], b: bias, bShape: [C], out, implementation }),
    backward: (implementation) => nn.addBackward({ aShape: [ROWS, C], bShape: [C], dout: dx, da, db, implementation }),
  },
  {
    name: 'mul', shape: `[${ROWS}, ${C}] * [${C}]`,
    forwardBytes: 2 * ROWS * C * F, backwardBytes: 4 * ROWS * C * F,
    forward: (implementation) => nn.mulForward({ a: x, aShape: [ROWS, C], b: bias, bShape: [C], out, implementation }),
    backward: (implementation) => nn.mulBackward({ a: x, b: bias, aShape: [ROWS, C], bShape: [C], dout: dx, da, db, implementation }),
  },
  {
    name: 'scale', shape: `[${ROWS}, ${4 * C}]`,
    forwardBytes: 2 * ROWS * 4 * C * F, backwardBytes: 3 * ROWS * 4 * C * F,
    forward: (implementation) => nn.scaleForward({ a: wide, s: 0.5, out: wideOut, implementation }),
    backward: (implementation) => nn.scaleBackward({ dout: dwide, s: 0.5, da: dWideIn, implementation }),
  },
  {
    name: 'mean (last dim)', shape: `[${ROWS}, ${4 * C}]`,
    forwardBytes: ROWS * 4 * C * F, backwardBytes: 2 * ROWS * 4 * C * F,
    forward: (implementation) => nn.reduceForward('mean', { a: wide, shape: [ROWS, 4 * C], over: 'last', out: rowSums, implementation }),
    backward: (implementation) => nn.reduceBackward('mean', { shape: [ROWS, 4 * C], over: 'last', dout: rowSums, da: dWideIn, implementation }),
  },
  {
    name: 'embedding', shape: `${ROWS} of [${V}, ${C}]`,
    forwardBytes: 2 * ROWS * C * F, backwardBytes: 3 * ROWS * C * F,
    forward: (implementation) => nn.embeddingForward({ idx, table, vocab: V, channels: C, out, implementation }),
    backward: (implementation) => nn.embeddingBackward({ idx, dout: dx, dtable, vocab: V, channels: C, implementation }),
  },
  {
    name: 'layernorm', shape: `[${ROWS}, ${C}]`,
    forwardBytes: 2 * ROWS * C * F, backwardBytes: 3 * ROWS * C * F,
    forward: (implementation) => nn.layerNormForward({ inp: x, weight, bias, rows: ROWS, channels: C, out, mean: ln.mean, rstd: ln.rstd, implementation }),
    backward: (implementation) => nn.layerNormBackward({ dout: dx, inp: x, weight, mean: ln.mean, rstd: ln.rstd, dinp: da, dweight, dbias, rows: ROWS, channels: C, implementation }),
  },
  {
    name: 'gelu', shape: `[${ROWS}, ${4 * C}]`,
    forwardBytes: 2 * ROWS * 4 * C * F, backwardBytes: 4 * ROWS * 4 * C * F,
    forward: (implementation) => nn.geluForward({ inp: wide, out: wideOut, implementation }),
    backward: (implementation) => nn.geluBackward({ inp: wide, dout: dwide, dinp: dWideIn, implementation }),
  },
  {
    name: 'softmax', shape: `[${B * NH * T}, ${T}]`,
    forwardBytes: 2 * B * NH * T * T * F, backwardBytes: 4 * B * NH * T * T * F,
    forward: (implementation) => nn.softmaxForward({ inp: scores, rows: B * NH * T, cols: T, out: probs, implementation }),
    backward: (implementation) => nn.softmaxBackward({ out: probs, dout: dscores, dinp: dprobs, rows: B * NH * T, cols: T, implementation }),
  },
  {
    name: 'attention', shape: `B ${B} T ${T} C ${C} NH ${NH}`,
    forwardBytes: 0, backwardBytes: 0,
    forward: (implementation) => nn.causalSelfAttentionForward({ qkv, batch: B, tokens: T, channels: C, heads: NH, out, att, implementation }),
    backward: (implementation) => nn.causalSelfAttentionBackward({ qkv, att, dout: dx, dqkv, batch: B, tokens: T, channels: C, heads: NH, implementation }),
  },
  {
    name: 'adamw / grad norm', shape: `${PARAMS} params`,
    forwardBytes: 7 * PARAMS * F, backwardBytes: PARAMS * F,
    // "forward" = the update, "backward" = the global norm of the gradient
    forward: (implementation) => nn.adamwUpdate({ param, grad, m, v, lr: 1e-4, weightDecay: 0.1, step: 10, implementation }),
    backward: (implementation) => { nn.globalGradNorm([grad], { implementation }); },
  },
];

interface Row {
  op: string;
  shape: string;
  implementation: nn.Implementation;
  threads: number;
  forwardMs: number;
  backwardMs: number;
  forwardGBs: number | null;
  backwardGBs: number | null;
}

const rows: Row[] = [];
const gbs = (bytes: number, ms: number) => (bytes > 0 ? Number((bytes / ms / 1e6).toFixed(2)) : null);
const runs: [nn.Implementation, number][] = [['reference', 1], ['fast', 1], ['fast', 2]];
for (const c of cases) {
  for (const [implementation, threads] of runs) {
    setThreads(threads);
    const forwardMs = time(() => c.forward(implementation));
    const backwardMs = time(() => c.backward(implementation));
    rows.push({ op: c.name, shape: c.shape, implementation, threads, forwardMs, backwardMs,
      forwardGBs: gbs(c.forwardBytes, forwardMs), backwardGBs: gbs(c.backwardBytes, backwardMs) });
  }
}

const log = (line: string) => process.stdout.write(line + '\n');
const info = loadAddon().addon.info();
log(`nn ops, ${os.cpus()[0]?.model ?? 'cpu'}, simd ${info.simd}, median of ${REPEATS}`);
log('op                 shape                      impl       thr   fwd ms   bwd ms   fwd GB/s  bwd GB/s');
for (const r of rows) {
  log(`${r.op.padEnd(18)} ${r.shape.padEnd(26)} ${r.implementation.padEnd(10)} ${String(r.threads).padStart(3)} ${r.forwardMs.toFixed(3).padStart(8)} ${r.backwardMs.toFixed(3).padStart(8)} ${String(r.forwardGBs ?? '-').padStart(9)} ${String(r.backwardGBs ?? '-').padStart(9)}`);
}

let commit = 'unknown';
try {
  commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
} catch { /* not a git checkout */ }
const date = new Date().toISOString();
const record = {
  bench: 'nn-ops', date, commit,
  machine: { cpu: os.cpus()[0]?.model ?? 'unknown', threads: os.availableParallelism(), simd: info.simd, features: info.cpuFeatures, node: process.versions.node },
  shapes: { B, T, C, NH, vocab: V, params: PARAMS }, repeats: REPEATS,
  note: "adamw row: 'forward' is the update (7 float streams), 'backward' the global gradient norm",
  rows,
};
const dir = path.join(root, 'bench', 'results');
fs.mkdirSync(dir, { recursive: true });
const file = path.join(dir, `nn-ops-${date.slice(0, 10)}-${commit}.json`);
fs.writeFileSync(file, JSON.stringify(record, null, 2) + '\n');
log(`wrote ${path.relative(root, file)}`);
