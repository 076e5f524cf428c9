/**
 * `npx tsx bench/train.ts [--steps N] [--threads N] [--small]`: one DPO training step of a
 * byte-level GPT of about 5M parameters (6 layers, width 256, 8 heads, context 128, vocab 256,
 * head tied to wte) on 4 pairs x 128 tokens, as a preference-training loop runs it:
 *
 *   reference forward under noGrad -> sequence log-probs (the fused kernel, no graph)
 *   policy forward with the tape -> fused DPO loss on the logits Tensor -> backward -> AdamW
 *
 * Median of --steps steps after one warm-up, and the split of that time between matmul,
 * attention, the fused loss (forward, reference log-probs and backward) and the rest (layerNorm,
 * gelu, adds, embedding, AdamW, allocation, the tape's JavaScript). The split times the native
 * calls themselves: every function of the addon is wrapped with a timer, by name.
 *
 * Then the same model and step in PyTorch on the CPU (spawned /usr/bin/python3, torch's threads
 * set to ours), in the same run, and the ratio; and the step against its FLOP floor: the step's
 * multiply-adds (stepFlops) over this machine's peak FMA throughput, measured in the same run
 * (bench/peak.ts). Writes bench/results/train-<date>-<commit>-<simd>.json (FUSEDPO_SIMD forces a path).
 * --small runs a 2-layer width-64 model instead (to check the script, not to measure).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { mulberry32 } from '../lib/example';
import { AdamW, GPT, noGrad, preferenceLoss, sequenceLogps, withScope, type GPTConfig } from '../lib/index';
import { loadAddon, native, setThreads, threadSetting, type NativeAddon } from '../lib/native';
import { measurePeak, peakFor } from './peak';

const root = path.resolve(__dirname, '..');
const argv = process.argv.slice(2);
function option(name: string, fallback: number): number {
  const at = argv.indexOf(name);
  return at >= 0 ? Number(argv[at + 1]) : fallback;
}
const SMALL = argv.includes('--small');
const STEPS = option('--steps', 7);
const THREADS = option('--threads', threadSetting());
const CONFIG: GPTConfig = SMALL
  ? { layers: 2, width: 64, heads: 4, context: 32, vocab: 256 }
  : { layers: 6, width: 256, heads: 8, context: 128, vocab: 256 };
const PAIRS = 4;
const T = CONFIG.context;
const ROWS = 2 * PAIRS;
const BETA = 0.1;
const LR = 1e-4;

setThreads(THREADS);

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Chosen rows: corpus windows; rejected rows: the same prompt and shuffled continuations. First quarter masked. */
function batch(): { inputs: Int32Array; labels: Int32Array } {
  const corpus = new Uint8Array(fs.readFileSync(path.join(root, 'test', 'fixtures', 'corpus.txt')));
  const random = mulberry32(5);
  const prompt = T / 4;
  const inputs = new Int32Array(ROWS * T);
  const labels = new Int32Array(ROWS * T);
  for (let p = 0; p < PAIRS; p++) {
    const start = Math.floor(random() * (corpus.length - T - 1));
    const chosen = Array.from(corpus.subarray(start, start + T + 1));
    const tail = chosen.slice(prompt);
    for (let i = tail.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [tail[i], tail[j]] = [tail[j], tail[i]];
    }
    const rejected = [...chosen.slice(0, prompt), ...tail];
    [chosen, rejected].forEach((sequence, k) => {
      const row = p + k * PAIRS;
      for (let t = 0; t < T; t++) {
        inputs[row * T + t] = sequence[t];
        labels[row * T + t] = t + 1 < prompt ? -100 : sequence[t + 1];
      }
    });
  }
  return { inputs, labels };
}

// ---- timing of the native calls, by name ------------------------------------------------------

const kernelMs = new Map<string, number>();
function wrapAddon(addon: NativeAddon): void {
  const table = addon as unknown as Record<string, unknown>;
  for (const name of Object.keys(table)) {
    const fn = table[name];
    if (typeof fn !== 'function' || name === 'NativeStorage' || /^(info|setThreadCount|externalMemory|cudaInfo)$/.test(name)) continue;
    table[name] = (...args: unknown[]) => {
      const t0 = performance.now();
      try {
        return (fn as (...a: unknown[]) => unknown).apply(addon, args);
      } finally {
        kernelMs.set(name, (kernelMs.get(name) ?? 0) + performance.now() - t0);
      }
    };
  }
}

