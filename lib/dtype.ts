/**
 * Conversions between Float32Array and the 16-bit storage of bf16 and f16 logits (their bit
 * patterns in a Uint16Array), rounding to nearest even, as the kernels do.
 *
 * The f32 side takes a Float32Array, or any array of numbers (a plain array, a Float64Array:
 * each value is rounded to f32 first, as a Float32Array would store it); the 16-bit side takes a
 * Uint16Array or an array of integers in [0, 65535]. Anything else is a TypeError.
 */
import { describe, isDetached, typedArrayFacts } from './validate';

/** The values as f32 bits (a copy, or a view of a Float32Array). */
function f32Bits(name: string, values: unknown): Uint32Array {
  const facts = typedArrayFacts(values);
  if (facts && isDetached(facts)) throw new TypeError(`${name}: expected a live typed array but its ArrayBuffer is detached (transferred or freed)`);
  if (facts?.kind === 'Float32Array') {
    const array = values as Float32Array;
    return new Uint32Array(array.buffer, array.byteOffset, facts.length);
  }
  if (!(facts && facts.kind !== 'BigInt64Array' && facts.kind !== 'BigUint64Array') && !Array.isArray(values)) {
    throw new TypeError(`${name}: expected a Float32Array or an array of numbers but received ${describe(values)}`);
  }
  // Element by element, each checked as it is read: a sparse array stops at its first hole.
  const source = values as ArrayLike<unknown>;
  const length = facts ? facts.length : source.length;
  for (let i = 0; i < length; i++) {
    const x = source[i];
    if (typeof x !== 'number') throw new TypeError(`${name}: expected numbers but received ${describe(x)} at position ${i}`);
  }
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = source[i] as number;
  return new Uint32Array(out.buffer);
}

/** The 16-bit patterns, as a Uint16Array (a view, or a checked copy of an array of integers). */
function sixteenBits(name: string, bits: unknown): Uint16Array {
  const facts = typedArrayFacts(bits);
  if (facts && isDetached(facts)) throw new TypeError(`${name}: expected a live Uint16Array but its ArrayBuffer is detached (transferred or freed)`);
  if (facts?.kind === 'Uint16Array') return bits as Uint16Array;
  if (!Array.isArray(bits)) throw new TypeError(`${name}: expected a Uint16Array of 16-bit patterns but received ${describe(bits)}`);
  const length = bits.length;
  for (let i = 0; i < length; i++) {  // checked before anything is allocated: a hole stops it at once
    const x: unknown = bits[i];
    if (!(typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= 0xffff)) {
      throw new RangeError(`${name}: expected 16-bit patterns (integers in [0, 65535]) but received ${describe(x)} at position ${i}`);
    }
  }
  return Uint16Array.from(bits as number[]);
}

/** f32 -> bf16 bits, round to nearest even; NaN stays NaN. */
export function toBf16(values: Float32Array | ArrayLike<number>): Uint16Array {
  const bits = f32Bits('toBf16', values);
  const out = new Uint16Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i];
    const isNaN = (b & 0x7fffffff) > 0x7f800000;
    out[i] = isNaN ? (b >>> 16) | 0x40 : (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** bf16 bits -> f32 (exact). */
export function fromBf16(bitsValue: Uint16Array | ArrayLike<number>): Float32Array {
  const bits = sixteenBits('fromBf16', bitsValue);
  const wide = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) wide[i] = bits[i] << 16;
  return new Float32Array(wide.buffer);
}

/** f32 -> f16 bits, round to nearest even, overflow to infinity, subnormals kept. */
export function toF16(values: Float32Array | ArrayLike<number>): Uint16Array {
  const bits = f32Bits('toF16', values);
  const out = new Uint16Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i];
    const sign = (b >>> 16) & 0x8000;
    const exponent = (b >>> 23) & 0xff;
    const mantissa = b & 0x7fffff;
    if (exponent === 0xff) {
      out[i] = sign | 0x7c00 | (mantissa ? 0x200 : 0);
      continue;
    }
    const e = exponent - 127 + 15;
    if (e >= 0x1f) {
      out[i] = sign | 0x7c00;
    } else if (e <= 0) {
      // subnormal (or zero) in f16: shift the full significand, round to nearest even
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      const significand = mantissa | 0x800000;
      const shift = 14 - e;
      const half = 1 << (shift - 1);
      const rest = significand & ((1 << shift) - 1);
      let r = significand >>> shift;
      if (rest > half || (rest === half && (r & 1) === 1)) r += 1;
      out[i] = sign | r;
    } else {
      let r = (e << 10) | (mantissa >>> 13);
      const rest = mantissa & 0x1fff;
      if (rest > 0x1000 || (rest === 0x1000 && (r & 1) === 1)) r += 1; // may carry into the exponent: still right
      out[i] = sign | r;
    }
  }
  return out;
}

/** f16 bits -> f32 (exact). */
export function fromF16(bitsValue: Uint16Array | ArrayLike<number>): Float32Array {
  const bits = sixteenBits('fromF16', bitsValue);
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i];
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >> 10) & 0x1f;
    const fraction = h & 0x3ff;
    out[i] =
      exponent === 0x1f ? (fraction ? NaN : sign * Infinity)
        : exponent === 0 ? sign * fraction * 2 ** -24
          : sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
  }
  return out;
}
