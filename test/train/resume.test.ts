/**
 * Resume checks everything (lib/train/resume.ts, lib/cli/train.ts). On a1c597a `--resume`
 * compared only the options given on the resuming command line: options the run had but the
 * command omitted (`--loss`, `--beta`) and the data file were not checked, so the run went on as
 * DPO with beta 0.1, or on other data (with --precompute-ref, the old reference table applied
 * to new pairs); writing out a default (`--lr 5e-4`) was refused; and trainer_state.json's
 * values were used unchecked (a bad `step` "finished" the run, `metricsBytes: -1` erased the
 * metrics, `1e12` made a 1 TB sparse file). Each is a test here.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { PREFERENCES, SFT, fusedpo, modelFolder, noStackTrace, sameBytes, temporaryDirectory } from '../support/runs';

const base = temporaryDirectory('resume');
const model = modelFolder(path.join(base, 'model'));
const data = path.join(base, 'pairs.jsonl');
fs.copyFileSync(PREFERENCES, data);
const run = ['--model', model, '--data', data, '--loss', 'minordpo', '--beta', '0.5', '--steps', '8', '--batch', '4', '--samples', '1', '--quiet'];

/** A run of `run` stopped after step 3, in a new folder. */
function stopped(name: string, extra: string[] = []): string {
  const out = path.join(base, name);
  const result = fusedpo(base, 'train', ...run, ...extra, '--out', out, '--stop-after', '3');
  assert.is(result.status, 0, result.stderr);
  return out;
}

test('--resume DIR alone continues with the run\'s own options (loss, beta, data): the bytes of an unbroken run', () => {
  const whole = path.join(base, 'whole');
  assert.is(fusedpo(base, 'train', ...run, '--out', whole).status, 0);
  const out = stopped('alone');
  const resumed = fusedpo(base, 'train', '--resume', out);
  assert.is(resumed.status, 0, resumed.stderr);
  for (const file of ['model.safetensors', 'metrics.jsonl', 'samples.jsonl']) assert.ok(sameBytes(path.join(out, file), path.join(whole, file)), file);
  // from another folder too: the run recorded its paths whole
  const other = stopped('elsewhere');
  assert.is(fusedpo(path.join(base, 'model'), 'train', '--resume', other, '--quiet').status, 0);
  assert.ok(sameBytes(path.join(other, 'model.safetensors'), path.join(whole, 'model.safetensors')));
});