function category(kernel: string): 'matmul' | 'attention' | 'loss' | 'rest' {
  if (/matmul|gemm|linear/i.test(kernel)) return 'matmul';
  if (/^causalSelfAttention/.test(kernel)) return 'attention';
  if (kernel === 'preferenceLoss' || kernel === 'preferenceLossBackward') return 'loss';
  return 'rest';
}

// ---- ours -------------------------------------------------------------------------------------

function runOurs() {
  const policy = new GPT(CONFIG, { seed: 1 });
  const reference = new GPT(CONFIG, { seed: 1 });
  const optimizer = new AdamW(policy, { lr: LR, weightDecay: 0 });
  const { inputs, labels } = batch();
  const shape: [number, number, number] = [ROWS, T, CONFIG.vocab];
  const step = () => {
    const refLogps = withScope(() => noGrad(() => {
      const logits = reference.forward(inputs, [ROWS, T]);
      return sequenceLogps({ logits: logits.toArray() as Float32Array, shape, labels }).logps;
    }));
    const loss = withScope(() => {
      const result = preferenceLoss({ loss: 'dpo', beta: BETA, logits: policy.forward(inputs, [ROWS, T]), labels, refLogps });
      result.loss.backward();
      return result.loss.item();
    });
    optimizer.step();
    optimizer.zeroGrad();
    return loss;
  };
  step(); // warm-up: first touch of every buffer, AdamW's state
  wrapAddon(native());
  const totals: number[] = [];
  const splits: Record<string, number>[] = [];
  const losses: number[] = [];
  for (let i = 0; i < STEPS; i++) {
    kernelMs.clear();
    const t0 = performance.now();
    losses.push(step());
    totals.push(performance.now() - t0);
    const split: Record<string, number> = { matmul: 0, attention: 0, loss: 0 };
    for (const [kernel, ms] of kernelMs) {
      const c = category(kernel);
      if (c !== 'rest') split[c] += ms;
      split[`kernel:${kernel}`] = ms;
    }
    split.rest = totals[i] - split.matmul - split.attention - split.loss;
    splits.push(split);
  }
  // The split of the median step (not a median per part: the parts then add up to the total).
  const medianStep = totals.indexOf(median(totals));
  const parameters = policy.parameterCount();
  policy.dispose();
  reference.dispose();
  optimizer.dispose();
  return { medianMs: totals[medianStep], stepsMs: totals, split: splits[medianStep], losses, parameters };
}

// ---- PyTorch ----------------------------------------------------------------------------------

