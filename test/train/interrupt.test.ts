/**
 * Interruption is a checkpoint (lib/train/interrupt.ts, native/cpu/interrupts.h). On a1c597a,
 * SIGINT and SIGTERM ended training at once with no checkpoint and nothing said (exit 130 within
 * 31 ms), and without --save-every nothing could be resumed. Now:
 * - the first signal finishes the step, writes a checkpoint and exits with a line saying how to
 *   resume (status 130 for SIGINT, 143 for SIGTERM); the resumed run ends with the bytes of an
 *   unbroken one;
 * - its line is printed at once, even while the main thread is busy (a step at real size holds it
 *   for seconds), and a second signal stops the process at once;
 * - an AbortSignal stops an API run the same way;
 * - a checkpoint is also written by time (checkpointMinutes).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { ByteTokenizer } from '../../lib/data/tokenizer';
import { GPT } from '../../lib/nn/gpt';
import { PreferenceTrainer } from '../../lib/train/trainer';
import { PREFERENCES, TINY, fusedpo, fusedpoChild, modelFolder, noStackTrace, root, sameBytes, temporaryDirectory, until } from '../support/runs';

const base = temporaryDirectory('interrupt');
const model = modelFolder(path.join(base, 'model'));
const args = ['train', '--model', model, '--data', PREFERENCES, '--loss', 'minordpo', '--steps', '3000', '--batch', '4', '--samples', '0'];

let unbroken: string | null = null;
/** The run without interruption (made once). */
function unbrokenRun(): string {
  if (unbroken) return unbroken;
  unbroken = path.join(base, 'unbroken');
  const run = fusedpo(base, ...args, '--out', unbroken, '--quiet');
  assert.is(run.status, 0, run.stderr);
  return unbroken;
}

for (const [signal, status] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  test(`${signal} finishes the step, checkpoints, says how to resume (status ${status}); --resume DIR alone ends with an unbroken run's bytes`, async () => {
    const out = path.join(base, `broken-${signal}`);
    const run = fusedpoChild(base, ...args, '--out', out);
    await until(() => /step 20\/3000/.test(run.stderr()), 60_000, 'step 20');
    run.child.kill(signal);
    const ended = await run.done;
    assert.is(ended.status, status, ended.stderr);
    assert.match(ended.stderr, /interrupted: the current step finishes and a checkpoint is written \(interrupt again to stop at once\)/);
    assert.match(ended.stderr, new RegExp(`interrupted \\(${signal}\\) at step [0-9]+; the checkpoint is in .*; continue with: fusedpo train --resume ${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    assert.ok(noStackTrace(ended.stderr));
    const summary = JSON.parse(ended.stdout);
    assert.is(summary.interrupted, true);
    assert.ok(summary.steps >= 20 && summary.steps < 3000, `stopped at step ${summary.steps}`);
    assert.ok(fs.existsSync(path.join(out, 'checkpoint', 'trainer_state.json')), 'a checkpoint without --save-every');
    assert.is(fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').length, summary.steps, 'the metrics up to the checkpoint');
    const resumed = fusedpo(base, 'train', '--resume', out, '--quiet');
    assert.is(resumed.status, 0, resumed.stderr);
    const whole = unbrokenRun();
    for (const file of ['model.safetensors', 'metrics.jsonl', 'config.json']) assert.ok(sameBytes(path.join(out, file), path.join(whole, file)), `${file}: the same bytes`);
  });
}

test('the first signal is said at once while the main thread is busy; a second stops the process at once', async () => {
  // a child whose main thread is busy for 20 s, as in a long step
  const script = `const { watchInterrupts } = require(${JSON.stringify(path.join(root, 'dist', 'train', 'interrupt.js'))});
    const watch = watchInterrupts('first signal seen');
    process.stdout.write('ready\\n');
    const end = Date.now() + 20000;
    while (Date.now() < end) {}
    console.log('the busy loop ended, aborted:', watch.aborted);`;
  const child = spawn(process.execPath, ['-e', script]);
  let stdout = '', stderr = '';
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const done = new Promise<{ status: number | null; signal: string | null }>((resolve) => child.on('close', (status, signal) => resolve({ status, signal })));
  await until(() => stdout.includes('ready'), 30_000, 'the child to start');
  const started = Date.now();
  child.kill('SIGINT');
  await until(() => stderr.includes('first signal seen'), 5_000, 'the first signal\'s line');
  assert.ok(child.exitCode === null, 'still running after the first signal');
  child.kill('SIGINT');
  const ended = await done;
  const seconds = (Date.now() - started) / 1000;
  assert.is(ended.signal, 'SIGINT', `ended by the second signal (status ${ended.status})`);
  assert.ok(seconds < 10, `stopped ${seconds} s after the first signal, long before its busy loop's 20 s`);
  assert.not.match(stdout, /busy loop ended/);
});

test('an AbortSignal stops an API run at a step boundary, after a checkpoint; resume: true continues it', async () => {
  const out = path.join(base, 'api');
  const controller = new AbortController();
  const tokenizer = new ByteTokenizer();
  const gpt = new GPT(TINY, { seed: 4 });
  let logged = 0;
  const first = await new PreferenceTrainer({
    model: gpt, tokenizer, train: PREFERENCES, steps: 50, batchSize: 4, samples: 0, progress: false, out, signal: controller.signal,
    callbacks: { onLog: () => { if (++logged === 7) setTimeout(() => controller.abort(), 0); } },
  }).train();
  assert.is(first.interrupted, true);
  assert.is(first.finished, false);
  assert.ok(first.steps >= 7 && first.steps < 50, `stopped at ${first.steps}`);
  assert.ok(fs.existsSync(path.join(out, 'checkpoint', 'trainer_state.json')));
  const again = new GPT(TINY, { seed: 4 });
  const rest = await new PreferenceTrainer({ model: again, tokenizer, train: PREFERENCES, steps: 50, batchSize: 4, samples: 0, progress: false, out, resume: true }).train();
  assert.is(rest.finished, true);
  assert.is(rest.steps, 50);
  gpt.dispose();
  again.dispose();
});

test('checkpointMinutes: a checkpoint by time, with no --save-every', async () => {
  const out = path.join(base, 'by-time');
  const tokenizer = new ByteTokenizer();
  const gpt = new GPT(TINY, { seed: 5 });
  const checkpoints: number[] = [];
  await new PreferenceTrainer({
    model: gpt, tokenizer, train: PREFERENCES, steps: 40, batchSize: 4, samples: 0, progress: false, out, checkpointMinutes: 1e-9,
    callbacks: { onCheckpoint: (step) => checkpoints.push(step) },
  }).train();
  assert.equal(checkpoints, Array.from({ length: 40 }, (_, i) => i + 1), 'every step is past a (tiny) time bound; the last once');
  gpt.dispose();
  const run = fusedpo(base, 'train', '--model', model, '--data', PREFERENCES, '--out', path.join(base, 'by-time-cli'), '--steps', '3', '--batch', '4',
    '--checkpoint-minutes', '-1', '--quiet');
  assert.is(run.status, 1);
  assert.match(run.stderr, /for --checkpoint-minutes but received -1/);
});

test.after(() => fs.rmSync(base, { recursive: true, force: true }));
test.run();
