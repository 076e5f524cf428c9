/**
 * A built-in example batch: deterministic logits, labels with a prompt mask, and reference
 * log-probs, made from a seed. Used by `fusedpo demo`, the tests and the benchmarks.
 */

/** A small, fast, seeded generator (mulberry32): the same batch on every machine. */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface ExampleBatch {
  pairs: number;
  tokens: number;
  vocab: number;
  shape: [number, number, number];
  logits: Float32Array;
  labels: Int32Array;
  refLogps: Float32Array;
}

/**
 * `pairs` pairs of `tokens` tokens over a vocabulary of `vocab`: logits uniform in
 * [-scale, scale), the first quarter of every row masked as prompt (label -100), reference
 * log-probs near the policy's (so rewards start near zero, as at the first step of training).
 */
export function exampleBatch(pairs: number, tokens: number, vocab: number, seed = 1, scale = 4): ExampleBatch {
  const rows = 2 * pairs;
  const random = mulberry32(seed);
  const logits = new Float32Array(rows * tokens * vocab);
  for (let i = 0; i < logits.length; i++) logits[i] = (random() * 2 - 1) * scale;
  const labels = new Int32Array(rows * tokens);
  const prompt = Math.floor(tokens / 4);
  for (let s = 0; s < rows; s++) {
    for (let t = 0; t < tokens; t++) {
      labels[s * tokens + t] = t < prompt ? -100 : Math.floor(random() * vocab);
    }
  }
  // A uniform policy gives log(1/V) per token; the reference sits a little off it. (The policy
  // here is not uniform: use referenceNear on its sequenceLogps for a reference close to it.)
  const refLogps = new Float32Array(rows);
  const counted = tokens - prompt;
  for (let s = 0; s < rows; s++) refLogps[s] = -Math.log(vocab) * counted + (random() * 2 - 1) * 2;
  return { pairs, tokens, vocab, shape: [rows, tokens, vocab], logits, labels, refLogps };
}

/**
 * Reference log-probs a few nats off the given policy log-probs, deterministically: a reference
 * model close to the policy, as at the start of preference training, so that the rewards have
 * both signs and the losses sit near their interesting range.
 */
export function referenceNear(logps: Float32Array, spread = 3): Float32Array {
  return logps.map((p, s) => p + Math.sin(1 + s * 2.3) * spread);
}