test('options given again must match the run\'s: each difference is named, nothing is written', () => {
  const out = stopped('differs');
  const state = fs.readFileSync(path.join(out, 'checkpoint', 'trainer_state.json'));
  const refused = fusedpo(base, 'train', '--resume', out, '--loss', 'dpo', '--beta', '0.2', '--batch', '4');
  assert.is(refused.status, 2, refused.stderr);
  assert.match(refused.stderr, /--resume .*: other options than the run's: --loss "dpo" \(the run's: "minordpo"\), --beta 0\.2 \(the run's: 0\.5\)\. Give --resume alone/);
  assert.ok(noStackTrace(refused.stderr));
  assert.ok(fs.readFileSync(path.join(out, 'checkpoint', 'trainer_state.json')).equals(state), 'the checkpoint is untouched');
  // the same values, a default written out, and what may change (more steps, cadence) are accepted
  const same = fusedpo(base, 'train', '--resume', out, '--loss', 'minordpo', '--beta', '0.5', '--lr', '5e-4', '--max-grad-norm', '1', '--steps', '10',
    '--log-every', '2', '--quiet');
  assert.is(same.status, 0, same.stderr);
  assert.is(JSON.parse(same.stdout).steps, 10);
  const other = fusedpo(base, 'train', '--resume', stopped('differs-2'), '--lr', '0.01');
  assert.match(other.stderr, /--lr 0\.01 \(the run's: 0\.0005\)/);
});

test('the data changed since the run began: refused, naming the file (also with --precompute-ref)', () => {
  for (const extra of [[], ['--precompute-ref', '--ref-cache', path.join(base, 'cache')]]) {
    const changed = path.join(base, `changing-${extra.length}.jsonl`);
    fs.copyFileSync(PREFERENCES, changed);
    const out = path.join(base, `data-changed-${extra.length}`);
    assert.is(fusedpo(base, 'train', ...run.map((a) => (a === data ? changed : a)), ...extra, '--out', out, '--stop-after', '3').status, 0);
    fs.appendFileSync(changed, '{"prompt":"9+9=","chosen":"18","rejected":"17"}\n');
    const refused = fusedpo(base, 'train', '--resume', out);
    assert.is(refused.status, 1, refused.stderr);
    assert.match(refused.stderr, /the training data \(train\): .*changing-[0-9]\.jsonl is not the data the run began with \(.*: [0-9]+ bytes, SHA-256 [0-9a-f]{12}\.\.\.; now [0-9]+ bytes/);
  }
});

test('trainer_state.json is checked field by field before anything is used', () => {
  const cases: [string, (state: Record<string, unknown>) => void, RegExp][] = [
    ['a step beyond the run', (s) => { s.step = 999; }, /step: expected an integer from 0 to 8 but found 999/],
    ['metricsBytes -1', (s) => { s.metricsBytes = -1; }, /metricsBytes: expected a non-negative integer but found -1/],
    ['metricsBytes 1e12', (s) => { s.metricsBytes = 1e12; }, /metricsBytes: the checkpoint counts 1000000000000 bytes of metrics\.jsonl but the file holds [0-9]+/],
    ['a cursor that is not the step\'s', (s) => { s.cursor = 5; }, /cursor: expected 12 \(step 3 of 4 examples\) but found 5/],
    ['numTokens a string', (s) => { s.numTokens = '7'; }, /numTokens: expected a non-negative integer but found "7"/],
    ['an earlier version', (s) => { s.version = 1; }, /a checkpoint of an earlier fusedpo \(trainer state version 1\)/],
    ['another kind', (s) => { s.kind = 'sft'; }, /the checkpoint is of a sft run, not preference/],
    ['another seed in its identity', (s) => { (s.identity as { settings: Record<string, unknown> }).settings.seed = 9; }, /other settings than the run's: seed 0 \(the checkpoint's: 9\)/],
  ];
  for (const [what, damage, message] of cases) {
    const out = stopped(`state-${what.replace(/[^a-z0-9]+/gi, '-')}`);
    const file = path.join(out, 'checkpoint', 'trainer_state.json');
    const state = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    damage(state);
    fs.writeFileSync(file, JSON.stringify(state));
    const metrics = fs.readFileSync(path.join(out, 'metrics.jsonl'));
    const refused = fusedpo(base, 'train', '--resume', out);
    assert.is(refused.status, 1, `${what}: ${refused.stderr}`);
    assert.match(refused.stderr, message, what);
    assert.ok(noStackTrace(refused.stderr), what);
    assert.ok(fs.readFileSync(path.join(out, 'metrics.jsonl')).equals(metrics), `${what}: the metrics are untouched`);
  }
  const out = stopped('json');
  fs.writeFileSync(path.join(out, 'checkpoint', 'trainer_state.json'), '{"format": ');
  assert.match(fusedpo(base, 'train', '--resume', out).stderr, /trainer_state\.json: not valid JSON/);
  const optimizer = stopped('optimizer');
  fs.writeFileSync(path.join(optimizer, 'checkpoint', 'optimizer.safetensors'), 'not safetensors');
  assert.match(fusedpo(base, 'train', '--resume', optimizer).stderr, /optimizer\.safetensors: .*the checkpoint is damaged/);
});

test('--steps below the checkpoint\'s step, a folder without a checkpoint, another command\'s run: refused by name', () => {
  const out = stopped('short');
  assert.match(fusedpo(base, 'train', '--resume', out, '--steps', '2').stderr, /the checkpoint is at step 3 but the run is asked for 2 steps/);
  const empty = path.join(base, 'empty');
  fs.mkdirSync(empty);
  assert.match(fusedpo(base, 'train', '--resume', empty).stderr, /expected a run folder with a checkpoint/);
  const sft = path.join(base, 'sft');
  assert.is(fusedpo(base, 'sft', '--data', SFT, '--out', sft, '--context', '12', '--width', '16', '--steps', '4', '--stop-after', '2', '--quiet').status, 0);
  const wrong = fusedpo(base, 'train', '--resume', sft);
  assert.is(wrong.status, 2);
  assert.match(wrong.stderr, /holds a fusedpo sft run: resume it with fusedpo sft --resume/);
  const right = fusedpo(base, 'sft', '--resume', sft, '--quiet');
  assert.is(right.status, 0, right.stderr);
  assert.is(JSON.parse(right.stdout).steps, 4);
  assert.match(fusedpo(base, 'train', '--resume', out, '--out', path.join(base, 'elsewhere')).stderr, /expected no --out with --resume/);
  assert.match(fusedpo(base, 'train', '--resume', out, '--overwrite').stderr, /expected --resume or --overwrite, not both/);
});

test.after(() => fs.rmSync(base, { recursive: true, force: true }));
test.run();
