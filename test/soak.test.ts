/**
 * The soak test (issue: memory safety and lifetimes): a synchronous training loop of 5,000 steps
 * of a small GPT that never yields, each step in withScope, then the same with 8 concurrent
 * async loss calls per step. Over each, every tensor a step makes is gone at its end (counted
 * exactly) and resident memory, sampled after a full collection every 500 steps from step 1,000
 * (a warm-up: the allocator's arenas and V8's pages settle), has no trend: the median of the last
 * three samples is less than 16 MiB above the median of the first three. Single samples jump by
 * 10 to 17 MiB either way and come back (the worker threads' malloc arenas, V8's pages), which a
 * median ignores; a leak moves every sample, the medians with them: one of 6 KiB a step adds
 * 16 MiB over the 3,000 steps between the two medians' samples.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import * as path from 'node:path';

import { AdamW, F, GPT, clipGradNorm, hostMemory, preferenceLoss, preferenceLossAsync, withScope } from '../lib/index';
import { ByteTokenizer } from '../lib/data/tokenizer';
import { mulberry32 } from '../lib/example';
import { PreferenceTrainer } from '../lib/train/trainer';
import { SANITIZED, residentMiB, settledLiveTensors } from './memory';

const STEPS = Number(process.env.FUSEDPO_SOAK_STEPS ?? 5000);
const WARMUP = Math.min(1000, STEPS / 5);
const EVERY = Math.max(1, Math.floor(STEPS / 10));
const BOUND_MIB = 16;

/** Samples resident memory from the warm-up on; checks its trend once the loop is done. */
class Resident {
  readonly samples: number[] = [];
  sample(step: number): void {
    if (step >= WARMUP && (step - WARMUP) % EVERY === 0) this.samples.push(residentMiB());
  }
  check(what: string): void {
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const rise = median(this.samples.slice(-3)) - median(this.samples.slice(0, 3));
    const all = this.samples.map((m) => m.toFixed(1)).join(', ');
    console.log(`  soak (${what}): ${STEPS} steps, resident memory ${all} MiB: the median moved ${rise.toFixed(1)} MiB`);
    if (!SANITIZED) assert.ok(rise < BOUND_MIB, `the median of resident memory rose by ${rise.toFixed(1)} MiB (${all})`);
  }
}

function model() {
  const gpt = new GPT({ layers: 1, width: 16, heads: 2, context: 8, vocab: 32 }, { seed: 9 });
  return { gpt, optimizer: new AdamW(gpt, { lr: 1e-3 }) };
}

function batch(random: () => number, length: number): Int32Array {
  return Int32Array.from({ length }, () => Math.floor(random() * 32));
}

test(`${STEPS} synchronous training steps: live tensors exact, resident memory within ${BOUND_MIB} MiB`, () => {
  const { gpt, optimizer } = model();
  const random = mulberry32(1);
  const live = hostMemory().liveTensors;
  const resident = new Resident();
  for (let step = 0; step < STEPS; step++) {
    const tokens = batch(random, 2 * 8);
    withScope(() => {
      F.crossEntropy(gpt.forward(tokens, [2, 8]), batch(random, 2 * 8)).backward();
      clipGradNorm(gpt, 1.0);
      optimizer.step();
      optimizer.zeroGrad();
    });
    assert.is(hostMemory().liveTensors, live + optimizerState(gpt), `step ${step}: tensors alive (the model's, AdamW's state)`);
    resident.sample(step + 1);
  }
  resident.check('sync');
  optimizer.dispose();
  gpt.dispose();
});

/** AdamW's m and v: two tensors per parameter, made on the first step. */
function optimizerState(gpt: GPT): number {
  return 2 * gpt.parameters().length;
}

test(`${STEPS} steps with 8 concurrent async loss calls each: resident memory within ${BOUND_MIB} MiB`, async () => {
  const { gpt, optimizer } = model();
  const random = mulberry32(2);
  const [P, T, V] = [1, 8, 32];
  const live = await settledLiveTensors(() => hostMemory().liveTensors);
  const resident = new Resident();
  for (let step = 0; step < STEPS; step++) {
    const inputs = batch(random, 2 * P * T);
    const labels = batch(random, 2 * P * T);
    // The policy's logits, as a typed array, read by 8 jobs at once off the event loop.
    const logits = withScope(() => gpt.forward(inputs, [2 * P, T]).toArray() as Float32Array);
    const refLogps = Float32Array.from({ length: 2 * P }, () => -T * Math.log(V) + random());
    const results = await Promise.all(Array.from({ length: 8 }, (_, k) => preferenceLossAsync({
      loss: k % 2 === 0 ? 'dpo' : 'minordpo', beta: 0.1 * (k + 1), logits, shape: [2 * P, T, V], labels, refLogps,
    })));
    const sync = preferenceLoss({ loss: 'dpo', beta: 0.1, logits, shape: [2 * P, T, V], labels, refLogps, grad: false });
    assert.is(results[0].loss, sync.loss, `step ${step}: an async result differs from the synchronous one`);
    withScope(() => {
      F.crossEntropy(gpt.forward(inputs, [2 * P, T]), labels).backward();
      optimizer.step();
      optimizer.zeroGrad();
    });
    resident.sample(step + 1);
  }
  assert.is(await settledLiveTensors(() => hostMemory().liveTensors), live + optimizerState(gpt), 'tensors alive at the end');
  resident.check('async, 8 calls a step');
  optimizer.dispose();
  gpt.dispose();
});

test(`the preference trainer: ${STEPS} steps (frozen reference, dpo), resident memory within ${BOUND_MIB} MiB, nothing left alive`, async () => {
  const tokenizer = new ByteTokenizer();
  const gpt = new GPT({ layers: 1, width: 16, heads: 2, context: 8, vocab: tokenizer.vocabSize }, { seed: 4 });
  const live = hostMemory().liveTensors;
  const resident = new Resident();
  const result = await new PreferenceTrainer({
    model: gpt, tokenizer, train: path.join(__dirname, '..', 'examples', 'data', 'preferences.jsonl'), steps: STEPS, batchSize: 2, lr: 1e-4,
    progress: false, callbacks: { onLog: (m) => resident.sample(m.step) },
  }).train();
  assert.is(result.steps, STEPS);
  assert.is(hostMemory().liveTensors, live, 'the trainer leaves only the model alive (its optimizer and reference are freed)');
  resident.check('PreferenceTrainer');
  gpt.dispose();
});

test.run();
