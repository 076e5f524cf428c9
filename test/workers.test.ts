/**
 * Worker threads and memory limits (issue: memory safety and lifetimes), each in a child process
 * so that a crash is observed rather than fatal to the runner: fusedpo in workers that are
 * terminated or exit in the middle of its calls, in several workers at once, and allocations
 * under `ulimit -v` that fail as RangeErrors naming the operation and the bytes.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { SANITIZED } from './memory';

const programs = path.join(__dirname, 'programs');

function runProgram(command: string, timeoutMs: number): { status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string } {
  const child = spawnSync('bash', ['-c', command], { encoding: 'utf8', timeout: timeoutMs });
  return { status: child.status, signal: child.signal, stdout: child.stdout, stderr: child.stderr };
}

test('workers terminated or exiting mid-call end cleanly; several workers run at once', () => {
  const run = runProgram(`${JSON.stringify(process.execPath)} ${JSON.stringify(path.join(programs, 'workers.js'))}`, 120_000);
  assert.is(run.signal, null, `the process was killed by ${run.signal} (a crash, or a hang past 120 s)\n${run.stderr}`);
  assert.is(run.status, 0, run.stderr);
  assert.not.match(run.stderr, /terminate called|Napi::Error|FATAL/);
  const codes = JSON.parse(run.stdout) as Record<string, (number | string)[]>;
  for (const mode of ['sync', 'async', 'tensorAsync', 'training']) {
    assert.equal(codes[mode], [1, 1, 1, 1], `${mode}: a terminated worker exits with 1, never takes the process along`);
  }
  assert.equal(codes.exit, [3, 3, 3], 'process.exit(3) in a worker with async jobs in flight');
  assert.equal(codes.parallel, [0, 0, 0, 0], 'four workers at once give the single-threaded result');
});

test('the addon is never unmapped (ELF flag NODELETE): Node dlcloses it when its last worker exits, under its idle pool threads', () => {
  const addon = path.join(__dirname, '..', 'build', 'Release', 'fusedpo.node');
  const run = spawnSync('readelf', ['-d', process.env.FUSEDPO_ADDON ?? addon], { encoding: 'utf8' });
  if (run.error) throw new Error(`readelf is needed for this check (binutils): ${run.error.message}`);
  assert.match(run.stdout, /FLAGS_1\)\s+Flags:.*NODELETE/, `no NODELETE in the dynamic section:\n${run.stdout}`);
});

test('under ulimit -v, allocations that fail are RangeErrors naming the operation and the bytes', () => {
  if (SANITIZED) return;  // AddressSanitizer reserves terabytes of shadow memory: no ulimit -v for it
  const run = runProgram(`ulimit -v 1500000; ${JSON.stringify(process.execPath)} ${JSON.stringify(path.join(programs, 'out-of-memory.js'))}`, 120_000);
  assert.is(run.signal, null, `killed by ${run.signal}\n${run.stderr}`);
  assert.is(run.status, 0, run.stderr);
  const errors = JSON.parse(run.stdout) as Record<string, string>;
  assert.match(errors.tensor, /^RangeError: Tensor.zeros: out of memory: could not allocate 8589934592 bytes of host memory for a tensor of shape \[2147483648\] \(f32\)$/);
  assert.match(errors.op, /^RangeError: gelu: out of memory: could not allocate 268435456 bytes of host memory for a tensor of shape \[67108864\] \(f32\)$/);
  assert.match(errors.toArray, /^RangeError: (toArray|Tensor.zeros): out of memory: could not allocate \d+ bytes/);
  assert.match(errors.dlogits, /^RangeError: preferenceLoss: out of memory: could not allocate 32768000 bytes for dlogits$/);
});

test.run();
