/**
 * `fusedpo bench`: the fused preference loss timed on this machine, forward alone and forward +
 * backward (dlogits into a reused `out`), each set against a memory floor measured in the same
 * run by the addon's own bandwidth probe (lib/bandwidth.ts): the bytes of 3 passes over the
 * logits (forward reads them once; backward reads them again and writes dlogits) over this
 * machine's read and read+write bandwidth. The timed calls, the batch and the floors are those
 * of `npm run bench` (bench/loss.ts) in a clone, so that the figures agree for the same case; it
 * needs nothing of the clone (no bench/, no compiler): it ships in dist/.
 *
 * With `--peers`, PyTorch (an inline script run by python3 with torch) and TensorFlow.js (when
 * @tensorflow/tfjs resolves) compute the same loss beside it. Progress goes to stderr; the table
 * (or, with --json, one JSON object) to stdout.
 */
import { spawnSync } from 'node:child_process';
import * as os from 'node:os';

import { DEFAULT_BANDWIDTH_BYTES, maxBandwidthBytes, memoryBandwidth, type MemoryBandwidth } from '../bandwidth';
import { toBf16, toF16 } from '../dtype';
import { exampleBatch, referenceNear } from '../example';
import {
  lossEntry, preferenceLoss, preferenceLossAsync, sequenceLogps, type DevicePreferenceLossArgs, type Logits, type LogitsDType, type LossName,
} from '../losses';
import { ACCEPTED_LOSS_NAMES } from '../losses/registry';
import { cudaAvailable, loadAddon, packageRoot, setThreads } from '../native';
import { Tensor } from '../tensor';
import { version } from '../version';
import { NativeLoadError } from '../errors';
import { UsageError, helpText, parseFlags, type Flag } from './options';

export interface BenchCase {
  pairs: number;
  tokens: number;
  vocab: number;
  /** What the size stands for, in the table. */
  label?: string;
}

/** The cases timed when no size is given: f32 logits of 262 MB, 823 MB and 1.05 GB. */
export const STANDARD_CASES: readonly BenchCase[] = [
  { pairs: 4, tokens: 256, vocab: 32000, label: 'headline' },
  { pairs: 4, tokens: 512, vocab: 50257, label: 'GPT-2 vocab' },
  { pairs: 2, tokens: 512, vocab: 128256, label: 'Llama-3 vocab' },
];
export const HEADLINE = STANDARD_CASES[0];

const DTYPES: readonly LogitsDType[] = ['f32', 'bf16', 'f16'];
const DEFAULT_DTYPES: readonly LogitsDType[] = ['f32', 'bf16'];
const DEFAULT_REPEATS = 5;
const DEFAULT_LOSS: LossName = 'minordpo';
/** Runs of each bandwidth pass, the fastest kept (as in the probe that npm run bench compiles). */
const BANDWIDTH_REPEATS = 5;

const FLAGS: Flag[] = [
  { name: 'pairs', kind: 'integer', help: `pairs of one case (2 rows each); any of --pairs, --tokens, --vocab times that case alone, the others from ${caseName(HEADLINE)}` },
  { name: 'tokens', kind: 'integer', help: 'tokens per row of that case' },
  { name: 'vocab', kind: 'integer', help: 'vocabulary size of that case' },
  { name: 'dtype', kind: 'string', choices: DTYPES, help: 'the logits\' dtype: f32, bf16 or f16 (default: f32, then bf16)' },
  { name: 'threads', kind: 'integer', help: 'CPU threads of the kernels and of the bandwidth probe (default: FUSEDPO_THREADS, else every core)' },
  { name: 'repeats', kind: 'integer', help: `timed calls per measurement after one warm-up; the median counts (default ${DEFAULT_REPEATS})` },
  { name: 'loss', kind: 'string', choices: ACCEPTED_LOSS_NAMES, help: `the loss (default ${DEFAULT_LOSS}; every loss of docs/losses.md)` },
  { name: 'probe-mib', kind: 'integer', help: `MiB of each of the bandwidth probe's 2 buffers (default ${DEFAULT_BANDWIDTH_BYTES / 2 ** 20}; keep it 4x the last-level cache or more)` },
  { name: 'device', kind: 'string', choices: ['cpu', 'cuda'], help: 'time this device alone (default: the CPU, and CUDA as well when a CUDA device answers)' },
  { name: 'peers', kind: 'boolean', help: 'also time PyTorch (python3 with torch) and TensorFlow.js (@tensorflow/tfjs), where installed' },
  { name: 'json', kind: 'boolean', help: 'print one JSON object (for scripts) instead of the table' },
];

