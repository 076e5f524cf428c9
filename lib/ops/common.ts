/**
 * What every op file of lib/ops shares: its operands. An op has one checked path to its native
 * kernel, whichever form called it: the typed-array form (`geluForward({ inp, out })`, for tests
 * and callers who manage their own arrays) and the Tensor form (`gelu(x)`, with autograd) both
 * hand their operands to the same kernel function, which checks each against the element count
 * the kernel will touch and checks that outputs share no memory with inputs:
 *
 * - a Float32Array / Int32Array operand must hold exactly that many elements (as V8 knows them);
 * - a Tensor operand must be a live cpu tensor of that dtype and size, at offset 0 of its storage.
 *
 * The binding checks all of it again (native/napi/nn_bindings.cpp).
 */
import { tracksGrad } from '../autograd';
import { Tensor, hostStorage, isTensor, newTensor } from '../tensor';
import type { NativeStorage } from '../native';
import { checkInteger, checkOneOf, describe, expected, overlaps, typedArrayFacts, type TypedArrayFacts } from '../validate';

export type Implementation = 'fast' | 'reference';

export interface Options {
  /** `reference` runs the plain scalar spec instead of the fast kernels (for tests). */
  implementation?: Implementation;
}

/** The largest size of one dimension. */
export const MAX_DIM = 2 ** 31 - 1;

/** The fast path's code, for the Tensor forms. */
export const FAST = 1;

export function implOf(implementation: unknown): 0 | 1 {
  return checkOneOf('implementation', implementation ?? 'fast', ['fast', 'reference'] as const) === 'reference' ? 0 : 1;
}

export function dim(name: string, value: unknown): number {
  return checkInteger(name, value, 1, MAX_DIM);
}

export type F32Operand = Float32Array | Tensor;
export type I32Operand = Int32Array | Tensor;

/** An operand as the kernel gets it, with what the overlap check needs. */
export interface Operand<T> {
  name: string;
  buffer: T | NativeStorage;
  facts: TypedArrayFacts | null;
  tensor: Tensor | null;
}

function operand<T extends Float32Array | Int32Array>(op: string, name: string, value: unknown, count: number, kind: 'Float32Array' | 'Int32Array',
  dtype: 'f32' | 'i32', why: string): Operand<T> {
  if (isTensor(value)) {
    const view = hostStorage(value, op);
    if (value.dtype !== dtype || value.size !== count) {
      throw new TypeError(`${op}: expected a ${dtype} tensor of ${count} elements${why} for ${name} but received ${value}`);
    }
    if (view.byteOffset !== 0) throw new Error(`${op}: tensors at an offset in their storage are not supported (${name})`);
    return { name, buffer: view.storage, facts: null, tensor: value };
  }
  const facts = typedArrayFacts(value);
  if (!facts || facts.kind !== kind) throw new TypeError(expected(`a ${kind}${why}`, name, value));
  if (facts.length !== count) {
    throw new RangeError(expected(`a ${kind} of length ${count}${why}`, name, value) +
      (facts.length === 0 && !facts.shared ? ' (a detached buffer?)' : ''));
  }
  return { name, buffer: value as T, facts, tensor: null };
}

/** A float operand of exactly `count` elements (`why`: the shape it comes from, for messages). */
export function f32(op: string, name: string, value: unknown, count: number, why = ''): Operand<Float32Array> {
  return operand<Float32Array>(op, name, value, count, 'Float32Array', 'f32', why);
}

/** An optional float output: null stays null (that operand needs no gradient). */
export function optionalF32(op: string, name: string, value: unknown, count: number, why = ''): Operand<Float32Array> | null {
  return value === null || value === undefined ? null : f32(op, name, value, count, why);
}

export function i32(op: string, name: string, value: unknown, count: number, why = ''): Operand<Int32Array> {
  return operand<Int32Array>(op, name, value, count, 'Int32Array', 'i32', why);
}

function share(a: Operand<unknown>, b: Operand<unknown>): boolean {
  if (a.facts && b.facts) return overlaps(a.facts, b.facts);
  if (a.tensor && b.tensor) return Tensor.sameStorage(a.tensor, b.tensor);
  return false;  // a typed array never shares memory with native storage
}

/**
 * Every written operand shares no memory with any other operand of the call, except one that is
 * exactly a given input (in place): `inPlace` maps an output's name to that input's name.
 */
export function checkNoOverlap(op: string, written: (Operand<unknown> | null)[], read: (Operand<unknown> | null)[],
  inPlace: Record<string, string> = {}): void {
  const w = written.filter((x): x is Operand<unknown> => x !== null);
  const r = read.filter((x): x is Operand<unknown> => x !== null);
  for (let i = 0; i < w.length; i++) {
    for (const other of [...w.slice(i + 1), ...r]) {
      if (!share(w[i], other)) continue;
      if (inPlace[w[i].name] === other.name && w[i].buffer === other.buffer) continue;
      throw new TypeError(`Expected ${w[i].name} to share no memory with ${other.name} but they overlap (${op})`);
    }
  }
}

/** The length of a Float32Array argument whose length sets the op's size. */
export function floatLength(op: string, name: string, value: unknown): number {
  const facts = typedArrayFacts(value);
  if (!facts || facts.kind !== 'Float32Array') throw new TypeError(expected('a Float32Array', name, value));
  if (facts.length === 0) throw new RangeError(expected('a non-empty Float32Array', name, value) + ` (${op})`);
  return facts.length;
}

/** A given output array, or a new zeroed one. */
export function outputArray(value: unknown, length: number): unknown {
  return value === undefined ? new Float32Array(length) : value;
}

/** A live Tensor argument of an op's Tensor form (a TypeError naming the op otherwise). */
export function tensorArgument(op: string, name: string, value: unknown): Tensor {
  if (!isTensor(value)) throw new TypeError(expected('a Tensor', `${op} ${name}`, value));
  value.assertAlive(op);
  return value;
}

/** Zeroed gradient tensors for the inputs that need one (null for the others). */
export function gradsFor(op: string, inputs: Tensor[]): (Tensor | null)[] {
  return inputs.map((t) => (tracksGrad(t) ? newTensor(`${op} backward`, t.shape) : null));
}

export function shapeError(op: string, what: string, t: Tensor): TypeError {
  return new TypeError(`${op}: expected ${what} but received ${describe(t)}`);
}
