/**
 * `npx tsx bench/matmul.ts`: matmul's fast path on the products of one training step of the
 * planned CPU GPT (6 layers, width 256, 8 heads, context 128; 4 pairs x 128 tokens = 1024 token
 * rows), beside PyTorch (/usr/bin/python3, its BLAS: OpenBLAS on Debian) on the same shapes, at 1
 * thread and at every thread, in the same run on the same machine.
 *
 * Per linear layer y = x @ W^T (W [out, in]): forward x @ W^T, backward dX = dY @ W and
 * dW = dY^T @ X; the attention products per head (batch 32 = 4 sequences x 8 heads); and 1024^3.
 * Each side runs its shapes in rounds, alternating with the other: a round times `--repeats`
 * calls after warm-up and keeps the median; the table shows the best round of each. The 2-core
 * development VM is shared, and another tenant can take a core for seconds at a time: with a
 * few short rounds each side gets some with both cores (2 long rounds often gave one side none). GFLOP/s counts 2*M*N*K per product; ratio = fusedpo ms / PyTorch ms.
 *
 * Options: --repeats N (default 15) --rounds N (default 5) --no-torch
 * Writes bench/results/matmul-<date>-<commit>.json.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { loadAddon, setThreads } from '../lib/native';
import { matmul } from '../lib/ops/matmul';
import { measurePeak, peakFor } from './peak';

const root = path.resolve(__dirname, '..');
const argv = process.argv.slice(2);
const option = (name: string, fallback: number) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : fallback;
};
const REPEATS = option('repeats', 15);
const ROUNDS = option('rounds', 5);
const allThreads = os.availableParallelism();
const log = (line: string) => process.stdout.write(line + '\n');

interface Shape {
  name: string;
  batch: number;
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
}

const TOKENS = 1024;
const WIDTH = 256;

/** The three products of a linear layer [in] -> [out] over TOKENS rows. */
function linear(name: string, inputs: number, outputs: number): Shape[] {
  return [
    { name: `${name} fwd x@W^T`, batch: 1, m: TOKENS, n: outputs, k: inputs, transA: false, transB: true },
    { name: `${name} dX=dY@W`, batch: 1, m: TOKENS, n: inputs, k: outputs, transA: false, transB: false },
    { name: `${name} dW=dY^T@X`, batch: 1, m: outputs, n: inputs, k: TOKENS, transA: true, transB: false },
  ];
}

const SHAPES: Shape[] = [
  ...linear('qkv 256->768', WIDTH, 3 * WIDTH),
  ...linear('proj 256->256', WIDTH, WIDTH),
  ...linear('mlp up 256->1024', WIDTH, 4 * WIDTH),
  ...linear('mlp down 1024->256', 4 * WIDTH, WIDTH),
  { name: 'attn q@k^T (32 heads)', batch: 32, m: 128, n: 128, k: 32, transA: false, transB: true },
  { name: 'attn p@v (32 heads)', batch: 32, m: 128, n: 32, k: 128, transA: false, transB: false },
  { name: '1024^3', batch: 1, m: 1024, n: 1024, k: 1024, transA: false, transB: false },
];

const flops = (s: Shape) => 2 * s.batch * s.m * s.n * s.k;

function median(times: number[]): number {
  const sorted = [...times].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function randomArray(length: number): Float32Array {
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = Math.random() * 2 - 1;
  return out;
}

/** Median ms of one product per shape, for the current thread count. */
function fusedpoRound(): number[] {
  return SHAPES.map((s) => {
    const a = randomArray(s.batch * s.m * s.k);
    const b = randomArray(s.batch * s.k * s.n);
    const c = new Float32Array(s.batch * s.m * s.n);
    const run = () => matmul({ a, b, c, batch: s.batch, m: s.m, n: s.n, k: s.k, transA: s.transA, transB: s.transB });
    for (let i = 0; i < 3; i++) run();
    const times: number[] = [];
    for (let i = 0; i < REPEATS; i++) {
      const t0 = performance.now();
      run();
      times.push(performance.now() - t0);
    }
    return median(times);
  });
}

// The same products in PyTorch, into a preallocated out (as fusedpo writes into c); transposes
// as views, which torch hands to its BLAS as transpose flags.
const TORCH_SCRIPT = `
import json, sys, time, torch
request = json.load(sys.stdin)
torch.set_num_threads(request["threads"])
out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "ms": []}
for s in request["shapes"]:
    bt, m, n, k = s["batch"], s["m"], s["n"], s["k"]
    a = torch.rand(bt, k, m).transpose(1, 2) if s["transA"] else torch.rand(bt, m, k)
    b = torch.rand(bt, n, k).transpose(1, 2) if s["transB"] else torch.rand(bt, k, n)
    if bt == 1:
        a, b = a[0], b[0]
    c = torch.empty(*( (m, n) if bt == 1 else (bt, m, n) ))
    for _ in range(3):
        torch.matmul(a, b, out=c)
    times = []
    for _ in range(request["repeats"]):
        t0 = time.perf_counter()
        torch.matmul(a, b, out=c)
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    out["ms"].append(times[len(times) // 2])
print(json.dumps(out))
`;

const PYTHON = '/usr/bin/python3';

/** Median ms per shape in PyTorch at `threads`, or a reason it could not run. */
function torchRound(threads: number): { ms: number[]; version: string } | string {
  if (!fs.existsSync(PYTHON)) return `${PYTHON} not found`;
  const run = spawnSync(PYTHON, ['-c', TORCH_SCRIPT], {
    encoding: 'utf8',
    input: JSON.stringify({ threads, repeats: REPEATS, shapes: SHAPES }),
    env: { ...process.env, OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads) },
  });
  if (run.status !== 0) return run.stderr.trim().split('\n').pop() ?? `exit ${run.status}`;
  const result = JSON.parse(run.stdout.trim().split('\n').pop()!);
  return { ms: result.ms, version: result.torch };
}