const USAGE = 'usage: fusedpo bench [--pairs N --tokens N --vocab N] [--dtype f32|bf16|f16] [--threads N] [--repeats N] [--loss NAME] [--json] [--peers] [--device cpu|cuda]';

const NOTES = [
  `the standard cases, when no size is given: ${STANDARD_CASES.map((c) => `${caseName(c)} (${c.label}, ${gb(4 * rowsOf(c) * c.tokens * c.vocab)} GB of f32 logits)`).join(', ')};`,
  'each needs about 2.5x its logits in memory (the logits, dlogits and, for bf16, a copy).',
  'fwd: preferenceLoss with grad: false; fwd+bwd: with dlogits into a reused out array. GB/s: 3 passes over the',
  'logits (fwd+bwd). floor: those bytes over the read and read+write bandwidth measured at the start of the run,',
  'on the same threads; x floor: the time over it (1.00 is the memory bound); docs/bench.md says more.',
  'FUSEDPO_SIMD=avx2|generic forces a slower SIMD path; FUSEDPO_THREADS sets the default threads.',
].join('\n');

function caseName(c: BenchCase): string {
  return `${c.pairs}x${c.tokens}x${c.vocab}`;
}

function rowsOf(c: BenchCase): number {
  return 2 * c.pairs;
}

function gb(bytes: number): string {
  return (bytes / 1e9).toFixed(2);
}

/** A timed pair of figures: forward alone and forward + backward, in ms (medians). */
interface Timing {
  fwdMs: number;
  fwdBwdMs: number;
}

export interface BenchRow extends Timing {
  device: 'cpu' | 'cuda';
  case: string;
  label: string | null;
  pairs: number;
  tokens: number;
  vocab: number;
  dtype: LogitsDType;
  threads: number | null;
  logitsBytes: number;
  /** The share of tokens counted (not prompt): the batch masks the first quarter of every row. */
  countedFraction: number;
  /** Bytes over time: the logits once (fwd), 3 passes (fwd+bwd); GB are 1e9 bytes. */
  fwdGBps: number;
  fwdBwdGBps: number;
  /** 3 full passes (fwd+bwd; 1 for fwd) over the measured bandwidth; null where none was measured. */
  floorMs: { fwd: number; fwdBwd: number } | null;
  /** The bytes that must move here (forward reads the counted tokens only; backward writes every token). */
  movedFloorMs: { fwd: number; fwdBwd: number } | null;
  /** The time over the floor (1: at the memory bound). */
  xFloor: { fwd: number; fwdBwd: number } | null;
  xMoved: { fwd: number; fwdBwd: number } | null;
}

export interface PeerRow extends Partial<Timing> {
  peer: 'pytorch' | 'tfjs';
  name: string;
  case: string;
  dtype: LogitsDType;
  threads: number | string;
  /** fusedpo's fwd+bwd time over the peer's, on the same case, dtype and device: how many times faster fusedpo is. */
  speedup?: number;
  /** Why it has no timing, when it has none. */
  error?: string;
}

export interface BenchReport {
  bench: 'fusedpo bench';
  version: string;
  date: string;
  machine: { cpu: string; cores: number; memoryBytes: number; simd: string; cpuFeatures: string; node: string; addon: string };
  loss: string;
  repeats: number;
  threads: number;
  bandwidth: MemoryBandwidth | null;
  cuda: { status: string; devices: string[] };
  rows: BenchRow[];
  peers: { pytorch: string; tfjs: string; rows: PeerRow[] } | null;
}

interface Progress {
  step(text: string): void;
  done(): void;
}

/** One line on stderr, rewritten in place on a terminal, one line per step otherwise. */
function progress(): Progress {
  const tty = process.stderr.isTTY === true;
  let shown = false;
  return {
    step(text) {
      if (tty) process.stderr.write(`\r\x1b[K${text}`);
      else process.stderr.write(`${text}\n`);
      shown = true;
    },
    done() {
      if (tty && shown) process.stderr.write('\r\x1b[K');
    },
  };
}

