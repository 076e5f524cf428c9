/**
 * `npm run bench`: the fused loss, forward and forward + backward, on the headline case
 * (4 pairs x 256 tokens x V = 32000), beside, in the same run on the same machine:
 * - the floor: this machine's read and read+write bandwidth (../shared/peers/cpu_limit.c) times
 *   the bytes of 3 passes over the logits (forward reads them; backward reads them and writes
 *   dlogits);
 * - a plain unfused TypeScript implementation (bench/unfused.ts);
 * - PyTorch CPU (../shared/peers/cpu_peers.py with /usr/bin/python3) and TensorFlow.js
 *   (../shared/peers/cpu_peers_tfjs.mjs), when present; skipped with a message when not.
 * Prints a table and writes bench/results/loss-<date>-<commit>-<simd>.json (FUSEDPO_SIMD forces a path).
 *
 * Options: --pairs N --tokens N --vocab N --repeats N --no-peers --no-unfused
 * Environment: FUSEDPO_PEERS_DIR (default ../shared/peers beside the repository).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { floors as floorsOf, time as timeCall } from '../lib/cli/bench';
import { exampleBatch, referenceNear } from '../lib/example';
import { preferenceLoss, sequenceLogps, setThreads, toBf16, version, type Logits, type LogitsDType } from '../lib/index';
import { loadAddon } from '../lib/native';
import { unfusedDpo } from './unfused';

const root = path.resolve(__dirname, '..');
const argv = process.argv.slice(2);
const option = (name: string, fallback: number) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : fallback;
};
const PAIRS = option('pairs', 4);
const TOKENS = option('tokens', 256);
const VOCAB = option('vocab', 32000);
const REPEATS = option('repeats', 5);
const peersDir = process.env.FUSEDPO_PEERS_DIR ?? path.resolve(root, '..', 'shared', 'peers');
const allThreads = os.availableParallelism();

interface Row {
  name: string;
  dtype: string;
  threads: number | string;
  ms: number;
  note?: string;
}
const rows: Row[] = [];
const log = (line: string) => process.stdout.write(line + '\n');

const time = (fn: () => void, repeats = REPEATS) => timeCall(fn, repeats);

/** This machine's streaming read and read+write bandwidth, from the peers' cpu_limit.c. */
function measureBandwidth(): { read_gb_s: number; rw_gb_s: number; exp_read_gelem_s: number; threads: number } | null {
  const source = path.join(peersDir, 'cpu_limit.c');
  if (!fs.existsSync(source)) {
    log(`floor: skipped, ${source} not found (set FUSEDPO_PEERS_DIR)`);
    return null;
  }
  const binary = path.join(os.tmpdir(), `fusedpo-cpu-limit-${process.pid}`);
  try {
    execFileSync('gcc', ['-O3', '-march=native', '-ffast-math', '-fopenmp', source, '-o', binary, '-lm']);
    const out = execFileSync(binary, { encoding: 'utf8' });
    return JSON.parse(out.trim().split('\n').pop()!);
  } catch (error) {
    log(`floor: skipped, could not build or run cpu_limit.c: ${(error as Error).message.split('\n')[0]}`);
    return null;
  } finally {
    fs.rmSync(binary, { force: true });
  }
}

interface PeerLine { name: string; ms_median: number; maxrss_gib?: number; rss_gib?: number; threads?: number }

function torchPeers(threads: number): PeerLine[] {
  const script = path.join(peersDir, 'cpu_peers.py');
  const python = '/usr/bin/python3';
  if (!fs.existsSync(script) || !fs.existsSync(python)) {
    log(`PyTorch CPU: skipped (${!fs.existsSync(script) ? script : python} not found)`);
    return [];
  }
  const run = spawnSync(python, [script], {
    encoding: 'utf8',
    env: { ...process.env, PAIRS: String(PAIRS), T: String(TOKENS), V: String(VOCAB), THREADS: String(threads) },
  });
  if (run.status !== 0) {
    log(`PyTorch CPU: skipped (${run.stderr.trim().split('\n').pop()}); install it with apt-get install python3-torch libopenblas0-pthread`);
    return [];
  }
  return run.stdout.trim().split('\n').map((l) => JSON.parse(l)).filter((l) => 'name' in l);
}

