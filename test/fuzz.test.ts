/**
 * The fuzz test of the public surface (test/fuzz/): fast-check makes programs over every public
 * function, each argument valid or hostile (special numbers, wrong types, getters that change
 * their answer, proxies, shared, detached, resizable, offset and lying typed arrays, fake and
 * disposed tensors, FIFOs and broken files, buffers transferred and labels overwritten under an
 * async job), and each runs in a child process, so that a crash or a hang is observed rather than
 * fatal to this runner. Every program must return (the float64 reference's result, when its
 * arguments were valid) or throw one of the package's own errors; none may crash, hang, leak a
 * tensor or give a wrong result.
 *
 * CI runs FUSEDPO_FUZZ_RUNS programs (default 6000, about 30 s here) of a fixed seed; a longer run
 * is `npm run fuzz -- --runs 100000 --seed <n>`.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { samplePrograms } from './fuzz/programs';
import { FAILURES, runPrograms, tally } from './fuzz/runner';

const runs = Number(process.env.FUSEDPO_FUZZ_RUNS ?? 6000);
const seed = Number(process.env.FUSEDPO_FUZZ_SEED ?? 20261201);

test(`${runs} hostile programs: no crash, hang, leak, wrong result or unclear error`, async () => {
  const started = Date.now();
  const judged = await runPrograms(samplePrograms(seed, runs));
  const counts = tally(judged);
  const failures = judged.filter((j) => FAILURES.includes(j.verdict));
  console.log(`  fuzz: seed ${seed}, ${runs} programs in ${((Date.now() - started) / 1000).toFixed(1)} s: ` +
    Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(', '));
  const shown = failures.slice(0, 5).map((f) => `#${f.program.id} ${f.verdict}: ${f.detail}\n${JSON.stringify(f.program)}`).join('\n\n');
  assert.is(failures.length, 0, `${failures.length} programs failed (npm run fuzz -- --seed ${seed} --only <id> replays one):\n${shown}`);
  assert.ok(counts.correct > runs / 10, 'programs with valid arguments checked against the float64 reference');
  assert.ok(counts.clearError > runs / 4, 'hostile programs refused with clear errors');
});

test.run();
