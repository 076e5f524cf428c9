/**
 * Argument checks, run in TypeScript before any native call, so that the C++ side can trust
 * what it receives. Every message has the shape
 * `Expected <what> for <name> but received <what came>`.
 */

/** A short description of a received value for error messages: `-1 of type number`. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (ArrayBuffer.isView(value)) {
    const length = 'length' in value ? (value as { length: number }).length : value.byteLength;
    return `${value.constructor.name} of length ${length}`;
  }
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (typeof value === 'string') return `'${value.length > 40 ? value.slice(0, 40) + '...' : value}' of type string`;
  if (typeof value === 'object' && value.constructor?.name === 'Tensor') return String(value);  // Tensor(shape [..], dtype, device)
  if (typeof value === 'object') return `an object of type ${value.constructor?.name ?? 'Object'}`;
  return `${String(value)} of type ${typeof value}`;
}

export function expected(what: string, name: string, value: unknown): string {
  return `Expected ${what} for ${name} but received ${describe(value)}`;
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
    throw new RangeError(expected(`an integer between ${min} and ${max}`, name, value));
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

/** A typed array of the given kind and length, whose buffer is not detached. */
export function checkTypedArray<C extends TypedArrayConstructor>(
  name: string,
  value: unknown,
  kind: C,
  length: number,
  why = '',
): InstanceType<C> {
  if (!(value instanceof kind)) {
    throw new TypeError(expected(`a ${kind.name}${why}`, name, value));
  }
  if (value.length !== length) {
    if (isDetached(value)) {
      throw new TypeError(
        `Expected a live ${kind.name} for ${name} but its ArrayBuffer is detached (transferred or freed)`,
      );
    }
    throw new RangeError(expected(`a ${kind.name} of length ${length}${why}`, name, value));
  }
  return value as InstanceType<C>;
}

export function isDetached(view: ArrayBufferView): boolean {
  const buffer = view.buffer as ArrayBuffer & { detached?: boolean };
  if (typeof buffer.detached === 'boolean') return buffer.detached;
  // Before ArrayBuffer.prototype.detached: a detached buffer reports zero bytes.
  return buffer.byteLength === 0 && view.byteLength === 0 && view.byteOffset === 0;
}
