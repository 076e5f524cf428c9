/**
 * Test batches: random logits in any dtype, labels with prompt masks and empty rows, and the
 * comparison helpers that print the first mismatches.
 */
import * as assert from 'uvu/assert';

import { mulberry32 } from '../lib/example';
import type { LogitsDType } from '../lib/losses';
import { decodeLogits, numberToBf16, numberToF16 } from './fp64';

export interface TestBatch {
  dtype: LogitsDType;
  shape: [number, number, number];
  logits: Float32Array | Uint16Array;
  z: Float64Array; // the logits as stored, decoded exactly
  labels: Int32Array;
}

export interface BatchSpec {
  pairs: number;
  tokens: number;
  vocab: number;
  dtype?: LogitsDType;
  seed?: number;
  /** Logits uniform in [-scale, scale). */
  scale?: number;
  /** Mask the first floor(T * promptFraction) tokens of every row. */
  promptFraction?: number;
  /** Rows whose every token is masked. */
  emptyRows?: number[];
}

export function encode(values: ArrayLike<number>, dtype: LogitsDType): Float32Array | Uint16Array {
  if (dtype === 'f32') return Float32Array.from(values);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = dtype === 'bf16' ? numberToBf16(values[i]) : numberToF16(values[i]);
  return out;
}

export function makeBatch(spec: BatchSpec): TestBatch {
  const { pairs, tokens, vocab, dtype = 'f32', seed = 7, scale = 3, promptFraction = 0.25, emptyRows = [] } = spec;
  const rows = 2 * pairs;
  const random = mulberry32(seed);
  const raw = new Float64Array(rows * tokens * vocab);
  for (let i = 0; i < raw.length; i++) raw[i] = (random() * 2 - 1) * scale;
  const logits = encode(raw, dtype);
  const labels = new Int32Array(rows * tokens);
  const prompt = Math.floor(tokens * promptFraction);
  for (let s = 0; s < rows; s++) {
    for (let t = 0; t < tokens; t++) {
      const masked = t < prompt || emptyRows.includes(s);
      labels[s * tokens + t] = masked ? -100 : Math.floor(random() * vocab);
    }
  }
  return { dtype, shape: [rows, tokens, vocab], logits, labels, z: decodeLogits(logits, dtype) };
}

/**
 * Asserts |actual - expected| <= tolerance(i) everywhere; on failure, prints the first mismatches
 * with their indices, not just "false".
 */
export function assertClose(
  what: string,
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tolerance: (i: number) => number,
): void {
  assert.is(actual.length, expected.length, `${what}: length`);
  const bad: string[] = [];
  let count = 0;
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const e = expected[i];
    const diff = Math.abs(a - e);
    const ok = Number.isNaN(e) ? Number.isNaN(a) : a === e || diff <= tolerance(i);  // a === e: equal infinities
    if (!ok) {
      count++;
      if (bad.length < 8) bad.push(`  [${i}] got ${a}, expected ${e} (diff ${diff.toExponential(3)}, tolerance ${tolerance(i).toExponential(3)})`);
    }
    if (Number.isFinite(diff)) worst = Math.max(worst, diff);
  }
  if (count > 0) {
    assert.unreachable(`${what}: ${count} of ${expected.length} values off (largest difference ${worst.toExponential(3)}); first ones:\n${bad.join('\n')}`);
  }
}

/** Storage values decoded to numbers, for comparisons. */
export function decoded(values: Float32Array | Uint16Array, dtype: LogitsDType): Float64Array {
  return decodeLogits(values, dtype);
}

/** The relative rounding unit of each storage dtype. */
export const UNIT: Record<LogitsDType, number> = { f32: 2 ** -24, bf16: 2 ** -8, f16: 2 ** -11 };

/**
 * Asserts two arrays hold the same values (NaN equal to NaN), printing the first differences:
 * uvu's own diff of arrays of 10^5 elements takes minutes.
 */
export function assertSameValues(what: string, actual: ArrayLike<number>, expected: ArrayLike<number>): void {
  assertClose(what, actual, expected, () => 0);
}