function gitCommit(): string {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: root, encoding: 'utf8' }).trim();
    return dirty ? `${commit}-dirty` : commit;
  } catch {
    return 'unknown';
  }
}

interface Row {
  shape: Shape;
  threads: number;
  fusedpoMs: number;
  fusedpoGflops: number;
  torchMs: number | null;
  torchGflops: number | null;
  /** fusedpo ms / PyTorch ms: below 1 is faster than PyTorch. */
  ratio: number | null;
}

function main(): void {
  const info = loadAddon().addon.info();
  const cpu = os.cpus()[0]?.model ?? 'unknown';
  log(`fusedpo matmul: ${cpu}, ${allThreads} threads, simd ${info.simd}; ${REPEATS} repeats x ${ROUNDS} rounds, best round's median`);
  let torchVersion: string | null = null;
  let torchSkipped: string | null = argv.includes('--no-torch') ? '--no-torch' : null;
  const rows: Row[] = [];
  const threadCounts = allThreads > 1 ? [1, allThreads] : [1];
  for (const threads of threadCounts) {
    setThreads(threads);
    const fusedpoBest = SHAPES.map(() => Infinity);
    const torchBest = SHAPES.map(() => Infinity);
    for (let round = 0; round < ROUNDS; round++) {
      fusedpoRound().forEach((ms, i) => (fusedpoBest[i] = Math.min(fusedpoBest[i], ms)));
      if (torchSkipped) continue;
      const torch = torchRound(threads);
      if (typeof torch === 'string') {
        torchSkipped = torch;
        log(`PyTorch: skipped (${torch}); install it with apt-get install python3-torch libopenblas0-pthread`);
        continue;
      }
      torchVersion = torch.version;
      torch.ms.forEach((ms, i) => (torchBest[i] = Math.min(torchBest[i], ms)));
    }
    SHAPES.forEach((shape, i) => {
      const torchMs = Number.isFinite(torchBest[i]) ? torchBest[i] : null;
      rows.push({
        shape,
        threads,
        fusedpoMs: fusedpoBest[i],
        fusedpoGflops: flops(shape) / fusedpoBest[i] / 1e6,
        torchMs,
        torchGflops: torchMs === null ? null : flops(shape) / torchMs / 1e6,
        ratio: torchMs === null ? null : fusedpoBest[i] / torchMs,
      });
    });
  }
  setThreads(allThreads);

  // the peak FMA throughput of the ISA in use, at each thread count, measured now (bench/peak.ts)
  const peakLines = measurePeak(allThreads, log);
  const peaks = new Map(threadCounts.map((t) => [t, peakFor(peakLines, info.simd, t)]));
  if (peakLines) log(`peak FMA throughput: ${peakLines.map((l) => `${l.isa} ${l.threads} thread(s) ${l.gflops} GFLOP/s`).join(', ')}`);
  log('');
  log(`| product | batch x [M, N, K] | threads | fusedpo ms | fusedpo GFLOP/s | of peak | PyTorch ms | PyTorch GFLOP/s | fusedpo / PyTorch time |`);
  log('|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const s = r.shape;
    const dims = `${s.batch > 1 ? `${s.batch} x ` : ''}[${s.m}, ${s.n}, ${s.k}]`;
    const torch = r.torchMs === null ? '| n/a | n/a | n/a' : `| ${r.torchMs.toFixed(3)} | ${r.torchGflops!.toFixed(1)} | ${r.ratio!.toFixed(2)}`;
    const peak = peaks.get(r.threads);
    const ofPeak = peak ? `${((100 * r.fusedpoGflops) / peak).toFixed(0)} %` : 'n/a';
    log(`| ${s.name} | ${dims} | ${r.threads} | ${r.fusedpoMs.toFixed(3)} | ${r.fusedpoGflops.toFixed(1)} | ${ofPeak} ${torch} |`);
  }

  const commit = gitCommit();
  const date = new Date().toISOString();
  const result = {
    bench: 'matmul',
    date,
    commit,
    machine: { cpu, threads: allThreads, simd: info.simd, features: info.cpuFeatures, node: process.versions.node },
    torch: torchVersion,
    torchSkipped,
    peak: peakLines,
    repeats: REPEATS,
    rounds: ROUNDS,
    rows,
  };
  const dir = path.join(root, 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `matmul-${date.slice(0, 10)}-${commit}-${info.simd}.json`);
  fs.writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  log(`\nwrote ${path.relative(root, file)}`);
}

main();
