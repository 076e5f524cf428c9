/**
 * The fuzz test of the command line (test/fuzz/cli.ts): programs of hostile records (empty
 * completions, duplicated keys, bad UTF-8, deep nesting, long lines), flags (out-of-range and
 * malformed values, unknown ones), output folders (the model, the data, a user's folder, a
 * finished or stopped run, a file) and signals (SIGINT or SIGTERM, once or twice, at any moment),
 * each run as `fusedpo` in a sandbox. None may hang, crash, print a stack trace or an internal
 * error, touch a file outside its run folder, or report a run it did not make.
 *
 * CI runs FUSEDPO_FUZZ_CLI_RUNS programs (default 300, about 40 s here) of a fixed seed; a
 * longer run is `npm run fuzz:cli -- --runs 2000 --seed <n>`.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { CLI_FAILURES, runCliPrograms, sampleCliPrograms, tallyCli } from './fuzz/cli';

const runs = Number(process.env.FUSEDPO_FUZZ_CLI_RUNS ?? 300);
const seed = Number(process.env.FUSEDPO_FUZZ_CLI_SEED ?? 20261208);

test(`${runs} hostile command lines: no hang, crash, stack trace, damaged file or wrong report`, async () => {
  const started = Date.now();
  const judged = await runCliPrograms(sampleCliPrograms(seed, runs));
  const counts = tallyCli(judged);
  console.log(`  fuzz:cli: seed ${seed}, ${runs} programs in ${((Date.now() - started) / 1000).toFixed(1)} s: ` +
    Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(', '));
  const failures = judged.filter((j) => CLI_FAILURES.includes(j.verdict));
  const shown = failures.slice(0, 5).map((f) => `#${f.program.id} ${f.verdict}: ${f.detail}\n${JSON.stringify(f.program)}`).join('\n\n');
  assert.is(failures.length, 0, `${failures.length} programs failed (npm run fuzz:cli -- --seed ${seed} --only <id> replays one):\n${shown}`);
  assert.ok(counts.ok > runs / 10, 'programs that trained, evaluated, generated or reported');
  assert.ok(counts.clearError > runs / 4, 'programs refused with a clear line');
  assert.ok(counts.interrupted > runs / 20, 'programs stopped by a signal');
  assert.ok(judged.some((j) => j.detail === 'stopped at a step and resumed'), 'a run stopped by a signal in its loop, then resumed');
});

test.run();
