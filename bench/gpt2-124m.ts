/**
 * The 124M-parameter GPT-2 shape (random weights) on the CPU: resident memory with the frozen
 * reference and AdamW's moments, and the time of MinorDPO steps of 2 pairs x 128 tokens (the
 * reference's forward timed apart). The figures of the README's Hugging Face section.
 *
 *   npx tsx bench/gpt2-124m.ts [--steps N]
 */
import { preferenceLoss } from '../lib/losses';
import { GPT } from '../lib/nn/gpt';
import { AdamW, clipGradNorm } from '../lib/optim';
import { withScope } from '../lib/tensor';
import { frozenCopy, modelLogps } from '../lib/train/reference';

const stepsFlag = process.argv.indexOf('--steps');
const steps = stepsFlag >= 0 ? Number(process.argv[stepsFlag + 1]) : 3;
const mib = () => (process.memoryUsage().rss / 2 ** 20).toFixed(0);
const model = new GPT({ layers: 12, width: 768, heads: 12, context: 1024, vocab: 50257 }, { seed: 1 });
console.log(`GPT-2 124M shape: ${model.parameterCount()} parameters, resident ${mib()} MiB`);
const reference = frozenCopy(model);
const optimizer = new AdamW(model, { lr: 1e-5 });
const P = 2, T = 128;
const tokens = Int32Array.from({ length: 2 * P * T }, (_, i) => (i * 7919) % 50257);
const labels = Int32Array.from({ length: 2 * P * T }, (_, i) => (i % T < 32 ? -100 : (i * 104729) % 50257));
for (let step = 0; step < steps; step++) {
  const started = Date.now();
  const refLogps = modelLogps(reference, tokens, labels, [2 * P, T]);
  const referenceMs = Date.now() - started;
  withScope(() => preferenceLoss({ loss: 'minordpo', logits: model.forward(tokens, [2 * P, T]), labels, refLogps }).loss.backward());
  clipGradNorm(model, 1);
  optimizer.step();
  optimizer.zeroGrad();
  console.log(`step ${step}: ${Date.now() - started} ms (the reference's forward ${referenceMs} ms), resident ${mib()} MiB`);
}
optimizer.dispose();
reference.dispose();
model.dispose();
