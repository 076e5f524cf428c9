/**
 * The reference model of a preference run (docs/training.md, "The reference"):
 *
 * - a frozen copy of the starting policy (the default), whose sequence log-probs are computed
 *   beside each policy step without a graph;
 * - or its log-probs precomputed in one pass before training, the model then freed, and cached
 *   on disk under a key made of the tokenized data, the weights and the tokenizer, so that a
 *   later run on the same inputs reads them instead;
 * - updated every n steps as `ref <- alpha * policy + (1 - alpha) * ref` (TR-DPO), on the copy;
 * - or, between iterations of accelerated PO, extrapolated in log-prob space:
 *   `ref = (1 + alpha) * ref_t - alpha * ref_(t-1)`.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { noGrad } from '../autograd';
import { collatePreferences, type TokenizedPair } from '../data/batch';
import type { Tokenizer } from '../data/tokenizer';
import { sequenceLogps } from '../losses';
import type { CausalLM } from '../nn/causal_lm';
import { readSafetensors, saveSafetensors } from '../safetensors';
import { hostStorage, withScope } from '../tensor';

/** A frozen copy of `policy`: same config and weights, no gradients. */
export function frozenCopy<M extends CausalLM>(policy: M): M {
  const copy = policy.like() as M;
  copy.copyFrom(policy);
  for (const [, tensor] of copy.parameters()) tensor.requiresGrad = false;
  return copy;
}

/** Sequence log-probs (summed over completion tokens) of the rows of `tokens`/`labels` under `model`, without a graph. */
export function modelLogps(model: CausalLM, tokens: Int32Array, labels: Int32Array, shape: readonly [number, number]): Float32Array {
  return noGrad(() => withScope(() => sequenceLogps({ logits: model.forward(tokens, shape), labels }).logps));
}

/** TR-DPO's update of the reference: `ref <- alpha * policy + (1 - alpha) * ref`, parameter by parameter. */
export function syncReference(reference: CausalLM, policy: CausalLM, alpha: number): void {
  const ours = new Map(policy.parameters());
  for (const [name, tensor] of reference.parameters()) {
    const p = ours.get(name)!.toArray() as Float32Array;
    const r = tensor.toArray() as Float32Array;
    for (let i = 0; i < r.length; i++) r[i] = alpha * p[i] + (1 - alpha) * r[i];
    const { storage, byteOffset } = hostStorage(tensor, 'syncReference');
    storage.write(r, byteOffset);
  }
}

/** Per pair: the reference log-probs of its chosen and its rejected row. */
export interface PairLogps {
  chosen: Float32Array;
  rejected: Float32Array;
}

/** The log-probs of every pair under `model`, in batches of `batchSize` pairs, in dataset order. */
export function pairLogps(model: CausalLM, pairs: readonly TokenizedPair[], batchSize: number): PairLogps {
  const chosen = new Float32Array(pairs.length);
  const rejected = new Float32Array(pairs.length);
  for (let start = 0; start < pairs.length; start += batchSize) {
    const slice = pairs.slice(start, start + batchSize);
    const batch = collatePreferences(slice);
    const logps = modelLogps(model, batch.tokens, batch.labels, batch.shape);
    chosen.set(logps.subarray(0, slice.length), start);
    rejected.set(logps.subarray(slice.length), start);
  }
  return { chosen, rejected };
}

/** The directory reference log-probs are cached in: FUSEDPO_CACHE, else $XDG_CACHE_HOME/fusedpo, else ~/.cache/fusedpo. */
export function defaultCacheDirectory(): string {
  if (process.env.FUSEDPO_CACHE) return process.env.FUSEDPO_CACHE;
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'fusedpo');
}

/** The cache key: a SHA-256 of the weights, the tokenized pairs and the tokenizer's description. */
export function referenceKey(model: CausalLM, pairs: readonly TokenizedPair[], tokenizer: Tokenizer): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify({ architecture: model.architecture, config: model.config, tokenizer: tokenizer.describe(), vocab: tokenizer.vocabSize }));
  for (const [name, tensor] of model.parameters()) {
    hash.update(name);
    const data = tensor.toArray() as Float32Array;
    hash.update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }
  for (const pair of pairs) hash.update(JSON.stringify([pair.prompt, pair.chosen, pair.rejected]));
  return hash.digest('hex');
}

export interface PrecomputedReference extends PairLogps {
  key: string;
  /** The cache file read or written. */
  file: string;
  /** Read from the cache (true) or computed now (false). */
  cached: boolean;
}

/**
 * The reference log-probs of every pair, from the cache when a file of this key is there, else
 * computed in one pass and written to it (through a temporary file: a reader never sees half).
 */
export function precomputeReference(model: CausalLM, pairs: readonly TokenizedPair[], tokenizer: Tokenizer, batchSize: number,
  cacheDirectory = defaultCacheDirectory()): PrecomputedReference {
  const key = referenceKey(model, pairs, tokenizer);
  const file = path.join(cacheDirectory, 'reference-logps', `${key}.safetensors`);
  if (fs.existsSync(file)) {
    const { tensors, metadata } = readSafetensors(file);
    const chosen = tensors.get('chosen')?.data, rejected = tensors.get('rejected')?.data;
    if (metadata.key === key && chosen?.length === pairs.length && rejected?.length === pairs.length) {
      return { key, file, cached: true, chosen, rejected };
    }
  }
  const logps = pairLogps(model, pairs, batchSize);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  saveSafetensors(file, [['chosen', { shape: [pairs.length], data: logps.chosen }], ['rejected', { shape: [pairs.length], data: logps.rejected }]],
    { key, pairs: String(pairs.length) });
  return { key, file, cached: false, ...logps };
}

/** Accelerated PO's next reference, in log-prob space: `(1 + alpha) * current - alpha * previous`. */
export function extrapolatedReference(current: PairLogps, previous: PairLogps, alpha: number): PairLogps {
  const mix = (a: Float32Array, b: Float32Array) => Float32Array.from(a, (x, i) => (1 + alpha) * x - alpha * b[i]);
  return { chosen: mix(current.chosen, previous.chosen), rejected: mix(current.rejected, previous.rejected) };
}