function tfjsPeers(): PeerLine[] {
  const script = path.join(peersDir, 'cpu_peers_tfjs.mjs');
  let found = false;
  try {
    require.resolve('@tensorflow/tfjs', { paths: [root] });
    require.resolve('@tensorflow/tfjs-backend-wasm', { paths: [root] });
    found = true;
  } catch {
    log('TensorFlow.js: skipped (@tensorflow/tfjs and @tensorflow/tfjs-backend-wasm are not installed; npm install --no-save them to include it)');
  }
  if (!found || !fs.existsSync(script)) return [];
  // The script imports tfjs by name: run a copy from inside this package so that it resolves.
  const copy = path.join(root, 'bench', `.tfjs-peer-${process.pid}.mjs`);
  fs.copyFileSync(script, copy);
  try {
    const run = spawnSync(process.execPath, [copy], {
      encoding: 'utf8',
      env: { ...process.env, PAIRS: String(PAIRS), T: String(TOKENS), V: String(VOCAB), BACKENDS: 'wasm' },
    });
    if (run.status !== 0) {
      log(`TensorFlow.js: failed (${run.stderr.trim().split('\n').slice(-3).join(' ')})`);
      return [];
    }
    return run.stdout.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  } finally {
    fs.rmSync(copy, { force: true });
  }
}

/** Peak resident memory above the inputs for one call, measured in a fresh process. */
function peakMemory(mode: 'fused' | 'inplace' | 'reused'): number {
  const run = spawnSync(process.execPath, ['--import', 'tsx', path.join(__dirname, 'memory.ts'), mode, String(PAIRS), String(TOKENS), String(VOCAB)], {
    encoding: 'utf8',
    cwd: root,
  });
  if (run.status !== 0) throw new Error(`memory probe failed: ${run.stderr}`);
  const line = run.stdout.trim().split("\n").pop()!;
  if (process.env.FUSEDPO_BENCH_DEBUG) log(`memory probe ${mode}: ${line}`);
  return JSON.parse(line).peakAboveInputsBytes;
}

function gitCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

