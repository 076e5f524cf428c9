/**
 * Evaluation (lib/train/evaluate.ts, `fusedpo eval`) against figures computed pair by pair, and
 * the training report (lib/report, `fusedpo report`): its charts and escaping, thinning that keeps
 * a spike, the terminal summary, and the report drawn by headless Chromium: the test counts the
 * pixels of each run's colour in the screenshot, and shows that the count fails when the charts'
 * lines are not drawn. Without Chromium on PATH the browser test says it is skipped, unless
 * FUSEDPO_BROWSER_TEST=required (CI), where that is a failure.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { collatePreferences, tokenizePreferences } from '../../lib/data/batch';
import type { PreferenceRecord } from '../../lib/data/dataset';
import { ByteTokenizer } from '../../lib/data/tokenizer';
import { GPT } from '../../lib/nn/gpt';
import { niceTicks } from '../../lib/report/chart';
import { CHARTS, PALETTE, renderReport } from '../../lib/report/html';
import { readRun } from '../../lib/report/run';
import { formatSummary, sparkline } from '../../lib/report/summary';
import { evaluatePreferences, formatEvaluation, greedyCompletion } from '../../lib/train/evaluate';
import { saveModelFolder } from '../../lib/train/files';
import { modelLogps } from '../../lib/train/reference';
import { PreferenceTrainer } from '../../lib/train/trainer';
import { findChromium, screenshot } from './browser';
import { countColor, decodePng } from './png';
import { fusedpoWith } from '../cli';

const root = path.resolve(__dirname, '..', '..');
const EVAL = path.join(root, 'examples', 'data', 'preferences-eval.jsonl');
const PREFERENCES = path.join(root, 'examples', 'data', 'preferences.jsonl');
const tokenizer = new ByteTokenizer();
const CONFIG = { layers: 2, width: 32, heads: 4, context: 12, vocab: tokenizer.vocabSize };
const base = fs.mkdtempSync(path.join(os.tmpdir(), 'fusedpo-report-'));
const model = new GPT(CONFIG, { seed: 1 });
const other = new GPT(CONFIG, { seed: 2 });
const records: PreferenceRecord[] = fs.readFileSync(EVAL, 'utf8').trim().split('\n').map((l, i) => ({ ...JSON.parse(l), line: i + 1 }));

const fusedpo = fusedpoWith(1);

/** Each pair's chosen and rejected log-prob, one pair per forward (another batching than the evaluator's). */
function pairByPair(m: GPT): { chosen: number[]; rejected: number[] } {
  const { pairs } = tokenizePreferences(records, tokenizer, CONFIG.context + 1);
  const chosen: number[] = [], rejected: number[] = [];
  for (const pair of pairs) {
    const batch = collatePreferences([pair]);
    const logps = modelLogps(m, batch.tokens, batch.labels, batch.shape);
    chosen.push(logps[0]);
    rejected.push(logps[1]);
  }
  return { chosen, rejected };
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

test('evaluatePreferences: preference accuracy, log-probs and rewards equal those computed pair by pair', async () => {
  const mine = pairByPair(model), theirs = pairByPair(other);
  const e = await evaluatePreferences({ model, tokenizer, data: EVAL, reference: other, beta: 0.5, batchSize: 7, generate: false });
  assert.is(e.pairs, 20);
  const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-4 * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
  close(e.metrics['preference/accuracy'], mean(mine.chosen.map((c, i) => (c > mine.rejected[i] ? 1 : 0))), 'preference/accuracy');
  close(e.metrics['logps/chosen'], mean(mine.chosen), 'logps/chosen');
  close(e.metrics['logps/rejected'], mean(mine.rejected), 'logps/rejected');
  const rc = mine.chosen.map((c, i) => 0.5 * (c - theirs.chosen[i])), rr = mine.rejected.map((r, i) => 0.5 * (r - theirs.rejected[i]));
  close(e.metrics['rewards/chosen'], mean(rc), 'rewards/chosen');
  close(e.metrics['rewards/rejected'], mean(rr), 'rewards/rejected');
  close(e.metrics['rewards/margins'], mean(rc.map((c, i) => c - rr[i])), 'rewards/margins');
  close(e.metrics['rewards/accuracies'], mean(rc.map((c, i) => (c > rr[i] ? 1 : 0))), 'rewards/accuracies');
  close(e.referenceMetrics!['preference/accuracy'], mean(theirs.chosen.map((c, i) => (c > theirs.rejected[i] ? 1 : 0))), 'the reference\'s own accuracy');
  assert.is(e.metrics['task/accuracy'], undefined, 'no generation asked');
  // against itself every reward is 0: no pair is more than a tie
  const self = await evaluatePreferences({ model, tokenizer, data: records, reference: model, generate: false });
  assert.is(self.metrics['rewards/margins'], 0);
  assert.is(self.metrics['rewards/accuracies'], 0);
});

test('task accuracy by greedy generation: exact match by default, any checker, the verdicts per pair', async () => {
  const { pairs } = tokenizePreferences(records, tokenizer, CONFIG.context + 1);
  const completions = pairs.map((p) => greedyCompletion(model, tokenizer, p.prompt, 4));
  // half the records get the model's own completion as the chosen answer: exactly half are right
  const half = records.map((r, i) => ({ ...r, chosen: i % 2 === 0 ? completions[i] : `${completions[i]}x` }));
  const e = await evaluatePreferences({ model, tokenizer, data: half, maxNewTokens: 4 });
  assert.is(e.metrics['task/accuracy'], 0.5);
  assert.equal(e.examples.map((x) => x.correct), half.map((_, i) => i % 2 === 0));
  assert.equal(e.examples.map((x) => x.completion), completions);
  const lenient = await evaluatePreferences({ model, tokenizer, data: half, maxNewTokens: 4, checker: (c, r) => r.chosen.startsWith(c) });
  assert.is(lenient.metrics['task/accuracy'], 1);
  assert.match(formatEvaluation(e), /task accuracy \(greedy generation checked\)\s+0\.5000/);
  try {
    await evaluatePreferences({ model, tokenizer, data: half, maxNewTokens: 2, checker: (() => 'yes') as never });
    assert.unreachable('a checker that returns a string');
  } catch (error) {
    assert.match((error as Error).message, /Expected the checker to return a boolean but it returned 'yes' of type string \(line 1\)/);
  }
  for (const [bad, message] of [[{ beta: 0 }, /beta/], [{ batch: 2 }, /'batch', which it does not take/], [{ reference: {} }, /a model \(a CausalLM\) for reference/]] as const) {
    try {
      await evaluatePreferences({ model, tokenizer, data: records, ...bad } as never);
      assert.unreachable(JSON.stringify(bad));
    } catch (error) {
      assert.match((error as Error).message, message);
    }
  }
});

test('fusedpo eval: the table, --json and --out; bad input named', () => {
  saveModelFolder(path.join(base, 'model'), model, tokenizer);
  saveModelFolder(path.join(base, 'other'), other, tokenizer);
  const out = path.join(base, 'eval.json');
  const run = fusedpo('eval', '--model', path.join(base, 'model'), '--data', EVAL, '--ref', path.join(base, 'other'), '--max-new-tokens', '3', '--out', out);
  assert.is(run.status, 0, run.stderr);
  assert.match(run.stdout, /metric\s+model\s+reference/);
  assert.match(run.stdout, /reward accuracy \(chosen reward above rejected\)\s+[0-9.]+/);
  const written = JSON.parse(fs.readFileSync(out, 'utf8'));
  assert.is(written.pairs, 20);
  assert.is(written.examples.length, 20);
  assert.type(written.metrics['task/accuracy'], 'number');
  assert.type(written.referenceMetrics['task/accuracy'], 'number');
  const json = fusedpo('eval', '--model', path.join(base, 'model'), '--data', EVAL, '--no-generate', '--json');
  assert.is(json.status, 0, json.stderr);
  const parsed = JSON.parse(json.stdout);
  assert.is(parsed.referenceMetrics, null);
  assert.is(parsed.metrics['task/accuracy'], undefined);
  const missing = fusedpo('eval', '--model', path.join(base, 'model'));
  assert.is(missing.status, 2);
  assert.match(missing.stderr, /expected --data FILE/);
  const typo = fusedpo('eval', '--model', path.join(base, 'model'), '--data', EVAL, '--reff', 'x');
  assert.match(typo.stderr, /unknown option --reff \(did you mean --ref\?\)/);
});

// ---- the report ------------------------------------------------------------------------------------

function writeRun(name: string, train: Record<string, number | null>[], evaluations: Record<string, number | null>[], samples: unknown[] = []): string {
  const dir = path.join(base, name);
  fs.mkdirSync(dir, { recursive: true });
  const lines = [...train, ...evaluations.map((e) => Object.fromEntries(Object.entries(e).map(([k, v]) => [k === 'step' ? k : `eval_${k}`, v])))];
  fs.writeFileSync(path.join(dir, 'metrics.jsonl'), lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
  if (samples.length) fs.writeFileSync(path.join(dir, 'samples.jsonl'), samples.map((l) => JSON.stringify(l)).join('\n') + '\n');
  return dir;
}

test('renderReport: a chart per metric logged, every run, eval dots, text escaped, non-finite values counted', () => {
  const train = Array.from({ length: 30 }, (_, i) => ({ step: i + 1, loss: i === 7 ? null : 1 / (i + 1), learning_rate: 1e-3, grad_norm: 2, 'rewards/accuracies': i / 30 }));
  const a = writeRun('synthetic-a', train, [{ step: 10, loss: 0.5, 'rewards/accuracies': 0.4 }, { step: 20, loss: 0.4, 'rewards/accuracies': 0.6 }],
    [{ step: 0, samples: [{ prompt: '<script>alert(1)</script>', policy: 'a & b', reference: '"c"' }] }]);
  const b = writeRun('synthetic-b', train.map((r) => ({ ...r, loss: 2 })), []);
  const html = renderReport([readRun(a), readRun(b)]);
  assert.is((html.match(/<svg /g) ?? []).length, 4, 'loss, reward accuracy, learning rate, gradient norm');
  assert.ok(!html.includes('<script'), 'no script, and the sample\'s is escaped');
  assert.ok(html.includes('&lt;script&gt;alert(1)&lt;/script&gt;') && html.includes('a &amp; b') && html.includes('&quot;c&quot;'));
  assert.ok(html.includes(`stroke="${PALETTE[0]}"`) && html.includes(`stroke="${PALETTE[1]}"`), 'both runs drawn');
  assert.is((html.match(/<circle /g) ?? []).length, 4, 'a dot per evaluation: two metrics, two evaluations');
  assert.match(html, /1 non-finite value</);
  assert.ok(!/https?:\/\//.test(html.replace(/xmlns="http:\/\/www\.w3\.org\/2000\/svg"/g, '')), 'nothing fetched');
  const empty = writeRun('empty', [], []);
  assert.is((renderReport([readRun(empty)]).match(/<svg /g) ?? []).length, 0);
  assert.throws(() => readRun(path.join(base, 'nowhere')), /no metrics\.jsonl/);
  assert.is(CHARTS[0][0], 'loss');
});

test('long runs are thinned to the buckets\' extremes: a one-step spike stays on the chart', () => {
  const train = Array.from({ length: 5000 }, (_, i) => ({ step: i + 1, loss: i === 2500 ? 10 : 1 + Math.sin(i / 50) * 0.1 }));
  const html = renderReport([readRun(writeRun('long', train, []))]);
  const points = html.match(/<polyline points="([^"]+)"/)![1].split(' ');
  assert.ok(points.length <= 800, `${points.length} points`);
  const ys = points.map((p) => Number(p.split(',')[1]));
  assert.ok(Math.min(...ys) < 40, 'the spike reaches the top of the plot');
});

test('ticks, sparklines and the terminal summary', () => {
  assert.equal(niceTicks(0, 1).map((t) => Number(t.toFixed(10))), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.equal(niceTicks(-3.2, 7.9).filter((t) => Number.isInteger(t)), [-2, 0, 2, 4, 6]);
  assert.is(sparkline([0, 1, 2, 3, 4, 5, 6, 7]), '▁▂▃▄▅▆▇█');
  assert.is(sparkline([1, null, 1]), '▄ ▄');
  assert.is(sparkline(Array.from({ length: 1000 }, (_, i) => i), 40).length, 40);
  const summary = formatSummary([{ step: 1, loss: 0.7 }, { step: 2, loss: 0.2 }, { step: 3, loss: 0.3 }], { step: 3, eval_loss: 0.4 },
    { step: 3, samples: [{ prompt: '1+1=', policy: '2', reference: '3' }] });
  assert.match(summary, /^loss\s+█▁▂\s+0\.7000 -> 0\.3000 {2}\(min 0\.2000 at step 2\)$/m);
  assert.match(summary, /eval at step 3: loss 0\.4000/);
  assert.match(summary, /"1\+1=" -> "2" \| "3"/);
});

// ---- in a real browser ---------------------------------------------------------------------------

/** The run colours' pixels in a screenshot: each must cover every chart (a 2 px line across it), not only the legend's swatches. */
function drawnPixels(png: string, runs: number): number[] {
  const image = decodePng(fs.readFileSync(png));
  return PALETTE.slice(0, runs).map((color) => countColor(image, color));
}

test('the report draws in headless Chromium: every run\'s lines on every chart, and the check fails when they are not drawn', async () => {
  const chromium = findChromium();
  if (!chromium) {
    if (process.env.FUSEDPO_BROWSER_TEST === 'required') assert.unreachable('FUSEDPO_BROWSER_TEST=required but no chromium on PATH (apt-get install chromium)');
    console.log('  skipped: the report\'s browser test needs chromium on PATH (CI installs it)');
    return;
  }
  const dirs: string[] = [];
  for (const loss of ['dpo', 'minordpo'] as const) {
    const policy = new GPT(CONFIG, { seed: 3 });
    const out = path.join(base, `browser-${loss}`);
    await new PreferenceTrainer({ model: policy, tokenizer, train: PREFERENCES, eval: EVAL, loss, steps: 12, batchSize: 4, evalEvery: 4, out, progress: false }).train();
    policy.dispose();
    dirs.push(out);
  }
  const file = path.join(base, 'overlay.html');
  const run = fusedpo('report', ...dirs, '--out', file, '--labels', 'dpo,minordpo');
  assert.is(run.status, 0, run.stderr);
  const html = fs.readFileSync(file, 'utf8');
  const charts = (html.match(/<svg /g) ?? []).length;
  assert.is(charts, 10, 'every preference metric but the NLL');
  const png = path.join(base, 'overlay.png');
  screenshot(chromium, file, png);
  const minimum = charts * 150;  // a 2 px line across a 384 px plot is ~800 px of its colour; the legend's swatches are 56 each
  const drawn = drawnPixels(png, 2);
  drawn.forEach((n, i) => assert.ok(n >= minimum, `run ${i + 1}'s colour covers ${n} pixels, fewer than ${minimum}: its lines were not drawn`));
  // the control: the same report without its lines and dots fails the same check
  const blank = path.join(base, 'blank.html');
  fs.writeFileSync(blank, html.replace(/<polyline [^>]*\/>/g, '').replace(/<circle [^>]*>.*?<\/circle>/g, ''));
  screenshot(chromium, blank, path.join(base, 'blank.png'));
  drawnPixels(path.join(base, 'blank.png'), 2).forEach((n, i) => assert.ok(n < minimum, `without lines, run ${i + 1}'s colour still covers ${n} pixels`));
});

test.after(() => {
  model.dispose();
  other.dispose();
  fs.rmSync(base, { recursive: true, force: true });
});
test.run();
