/**
 * The command line's fuzz target from the command line, for runs longer than CI's:
 *
 *   npm run fuzz:cli -- --runs 500 --seed 7       programs 0..499 of seed 7
 *   npm run fuzz:cli -- --seed 7 --only 12         one program again (its JSON is printed)
 *
 * Exit status 1 when any program hung, crashed, printed a stack trace or an internal error,
 * changed a file outside its run folder, or reported a run it did not make.
 */
import { CLI_FAILURES, runCliPrograms, sampleCliPrograms, tallyCli } from './cli';

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const value = Number(process.argv[i + 1]);
  if (!Number.isInteger(value) || value < 0) {
    console.error(`fuzz:cli: expected a non-negative integer after --${name} but received '${process.argv[i + 1] ?? ''}'`);
    process.exit(2);
  }
  return value;
}

async function main(): Promise<void> {
  const seed = option('seed', 20261208);
  const only = process.argv.includes('--only') ? option('only', 0) : null;
  const programs = only === null ? sampleCliPrograms(seed, option('runs', 200)) : sampleCliPrograms(seed, only + 1).slice(only);
  if (only !== null) console.log(JSON.stringify(programs[0], null, 2));
  const started = Date.now();
  const judged = await runCliPrograms(programs, {
    parallel: option('parallel', 2),
    onResult: (_, done) => process.stderr.write(`\rfuzz:cli: ${done}/${programs.length} programs, ${((Date.now() - started) / 1000).toFixed(0)} s`),
  });
  process.stderr.write('\n');
  const counts = tallyCli(judged);
  console.log(`fuzz:cli: seed ${seed}, ${programs.length} programs: ${Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  const failures = judged.filter((j) => CLI_FAILURES.includes(j.verdict));
  for (const f of failures.slice(0, 20)) console.log(`  #${f.program.id} ${f.verdict}: ${f.detail}\n`);
  process.exitCode = failures.length > 0 ? 1 : 0;
}

void main();