function main(): void {
  const loaded = loadAddon();
  const info = loaded.addon.info();
  const cpu = os.cpus()[0]?.model ?? 'unknown';
  log(`fusedpo ${version} bench: ${PAIRS} pairs x ${TOKENS} tokens x V = ${VOCAB}; ${cpu}, ${allThreads} threads, ${info.simd}`);

  const bandwidth = measureBandwidth();
  const batch = exampleBatch(PAIRS, TOKENS, VOCAB, 1, 2);
  // A reference close to the policy, as at the start of training.
  const refLogps = referenceNear(sequenceLogps({ logits: batch.logits, shape: batch.shape, labels: batch.labels }).logps);
  const f32Bytes = batch.logits.byteLength;
  const inputs: Record<LogitsDType, Logits> = { f32: batch.logits, bf16: toBf16(batch.logits), f16: batch.logits };

  // Two floors. Nominal: 3 full passes over the logits (docs/losses.md). Moved: the bytes the kernels
  // must move here, where a quarter of each row is prompt: forward reads the counted tokens
  // only, backward reads them and writes every token (zeros where masked).
  const counted = batch.labels.filter((y) => y !== -100).length / batch.labels.length;
  const floors: Record<string, number> = {};
  const movedFloors: Record<string, number> = {};
  if (bandwidth) {
    for (const dtype of ['f32', 'bf16'] as const) {
      const f = floorsOf(dtype === 'f32' ? f32Bytes : f32Bytes / 2, counted, { readGBps: bandwidth.read_gb_s, readWriteGBps: bandwidth.rw_gb_s });
      floors[`${dtype}:fwd`] = f.floorMs.fwd;
      floors[`${dtype}:fwd+bwd`] = f.floorMs.fwdBwd;
      movedFloors[`${dtype}:fwd`] = f.movedFloorMs.fwd;
      movedFloors[`${dtype}:fwd+bwd`] = f.movedFloorMs.fwdBwd;
    }
    log(`floor: read ${bandwidth.read_gb_s} GB/s, read+write ${bandwidth.rw_gb_s} GB/s (${bandwidth.threads} threads)`);
  }

  for (const dtype of ['f32', 'bf16'] as const) {
    const logits = inputs[dtype];
    const base = { loss: 'minordpo' as const, dtype, shape: batch.shape, labels: batch.labels, refLogps };
    const out = dtype === 'f32' ? new Float32Array(logits.length) : new Uint16Array(logits.length);
    for (const threads of [1, allThreads]) {
      setThreads(threads);
      rows.push({ name: 'fusedpo forward', dtype, threads, ms: time(() => preferenceLoss({ ...base, logits, grad: false })) });
      rows.push({ name: 'fusedpo fwd+bwd', dtype, threads, ms: time(() => preferenceLoss({ ...base, logits, out })), note: 'dlogits into a reused array' });
    }
    rows.push({ name: 'fusedpo fwd+bwd, new dlogits', dtype, threads: allThreads, ms: time(() => preferenceLoss({ ...base, logits })), note: 'a fresh array per call' });
    const scratch = logits.slice();
    rows.push({
      name: 'fusedpo fwd+bwd in place', dtype, threads: allThreads,
      ms: time(() => {
        scratch.set(logits); // restore the logits, timed apart below
        preferenceLoss({ ...base, logits: scratch, inPlace: true });
      }) - time(() => scratch.set(logits)),
      note: 'over the logits',
    });
  }

  if (!argv.includes('--no-unfused')) {
    const ms = time(() => unfusedDpo(batch.logits, batch.shape, batch.labels, refLogps, 0.1, true), 2);
    rows.push({ name: 'plain TypeScript, unfused', dtype: 'f32', threads: 1, ms });
  }
  const peers: PeerLine[] = [];
  if (!argv.includes('--no-peers')) {
    for (const threads of [1, allThreads]) {
      for (const line of torchPeers(threads)) {
        peers.push({ ...line, threads });
        if (line.name.endsWith('minordpo')) rows.push({ name: `PyTorch CPU ${line.name.includes('naive') ? 'naive' : 'row by row'}`, dtype: 'f32', threads, ms: line.ms_median });
      }
    }
    for (const line of tfjsPeers()) {
      peers.push(line);
      rows.push({ name: `TensorFlow.js ${line.name}`, dtype: 'f32', threads: 'wasm', ms: line.ms_median, note: 'DPO' });
    }
  }
  setThreads(allThreads);

  const memory = {
    inputsBytes: f32Bytes,
    dlogitsBytes: f32Bytes,
    peakAboveInputsBytes: { fused: peakMemory('fused'), reused: peakMemory('reused'), inPlace: peakMemory('inplace') },
  };

  const bestTorch = Math.min(...rows.filter((r) => r.name.startsWith('PyTorch') && r.threads === allThreads).map((r) => r.ms));
  log('');
  log(`(${(100 * counted).toFixed(0)}% of tokens counted; x floor: against 3 full passes, 1 for the forward; x moved: against the bytes that must move)`);
  log('| what | dtype | threads | ms | x floor | x moved | PyTorch / this |');
  log('|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const kind = r.name.includes('forward') ? 'fwd' : 'fwd+bwd';
    const floor = floors[`${r.dtype}:${kind}`];
    const moved = movedFloors[`${r.dtype}:${kind}`];
    const vsFloor = floor ? (r.ms / floor).toFixed(2) : 'n/a';
    const vsMoved = moved ? (r.ms / moved).toFixed(2) : 'n/a';
    const vsTorch = Number.isFinite(bestTorch) && kind === 'fwd+bwd' ? (bestTorch / r.ms).toFixed(1) : '';
    log(`| ${r.name}${r.note ? ` (${r.note})` : ''} | ${r.dtype} | ${r.threads} | ${r.ms.toFixed(1)} | ${vsFloor} | ${vsMoved} | ${vsTorch} |`);
  }
  for (const [k, v] of Object.entries(floors)) log(`| floor ${k}: ${k.endsWith(':fwd') ? '1 full pass' : '3 full passes'} (bytes moved: ${movedFloors[k].toFixed(1)} ms) | | | ${v.toFixed(1)} | 1.00 | | |`);
  const mib = (b: number) => (b / 2 ** 20).toFixed(0);
  log('');
  log(`peak memory above the inputs for one call: new dlogits ${mib(memory.peakAboveInputsBytes.fused)} MiB, ` +
    `reused out ${mib(memory.peakAboveInputsBytes.reused)} MiB, in place ${mib(memory.peakAboveInputsBytes.inPlace)} MiB ` +
    `(dlogits itself: ${mib(memory.dlogitsBytes)} MiB)`);

  const commit = gitCommit();
  const date = new Date().toISOString();
  const result = {
    bench: 'loss',
    date,
    commit,
    version,
    machine: { cpu, threads: allThreads, memoryBytes: os.totalmem(), simd: info.simd, features: info.cpuFeatures, node: process.versions.node },
    shape: { pairs: PAIRS, tokens: TOKENS, vocab: VOCAB },
    bandwidth,
    floorsMs: floors,
    movedFloorsMs: movedFloors,
    countedFraction: counted,
    rows,
    peers,
    memory,
  };
  const dir = path.join(root, 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `loss-${date.slice(0, 10)}-${commit}-${info.simd}.json`);
  fs.writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  log(`\nwrote ${path.relative(root, file)}`);
}

main();
