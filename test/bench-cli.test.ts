/**
 * `fusedpo bench` as a user of the installed package runs it (the compiled dist/cli.js), and the
 * native bandwidth probe its floor is measured with: positive, finite GB/s; every bad argument
 * refused at the boundary (lib/bandwidth.ts first, the binding again) with an error naming it;
 * the command's JSON, "did you mean" for a mistyped flag, --help, and a clean "no CUDA device".
 * Small sizes: seconds in all.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { memoryBandwidth } from '../lib/bandwidth';
import { cudaAvailable, native } from '../lib/native';
import { fusedpoWith } from './cli';
import { throwsLike } from './throws';

const MiB = 2 ** 20;

const fusedpo = fusedpoWith(2);


test('the bandwidth probe returns positive, finite GB/s for the threads asked', () => {
  const pool = native().info().threads;
  const r = memoryBandwidth({ bytes: 16 * MiB, repeats: 2 });
  for (const key of ['readGBps', 'readWriteGBps', 'readSeconds', 'readWriteSeconds'] as const) {
    assert.ok(Number.isFinite(r[key]) && r[key] > 0, `${key} = ${r[key]}`);
  }
  assert.is(r.bytes, 16 * MiB);
  assert.is(r.threads, pool);
  assert.is(r.repeats, 2);
  assert.ok(Number.isFinite(r.checksum) && r.checksum > 0, 'the sums are returned');
  const one = native().memoryBandwidth({ bytes: 3 * MiB + 100, threads: 1, repeats: 1 });
  assert.is(one.threads, 1);
  assert.is(one.bytes % 128, 0, 'rounded down to whole blocks');
  assert.ok(one.bytes <= 3 * MiB + 100 && one.bytes > 3 * MiB - 128);
  assert.ok(one.readGBps > 0 && Number.isFinite(one.readWriteGBps) && one.readWriteGBps > 0);
});

test('lib/bandwidth.ts refuses bad arguments, naming them', () => {
  const pool = native().info().threads;
  throwsLike(() => memoryBandwidth({ bytes: 1000 }), RangeError, /for bytes but received 1000/);
  throwsLike(() => memoryBandwidth({ bytes: '64' as unknown as number }), TypeError, /an integer for bytes/);
  throwsLike(() => memoryBandwidth({ bytes: 2 * MiB + 0.5 }), RangeError, /for bytes/);
  throwsLike(() => memoryBandwidth({ bytes: 2 ** 60 }), RangeError, /for bytes/);
  throwsLike(() => memoryBandwidth({ bytes: 2 * MiB, threads: pool + 1 }), RangeError, new RegExp(`between 1 and ${pool} for threads`));
  throwsLike(() => memoryBandwidth({ bytes: 2 * MiB, threads: 0 }), RangeError, /for threads/);
  throwsLike(() => memoryBandwidth({ bytes: 2 * MiB, repeats: 0 }), RangeError, /between 1 and 100 for repeats/);
  throwsLike(() => memoryBandwidth({ bytes: 2 * MiB, repeats: NaN }), RangeError, /for repeats/);
  throwsLike(() => memoryBandwidth({ bytes: 2 * MiB, repeat: 2 } as never), TypeError, /'repeat', which it does not take/);
  throwsLike(() => memoryBandwidth(null as never), TypeError, /object of arguments/);
});

test('the native binding checks every field again, naming it', () => {
  const probe = native().memoryBandwidth as (request?: unknown) => unknown;
  const pool = native().info().threads;
  throwsLike(() => probe(), TypeError, /memoryBandwidth: expected one request object .* but received no argument/);
  throwsLike(() => probe(5), TypeError, /expected one request object/);
  throwsLike(() => probe([]), TypeError, /expected one request object .* an array/);
  throwsLike(() => probe({}), TypeError, /memoryBandwidth: expected an integer for bytes but received undefined/);
  throwsLike(() => probe({ bytes: '1' }), TypeError, /for bytes but received a string/);
  throwsLike(() => probe({ bytes: 5 }), RangeError, /expected an integer in \[1048576, \d+\] for bytes/);
  throwsLike(() => probe({ bytes: 1e18 }), RangeError, /for bytes .*at most an eighth of memory/);
  throwsLike(() => probe({ bytes: NaN }), RangeError, /for bytes/);
  throwsLike(() => probe({ bytes: Infinity }), RangeError, /for bytes/);
  throwsLike(() => probe({ bytes: 2 * MiB + 0.5 }), RangeError, /for bytes/);
  throwsLike(() => probe({ bytes: 2 * MiB, threads: pool + 1 }), RangeError, new RegExp(`in \\[1, ${pool}\\] for threads`));
  throwsLike(() => probe({ bytes: 2 * MiB, threads: -1 }), RangeError, /for threads/);
  throwsLike(() => probe({ bytes: 2 * MiB, threads: '2' }), TypeError, /for threads/);
  throwsLike(() => probe({ bytes: 2 * MiB, repeats: 101 }), RangeError, /in \[1, 100\] for repeats/);
  throwsLike(() => probe({ bytes: 2 * MiB, repeats: null }), TypeError, /for repeats but received null/);
  throwsLike(() => probe({ bytes: 2 * MiB, extra: 1 }), TypeError, /unknown field 'extra'/);
  // A getter is read once: a value that turns bad after the check cannot reach the probe.
  let reads = 0;
  const r = probe({ get bytes() { return reads++ === 0 ? 2 * MiB : 2 ** 50; }, repeats: 1 }) as { bytes: number };
  assert.is(reads, 1);
  assert.is(r.bytes, 2 * MiB);
});

test('fusedpo bench --json: one JSON object with finite, positive times and the floor', () => {
  const run = fusedpo('bench', '--pairs', '2', '--tokens', '16', '--vocab', '500', '--repeats', '1', '--json');
  assert.is(run.status, 0, run.stderr);
  const report = JSON.parse(run.stdout);
  assert.is(report.bench, 'fusedpo bench');
  assert.is(report.loss, 'minordpo');
  assert.is(report.threads, 2);
  assert.type(report.machine.simd, 'string');
  assert.ok(report.bandwidth.readGBps > 0 && report.bandwidth.readWriteGBps > 0);
  assert.is(report.bandwidth.threads, 2, 'the probe runs on the kernels\' threads');
  assert.equal(report.rows.map((r: { dtype: string }) => r.dtype), ['f32', 'bf16']);
  for (const r of report.rows) {
    assert.is(r.device, 'cpu');
    assert.is(r.case, '2x16x500');
    assert.is(r.logitsBytes, 4 * 16 * 500 * (r.dtype === 'f32' ? 4 : 2));
    assert.is(r.countedFraction, 0.75);
    for (const value of [r.fwdMs, r.fwdBwdMs, r.fwdGBps, r.fwdBwdGBps, r.floorMs.fwd, r.floorMs.fwdBwd, r.movedFloorMs.fwdBwd, r.xFloor.fwd, r.xFloor.fwdBwd, r.xMoved.fwdBwd]) {
      assert.ok(Number.isFinite(value) && value > 0, `${JSON.stringify(r)}`);
    }
    // The floor of bench/loss.ts: the logits read once, then read again with dlogits written.
    const { readGBps, readWriteGBps } = report.bandwidth;
    const expected = (r.logitsBytes / (readGBps * 1e9) + (2 * r.logitsBytes) / (readWriteGBps * 1e9)) * 1e3;
    assert.ok(Math.abs(r.floorMs.fwdBwd - expected) < 1e-9 * expected + 1e-12);
    assert.ok(Math.abs(r.xFloor.fwdBwd - r.fwdBwdMs / r.floorMs.fwdBwd) < 1e-9);
  }
  assert.match(run.stderr, /\[1\/2\] 2x16x500 f32: forward/, 'progress on stderr');
  assert.match(run.stderr, /\[2\/2\] 2x16x500 bf16: forward \+ backward/);
});

test('fusedpo bench: the table names the SIMD path and the bandwidth; one dtype when asked', () => {
  const run = fusedpo('bench', '--pairs', '1', '--tokens', '8', '--vocab', '300', '--repeats', '1', '--dtype', 'f16', '--loss', 'simpo', '--probe-mib', '16', '--device', 'cpu');
  assert.is(run.status, 0, run.stderr);
  assert.match(run.stdout, /SIMD path: (avx512|avx2|generic)/);
  assert.match(run.stdout, /bandwidth: read [0-9.]+ GB\/s, read\+write [0-9.]+ GB\/s \(2 threads, 2 x 16 MiB/);
  assert.match(run.stdout, /\| 1x8x300 \| f16 \| cpu \| 2 \| [0-9.]+ \| [0-9.]+ \|/);
  assert.not.match(run.stdout, /\| bf16 \|/);
});

test('fusedpo bench: a mistyped flag gets "did you mean", a bad value names the flag; --help works', () => {
  const typo = fusedpo('bench', '--pair', '2');
  assert.is(typo.status, 2);
  assert.match(typo.stderr, /unknown option --pair \(did you mean --pairs\?\)/);
  const dtype = fusedpo('bench', '--dtype', 'bf61');
  assert.is(dtype.status, 2);
  assert.match(dtype.stderr, /after --dtype but received 'bf61' \(did you mean bf16\?\)/);
  const threads = fusedpo('bench', '--threads', '0');
  assert.is(threads.status, 2);
  assert.match(threads.stderr, /--threads but received 0/);
  const command = fusedpo('bnch');
  assert.is(command.status, 2);
  assert.match(command.stderr, /did you mean 'bench'/);
  const help = fusedpo('bench', '--help');
  assert.is(help.status, 0, help.stderr);
  assert.match(help.stdout, /usage: fusedpo bench/);
  for (const flag of ['--pairs', '--tokens', '--vocab', '--dtype', '--threads', '--repeats', '--loss', '--json', '--peers', '--device']) assert.ok(help.stdout.includes(flag), flag);
  assert.match(help.stdout, /4x256x32000 \(headline/);
  assert.match(fusedpo('help').stdout, /\n {2}bench {5}/);
});

test('fusedpo bench --device cuda without a CUDA device: a plain "no CUDA device"', () => {
  if (cudaAvailable()) return;  // timed for real on a machine with one
  const run = fusedpo('bench', '--device', 'cuda', '--pairs', '1', '--tokens', '4', '--vocab', '10');
  assert.is(run.status, 1);
  assert.match(run.stderr, /^fusedpo bench: --device cuda: no CUDA device: /);
  assert.not.match(run.stderr, /\n\s+at /, 'no stack');
});

test.run();
