/**
 * The study (lib/study): the task's sets are disjoint and their near misses one digit off; a
 * reduced comparison (2 methods, 2 learning rates, 1 seed, a few steps, a small model) writes
 * results.json, results.md and report.html of the expected shape, the same results.json byte for
 * byte when run again, and reads its SFT model back instead of training it again. Its
 * conclusion is not tested: that is what the full run is for.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { mulberry32 } from '../../lib/example';
import { runStudy, studyConfig, type StudyConfig } from '../../lib/study/reproduce';
import { arithmeticTask, nearMiss } from '../../lib/study/task';

const base = fs.mkdtempSync(path.join(os.tmpdir(), 'fusedpo-study-'));
const cacheDirectory = path.join(base, 'cache');

test('the task: disjoint sets of exact sums, rejected answers one digit off the right one', () => {
  const task = arithmeticTask({ seed: 3, maxOperand: 30, sft: 500, preferences: 200, heldOut: 100 });
  assert.is(task.sft.length, 500);
  assert.is(task.preferences.length, 200);
  assert.is(task.heldOut.length, 100);
  const prompts = [...task.sft, ...task.preferences, ...task.heldOut].map((r) => r.prompt);
  assert.is(new Set(prompts).size, prompts.length, 'no problem in two sets');
  for (const r of task.sft) {
    const [a, b] = r.prompt.slice(0, -1).split('+').map(Number);
    assert.is(r.completion, String(a + b));
  }
  for (const p of [...task.preferences, ...task.heldOut]) {
    const [a, b] = p.prompt.slice(0, -1).split('+').map(Number);
    assert.is(p.chosen, String(a + b));
    assert.is(p.rejected.length, p.chosen.length);
    const differing = [...p.chosen].filter((c, i) => c !== p.rejected[i]);
    assert.is(differing.length, 1, `${p.chosen} vs ${p.rejected}`);
    assert.ok(p.rejected[0] !== '0' || p.rejected.length === 1, 'no leading zero');
  }
  assert.equal(arithmeticTask({ seed: 3, maxOperand: 30, sft: 500, preferences: 200, heldOut: 100 }), task, 'the same seed, the same task');
  assert.not.equal(arithmeticTask({ seed: 4, maxOperand: 30, sft: 500, preferences: 200, heldOut: 100 }).heldOut, task.heldOut);
  const random = mulberry32(1);
  for (let i = 0; i < 200; i++) assert.ok(nearMiss(10, random) !== '10');
  assert.throws(() => arithmeticTask({ maxOperand: 3, sft: 20 }), /the 16 problems of operands up to 3/);
});

function reduced(): StudyConfig {
  const config = studyConfig({ seed: 1 });
  return {
    ...config, methods: ['dpo', 'minordpo'], learningRates: [1e-3, 1e-2], seeds: [1], steps: 6, batchSize: 4, evalEvery: 3,
    task: { ...config.task, maxOperand: 20, sft: 200, preferences: 60, heldOut: 20 },
    model: { ...config.model, width: 32, context: 10 },
    sft: { ...config.sft, steps: 30, batchSize: 16, warmupSteps: 10 },
  };
}

test('a reduced comparison: the files and their shape, the same results.json twice, the SFT model read back', async () => {
  const lines: string[] = [];
  const first = await runStudy(reduced(), path.join(base, 'a'), { log: (l) => lines.push(l), cacheDirectory });
  assert.ok(lines.some((l) => l.startsWith('sft: training the starting model')), 'the SFT model trained');
  assert.is(first.rows.length, 4);
  assert.equal(first.rows.map((r) => `${r.method} ${r.lr}`), ['dpo 0.001', 'minordpo 0.001', 'dpo 0.01', 'minordpo 0.01']);
  for (const row of first.rows) {
    for (const key of ['taskAccuracyBefore', 'taskAccuracyAfter', 'preferenceAccuracy', 'rewardAccuracy', 'rewardMargin', 'chosenDrift', 'rejectedDrift', 'minChosenDrift'] as const) {
      assert.type(row[key], 'number', key);
      assert.ok(Number.isFinite(row[key]), `${key} ${row[key]}`);
    }
    assert.ok(row.minChosenDrift <= row.chosenDrift + 1e-6, 'the lowest drift is at most the last');
    assert.is(row.taskAccuracyBefore, first.sft.taskAccuracy);
    assert.type(row.diverged, 'boolean');
  }
  assert.ok(lines.some((l) => /^\[4\/4\] minordpo lr 1e-2 seed 1: task accuracy/.test(l)), 'a progress line per run');
  const dir = path.join(base, 'a');
  for (const file of ['results.json', 'results.md', 'report.html', 'timings.json', 'sft/model.safetensors', 'runs/dpo-lr1e-3-seed1/metrics.jsonl']) {
    assert.ok(fs.existsSync(path.join(dir, file)), file);
  }
  const md = fs.readFileSync(path.join(dir, 'results.md'), 'utf8');
  assert.is(md.split('\n').filter((l) => /^\| (dpo|minordpo) \| 1e-[23] \|/.test(l)).length, 4);
  const html = fs.readFileSync(path.join(dir, 'report.html'), 'utf8');
  assert.is((html.match(/<h2>learning rate /g) ?? []).length, 2);
  assert.is((html.match(/<svg /g) ?? []).length, 2 * 7);
  const second: string[] = [];
  await runStudy(reduced(), path.join(base, 'b'), { log: (l) => second.push(l), cacheDirectory });
  assert.ok(second.some((l) => l.startsWith('sft: reading the SFT model of these settings from the cache')), 'the SFT model read back from the cache');
  const again = (f: string) => fs.readFileSync(path.join(base, 'b', f), 'utf8') === fs.readFileSync(path.join(dir, f), 'utf8');
  assert.ok(again('results.json'), 'the same options, the same results.json');
  assert.ok(again('results.md'));
  // an earlier study's folder is refused, then replaced with overwrite, keeping the user's own file in it
  fs.writeFileSync(path.join(dir, 'notes.txt'), 'mine');
  const refused = await runStudy(reduced(), dir, { cacheDirectory }).then(() => null, (error: Error) => error);
  assert.match(String(refused?.message), /the study folder already holds .*: a run writes only into a new or empty folder.*--overwrite/);
  assert.ok(again('results.json'), 'the refused study changed nothing');
  const third: string[] = [];
  await runStudy(reduced(), dir, { log: (l) => third.push(l), overwrite: true, cacheDirectory });
  assert.ok(third.some((l) => /replacing .*, written by an earlier run \(--overwrite; other files are kept\)/.test(l)), 'what overwrite replaced is said');
  assert.ok(again('results.json'), 'and the same results from it');
  assert.is(fs.readFileSync(path.join(dir, 'notes.txt'), 'utf8'), 'mine', 'a file the study did not write is kept');
});

test.after(() => fs.rmSync(base, { recursive: true, force: true }));
test.run();
