/**
 * The loader (lib/native.ts) and `fusedpo doctor`, through the compiled CLI in child processes:
 * the loader caches its choice per process, so each environment gets a process of its own.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const root = path.resolve(__dirname, '..');
const cli = path.join(root, 'dist', 'cli.js');

function fusedpo(args: string[], env: Record<string, string> = {}, cwd = root, entry = cli) {
  const result = spawnSync(process.execPath, [entry, ...args], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, FUSEDPO_DEVICE: '', FUSEDPO_THREADS: '', FUSEDPO_SIMD: '', FUSEDPO_ADDON: '', ...env },
  });
  return { status: result.status, out: result.stdout + result.stderr };
}

test('doctor reports the version, the binary, the CPU and CUDA', () => {
  const { status, out } = fusedpo(['doctor']);
  const version = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version;
  assert.is(status, 0, out);
  assert.match(out, `fusedpo ${version}`);
  assert.match(out, /binary: +(cpu|cuda) addon, \S+\.node/);
  assert.match(out, /CPU: +kernels use (avx512|avx2|generic); \d+ threads/);
  assert.match(out, /features: /);
  assert.match(out, /CUDA: /);
});

test('doctor --json is machine-readable', () => {
  const { status, out } = fusedpo(['doctor', '--json'], { FUSEDPO_DEVICE: 'cpu', FUSEDPO_THREADS: '3' });
  assert.is(status, 0, out);
  const report = JSON.parse(out);
  assert.is(report.binary.kind, 'cpu');
  assert.is(report.cpu.threads, 3);
  assert.is(report.cuda.status, 'FUSEDPO_DEVICE=cpu');
});

test('FUSEDPO_SIMD caps the instruction set', () => {
  const { out } = fusedpo(['doctor', '--json'], { FUSEDPO_SIMD: 'generic' });
  assert.is(JSON.parse(out).cpu.simd, 'generic');
});

test('a bad FUSEDPO_DEVICE names the value and the choices', () => {
  const { status, out } = fusedpo(['doctor'], { FUSEDPO_DEVICE: 'gpu' });
  assert.is(status, 1);
  assert.match(out, "Expected FUSEDPO_DEVICE to be one of 'auto', 'cpu', 'cuda' but received 'gpu'");
});

test('FUSEDPO_ADDON loads that CPU addon and no other, or says why not', () => {
  const addon = path.join(root, 'build', 'Release', 'fusedpo.node');
  const { status, out } = fusedpo(['doctor', '--json'], { FUSEDPO_ADDON: addon });
  assert.is(status, 0, out);
  const report = JSON.parse(out);
  assert.is(report.binary.path, addon);
  assert.is(report.binary.kind, 'cpu');
  const missing = fusedpo(['doctor'], { FUSEDPO_ADDON: '/nonexistent/fusedpo.node' });
  assert.is(missing.status, 1);
  assert.match(missing.out, /FUSEDPO_ADDON=\/nonexistent\/fusedpo.node: Cannot find module/);
});

test('bad FUSEDPO_THREADS and FUSEDPO_SIMD are refused', () => {
  assert.match(fusedpo(['doctor'], { FUSEDPO_THREADS: '0' }).out, "FUSEDPO_THREADS to be an integer between 1 and 1024 (decimal digits) but received '0'");
  assert.match(fusedpo(['doctor'], { FUSEDPO_THREADS: 'two' }).out, "received 'two'");
  // Number() would read these as 16, 10 and 4: only decimal digits are a thread count.
  for (const value of ['0x10', '1e1', ' 4 ', '4.0', '+4']) {
    assert.match(fusedpo(['doctor'], { FUSEDPO_THREADS: value }).out, `received '${value}'`);
  }
  assert.match(fusedpo(['doctor'], { FUSEDPO_SIMD: 'sse9' }).out, "FUSEDPO_SIMD to be one of 'avx512', 'avx2', 'generic' but received 'sse9'");
});

test('FUSEDPO_DEVICE=cuda without a usable GPU says so and what to do', () => {
  const probe = fusedpo(['doctor', '--json']);
  if (JSON.parse(probe.out).binary?.kind === 'cuda') return; // a GPU answered: nothing to refuse
  const { status, out } = fusedpo(['doctor'], { FUSEDPO_DEVICE: 'cuda' });
  assert.is(status, 1);
  assert.match(out, 'FUSEDPO_DEVICE=cuda, but CUDA is not usable');
  assert.match(out, 'Unset FUSEDPO_DEVICE');
});

test('with no binary at all, one error names platform, libc, Node-API, the paths and the fix', () => {
  const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'fusedpo-nobinary-'));
  try {
    fs.cpSync(path.join(root, 'dist'), path.join(copy, 'dist'), { recursive: true });
    fs.copyFileSync(path.join(root, 'package.json'), path.join(copy, 'package.json'));
    fs.symlinkSync(path.join(root, 'node_modules'), path.join(copy, 'node_modules'));
    const { status, out } = fusedpo(['doctor'], {}, copy, path.join(copy, 'dist', 'cli.js'));
    assert.is(status, 1, out);
    assert.match(out, 'no native binary could be loaded');
    assert.match(out, `platform ${process.platform}, arch ${process.arch}, libc `);
    assert.match(out, `Node-API ${process.versions.napi}`);
    assert.match(out, path.join(copy, 'build', 'Release'));
    assert.match(out, path.join(copy, 'prebuilds', `${process.platform}-${process.arch}`));
    assert.match(out, 'npx fusedpo build');
  } finally {
    fs.rmSync(copy, { recursive: true, force: true });
  }
});

test('a corrupt binary: the error names its path and why it failed', () => {
  const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'fusedpo-badbinary-'));
  try {
    fs.cpSync(path.join(root, 'dist'), path.join(copy, 'dist'), { recursive: true });
    fs.copyFileSync(path.join(root, 'package.json'), path.join(copy, 'package.json'));
    fs.symlinkSync(path.join(root, 'node_modules'), path.join(copy, 'node_modules'));
    fs.mkdirSync(path.join(copy, 'build', 'Release'), { recursive: true });
    fs.writeFileSync(path.join(copy, 'build', 'Release', 'fusedpo.node'), 'not an ELF file');
    const { status, out } = fusedpo(['doctor'], {}, copy, path.join(copy, 'dist', 'cli.js'));
    assert.is(status, 1, out);
    assert.match(out, 'no native binary could be loaded');
    assert.match(out, `${path.join(copy, 'build', 'Release', 'fusedpo.node')}: `);
    assert.match(out, /invalid ELF header|file too short/);
    assert.match(out, 'npx fusedpo build');
  } finally {
    fs.rmSync(copy, { recursive: true, force: true });
  }
});

test('the demo runs on a small batch and prints loss and timings', () => {
  const { status, out } = fusedpo(['demo', '--pairs', '2', '--tokens', '8', '--vocab', '50', '--repeats', '1']);
  assert.is(status, 0, out);
  assert.match(out, /dpo +loss \d+\.\d{6} .* fwd\+bwd [\d.]+ ms/);
  assert.match(out, /minordpo +loss \d+\.\d{6}/);
});

test('unknown commands and bad options exit 2 with a message', () => {
  assert.equal(fusedpo(['frobnicate']).status, 2);
  const bad = fusedpo(['demo', '--pairs', '-3']);
  assert.is(bad.status, 2);
  assert.match(bad.out, "expected a positive integer after --pairs but received '-3'");
  assert.match(fusedpo(['demo', '--loss', 'kto']).out, "received 'kto'");
});

test.run();
