/**
 * Sampling from a causal language model with its key-value cache (the model's `decoder()`): each
 * new token costs one forward of one position (every layer's linears and MLP on one row;
 * attention against the cached keys and values of the positions before it), not a forward of the
 * whole prefix again. The prompt fills the cache position by position the same way.
 *
 * Greedy when temperature is 0; otherwise logits / temperature, top-k, then top-p (nucleus), drawn
 * with a seeded generator (mulberry32): the same tokens for the same seed on every machine.
 */
import { noGrad } from '../autograd';
import { mulberry32 } from '../example';
import { withScope } from '../tensor';
import { checkInteger, checkNumber, describe, readArgs } from '../validate';
import type { CausalLM } from './causal_lm';

export interface GenerateOptions {
  /** Tokens to add at most (default 32); generation also ends when prompt + new tokens reach the model's context + 1. */
  maxNewTokens?: number;
  /** 0: greedy (default 1). */
  temperature?: number;
  /** Sample among the k most likely tokens (default: all). */
  topK?: number;
  /** Sample among the most likely tokens whose probabilities sum to p (default 1: all). */
  topP?: number;
  /** The seed of the draws (default 0). */
  seed?: number;
  /** Token ids that end generation (the one drawn is kept). */
  stop?: readonly number[];
  /** false: every token re-runs the whole prefix (no cache): for tests against the cached path. */
  cache?: boolean;
}

/** The logits of the next token after `prefix`, from a forward of the whole prefix (no cache). */
function uncachedLogits(model: CausalLM, prefix: number[]): Float32Array {
  return noGrad(() => withScope(() => {
    const logits = model.forward(Int32Array.from(prefix), [1, prefix.length]).toArray() as Float32Array;
    const V = model.config.vocab;
    return logits.slice((prefix.length - 1) * V, prefix.length * V);
  }));
}

/** The next token from logits: greedy at temperature 0, else a seeded draw after top-k and top-p. */
function choose(logits: Float32Array, temperature: number, topK: number, topP: number, random: () => number): number {
  if (temperature === 0) {
    let best = 0;
    for (let v = 1; v < logits.length; v++) if (logits[v] > logits[best]) best = v;
    return best;
  }
  const order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b).slice(0, topK);
  const max = logits[order[0]];
  const weights = order.map((v) => Math.exp((logits[v] - max) / temperature));
  const total = weights.reduce((a, b) => a + b, 0);
  let kept = 0, mass = 0;
  while (kept < order.length && (kept === 0 || mass < topP)) mass += weights[kept++] / total;
  let draw = random() * mass;
  for (let k = 0; k < kept; k++) {
    draw -= weights[k] / total;
    if (draw <= 0) return order[k];
  }
  return order[kept - 1];
}

/** Generates tokens after `prompt` (token ids); returns the new tokens only. */
export function generate(model: CausalLM, prompt: readonly number[] | Int32Array, optionsValue: GenerateOptions = {}): number[] {
  const o = readArgs('generate', optionsValue, ['maxNewTokens', 'temperature', 'topK', 'topP', 'seed', 'stop', 'cache'] as const) as GenerateOptions;
  const { context, vocab } = model.config;
  const tokens = Array.from(prompt as ArrayLike<number>);
  if (tokens.length === 0 || tokens.length > context) throw new RangeError(`generate: expected a prompt of 1 to ${context} tokens but received ${tokens.length}`);
  const bad = tokens.findIndex((id) => !Number.isInteger(id) || id < 0 || id >= vocab);
  if (bad >= 0) throw new RangeError(`generate: expected prompt token ids in [0, ${vocab}) but received ${describe(tokens[bad])} at position ${bad}`);
  const maxNewTokens = checkInteger('maxNewTokens', o.maxNewTokens ?? 32, 0, Number.MAX_SAFE_INTEGER);
  const temperature = checkNumber('temperature', o.temperature ?? 1, { min: 0 });
  const topK = checkInteger('topK', o.topK ?? vocab, 1, Number.MAX_SAFE_INTEGER);
  const topP = checkNumber('topP', o.topP ?? 1, { min: 0, minExclusive: true, max: 1 });
  const random = mulberry32(checkInteger('seed', o.seed ?? 0, 0, 2 ** 32 - 1));
  const stop = new Set(o.stop ?? []);
  const cached = o.cache ?? true;
  const cache = cached ? model.decoder() : null;
  let logits: Float32Array = new Float32Array(0);
  if (cache) for (const token of tokens) logits = cache.step(token);
  const out: number[] = [];
  // The last position of a full context still predicts one token: the sequence may reach context + 1.
  while (out.length < maxNewTokens) {
    if (!cache) logits = uncachedLogits(model, tokens);
    const next = choose(logits, temperature, topK, topP, random);
    out.push(next);
    tokens.push(next);
    if (stop.has(next) || tokens.length > context) break;
    if (cache && out.length < maxNewTokens) logits = cache.step(next);
  }
  return out;
}
