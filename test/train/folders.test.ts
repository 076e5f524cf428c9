/**
 * A run never destroys what a user had (lib/train/run_folder.ts): each finding of the hostile
 * review of a1c597a, rebuilt as it was reported, now refused or safe.
 *
 * - `--out` into an existing folder deleted and overwrote what was there, even the --data file
 *   when it was named samples.jsonl or metrics.jsonl: refused, and --overwrite replaces only run
 *   files; the data may not lie in the run folder at all.
 * - `--out` equal to `--model` overwrote the starting model: refused, and so is --out inside it.
 * - two runs into one --out interleaved their metrics: the second is refused by the lock.
 * - without --out, a run trained and threw the model away: a new folder is made and named.
 * - partial checkpoint folders were left behind, one per failed retry: removed on failure, and a
 *   later run removes those a killed one left.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { ByteTokenizer } from '../../lib/data/tokenizer';
import { GPT } from '../../lib/nn/gpt';
import { AdamW } from '../../lib/optim';
import { saveCheckpoint } from '../../lib/train/files';
import { LOCK_FILE, claimRunFolder, freshFolderName } from '../../lib/train/run_folder';
import { PreferenceTrainer } from '../../lib/train/trainer';
import { PREFERENCES, TINY, changes, fusedpo, fusedpoChild, modelFolder, noStackTrace, snapshot, temporaryDirectory } from '../support/runs';

const base = temporaryDirectory('folders');
const model = modelFolder(path.join(base, 'model'));
const quick = ['--steps', '2', '--batch', '4', '--samples', '0', '--quiet'];

test('--out holding a user\'s files is refused, naming --overwrite; --overwrite replaces only a run\'s files', () => {
  const out = path.join(base, 'mine');
  fs.mkdirSync(out);
  fs.writeFileSync(path.join(out, 'notes.txt'), 'my notes');
  fs.writeFileSync(path.join(out, 'metrics.jsonl'), '{"mine": true}\n');
  const before = snapshot(out);
  const refused = fusedpo(base, 'train', '--model', model, '--data', PREFERENCES, '--out', out, ...quick);
  assert.is(refused.status, 1, refused.stderr);
  assert.match(refused.stderr, /already holds metrics\.jsonl, notes\.txt: a run writes only into a new or empty folder\. Pass --overwrite/);
  assert.ok(noStackTrace(refused.stderr));
  assert.equal(changes(before, snapshot(out)), [], 'nothing in the folder changed');
  const replaced = fusedpo(base, 'train', '--model', model, '--data', PREFERENCES, '--out', out, '--overwrite', ...quick);
  assert.is(replaced.status, 0, replaced.stderr);
  assert.match(replaced.stderr, /replacing metrics\.jsonl, written by an earlier run \(--overwrite; other files are kept\)/);
  assert.is(fs.readFileSync(path.join(out, 'notes.txt'), 'utf8'), 'my notes', 'a file no run writes is kept');
  assert.is(fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').length, 2, 'the run\'s own metrics, two steps');
  assert.ok(fs.existsSync(path.join(out, 'model.safetensors')));
});

test('a finished run\'s folder is refused too (its model is the user\'s work), naming --resume', () => {
  const out = path.join(base, 'finished');
  assert.is(fusedpo(base, 'train', '--model', model, '--data', PREFERENCES, '--out', out, ...quick).status, 0);
  const before = snapshot(out);
  const again = fusedpo(base, 'train', '--model', model, '--data', PREFERENCES, '--out', out, ...quick);
  assert.is(again.status, 1);
  assert.match(again.stderr, /Resume that run with --resume, or pass --overwrite/);
  assert.equal(changes(before, snapshot(out)), []);
});

test('the data named samples.jsonl or metrics.jsonl inside --out: refused with or without --overwrite, the data intact', () => {
  for (const name of ['samples.jsonl', 'metrics.jsonl']) {
    const out = path.join(base, `holds-${name}`);
    fs.mkdirSync(out);
    const data = path.join(out, name);
    fs.copyFileSync(PREFERENCES, data);
    for (const extra of [[], ['--overwrite']]) {
      const run = fusedpo(base, 'train', '--model', model, '--data', data, '--out', out, ...extra, ...quick);
      assert.is(run.status, 1, run.stderr);
      assert.match(run.stderr, /may not hold the training data/);
      assert.ok(fs.readFileSync(data).equals(fs.readFileSync(PREFERENCES)), `${name} is intact`);
    }
    // and an eval file likewise
    const evalRun = fusedpo(base, 'train', '--model', model, '--data', PREFERENCES, '--eval', data, '--out', out, '--overwrite', ...quick);
    assert.match(evalRun.stderr, /may not hold the eval data/);
  }
});

test('--out equal to --model, inside it, or holding it: refused, the model intact', () => {
  const before = snapshot(model);
  for (const out of [model, path.join(model, 'tuned'), base]) {
    const run = fusedpo(base, 'train', '--model', model, '--data', PREFERENCES, '--out', out, '--overwrite', ...quick);
    assert.is(run.status, 1, `${out}: ${run.stderr}`);
    assert.match(run.stderr, /may not (be|lie inside|hold) --model/);
  }
  // a symbolic link to the model is the model
  const link = path.join(base, 'link-to-model');
  fs.symlinkSync(model, link);
  assert.match(fusedpo(base, 'train', '--model', model, '--data', PREFERENCES, '--out', link, '--overwrite', ...quick).stderr, /may not be --model/);
  assert.equal(changes(before, snapshot(model)), []);
  assert.not.ok(fs.existsSync(path.join(model, 'tuned')));
});

test('two runs into one --out: one runs, the other is refused; the metrics are one run\'s', async () => {
  const out = path.join(base, 'contended');
  const args = ['train', '--model', model, '--data', PREFERENCES, '--out', out, '--steps', '40', '--batch', '4', '--samples', '0', '--quiet'];
  const [a, b] = [fusedpoChild(base, ...args), fusedpoChild(base, ...args)];
  const results = await Promise.all([a.done, b.done]);
  const statuses = results.map((r) => r.status).sort();
  assert.equal(statuses, [0, 1], results.map((r) => r.stderr).join('\n'));
  const refused = results.find((r) => r.status === 1)!;
  assert.match(refused.stderr, /in use by another fusedpo run \(PID [0-9]+|already holds/);
  const lines = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number });
  assert.equal(lines.map((l) => l.step), Array.from({ length: 40 }, (_, i) => i + 1), 'steps 1 to 40, once each');
  assert.not.ok(fs.existsSync(path.join(out, LOCK_FILE)), 'the lock is gone when the run ends');
});

test('a stale lock (its process is gone) is taken over; a live one is not', () => {
  const out = path.join(base, 'stale');
  fs.mkdirSync(out);
  const deadPid = 2 ** 22 + 12345;  // above the kernel's default pid_max: no such process
  fs.writeFileSync(path.join(out, LOCK_FILE), JSON.stringify({ pid: deadPid, host: os.hostname(), started: null, since: '2026-01-01T00:00:00Z' }));
  const run = fusedpo(base, 'train', '--model', model, '--data', PREFERENCES, '--out', out, '--steps', '2', '--batch', '4', '--samples', '0');
  assert.is(run.status, 0, run.stderr);
  assert.match(run.stderr, new RegExp(`taking over the lock of PID ${deadPid}`));
  const live = path.join(base, 'live');
  fs.mkdirSync(live);
  fs.writeFileSync(path.join(live, LOCK_FILE), JSON.stringify({ pid: process.pid, host: os.hostname(), started: null, since: '2026-01-01T00:00:00Z' }));
  const refused = fusedpo(base, 'train', '--model', model, '--data', PREFERENCES, '--out', live, ...quick);
  assert.is(refused.status, 1);
  assert.match(refused.stderr, new RegExp(`in use by another fusedpo run \\(PID ${process.pid} on .*delete .*\\.fusedpo\\.lock`));
  fs.writeFileSync(path.join(live, LOCK_FILE), JSON.stringify({ pid: 1, host: 'another-machine', started: null, since: '2026-01-01T00:00:00Z' }));
  assert.match(fusedpo(base, 'train', '--model', model, '--data', PREFERENCES, '--out', live, ...quick).stderr, /PID 1 on another-machine/, 'another host\'s lock is kept');
});

test('the lock in the API: a second claim of a claimed folder is refused until the first is released', () => {
  const out = path.join(base, 'api-lock');
  const first = claimRunFolder(out, { mode: 'new', inputs: [] });
  assert.throws(() => claimRunFolder(out, { mode: 'resume', inputs: [] }), /in use by another fusedpo run/);
  first.release();
  claimRunFolder(out, { mode: 'resume', inputs: [] }).release();
  assert.not.ok(fs.existsSync(path.join(out, LOCK_FILE)));
});

test('no --out: a new folder under runs/, named on stderr and in the summary, with the model in it', () => {
  const cwd = temporaryDirectory('no-out');
  const run = fusedpo(cwd, 'train', '--model', model, '--data', PREFERENCES, ...quick);
  assert.is(run.status, 0, run.stderr);
  const named = /no --out given: the run goes to (runs\/train-[0-9]{8}-[0-9]{6})/.exec(run.stderr)?.[1];
  assert.ok(named, run.stderr);
  assert.is(JSON.parse(run.stdout).out, named);
  assert.ok(fs.existsSync(path.join(cwd, named!, 'model.safetensors')), 'the model is kept');
  const second = fusedpo(cwd, 'train', '--model', model, '--data', PREFERENCES, ...quick);
  assert.is(second.status, 0);
  assert.is.not(JSON.parse(second.stdout).out, named, 'a second run gets its own folder');
  fs.mkdirSync(path.join(cwd, 'runs', 'x-20260101-000000'), { recursive: true });
  assert.is(freshFolderName(path.join(cwd, 'runs'), 'x', new Date(2026, 0, 1, 0, 0, 0)), path.join(cwd, 'runs', 'x-20260101-000000-2'));
  fs.rmSync(cwd, { recursive: true, force: true });
});

test('a checkpoint that cannot be written removes what it wrote and keeps the previous one', () => {
  const run = path.join(base, 'failing-checkpoint');
  fs.mkdirSync(run);
  const gpt = new GPT(TINY, { seed: 2 });
  const tokenizer = new ByteTokenizer();
  const optimizer = new AdamW(gpt);
  saveCheckpoint(run, { state: { step: 1 }, model: gpt, tokenizer, optimizer });
  const good = snapshot(path.join(run, 'checkpoint'));
  for (let retry = 0; retry < 3; retry++) {
    const broken = new GPT(TINY, { seed: 3 });
    broken.dispose();  // its tensors cannot be read: the write fails part way, after config.json
    assert.throws(() => saveCheckpoint(run, { state: { step: 2 }, model: broken, tokenizer, optimizer }), /the checkpoint could not be written .*the previous one, if any, is unchanged/);
  }
  assert.equal(fs.readdirSync(run), ['checkpoint'], 'no partial folder left, after three failed tries');
  assert.equal(changes(good, snapshot(path.join(run, 'checkpoint'))), []);
  // partial folders a killed run left are removed by the next run that takes the folder
  fs.mkdirSync(path.join(run, '.checkpoint.99999.partial'));
  fs.writeFileSync(path.join(run, '.metrics.jsonl.99999.partial'), 'half');
  claimRunFolder(run, { mode: 'resume', inputs: [] }).release();
  assert.equal(fs.readdirSync(run), ['checkpoint']);
  optimizer.dispose();
  gpt.dispose();
});

test('the API refuses a non-empty out, overwrite with resume, and an out that is one of its inputs', async () => {
  const gpt = new GPT(TINY, { seed: 1 });
  const tokenizer = new ByteTokenizer();
  const out = path.join(base, 'api');
  fs.mkdirSync(out);
  fs.writeFileSync(path.join(out, 'keep.txt'), 'keep');
  const train = (o: Record<string, unknown>) => new PreferenceTrainer({ model: gpt, tokenizer, train: PREFERENCES, steps: 1, batchSize: 4, samples: 0, progress: false, ...o }).train();
  const refused = await train({ out }).then(() => null, (e: Error) => e);
  assert.match(String(refused?.message), /out.*already holds keep\.txt/);
  assert.throws(() => new PreferenceTrainer({ model: gpt, tokenizer, train: PREFERENCES, out, resume: true, overwrite: true }), /resume or overwrite, not both/);
  const inside = await train({ out: path.join(base, 'model'), inputs: [{ name: 'the starting model', path: path.join(base, 'model') }] }).then(() => null, (e: Error) => e);
  assert.match(String(inside?.message), /may not be the starting model/);
  const done = await train({ out, overwrite: true });
  assert.is(done.finished, true);
  assert.is(fs.readFileSync(path.join(out, 'keep.txt'), 'utf8'), 'keep');
  gpt.dispose();
});

test('fusedpo report --out and eval --out replace only their own earlier files: a user\'s file is refused without --overwrite', () => {
  const out = path.join(base, 'for-report');
  assert.is(fusedpo(base, 'train', '--model', model, '--data', PREFERENCES, '--out', out, ...quick).status, 0);
  const metrics = fs.readFileSync(path.join(out, 'metrics.jsonl'));
  const notes = path.join(base, 'notes.md');
  fs.writeFileSync(notes, '# my notes\n');
  const refused = fusedpo(base, 'report', out, '--out', notes);
  assert.is(refused.status, 1, refused.stderr);
  assert.match(refused.stderr, /notes\.md: the report: a file is there that fusedpo did not write; choose another name, or pass --overwrite/);
  assert.is(fs.readFileSync(notes, 'utf8'), '# my notes\n');
  const input = fusedpo(base, 'report', out, '--out', path.join(out, 'metrics.jsonl'));
  assert.is(input.status, 1, input.stderr);
  assert.ok(fs.readFileSync(path.join(out, 'metrics.jsonl')).equals(metrics));
  assert.is(fusedpo(base, 'report', out).status, 0, 'its own report.html is replaced');
  assert.is(fusedpo(base, 'report', out).status, 0, 'again');
  const data = path.join(base, 'eval-data.jsonl');
  fs.copyFileSync(PREFERENCES, data);
  const evalRefused = fusedpo(base, 'eval', '--model', out, '--data', data, '--no-generate', '--out', data);
  assert.is(evalRefused.status, 1, evalRefused.stderr);
  assert.match(evalRefused.stderr, /eval-data\.jsonl: the evaluation \(--out\): this is --data, which the command reads/);
  const evalNotes = fusedpo(base, 'eval', '--model', out, '--data', data, '--no-generate', '--out', notes);
  assert.match(evalNotes.stderr, /notes\.md: the evaluation \(--out\): a file is there that fusedpo did not write/);
  assert.ok(fs.readFileSync(data).equals(fs.readFileSync(PREFERENCES)), 'the data are intact');
  // what the command reads is never its output, even with --overwrite; another file is, with it
  assert.is(fusedpo(base, 'report', out, '--out', notes, '--overwrite').status, 0);
  const forced = fusedpo(base, 'eval', '--model', out, '--data', data, '--no-generate', '--out', data, '--overwrite');
  assert.match(forced.stderr, /the evaluation \(--out\): this is --data, which the command reads/);
  const report = fusedpo(base, 'report', out, '--out', path.join(out, 'metrics.jsonl'), '--overwrite');
  assert.match(report.stderr, /the report: this is .*'s metrics\.jsonl, which the command reads/);
  assert.ok(fs.readFileSync(data).equals(fs.readFileSync(PREFERENCES)) && fs.readFileSync(path.join(out, 'metrics.jsonl')).equals(metrics));
  const evaluation = path.join(base, 'evaluation.json');
  assert.is(fusedpo(base, 'eval', '--model', out, '--data', data, '--no-generate', '--out', evaluation).status, 0);
  assert.is(fusedpo(base, 'eval', '--model', out, '--data', data, '--no-generate', '--out', evaluation).status, 0, 'its own earlier file is replaced');
});

test.after(() => fs.rmSync(base, { recursive: true, force: true }));
test.run();