const TORCH_SCRIPT = String.raw`
import json, math, sys, time
import torch
import torch.nn.functional as F
cfg = json.loads(sys.argv[1])
torch.set_num_threads(cfg["threads"])
torch.manual_seed(0)
L, C, H, T, V = cfg["layers"], cfg["width"], cfg["heads"], cfg["context"], cfg["vocab"]
std, proj_std = 0.02, 0.02 / math.sqrt(2 * L)
def P(*shape, s=std): return torch.nn.Parameter(torch.randn(*shape) * s)
def Z(*shape): return torch.nn.Parameter(torch.zeros(*shape))
def O(*shape): return torch.nn.Parameter(torch.ones(*shape))
def make():
    p = {"wte": P(V, C), "wpe": P(T, C), "lnf_w": O(C), "lnf_b": Z(C)}
    for i in range(L):
        p.update({f"{i}.ln1_w": O(C), f"{i}.ln1_b": Z(C), f"{i}.qkv_w": P(3 * C, C), f"{i}.qkv_b": Z(3 * C),
                  f"{i}.proj_w": P(C, C, s=proj_std), f"{i}.proj_b": Z(C), f"{i}.ln2_w": O(C), f"{i}.ln2_b": Z(C),
                  f"{i}.fc_w": P(4 * C, C), f"{i}.fc_b": Z(4 * C), f"{i}.mproj_w": P(C, 4 * C, s=proj_std), f"{i}.mproj_b": Z(C)})
    return p
mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
def forward(p, idx):
    B, Tn = idx.shape
    hs = C // H
    x = p["wte"][idx] + p["wpe"][:Tn]
    for i in range(L):
        h = F.layer_norm(x, (C,), p[f"{i}.ln1_w"], p[f"{i}.ln1_b"])
        q, k, v = (t.view(B, Tn, H, hs).transpose(1, 2) for t in F.linear(h, p[f"{i}.qkv_w"], p[f"{i}.qkv_b"]).split(C, dim=2))
        att = torch.softmax(((q @ k.transpose(-2, -1)) / math.sqrt(hs)).masked_fill(~mask[:Tn, :Tn], float("-inf")), dim=-1)
        x = x + F.linear((att @ v).transpose(1, 2).reshape(B, Tn, C), p[f"{i}.proj_w"], p[f"{i}.proj_b"])
        h = F.layer_norm(x, (C,), p[f"{i}.ln2_w"], p[f"{i}.ln2_b"])
        x = x + F.linear(F.gelu(F.linear(h, p[f"{i}.fc_w"], p[f"{i}.fc_b"]), approximate="tanh"), p[f"{i}.mproj_w"], p[f"{i}.mproj_b"])
    return F.linear(F.layer_norm(x, (C,), p["lnf_w"], p["lnf_b"]), p["wte"])
def seq_logps(logits, labels):
    mask = labels != -100
    safe = labels.clamp(min=0)
    lp = torch.log_softmax(logits, dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return (lp * mask).sum(-1)
policy, reference = make(), make()
opt = torch.optim.AdamW(list(policy.values()), lr=cfg["lr"], weight_decay=0.0)
inputs = torch.tensor(cfg["inputs"], dtype=torch.long).view(-1, T)
labels = torch.tensor(cfg["labels"], dtype=torch.long).view(-1, T)
P2 = inputs.shape[0] // 2
def step():
    with torch.no_grad():
        ref = seq_logps(forward(reference, inputs), labels)
    pi = seq_logps(forward(policy, inputs), labels)
    d = (pi[:P2] - ref[:P2]) - (pi[P2:] - ref[P2:])
    loss = -F.logsigmoid(cfg["beta"] * d).mean()
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()
step()
times = []
for _ in range(cfg["steps"]):
    t0 = time.perf_counter()
    step()
    times.append((time.perf_counter() - t0) * 1000)
print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "stepsMs": times,
                  "parameters": sum(t.numel() for t in policy.values())}))
`;

