/**
 * Published Llama-family shapes with random weights on the CPU, beside PyTorch: parameters,
 * resident memory, and one MinorDPO step of 2 pairs x 256 tokens (the frozen reference's forward
 * included, then the policy's forward, the fused loss and its backward through the model, gradient
 * clipping and AdamW), timed here and then in eager PyTorch (bench/llama_torch.py, the same shape,
 * tokens and loss) in the same run. The figures of the README's Hugging Face section.
 *
 *   npx tsx bench/llama-shapes.ts [--shape smollm2-135m|qwen2.5-0.5b] [--steps N] [--pairs P] [--tokens T] [--no-torch]
 *
 * Each side runs in its own process (the PyTorch side after this one has freed its memory), so each
 * resident figure is that side's own: the peak (maxRSS) over its steps.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

import { preferenceLoss } from '../lib/losses';
import { LlamaModel, type LlamaConfig } from '../lib/nn/llama';
import { AdamW, clipGradNorm } from '../lib/optim';
import { native } from '../lib/native';
import { withScope } from '../lib/tensor';
import { frozenCopy, modelLogps } from '../lib/train/reference';

/** config.json of HuggingFaceTB/SmolLM2-135M and Qwen/Qwen2.5-0.5B, as LlamaConfig. */
const SHAPES: Record<string, LlamaConfig> = {
  'smollm2-135m': {
    architecture: 'llama', vocab: 49152, context: 8192, hidden: 576, layers: 30, heads: 9, kvHeads: 3, headDim: 64, intermediate: 1536,
    rmsEps: 1e-5, ropeTheta: 100000, ropeScaling: { type: 'default' }, tiedHead: true, qkvBias: false, outputBias: false, mlpBias: false,
    qkNorm: false, gemma: false, attentionScale: 1 / 8, windows: new Array(30).fill(0), localRopeTheta: 100000,
  },
  'qwen2.5-0.5b': {
    architecture: 'qwen2', vocab: 151936, context: 32768, hidden: 896, layers: 24, heads: 14, kvHeads: 2, headDim: 64, intermediate: 4864,
    rmsEps: 1e-6, ropeTheta: 1000000, ropeScaling: { type: 'default' }, tiedHead: true, qkvBias: true, outputBias: false, mlpBias: false,
    qkNorm: false, gemma: false, attentionScale: 1 / 8, windows: new Array(24).fill(0), localRopeTheta: 1000000,
  },
};

const flag = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const shape = flag('shape', 'smollm2-135m');
const config = SHAPES[shape];
if (!config) throw new Error(`--shape: expected one of ${Object.keys(SHAPES).join(', ')} but received ${shape}`);
const steps = Number(flag('steps', '2'));
const P = Number(flag('pairs', '2')), T = Number(flag('tokens', '256'));
const { threads, simd } = native().info();
const mib = () => Math.round(process.memoryUsage().rss / 2 ** 20);
const peakMib = () => Math.round(process.resourceUsage().maxRSS / 1024);

const rows = 2 * P;
const tokens = Int32Array.from({ length: rows * T }, (_, i) => (i * 7919) % config.vocab);
const labels = Int32Array.from({ length: rows * T }, (_, i) => (i % T < T / 4 ? -100 : (i * 104729) % config.vocab));

console.log(`# ${shape} shape, random weights; MinorDPO step of ${P} pairs x ${T} tokens; ${threads} threads, ${simd}`);
const model = new LlamaModel(config, { seed: 1 });
const parameters = model.parameterCount();
console.log(`fusedpo: ${parameters} parameters, resident ${mib()} MiB after building the model`);
const reference = frozenCopy(model);
const optimizer = new AdamW(model, { lr: 1e-5 });
const ours: { ms: number; referenceMs: number; forwardMs: number; lossBackwardMs: number; optimizerMs: number }[] = [];
for (let step = 0; step < steps; step++) {
  const start = performance.now();
  const refLogps = modelLogps(reference, tokens, labels, [rows, T]);
  const tRef = performance.now();
  let tForward = 0;
  withScope(() => {
    const logits = model.forward(tokens, [rows, T]);
    tForward = performance.now();
    preferenceLoss({ loss: 'minordpo', logits, labels, refLogps }).loss.backward();
  });
  const tBackward = performance.now();
  clipGradNorm(model, 1);
  optimizer.step();
  optimizer.zeroGrad();
  const end = performance.now();
  const row = { ms: end - start, referenceMs: tRef - start, forwardMs: tForward - tRef, lossBackwardMs: tBackward - tForward, optimizerMs: end - tBackward };
  ours.push(row);
  console.log(`fusedpo step ${step}: ${row.ms.toFixed(0)} ms (reference forward ${row.referenceMs.toFixed(0)}, forward ${row.forwardMs.toFixed(0)}, ` +
    `loss + backward ${row.lossBackwardMs.toFixed(0)}, clip + AdamW ${row.optimizerMs.toFixed(0)}), peak resident ${peakMib()} MiB`);
}
const oursPeak = peakMib();
optimizer.dispose();
reference.dispose();
model.dispose();

if (!process.argv.includes('--no-torch')) {
  const peer = { hidden: config.hidden, layers: config.layers, heads: config.heads, kvHeads: config.kvHeads, headDim: config.headDim,
    intermediate: config.intermediate, vocab: config.vocab, ropeTheta: config.ropeTheta, rmsEps: config.rmsEps, tiedHead: config.tiedHead, qkvBias: config.qkvBias };
  const python = process.env.FUSEDPO_PYTHON ?? '/usr/bin/python3';
  const run = spawnSync(python, [path.join(__dirname, 'llama_torch.py'), JSON.stringify(peer), String(P), String(T), String(steps), String(threads)],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (run.status !== 0) throw new Error(`the PyTorch peer failed (${python}, status ${run.status}): ${run.error?.message ?? ''}`);
  const lines = run.stdout.trim().split('\n').map((l) => JSON.parse(l));
  const [head, ...torchSteps] = lines;
  console.log(`PyTorch ${head.torch}: ${head.parameters} parameters, resident ${head.residentMiB} MiB after building the model`);
  for (const s of torchSteps) {
    console.log(`PyTorch step ${s.step}: ${s.ms} ms (reference forward ${s.referenceMs}, forward ${s.forwardMs}, loss + backward ${s.lossBackwardMs}, clip + AdamW ${s.optimizerMs}), peak resident ${s.peakResidentMiB} MiB`);
  }
  // the last step of each: the first pays for first-touch page faults on both sides
  const a = ours[ours.length - 1], b = torchSteps[torchSteps.length - 1];
  console.log(`last step: fusedpo ${a.ms.toFixed(0)} ms, PyTorch ${b.ms} ms: ${(b.ms / a.ms).toFixed(2)}x PyTorch's speed; ` +
    `peak resident fusedpo ${oursPeak} MiB, PyTorch ${b.peakResidentMiB} MiB`);
}
