/**
 * The fused loss on cuda tensors timed from TypeScript, end to end: what a user of the package
 * gets, including the label upload, the small copies back, the stream wait and (async form) the
 * hop through libuv's thread pool. Same case as gpu_check's benchmark: 4 pairs x 1024 tokens,
 * a quarter of each row masked as prompt, bf16, f16 and f32, V = 128256.
 *
 *   npx tsx bench/gpu/node-loss.ts [--gpu-check RESULTS/gpu_check.json] [--out FILE.json]
 *
 * With --gpu-check, the floor (3 passes over the logits at the copy bandwidth that gpu_check
 * measured on this card in this run) and the kernels' own time come from there, and each row
 * reports its ratio to both.
 */
import * as fs from 'node:fs';

import { Tensor, preferenceLoss, preferenceLossAsync } from '../../lib/index';
import { loadAddon } from '../../lib/native';

const argv = process.argv.slice(2);
const option = (name: string): string | undefined => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};

interface GpuCheckRow { name: string; dtype: string; V: number; promptFraction: number; msMedian: number }
const gpuCheck = option('gpu-check');
const check = gpuCheck ? JSON.parse(fs.readFileSync(gpuCheck, 'utf8')) as { copyBandwidthTBps: number; bench: GpuCheckRow[] } : null;

const PAIRS = 4, T = 1024, V = 128256, R = 2 * PAIRS, ITERS = 20;
const loaded = loadAddon();
if (loaded.kind !== 'cuda') throw new Error(`no CUDA device: ${loaded.cudaSkipped}`);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function time(fn: () => Promise<unknown> | unknown): Promise<number> {
  for (let i = 0; i < 3; i++) await fn();
  const ms: number[] = [];
  for (let i = 0; i < ITERS; i++) {
    const start = process.hrtime.bigint();
    await fn();
    ms.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  return median(ms);
}

/** Random-looking logits without a per-element JS loop over 10^9 values: a 1 MiB block repeated. */
function logitsOf(dtype: 'f32' | 'bf16' | 'f16'): Tensor {
  const count = R * T * V;
  const block = 1 << 20;
  let state = 12345;
  const random = () => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32) * 8 - 4;
  if (dtype === 'f32') {
    const data = new Float32Array(count);
    for (let i = 0; i < block; i++) data[i] = random();
    for (let filled = block; filled < count; filled *= 2) data.copyWithin(filled, 0, Math.min(filled, count - filled));
    return Tensor.from(data, [R, T, V], dtype, 'cuda');
  }
  const data = new Uint16Array(count);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < block; i++) {
    f[0] = random();
    // bf16: the top half of the f32 bits; f16: exponent and mantissa rebuilt (values in [-4, 4))
    data[i] = dtype === 'bf16' ? u[0] >>> 16 : f16Bits(f[0]);
  }
  for (let filled = block; filled < count; filled *= 2) data.copyWithin(filled, 0, Math.min(filled, count - filled));
  return Tensor.from(data, [R, T, V], dtype, 'cuda');
}

function f16Bits(x: number): number {
  const sign = x < 0 ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a < 2 ** -14) return sign | Math.round(a / 2 ** -24);
  const e = Math.floor(Math.log2(a));
  const m = Math.round((a / 2 ** e - 1) * 1024);
  return sign | ((e + 15) << 10) + m;
}

async function main(): Promise<void> {
  const labels = new Int32Array(R * T);
  for (let s = 0; s < R; s++) for (let t = 0; t < T; t++) labels[s * T + t] = t < T / 4 ? -100 : (s * 7919 + t * 104729) % V;
  const refLogps = new Float32Array(R).fill(-3000);
  const rows: object[] = [];
  console.log(`fusedpo from TypeScript on ${loaded.cudaInfo?.devices[0]?.name}: ${R} x ${T} x ${V}, prompt 0.25, median of ${ITERS}`);
  for (const dtype of ['bf16', 'f16', 'f32'] as const) {
    const logits = logitsOf(dtype);
    const out = new Tensor(logits.shape, dtype, 'cuda');
    const bytes = R * T * V * (dtype === 'f32' ? 4 : 2);
    const kernelMs = (name: string) =>
      check?.bench.find((r) => r.name === name && r.dtype === dtype && r.V === V && r.promptFraction === 0.25)?.msMedian ?? NaN;
    // [name, passes over the logits, gpu_check's row for the kernels alone, the call]
    const cases: [string, number, string, () => Promise<unknown> | unknown][] = [
      ['preferenceLossAsync fwd+bwd (out)', 3, 'fwd+bwd', () => preferenceLossAsync({ loss: 'minordpo', logits, labels, refLogps, out })],
      ['preferenceLoss + backward (autograd)', 3, 'fwd+bwd', () => {
        logits.requiresGrad = true;
        const r = preferenceLoss({ loss: 'minordpo', logits, labels, refLogps });
        r.loss.backward();
        r.loss.dispose();
        logits.grad!.dispose();
        logits.grad = null;
        logits.requiresGrad = false;
      }],
      ['preferenceLoss forward only', 1, 'forward', () => preferenceLoss({ loss: 'minordpo', logits, labels, refLogps }).loss.dispose()],
    ];
    for (const [name, passes, kernelRow, fn] of cases) {
      const ms = await time(fn);
      const floorMs = check ? (passes * bytes) / (check.copyBandwidthTBps * 1e12) * 1e3 : NaN;
      const kernels = kernelMs(kernelRow);
      const row = { name, dtype, vocab: V, promptFraction: 0.25, ms, floorMs, ratioToFloor: ms / floorMs, kernelsMs: kernels, ratioToKernels: ms / kernels };
      rows.push(row);
      console.log(`${name.padEnd(38)} ${dtype.padEnd(4)} ${ms.toFixed(3).padStart(8)} ms   floor ${floorMs.toFixed(3)} ms (x${(ms / floorMs).toFixed(2)})   kernels alone ${kernels.toFixed(3)} ms (x${(ms / kernels).toFixed(2)})`);
    }
    out.dispose();
    logits.dispose();
  }
  const file = option('out');
  if (file) fs.writeFileSync(file, JSON.stringify({ device: loaded.cudaInfo?.devices[0], rows }, null, 2));
}

void main();
