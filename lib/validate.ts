/**
 * Argument checks, run in TypeScript before any native call. Every message has the shape
 * `Expected <what> for <name> but received <what came>`.
 *
 * Hostile values are expected: an `args` object whose getters answer differently on each read,
 * a typed array whose `length` or `buffer` was redefined on the instance, an object posing as a
 * typed array through its prototype, a Proxy. So:
 * - `readArgs` reads every argument exactly once into a plain snapshot, and the snapshot is what
 *   is checked and used (sharp's habit: read the options once, validate that);
 * - typed arrays are inspected through the intrinsic %TypedArray% getters, which read V8's own
 *   fields, never through properties a caller can redefine;
 * - arrays (shapes) are copied once (`readArray`) before they are checked.
 * The native side checks again what each kernel touches (native/napi/buffers.h): these checks
 * give the clear message, the native ones the guarantee.
 */

const typedArrayPrototype = Object.getPrototypeOf(Uint8Array.prototype) as object;

function intrinsicGetter(owner: object, name: PropertyKey): (this: unknown) => unknown {
  const getter = Object.getOwnPropertyDescriptor(owner, name)?.get;
  if (!getter) throw new Error(`fusedpo: this JavaScript engine has no ${String(name)} getter`);
  return getter as (this: unknown) => unknown;
}

const typedArrayTag = intrinsicGetter(typedArrayPrototype, Symbol.toStringTag);
const typedArrayLength = intrinsicGetter(typedArrayPrototype, 'length');
const typedArrayBuffer = intrinsicGetter(typedArrayPrototype, 'buffer');
const typedArrayByteOffset = intrinsicGetter(typedArrayPrototype, 'byteOffset');
const typedArrayByteLength = intrinsicGetter(typedArrayPrototype, 'byteLength');
const arrayBufferResizable = Object.getOwnPropertyDescriptor(ArrayBuffer.prototype, 'resizable')?.get;
const arrayBufferDetached = Object.getOwnPropertyDescriptor(ArrayBuffer.prototype, 'detached')?.get;
const arrayBufferByteLength = intrinsicGetter(ArrayBuffer.prototype, 'byteLength');
// Throws for anything but a SharedArrayBuffer: how a shared buffer is told from an ArrayBuffer.
const sharedArrayBufferByteLength = typeof SharedArrayBuffer === 'function'
  ? intrinsicGetter(SharedArrayBuffer.prototype, 'byteLength') : null;

/** What a typed array really is, read from V8's fields (not from its own properties). */
export interface TypedArrayFacts {
  /** `Float32Array`, `Int32Array`, ... */
  kind: string;
  length: number;
  byteOffset: number;
  byteLength: number;
  buffer: ArrayBufferLike;
  /** Its buffer is a SharedArrayBuffer. */
  shared: boolean;
}

/** The facts of a typed array, or null when `value` is not one (a Proxy of one is not one). */
export function typedArrayFacts(value: unknown): TypedArrayFacts | null {
  const kind = typedArrayTag.call(value);
  if (typeof kind !== 'string') return null;
  const buffer = typedArrayBuffer.call(value) as ArrayBufferLike;
  let shared = false;
  if (sharedArrayBufferByteLength) {
    try {
      sharedArrayBufferByteLength.call(buffer);
      shared = true;
    } catch {
      shared = false;  // an ArrayBuffer: the SharedArrayBuffer getter refuses it
    }
  }
  return {
    kind,
    length: typedArrayLength.call(value) as number,
    byteOffset: typedArrayByteOffset.call(value) as number,
    byteLength: typedArrayByteLength.call(value) as number,
    buffer,
    shared,
  };
}

/** Whether a typed array's (non-shared) ArrayBuffer can be resized (resizable ArrayBuffers). */
export function isResizable(facts: TypedArrayFacts): boolean {
  return !facts.shared && !!arrayBufferResizable && arrayBufferResizable.call(facts.buffer) === true;
}

/** A short description of a received value for error messages: `-1 of type number`. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  const facts = typedArrayFacts(value);
  if (facts) return `${facts.kind} of length ${facts.length}${facts.shared ? ' (shared)' : ''}`;
  if (ArrayBuffer.isView(value)) return `DataView of ${(value as DataView).byteLength} bytes`;
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (typeof value === 'string') return `'${value.length > 40 ? value.slice(0, 40) + '...' : value}' of type string`;
  if (typeof value === 'number') return `${Object.is(value, -0) ? '-0' : String(value)} of type number`;
  if (typeof value === 'bigint') return `${value}n of type bigint`;
  if (typeof value === 'symbol') return `a symbol`;
  if (typeof value === 'function') return `a function`;
  if (typeof value === 'object') {
    const tag = Object.prototype.toString.call(value).slice(8, -1);
    if (tag === 'Object' && isTensorLike(value)) return safeString(value);
    return `an object of type ${tag}`;
  }
  return `${String(value)} of type ${typeof value}`;
}

function isTensorLike(value: object): boolean {
  try {
    return (value as { constructor?: { name?: unknown } }).constructor?.name === 'Tensor';
  } catch {
    return false;
  }
}

function safeString(value: object): string {
  try {
    return String(value);
  } catch {
    return 'a Tensor';
  }
}

export function expected(what: string, name: string, value: unknown): string {
  return `Expected ${what} for ${name} but received ${describe(value)}`;
}

/**
 * Reads the arguments of `op` once each: a plain snapshot of `keys`, the one place that touches
 * the caller's object. An own enumerable key that is not among `keys` is an error (a misspelled
 * or unsupported argument is never silently ignored).
 */
