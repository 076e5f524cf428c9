/**
 * `fusedpo demo`: the fused loss on the built-in example batch, forward and backward, for DPO
 * and MinorDPO, printing the loss, the metrics and the timings.
 */
import { exampleBatch, referenceNear } from './example';
import { preferenceLoss, sequenceLogps, type LossName } from './losses';
import { loadAddon } from './native';

export interface DemoOptions {
  pairs: number;
  tokens: number;
  vocab: number;
  losses: LossName[];
  repeats: number;
  log: (line: string) => void;
}

export const DEFAULT_DEMO: DemoOptions = {
  pairs: 4,
  tokens: 256,
  vocab: 32000,
  losses: ['dpo', 'minordpo'],
  repeats: 3,
  log: (line) => console.log(line),
};

export function runDemo(options: DemoOptions = DEFAULT_DEMO): void {
  const { pairs, tokens, vocab, log } = options;
  const loaded = loadAddon();
  const info = loaded.addon.info();
  log(`fusedpo demo: ${pairs} pairs x ${tokens} tokens x V = ${vocab}, f32 logits; ${loaded.kind} addon, ${info.simd}, ${info.threads} threads`);
  const started = performance.now();
  const batch = exampleBatch(pairs, tokens, vocab);
  const megabytes = (batch.logits.byteLength / 1e6).toFixed(0);
  log(`made the example batch (${megabytes} MB of logits) in ${(performance.now() - started).toFixed(0)} ms`);
  // The reference model: a few nats off the policy on every row, as at the start of training.
  const refLogps = referenceNear(sequenceLogps({ logits: batch.logits, shape: batch.shape, labels: batch.labels }).logps);
  const dlogits = new Float32Array(batch.logits.length); // reused across calls, as a training loop would
  for (const loss of options.losses) {
    const times: number[] = [];
    const args = { loss, logits: batch.logits, shape: batch.shape, labels: batch.labels, refLogps, out: dlogits };
    let result = preferenceLoss(args);
    for (let i = 0; i < options.repeats; i++) {
      const t0 = performance.now();
      result = preferenceLoss(args);
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    const best = times[0];
    // Forward reads the logits, backward reads them again and writes dlogits: 3 passes.
    const gbps = (3 * batch.logits.byteLength) / (best * 1e6);
    const m = result.metrics;
    log(
      `${loss.padEnd(9)} loss ${result.loss.toFixed(6)}  margin ${m.rewardsMargin.toFixed(4)}  accuracy ${m.rewardsAccuracy.toFixed(3)}` +
        `  fwd+bwd ${best.toFixed(1)} ms (best of ${options.repeats}, ${gbps.toFixed(1)} GB/s over 3 passes)`,
    );
  }
}
