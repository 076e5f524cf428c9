/**
 * Every SIMD level the CPU has (AVX-512, AVX2, plain), forced with FUSEDPO_SIMD in a child
 * process each, against the scalar reference (test/simd-check.ts).
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { native } from '../lib/native';

const best = native().info().simd;
const order = ['generic', 'avx2', 'avx512'];
const levels = order.slice(0, order.indexOf(best) + 1);

for (const level of levels) {
  test(`FUSEDPO_SIMD=${level}: the fast path matches the scalar reference`, () => {
    const run = spawnSync(process.execPath, ['--import', 'tsx', path.join(__dirname, 'simd-check.ts')], {
      encoding: 'utf8',
      env: { ...process.env, FUSEDPO_SIMD: level, FUSEDPO_DEVICE: 'cpu' },
    });
    const last = run.stdout.trim().split('\n').pop() ?? '';
    assert.ok(last.startsWith('{'), `no result from the check (status ${run.status}):\n${run.stdout}\n${run.stderr}`);
    const result = JSON.parse(last) as { simd: string; compared: number; failures: string[] };
    assert.is(result.simd, level, 'the level in use');
    assert.ok(result.compared > 100000, `only ${result.compared} values compared`);
    assert.equal(result.failures, [], `mismatches at ${level}:\n${result.failures.join('\n')}`);
    assert.is(run.status, 0);
  });
}

test.run();