export function readArgs<K extends string>(op: string, args: unknown, keys: readonly K[]): { [P in K]: unknown } {
  if (typeof args !== 'object' || args === null || Array.isArray(args) || typedArrayFacts(args)) {
    throw new TypeError(`${expected('an object of arguments', 'args', args)} (calling ${op})`);
  }
  for (const key of Object.keys(args)) {
    if (!(keys as readonly string[]).includes(key)) {
      throw new TypeError(`Expected only the arguments ${keys.join(', ')} for ${op} but received '${key}', which it does not take`);
    }
  }
  const snapshot = Object.create(null) as { [P in K]: unknown };
  for (const key of keys) snapshot[key] = (args as Record<string, unknown>)[key];
  return snapshot;
}

/**
 * A copy of an array, each element read once (a shape, a list of parameters), or null when
 * `value` is not an array. Its length is read once and checked first: a sparse array of 2^32 - 1
 * holes is refused at once instead of copied element by element.
 */
export function readArray(value: unknown, maxLength = 1024, name = 'the array'): unknown[] | null {
  if (!Array.isArray(value)) return null;
  const length = value.length;
  if (length > maxLength) throw new RangeError(`Expected at most ${maxLength} elements for ${name} but received an array of length ${length}`);
  const copy: unknown[] = [];
  for (let i = 0; i < length; i++) copy.push(value[i]);
  return copy;
}

export function checkNumber(
  name: string,
  value: unknown,
  range: { min?: number; max?: number; minExclusive?: boolean; maxExclusive?: boolean } = {},
): number {
  if (typeof value !== 'number') throw new TypeError(expected('a number', name, value));
  const { min, max, minExclusive = false, maxExclusive = false } = range;
  const lowOk = min === undefined || (minExclusive ? value > min : value >= min);
  const highOk = max === undefined || (maxExclusive ? value < max : value <= max);
  if (!Number.isFinite(value) || !lowOk || !highOk) {
    const low = min === undefined ? '' : `${minExclusive ? '>' : '>='} ${min}`;
    const high = max === undefined ? '' : `${maxExclusive ? '<' : '<='} ${max}`;
    const bounds = [low, high].filter((s) => s !== '').join(' and ');
    throw new RangeError(expected(`a finite number${bounds ? ' ' + bounds : ''}`, name, value));
  }
  return value;
}

export function checkInteger(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number') throw new TypeError(expected('an integer', name, value));
  if (!Number.isInteger(value) || value < min || value > max) {
    // no upper bound worth naming: say what the lower one means rather than print 2^53 - 1
    const what = max !== Number.MAX_SAFE_INTEGER ? `an integer between ${min} and ${max}`
      : min === 1 ? 'a positive integer' : min === 0 ? 'a non-negative integer' : `an integer >= ${min}`;
    throw new RangeError(expected(what, name, value));
  }
  return value;
}

export function checkBoolean(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new TypeError(expected('a boolean', name, value));
  return value;
}

export function checkOneOf<T extends string>(name: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new TypeError(expected(`one of ${allowed.map((a) => `'${a}'`).join(', ')}`, name, value));
  }
  return value as T;
}

type TypedArrayKind = Float32Array | Uint16Array | Int32Array;
type TypedArrayConstructor = { new (length: number): TypedArrayKind; name: string };

/**
 * A typed array of the given kind and length (as V8 knows them), whose buffer is not detached.
 * Typed arrays over a SharedArrayBuffer are accepted: the kernels read them while they run, so
 * another thread must not write them meanwhile (the labels and references are copied first).
 */
export function checkTypedArray<C extends TypedArrayConstructor>(
  name: string,
  value: unknown,
  kind: C,
  length: number,
  why = '',
): InstanceType<C> {
  const facts = typedArrayFacts(value);
  if (!facts || facts.kind !== kind.name) {
    throw new TypeError(expected(`a ${kind.name}${why}`, name, value));
  }
  if (facts.length !== length) {
    if (isDetached(facts)) {
      throw new TypeError(
        `Expected a live ${kind.name} for ${name} but its ArrayBuffer is detached (transferred or freed)`,
      );
    }
    throw new RangeError(expected(`a ${kind.name} of length ${length}${why}`, name, value));
  }
  return value as InstanceType<C>;
}

/** Whether a typed array's buffer was detached (transferred or freed). */
export function isDetached(facts: TypedArrayFacts): boolean {
  if (facts.shared) return false;  // a SharedArrayBuffer cannot be detached
  if (arrayBufferDetached) return arrayBufferDetached.call(facts.buffer) === true;
  // Before ArrayBuffer.prototype.detached: a detached buffer reports zero bytes.
  return facts.byteLength === 0 && facts.byteOffset === 0 && arrayBufferByteLength.call(facts.buffer) === 0;
}

/** Whether two typed arrays share any byte of one buffer (read from V8's fields). */
export function overlaps(x: TypedArrayFacts, y: TypedArrayFacts): boolean {
  return x.buffer === y.buffer && x.byteOffset < y.byteOffset + y.byteLength && y.byteOffset < x.byteOffset + x.byteLength;
}