function median(times: number[]): number {
  const sorted = [...times].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** One warm-up call (page faults of fresh buffers, thread start), then the median of `repeats` (npm run bench times with it too). */
export function time(fn: () => void, repeats: number): number {
  fn();
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    fn();
    times.push(performance.now() - t0);
  }
  return median(times);
}

async function timeAsync(fn: () => Promise<unknown>, repeats: number): Promise<number> {
  await fn();
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  return median(times);
}

/** The example batch of bench/loss.ts: seed 1, logits in [-2, 2), a reference near the policy. */
function makeBatch(c: BenchCase, withReference: boolean) {
  const batch = exampleBatch(c.pairs, c.tokens, c.vocab, 1, 2);
  const refLogps = withReference ? referenceNear(sequenceLogps({ logits: batch.logits, shape: batch.shape, labels: batch.labels }).logps) : undefined;
  let counted = 0;
  for (const y of batch.labels) if (y !== -100) counted++;
  return { batch, refLogps, countedFraction: counted / batch.labels.length };
}

function logitsOf(f32: Float32Array, dtype: LogitsDType): Logits {
  return dtype === 'f32' ? f32 : dtype === 'bf16' ? toBf16(f32) : toF16(f32);
}

/**
 * The floors (npm run bench uses these too): 3 full passes over `bytes` of logits; and the bytes
 * that must move where only the share `counted` of the tokens is counted (forward reads the
 * counted tokens, backward reads them and writes every token).
 */
export function floors(bytes: number, counted: number, bandwidth: Pick<MemoryBandwidth, 'readGBps' | 'readWriteGBps'>) {
  const read = (b: number) => (b / (bandwidth.readGBps * 1e9)) * 1e3;
  const readWrite = (b: number) => (b / (bandwidth.readWriteGBps * 1e9)) * 1e3;
  return {
    floorMs: { fwd: read(bytes), fwdBwd: read(bytes) + readWrite(2 * bytes) },
    movedFloorMs: { fwd: read(counted * bytes), fwdBwd: read(counted * bytes) + readWrite((1 + counted) * bytes) },
  };
}

function row(device: 'cpu' | 'cuda', c: BenchCase, dtype: LogitsDType, threads: number | null, logitsBytes: number, countedFraction: number,
  timing: Timing, bandwidth: MemoryBandwidth | null): BenchRow {
  const f = bandwidth ? floors(logitsBytes, countedFraction, bandwidth) : null;
  const over = (floor: { fwd: number; fwdBwd: number }) => ({ fwd: timing.fwdMs / floor.fwd, fwdBwd: timing.fwdBwdMs / floor.fwdBwd });
  return {
    device, case: caseName(c), label: c.label ?? null, pairs: c.pairs, tokens: c.tokens, vocab: c.vocab, dtype, threads, logitsBytes, countedFraction,
    ...timing,
    fwdGBps: logitsBytes / (timing.fwdMs * 1e6),
    fwdBwdGBps: (3 * logitsBytes) / (timing.fwdBwdMs * 1e6),
    floorMs: f?.floorMs ?? null,
    movedFloorMs: f?.movedFloorMs ?? null,
    xFloor: f ? over(f.floorMs) : null,
    xMoved: f ? over(f.movedFloorMs) : null,
  };
}

interface Options {
  cases: BenchCase[];
  dtypes: LogitsDType[];
  threads: number;
  repeats: number;
  loss: LossName;
  probeBytes: number;
  devices: ('cpu' | 'cuda')[];
  peers: boolean;
  json: boolean;
}

function positive(options: Record<string, unknown>, key: string, flag: string, max = 2 ** 31 - 1): number | undefined {
  const value = options[key] as number | undefined;
  if (value !== undefined && (value < 1 || value > max)) throw new UsageError(`expected an integer from 1 to ${max} after --${flag} but received ${value}`);
  return value;
}

