/**
 * The report's picture in the README: the README's pipeline on the embedded task (SFT, then DPO
 * and MinorDPO from it, evaluated every 10 steps), both runs overlaid by `fusedpo report`,
 * rendered by headless Chromium.
 *
 *   npx tsx bench/report-screenshot.ts     # writes bench/results/report.html and report.png
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { ByteTokenizer, GPT, PreferenceTrainer, SftTrainer } from '../lib/index';
import { writeReport } from '../lib/report/html';
import { findChromium, screenshot } from '../test/report/browser';

const root = path.resolve(__dirname, '..');
const data = (file: string) => path.join(root, 'examples', 'data', file);

(async () => {
  const chromium = findChromium();
  if (!chromium) throw new Error('needs chromium on PATH (apt-get install chromium) or FUSEDPO_CHROMIUM');
  const runs = fs.mkdtempSync(path.join(os.tmpdir(), 'fusedpo-report-'));
  const tokenizer = new ByteTokenizer();
  const start = new GPT({ layers: 2, width: 64, heads: 4, context: 16, vocab: tokenizer.vocabSize }, { seed: 1 });
  await new SftTrainer({ model: start, tokenizer, train: data('sft.jsonl'), steps: 200, batchSize: 16, lr: 3e-3, progress: false }).train();
  const dirs: { directory: string; label: string }[] = [];
  for (const loss of ['dpo', 'minordpo'] as const) {
    const model = new GPT(start.config);
    model.copyFrom(start);
    const out = path.join(runs, loss);
    await new PreferenceTrainer({
      model, tokenizer, train: data('preferences.jsonl'), eval: data('preferences-eval.jsonl'), loss, beta: 0.5, lr: 1e-3, steps: 100, batchSize: 8,
      evalEvery: 10, out, progress: false,
    }).train();
    model.dispose();
    dirs.push({ directory: out, label: loss });
  }
  start.dispose();
  const results = path.join(root, 'bench', 'results');
  const html = writeReport(dirs, path.join(results, 'report.html'));
  screenshot(chromium, html, path.join(results, 'report.png'), 1000, 2050);
  fs.rmSync(runs, { recursive: true, force: true });
  console.log(`wrote ${path.relative(root, html)} and bench/results/report.png`);
})();
