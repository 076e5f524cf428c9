/**
 * The fuzz test from the command line, for runs longer than CI's:
 *
 *   npm run fuzz -- --runs 20000 --seed 7        programs 0..19999 of seed 7
 *   npm run fuzz -- --seed 7 --only 123           one program again (its JSON is printed)
 *   npm run fuzz -- --json                        the tallies and failures as JSON
 *   npm run fuzz -- --timeout 5000                a program's time limit in ms (default 20000)
 *
 * FUSEDPO_FUZZ_PACKAGE=<path to a built index.js> fuzzes another build (an older commit, say).
 * Exit status 1 when any program crashed, hung, leaked, gave a wrong result or an unclear error.
 */
import { samplePrograms } from './programs';
import { FAILURES, runPrograms, tally } from './runner';

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const value = Number(process.argv[i + 1]);
  if (!Number.isInteger(value) || value < 0) {
    console.error(`fuzz: expected a non-negative integer after --${name} but received '${process.argv[i + 1] ?? ''}'`);
    process.exit(2);
  }
  return value;
}

async function main(): Promise<void> {
  const seed = option('seed', 20261201);
  const runs = option('runs', 2000);
  const only = process.argv.includes('--only') ? option('only', 0) : null;
  const json = process.argv.includes('--json');
  const programs = only === null ? samplePrograms(seed, runs) : samplePrograms(seed, only + 1).slice(only);
  if (only !== null) console.log(JSON.stringify(programs[0], null, 2));
  const started = Date.now();
  const judged = await runPrograms(programs, {
    timeoutMs: option('timeout', 20_000),
    onResult: (j, done) => {
      if (!json && (done % 100 === 0 || done === programs.length)) {
        process.stderr.write(`\rfuzz: ${done}/${programs.length} programs, ${((Date.now() - started) / 1000).toFixed(0)} s`);
      }
    },
  });
  if (!json) process.stderr.write('\n');
  const counts = tally(judged);
  const failures = judged.filter((j) => FAILURES.includes(j.verdict));
  if (json) {
    const byFamily: Record<string, Record<string, number>> = {};
    for (const f of failures) {
      const family = (byFamily[f.program.family] ??= {});
      family[f.verdict] = (family[f.verdict] ?? 0) + 1;
    }
    console.log(JSON.stringify({ seed, runs: programs.length, counts, byFamily, failures: failures.map((f) => ({ id: f.program.id, family: f.program.family, verdict: f.verdict, detail: f.detail.slice(0, 300) })) }, null, 2));
  } else {
    console.log(`fuzz: seed ${seed}, ${programs.length} programs in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    console.log(Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(', '));
    for (const f of failures.slice(0, Number(process.env.FUSEDPO_FUZZ_SHOW ?? 20))) console.log(`  #${f.program.id} ${f.program.family}: ${f.verdict}: ${f.detail.split('\n')[0]}`);
  }
  process.exitCode = failures.length > 0 ? 1 : 0;
}

void main();