function readOptions(options: Record<string, unknown>): Options {
  const pairs = positive(options, 'pairs', 'pairs');
  const tokens = positive(options, 'tokens', 'tokens');
  const vocab = positive(options, 'vocab', 'vocab');
  const cases = pairs === undefined && tokens === undefined && vocab === undefined
    ? [...STANDARD_CASES]
    : [{ pairs: pairs ?? HEADLINE.pairs, tokens: tokens ?? HEADLINE.tokens, vocab: vocab ?? HEADLINE.vocab }];
  const memory = os.totalmem();
  for (const c of cases) {
    const elements = rowsOf(c) * c.tokens * c.vocab;
    // The f32 logits, dlogits and a half-size copy: refused before a long batch build fails.
    if (!Number.isSafeInteger(elements) || 4 * elements * 2.5 > memory) {
      throw new UsageError(`${caseName(c)} needs about ${gb(10 * elements)} GB (f32 logits, dlogits and a copy) but this machine has ${gb(memory)} GB; give a smaller --pairs, --tokens or --vocab`);
    }
  }
  const probeMib = positive(options, 'probeMib', 'probe-mib', Math.floor(maxBandwidthBytes() / 2 ** 20));
  const device = options.device as 'cpu' | 'cuda' | undefined;
  return {
    cases,
    dtypes: options.dtype === undefined ? [...DEFAULT_DTYPES] : [options.dtype as LogitsDType],
    threads: positive(options, 'threads', 'threads', 1024) ?? loadAddon().addon.info().threads,
    repeats: positive(options, 'repeats', 'repeats', 1000) ?? DEFAULT_REPEATS,
    loss: (options.loss as LossName | undefined) ?? DEFAULT_LOSS,
    probeBytes: probeMib !== undefined ? probeMib * 2 ** 20 : Math.min(DEFAULT_BANDWIDTH_BYTES, maxBandwidthBytes()),
    devices: device ? [device] : ['cpu', 'cuda'],
    peers: options.peers === true,
    json: options.json === true,
  };
}

/** Whether CUDA can be timed: 'available', or why not. */
function cudaStatus(): { usable: boolean; status: string; devices: string[] } {
  const loaded = loadAddon();
  const devices = (loaded.cudaInfo?.devices ?? []).map((d) => `${d.name} (sm ${d.computeCapability})`);
  if (cudaAvailable()) return { usable: true, status: `in use: ${devices.join(', ')}`, devices };
  return { usable: false, status: `no CUDA device: ${loaded.cudaSkipped ?? 'the CUDA addon is not usable'}`, devices };
}

