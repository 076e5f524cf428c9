/**
 * The f32 matrix multiply of the CPU training path (native/core/matmul.h), validated here so
 * that the native side can trust every size, stride and length it receives.
 *
 * `C[b] = op(A[b]) @ op(B[b])`, or `C[b] += ...` with `accumulate`, for `b` in `[0, batch)`:
 * - `op(A[b])` is `[m, k]`: `a` holds `[m, k]` matrices, or `[k, m]` ones with `transA`;
 * - `op(B[b])` is `[k, n]`: `b` holds `[k, n]` matrices, or `[n, k]` ones with `transB`;
 * - `C[b]` is `[m, n]`, all row-major, matrix `b` starting at element `b * stride` of its array
 *   (default strides: the matrices packed one after another; 0 broadcasts one matrix).
 *
 * A linear layer `y = x @ W^T` (W stored `[out, in]`): forward `transB`, `dx = dy @ W` plain,
 * `dW = dy^T @ x` with `transA` (and `accumulate` to sum gradients). `k = 0` gives zeros.
 * The fast path's bits do not depend on the thread count; they may differ from the reference's
 * (and between SIMD levels) in the last bits, as sums in another order do.
 */
import { native, type NativeMatmulRequest } from '../native';
import { checkBoolean, checkInteger, checkOneOf, checkTypedArray, expected } from '../validate';

export interface MatmulArgs {
  /** `batch` matrices `[m, k]` (or `[k, m]` with `transA`), `strideA` elements apart. */
  a: Float32Array;
  /** `batch` matrices `[k, n]` (or `[n, k]` with `transB`), `strideB` elements apart. */
  b: Float32Array;
  /** `batch` matrices `[m, n]`, `strideC` elements apart: the output, written in place. */
  c: Float32Array;
  m: number;
  n: number;
  k: number;
  /** How many products (default 1). */
  batch?: number;
  transA?: boolean;
  transB?: boolean;
  /** Elements between consecutive matrices of `a` (default `m*k`; 0 broadcasts). */
  strideA?: number;
  /** Elements between consecutive matrices of `b` (default `k*n`; 0 broadcasts). */
  strideB?: number;
  /** Elements between consecutive matrices of `c` (default `m*n`; at least `m*n` when batch > 1). */
  strideC?: number;
  /** Add the product to `c` instead of overwriting it (default false). */
  accumulate?: boolean;
  /** `reference` runs the plain triple loop instead of the fast kernels (for tests). */
  implementation?: 'fast' | 'reference';
}

/** Sizes stay below 2^31 each, so that every product of two of them is an exact double. */
const MAX_SIZE = 2147483647;

/** Elements a batch of `batch` matrices of `size` elements, `stride` apart, spans. */
function span(batch: number, stride: number, size: number): number {
  return batch === 0 ? 0 : (batch - 1) * stride + size;
}

function checkOptionalBoolean(name: string, value: unknown): boolean {
  return value === undefined ? false : checkBoolean(name, value);
}

function checkStride(name: string, value: unknown, contiguous: number): number {
  return value === undefined ? contiguous : checkInteger(name, value, 0, Number.MAX_SAFE_INTEGER);
}

/** Whether two views share any byte of the same buffer. */
function overlaps(x: Float32Array, y: Float32Array): boolean {
  if (x.buffer !== y.buffer) return false;
  return x.byteOffset < y.byteOffset + y.byteLength && y.byteOffset < x.byteOffset + x.byteLength;
}

/** Computes `C[b] (+)= op(A[b]) @ op(B[b])` into `args.c` and returns it. */
export function matmul(args: MatmulArgs): Float32Array {
  if (typeof args !== 'object' || args === null) {
    throw new TypeError(expected('an object of arguments', 'args', args));
  }
  const m = checkInteger('m', args.m, 0, MAX_SIZE);
  const n = checkInteger('n', args.n, 0, MAX_SIZE);
  const k = checkInteger('k', args.k, 0, MAX_SIZE);
  const batch = args.batch === undefined ? 1 : checkInteger('batch', args.batch, 0, MAX_SIZE);
  const transA = checkOptionalBoolean('transA', args.transA);
  const transB = checkOptionalBoolean('transB', args.transB);
  const accumulate = checkOptionalBoolean('accumulate', args.accumulate);
  const implementation = checkOneOf('implementation', args.implementation ?? 'fast', ['fast', 'reference'] as const);
  const strideA = checkStride('strideA', args.strideA, m * k);
  const strideB = checkStride('strideB', args.strideB, k * n);
  const strideC = checkStride('strideC', args.strideC, m * n);
  if (batch > 1 && strideC < m * n) {
    throw new RangeError(
      expected(`an integer >= m*n = ${m * n} (the output matrices must not overlap)`, 'strideC', strideC),
    );
  }

  const storedA = transA ? `[k, m] = [${k}, ${m}]` : `[m, k] = [${m}, ${k}]`;
  const storedB = transB ? `[n, k] = [${n}, ${k}]` : `[k, n] = [${k}, ${n}]`;
  const lengthA = span(batch, strideA, m * k);
  const lengthB = span(batch, strideB, k * n);
  const lengthC = span(batch, strideC, m * n);
  if (!Number.isSafeInteger(lengthA) || !Number.isSafeInteger(lengthB) || !Number.isSafeInteger(lengthC)) {
    throw new RangeError(`Expected sizes and strides whose arrays fit in memory but received batch ${batch}, m ${m}, n ${n}, k ${k}`);
  }
  const a = checkTypedArray('a', args.a, Float32Array, lengthA, ` (batch ${batch} of ${storedA}, strideA ${strideA})`);
  const b = checkTypedArray('b', args.b, Float32Array, lengthB, ` (batch ${batch} of ${storedB}, strideB ${strideB})`);
  const c = checkTypedArray('c', args.c, Float32Array, lengthC, ` (batch ${batch} of [m, n] = [${m}, ${n}], strideC ${strideC})`);
  for (const [name, input] of [['a', a], ['b', b]] as const) {
    if (overlaps(c, input)) {
      throw new RangeError(`Expected c to share no memory with ${name} but they overlap in the same ArrayBuffer`);
    }
  }

  const request: NativeMatmulRequest = {
    impl: implementation === 'reference' ? 0 : 1,
    a, b, c, batch, m, n, k, transA, transB, strideA, strideB, strideC, accumulate,
  };
  native().matmul(request);
  return c;
}