function runTorch(inputs: Int32Array, labels: Int32Array) {
  const config = { ...CONFIG, threads: THREADS, steps: STEPS, lr: LR, beta: BETA, inputs: Array.from(inputs), labels: Array.from(labels) };
  const result = spawnSync('/usr/bin/python3', ['-c', TORCH_SCRIPT, JSON.stringify(config)], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (result.status !== 0) return { error: (result.stderr || result.error?.message || 'failed').trim().split('\n').slice(-3).join(' | ') };
  const parsed = JSON.parse(result.stdout.trim().split('\n').pop()!) as { torch: string; threads: number; stepsMs: number[]; parameters: number };
  return { ...parsed, medianMs: median(parsed.stepsMs) };
}

// ---- the FLOP floor ---------------------------------------------------------------------------

/**
 * The step's floating-point operations, 2 per multiply-add: a forward F is the linears (per layer
 * qkv 3C^2, proj C^2, fc and its projection 8C^2 per token, then the tied head C V) and the
 * causal attention products (q k^T and att v over the T(T+1)/2 pairs of each head); the backward
 * is 2F (the input's and the weight's gradient); the step is the policy's forward and backward
 * and the reference's forward: 4F. Elementwise ops, norms and the loss are not counted (they are
 * bandwidth-bound, and small).
 */
function stepFlops(c: GPTConfig, rows: number, T: number): { forward: number; matmul: number; attention: number; step: number } {
  const N = rows * T;
  const matmul = c.layers * 2 * N * 12 * c.width * c.width + 2 * N * c.width * c.vocab;
  const attention = c.layers * 2 * 2 * rows * c.width * (T * (T + 1)) / 2;
  return { forward: matmul + attention, matmul: 4 * matmul, attention: 4 * attention, step: 4 * (matmul + attention) };
}

// ---- report -----------------------------------------------------------------------------------

const log = (line: string) => process.stdout.write(line + '\n');
const info = loadAddon().addon.info();
const ours = runOurs();
const { inputs, labels } = batch();
const torch = runTorch(inputs, labels);

log(`DPO training step, GPT ${CONFIG.layers} layers x width ${CONFIG.width}, ${CONFIG.heads} heads, vocab ${CONFIG.vocab}, ${ours.parameters} parameters; ${PAIRS} pairs x ${T} tokens`);
log(`${os.cpus()[0]?.model ?? 'cpu'}, simd ${info.simd}, ${THREADS} thread(s), median of ${STEPS} steps after a warm-up`);
log(`fusedpo   ${ours.medianMs.toFixed(1).padStart(8)} ms per step`);
for (const part of ['matmul', 'attention', 'loss', 'rest'] as const) {
  const ms = ours.split[part];
  log(`  ${part.padEnd(10)} ${ms.toFixed(1).padStart(8)} ms  ${((100 * ms) / ours.medianMs).toFixed(1).padStart(5)} %`);
}
const restKernels = Object.entries(ours.split).filter(([k]) => k.startsWith('kernel:') && category(k.slice(7)) === 'rest').sort((a, b) => b[1] - a[1]);
log(`  (rest: native ${restKernels.slice(0, 4).map(([k, ms]) => `${k.slice(7)} ${ms.toFixed(1)}`).join(', ')} ms; the remainder is allocation and JavaScript)`);
const flops = stepFlops(CONFIG, ROWS, T);
const peakLines = measurePeak(THREADS, log);
const peak = peakFor(peakLines, info.simd, THREADS);
let floor: { peakGflops: number; floorMs: number; stepOverFloor: number; matmulOfPeak: number; attentionOfPeak: number } | null = null;
if (peak) {
  const floorMs = (flops.step / (peak * 1e9)) * 1e3;
  floor = {
    peakGflops: peak, floorMs, stepOverFloor: ours.medianMs / floorMs,
    matmulOfPeak: flops.matmul / (ours.split.matmul / 1e3) / 1e9 / peak, attentionOfPeak: flops.attention / (ours.split.attention / 1e3) / 1e9 / peak,
  };
  log(`floor     ${(flops.step / 1e9).toFixed(1)} GFLOP per step at this machine's peak of ${peak} GFLOP/s (${info.simd === 'avx512' ? 'avx512' : 'avx2'} FMA, ${THREADS} thread(s)): ` +
    `${floorMs.toFixed(1)} ms; the step takes ${floor.stepOverFloor.toFixed(2)}x that`);
  log(`          matmul at ${(100 * floor.matmulOfPeak).toFixed(0)} % of peak (${(flops.matmul / 1e9).toFixed(1)} GFLOP), attention at ${(100 * floor.attentionOfPeak).toFixed(0)} %`);
}
if ('error' in torch) {
  log(`pytorch   not measured: ${torch.error}`);
} else {
  log(`pytorch   ${torch.medianMs.toFixed(1).padStart(8)} ms per step (torch ${torch.torch}, ${torch.threads} thread(s), ${torch.parameters} parameters)`);
  log(`ratio     fusedpo / pytorch = ${(ours.medianMs / torch.medianMs).toFixed(2)}`);
}

let commit = 'unknown';
try {
  commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
} catch { /* not a git checkout */ }
const date = new Date().toISOString();
const record = {
  bench: 'train', date, commit,
  machine: { cpu: os.cpus()[0]?.model ?? 'unknown', threads: THREADS, cores: os.availableParallelism(), simd: info.simd, node: process.versions.node },
  model: CONFIG, pairs: PAIRS, tokens: T, loss: 'dpo', beta: BETA, steps: STEPS,
  fusedpo: { medianMs: ours.medianMs, stepsMs: ours.stepsMs, split: ours.split, parameters: ours.parameters, losses: ours.losses },
  pytorch: torch,
  flops, peak: peakLines, floor,
  ratio: 'error' in torch ? null : ours.medianMs / torch.medianMs,
};
if (!SMALL) {
  const dir = path.join(root, 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `train-${date.slice(0, 10)}-${commit}-${info.simd}.json`);
  fs.writeFileSync(file, JSON.stringify(record, null, 2) + '\n');
  log(`wrote ${path.relative(root, file)}`);
}