async function cudaTiming(logits: Logits, shape: [number, number, number], dtype: LogitsDType, base: Record<string, unknown>, repeats: number): Promise<Timing> {
  const tensor = Tensor.from(logits, shape, dtype, 'cuda');
  const out = new Tensor(shape, dtype, 'cuda');
  try {
    const args = { ...base, logits: tensor } as DevicePreferenceLossArgs;
    const fwdMs = await timeAsync(() => preferenceLossAsync({ ...args, grad: false }), repeats);
    const fwdBwdMs = await timeAsync(() => preferenceLossAsync({ ...args, out }), repeats);
    return { fwdMs, fwdBwdMs };
  } finally {
    tensor.dispose();
    out.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// Peers

/**
 * The same computation in PyTorch, eager: log_softmax over the vocabulary, the labels' log-probs
 * gathered, summed per row over the counted tokens (the first quarter of each row is prompt), the
 * DPO or MinorDPO loss against a reference near the policy, and its backward pass into
 * logits.grad. Timed as fusedpo is: one warm-up, then the median; forward alone under no_grad.
 */
const TORCH_SCRIPT = String.raw`
import json, os, time
import torch
import torch.nn.functional as F

env = os.environ
P, T, V = int(env["FUSEDPO_PAIRS"]), int(env["FUSEDPO_TOKENS"]), int(env["FUSEDPO_VOCAB"])
REPEATS = int(env["FUSEDPO_REPEATS"])
MINOR = env["FUSEDPO_LOSS"] == "minordpo"
DTYPE = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[env["FUSEDPO_DTYPE"]]
BETA = 0.1
torch.set_num_threads(int(env["FUSEDPO_THREADS"]))
rows = 2 * P
gen = torch.Generator().manual_seed(1)
logits = ((torch.rand(rows, T, V, generator=gen) * 4 - 2).to(DTYPE)).requires_grad_()
labels = torch.randint(0, V, (rows, T, 1), generator=gen)
counted = torch.ones(rows, T)
counted[:, : T // 4] = 0

def sequence_logps(x):
    token = x.log_softmax(dim=-1).gather(2, labels).squeeze(2).float()
    return (token * counted).sum(dim=1)

with torch.no_grad():
    ref = sequence_logps(logits) + torch.sin(1 + 2.3 * torch.arange(rows, dtype=torch.float32)) * 3

def loss_of(x):
    u = sequence_logps(x) - ref
    chosen, rejected = u[:P], u[P:]
    if MINOR:
        rejected = rejected.clamp(min=0)
    return -F.logsigmoid(BETA * (chosen - rejected)).mean()

def forward():
    with torch.no_grad():
        loss_of(logits).item()

def forward_backward():
    logits.grad = None
    loss_of(logits).backward()

def median_ms(fn):
    fn()
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2]

print(json.dumps({"version": torch.__version__, "threads": torch.get_num_threads(),
                  "fwdMs": median_ms(forward), "fwdBwdMs": median_ms(forward_backward)}))
`;

/**
 * The same in TensorFlow.js: logSoftmax, the labels' log-probs picked by a one-hot product,
 * summed per row over the counted tokens, the loss (-log sigmoid written as softplus of its
 * negation), and tf.grad for the backward pass; the wasm backend when it is installed, else cpu.
 */
const TFJS_SCRIPT = String.raw`
const tf = require(process.env.FUSEDPO_TFJS);
const wasm = process.env.FUSEDPO_TFJS_WASM;
(async () => {
  if (wasm) require(wasm);
  await tf.setBackend(wasm ? 'wasm' : 'cpu');
  await tf.ready();
  const [P, T, V, repeats] = ['FUSEDPO_PAIRS', 'FUSEDPO_TOKENS', 'FUSEDPO_VOCAB', 'FUSEDPO_REPEATS'].map((k) => Number(process.env[k]));
  const minor = process.env.FUSEDPO_LOSS === 'minordpo';
  const rows = 2 * P;
  const logits = tf.randomUniform([rows * T, V], -2, 2, 'float32', 1);
  const labels = tf.randomUniform([rows * T], 0, V, 'int32', 2);
  const counted = tf.tensor2d(Float32Array.from({ length: rows * T }, (_, i) => (i % T < Math.floor(T / 4) ? 0 : 1)), [rows, T]);
  const sequence = (x) => tf.sum(tf.mul(tf.reshape(tf.sum(tf.mul(tf.logSoftmax(x), tf.oneHot(labels, V)), -1), [rows, T]), counted), -1);
  const shift = tf.mul(tf.sin(tf.add(1, tf.mul(2.3, tf.range(0, rows)))), 3);
  const ref = tf.tidy(() => tf.add(sequence(logits), shift));
  const loss = (x) => {
    const u = tf.sub(sequence(x), ref);
    let rejected = tf.slice(u, [P], [P]);
    if (minor) rejected = tf.relu(rejected);
    return tf.mean(tf.softplus(tf.neg(tf.mul(0.1, tf.sub(tf.slice(u, [0], [P]), rejected)))));
  };
  const grad = tf.grad(loss);
  const median = async (fn) => {
    await fn();
    const times = [];
    for (let i = 0; i < repeats; i++) {
      const t0 = performance.now();
      await fn();
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    return times[Math.floor(times.length / 2)];
  };
  const fwdMs = await median(async () => { const l = tf.tidy(() => loss(logits)); await l.data(); l.dispose(); });
  const fwdBwdMs = await median(async () => { const d = tf.tidy(() => grad(logits)); await d.data(); d.dispose(); });
  console.log(JSON.stringify({ version: tf.version.tfjs, backend: tf.getBackend(), fwdMs, fwdBwdMs }));
})().catch((error) => { console.error(error && error.message ? error.message : String(error)); process.exit(1); });
`;

/** The first python that imports torch: FUSEDPO_PYTHON, python3 on PATH, /usr/bin/python3. */
function findTorch(): { python: string | null; note: string } {
  const candidates = [process.env.FUSEDPO_PYTHON, 'python3', process.platform === 'win32' ? undefined : '/usr/bin/python3']
    .filter((c): c is string => !!c).filter((c, i, all) => all.indexOf(c) === i);
  let why = '';
  for (const python of candidates) {
    const run = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8', timeout: 120_000 });
    if (run.status === 0) return { python, note: `PyTorch ${run.stdout.trim()} (${python})` };
    why ||= run.error ? `${python} could not be started` : (run.stderr.trim().split('\n').pop() ?? `${python} exited with status ${run.status}`);
  }
  return { python: null, note: `not installed (python3 -c "import torch": ${why}); pip install torch (or apt-get install python3-torch) to include it` };
}

/** @tensorflow/tfjs (and the wasm backend, when there) as resolved from here or the working directory. */
function findTfjs(): { tfjs: string | null; wasm: string | null; note: string } {
  const paths = [process.cwd(), packageRoot];
  const resolve = (name: string) => {
    try {
      return require.resolve(name, { paths });
    } catch {
      return null;
    }
  };
  const tfjs = resolve('@tensorflow/tfjs');
  if (!tfjs) return { tfjs: null, wasm: null, note: 'not installed (@tensorflow/tfjs does not resolve); npm install @tensorflow/tfjs @tensorflow/tfjs-backend-wasm to include it' };
  const wasm = resolve('@tensorflow/tfjs-backend-wasm');
  return { tfjs, wasm, note: `TensorFlow.js (${wasm ? 'wasm' : 'cpu'} backend${wasm ? '' : '; @tensorflow/tfjs-backend-wasm is faster'})` };
}

function peerEnv(c: BenchCase, dtype: LogitsDType, threads: number, repeats: number, loss: string): NodeJS.ProcessEnv {
  return {
    ...process.env, FUSEDPO_PAIRS: String(c.pairs), FUSEDPO_TOKENS: String(c.tokens), FUSEDPO_VOCAB: String(c.vocab),
    FUSEDPO_DTYPE: dtype, FUSEDPO_THREADS: String(threads), FUSEDPO_REPEATS: String(repeats), FUSEDPO_LOSS: loss,
  };
}

/** The last JSON line of a peer's output, or its error. */
function peerResult(run: ReturnType<typeof spawnSync>): (Timing & { version: string; backend?: string; threads?: number }) | { error: string } {
  const stdout = String(run.stdout ?? ''), stderr = String(run.stderr ?? '');
  if (run.error) return { error: run.error.message };
  if (run.status !== 0) return { error: stderr.trim().split('\n').pop() || `exited with status ${run.status ?? run.signal}` };
  const line = stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  try {
    return JSON.parse(line ?? '');
  } catch {
    return { error: `no result line in its output: ${stdout.slice(-200)}` };
  }
}

// ---------------------------------------------------------------------------------------------
// Output

function fixed(value: number | undefined | null, digits = 1): string {
  return value === undefined || value === null || !Number.isFinite(value) ? 'n/a' : value.toFixed(digits);
}

export function formatBench(report: BenchReport): string {
  const m = report.machine;
  const lines = [
    `fusedpo ${report.version} bench: ${report.loss}, median of ${report.repeats} after a warm-up; ${m.cpu}, ${m.cores} cores, ${gb(m.memoryBytes)} GB`,
    `SIMD path: ${m.simd} (CPU features: ${m.cpuFeatures}; FUSEDPO_SIMD=avx2|generic forces a slower one); addon ${m.addon}`,
  ];
  const b = report.bandwidth;
  if (b) {
    lines.push(`bandwidth: read ${b.readGBps.toFixed(1)} GB/s, read+write ${b.readWriteGBps.toFixed(1)} GB/s ` +
      `(${b.threads} threads, 2 x ${(b.bytes / 2 ** 20).toFixed(0)} MiB, best of ${b.repeats}); the floors below are these`);
  }
  lines.push(`CUDA: ${report.cuda.status}`, '');
  lines.push('| case | dtype | device | threads | fwd ms | fwd x floor | fwd+bwd ms | GB/s | floor ms | x floor | x moved |');
  lines.push('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of report.rows) {
    lines.push(`| ${r.case}${r.label ? ` (${r.label})` : ''} | ${r.dtype} | ${r.device} | ${r.threads ?? ''} | ${fixed(r.fwdMs)} | ${fixed(r.xFloor?.fwd, 2)} | ` +
      `${fixed(r.fwdBwdMs)} | ${fixed(r.fwdBwdGBps)} | ${fixed(r.floorMs?.fwdBwd)} | ${fixed(r.xFloor?.fwdBwd, 2)} | ${fixed(r.xMoved?.fwdBwd, 2)} |`);
  }
  const counted = report.rows[0]?.countedFraction;
  lines.push('', `GB/s, floor, x floor and x moved are of fwd+bwd (3 passes over the logits); x moved counts the bytes that must move` +
    `${counted !== undefined ? ` here (${(100 * counted).toFixed(0)}% of tokens counted, the rest prompt)` : ''}.`);
  if (report.rows.some((r) => r.device === 'cuda')) lines.push('CUDA rows have no floor: this version has no GPU bandwidth probe.');
  if (report.peers) {
    lines.push('', `PyTorch: ${report.peers.pytorch}`, `TensorFlow.js: ${report.peers.tfjs}`);
    if (report.peers.rows.length > 0) {
      lines.push('', '| peer | case | dtype | threads | fwd ms | fwd+bwd ms | fusedpo faster by |', '|---|---|---|---|---|---|---|');
      for (const p of report.peers.rows) {
        lines.push(p.error
          ? `| ${p.name} | ${p.case} | ${p.dtype} | ${p.threads} | failed: ${p.error.replace(/\|/g, '\\|')} | | |`
          : `| ${p.name} | ${p.case} | ${p.dtype} | ${p.threads} | ${fixed(p.fwdMs)} | ${fixed(p.fwdBwdMs)} | ${p.speedup ? `${p.speedup.toFixed(1)}x` : ''} |`);
      }
    }
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------

export async function runBench(o: Options, log: Progress): Promise<BenchReport> {
  const loaded = loadAddon();
  setThreads(o.threads);
  const info = loaded.addon.info();
  const entry = lossEntry(o.loss)!;
  const cuda = cudaStatus();
  if (o.devices.length === 1 && o.devices[0] === 'cuda' && !cuda.usable) throw new NativeLoadError(`--device cuda: ${cuda.status}`);
  const devices = o.devices.filter((d) => d === 'cpu' || cuda.usable);
  const total = o.cases.length * o.dtypes.length;

  let bandwidth: MemoryBandwidth | null = null;
  if (devices.includes('cpu')) {
    log.step(`fusedpo bench: measuring memory bandwidth (${o.threads} threads, 2 x ${(o.probeBytes / 2 ** 20).toFixed(0)} MiB)`);
    bandwidth = memoryBandwidth({ bytes: o.probeBytes, threads: o.threads, repeats: BANDWIDTH_REPEATS });
  }

  const rows: BenchRow[] = [];
  let index = 0;
  const cpuFwdBwd = new Map<string, number>();
  for (const c of o.cases) {
    log.step(`fusedpo bench: [${index + 1}/${total}] ${caseName(c)}: making the batch`);
    const { batch, refLogps, countedFraction } = makeBatch(c, entry.reference);
    for (const dtype of o.dtypes) {
      index++;
      const step = `fusedpo bench: [${index}/${total}] ${caseName(c)} ${dtype}`;
      let logits: Logits | null = logitsOf(batch.logits, dtype);
      const base = { loss: o.loss, dtype, shape: batch.shape, labels: batch.labels, ...(refLogps ? { refLogps } : {}) };
      if (devices.includes('cpu')) {
        const out = dtype === 'f32' ? new Float32Array(logits.length) : new Uint16Array(logits.length);
        const l = logits;
        log.step(`${step}: forward`);
        const fwdMs = time(() => preferenceLoss({ ...base, logits: l, grad: false }), o.repeats);
        log.step(`${step}: forward + backward`);
        const fwdBwdMs = time(() => preferenceLoss({ ...base, logits: l, out }), o.repeats);
        rows.push(row('cpu', c, dtype, o.threads, logits.byteLength, countedFraction, { fwdMs, fwdBwdMs }, bandwidth));
        cpuFwdBwd.set(`${caseName(c)}:${dtype}`, fwdBwdMs);
      }
      if (devices.includes('cuda')) {
        log.step(`${step}: CUDA forward, forward + backward`);
        const timing = await cudaTiming(logits, batch.shape, dtype, base, o.repeats);
        rows.push(row('cuda', c, dtype, null, logits.byteLength, countedFraction, timing, null));
      }
      logits = null;
    }
  }

  let peers: BenchReport['peers'] = null;
  if (o.peers) {
    const torch = findTorch();
    const tfjs = findTfjs();
    const peerLoss = o.loss === 'dpo' || o.loss === 'sigmoid' ? 'dpo' : 'minordpo';
    const lossNote = peerLoss === o.loss || (o.loss === 'sigmoid' && peerLoss === 'dpo') ? '' : ` (the peers compute ${peerLoss}, not ${o.loss})`;
    const peerRows: PeerRow[] = [];
    let k = 0;
    const peerTotal = o.cases.length * o.dtypes.length;
    for (const c of o.cases) {
      for (const dtype of o.dtypes) {
        k++;
        const ours = cpuFwdBwd.get(`${caseName(c)}:${dtype}`);
        const speedup = (t: Timing) => (ours ? t.fwdBwdMs / ours : undefined);
        if (torch.python) {
          log.step(`fusedpo bench: [${k}/${peerTotal}] PyTorch ${caseName(c)} ${dtype}`);
          const run = spawnSync(torch.python, ['-c', TORCH_SCRIPT], { encoding: 'utf8', env: peerEnv(c, dtype, o.threads, o.repeats, peerLoss), maxBuffer: 1 << 20 });
          const result = peerResult(run);
          const name = `PyTorch${'version' in result ? ` ${result.version}` : ''} eager`;
          peerRows.push('error' in result
            ? { peer: 'pytorch', name, case: caseName(c), dtype, threads: o.threads, error: result.error }
            : { peer: 'pytorch', name, case: caseName(c), dtype, threads: result.threads ?? o.threads, fwdMs: result.fwdMs, fwdBwdMs: result.fwdBwdMs, speedup: speedup(result) });
        }
        if (tfjs.tfjs && dtype === 'f32') {
          log.step(`fusedpo bench: [${k}/${peerTotal}] TensorFlow.js ${caseName(c)} ${dtype}`);
          const env = { ...peerEnv(c, dtype, o.threads, o.repeats, peerLoss), FUSEDPO_TFJS: tfjs.tfjs, FUSEDPO_TFJS_WASM: tfjs.wasm ?? '' };
          const run = spawnSync(process.execPath, ['-e', TFJS_SCRIPT], { encoding: 'utf8', env, maxBuffer: 1 << 20 });
          const result = peerResult(run);
          const name = `TensorFlow.js${'version' in result ? ` ${result.version}` : ''}`;
          peerRows.push('error' in result
            ? { peer: 'tfjs', name, case: caseName(c), dtype, threads: tfjs.wasm ? 'wasm' : 'cpu', error: result.error }
            : { peer: 'tfjs', name, case: caseName(c), dtype, threads: result.backend ?? 'cpu', fwdMs: result.fwdMs, fwdBwdMs: result.fwdBwdMs, speedup: speedup(result) });
        }
      }
    }
    peers = {
      pytorch: `${torch.note}${torch.python ? lossNote : ''}`,
      tfjs: `${tfjs.note}${tfjs.tfjs ? `${lossNote}; f32 only` : ''}`,
      rows: peerRows,
    };
  }
  log.done();

  return {
    bench: 'fusedpo bench',
    version,
    date: new Date().toISOString(),
    machine: {
      cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.availableParallelism(), memoryBytes: os.totalmem(),
      simd: info.simd, cpuFeatures: info.cpuFeatures, node: process.versions.node, addon: `${loaded.kind} (${loaded.path})`,
    },
    loss: o.loss,
    repeats: o.repeats,
    threads: o.threads,
    bandwidth,
    cuda: { status: cuda.status, devices: cuda.devices },
    rows,
    peers,
  };
}

export async function benchCommand(argv: readonly string[]): Promise<void> {
  const { options, help } = parseFlags('bench', argv, FLAGS);
  if (help) return void console.log(helpText(USAGE, FLAGS, NOTES));
  const o = readOptions(options);
  const report = await runBench(o, progress());
  if (o.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else console.log(formatBench(report));
}
