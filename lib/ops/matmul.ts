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
import { record, tracksGrad } from '../autograd';
import { native, type NativeMatmulRequest } from '../native';
import { Tensor, isTensor, newTensor, sizeOf, disposeOnThrow } from '../tensor';
import { checkBoolean, checkInteger, checkOneOf, expected, readArgs } from '../validate';
import { FAST, checkNoOverlap, f32, implOf, shapeError, tensorArgument, type F32Operand } from './common';
import { add } from './elementwise';

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

const MATMUL_KEYS = ['a', 'b', 'c', 'm', 'n', 'k', 'batch', 'transA', 'transB', 'strideA', 'strideB', 'strideC', 'accumulate',
  'implementation'] as const;

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

/**
 * One product as both forms hand it to the kernel: the native request's sizes and strides, with
 * operands (typed arrays or tensors) not yet checked against them.
 */
type Product = Omit<NativeMatmulRequest, 'a' | 'b' | 'c'> & { a: F32Operand; b: F32Operand; c: F32Operand };

function matmulKernel(p: Product): void {
  const { batch, m, n, k, transA, transB, strideA, strideB, strideC } = p;
  if (batch > 1 && strideC < m * n) {
    throw new RangeError(expected(`an integer >= m*n = ${m * n} (the output matrices must not overlap)`, 'strideC', strideC));
  }
  const lengthA = span(batch, strideA, m * k);
  const lengthB = span(batch, strideB, k * n);
  const lengthC = span(batch, strideC, m * n);
  if (!Number.isSafeInteger(lengthA) || !Number.isSafeInteger(lengthB) || !Number.isSafeInteger(lengthC)) {
    throw new RangeError(`Expected sizes and strides whose arrays fit in memory but received batch ${batch}, m ${m}, n ${n}, k ${k}`);
  }
  const storedA = transA ? `[k, m] = [${k}, ${m}]` : `[m, k] = [${m}, ${k}]`;
  const storedB = transB ? `[n, k] = [${n}, ${k}]` : `[k, n] = [${k}, ${n}]`;
  const a = f32('matmul', 'a', p.a, lengthA, ` (batch ${batch} of ${storedA}, strideA ${strideA})`);
  const b = f32('matmul', 'b', p.b, lengthB, ` (batch ${batch} of ${storedB}, strideB ${strideB})`);
  const c = f32('matmul', 'c', p.c, lengthC, ` (batch ${batch} of [m, n] = [${m}, ${n}], strideC ${strideC})`);
  checkNoOverlap('matmul', [c], [a, b]);
  native().matmul({
    impl: p.impl, a: a.buffer, b: b.buffer, c: c.buffer, batch, m, n, k, transA, transB, strideA, strideB, strideC,
    accumulate: p.accumulate,
  });
}

function matmulArrays(args: MatmulArgs): Float32Array {
  const x = readArgs('matmul', args, MATMUL_KEYS);
  const m = checkInteger('m', x.m, 0, MAX_SIZE);
  const n = checkInteger('n', x.n, 0, MAX_SIZE);
  const k = checkInteger('k', x.k, 0, MAX_SIZE);
  const batch = x.batch === undefined ? 1 : checkInteger('batch', x.batch, 0, MAX_SIZE);
  const transA = checkOptionalBoolean('transA', x.transA);
  const transB = checkOptionalBoolean('transB', x.transB);
  const accumulate = checkOptionalBoolean('accumulate', x.accumulate);
  const impl = implOf(checkOneOf('implementation', x.implementation ?? 'fast', ['fast', 'reference'] as const));
  const strideA = checkStride('strideA', x.strideA, m * k);
  const strideB = checkStride('strideB', x.strideB, k * n);
  const strideC = checkStride('strideC', x.strideC, m * n);
  const c = x.c as Float32Array;
  matmulKernel({ impl, a: x.a as Float32Array, b: x.b as Float32Array, c, batch, m, n, k, transA, transB, strideA, strideB, strideC, accumulate });
  return c;
}

/** C = op(A) @ op(B) for each of `batch` matrices, into a new tensor of `shape`. */
function product(p: Omit<Product, 'impl' | 'c' | 'strideA' | 'strideB' | 'strideC' | 'accumulate'> & { a: Tensor; b: Tensor },
  shape: readonly number[]): Tensor {
  const out = newTensor('matmul', shape);
  const sizeA = p.m * p.k;
  const sizeB = p.k * p.n;
  matmulKernel({
    ...p, impl: FAST, c: out,
    strideA: p.a.size === sizeA ? 0 : sizeA, strideB: p.b.size === sizeB ? 0 : sizeB, strideC: p.m * p.n,
    accumulate: false,
  });
  return out;
}

/**
 * The typed-array form: computes `C[b] (+)= op(A[b]) @ op(B[b])` into `args.c` and returns it.
 *
 * The Tensor form (F.matmul): a [..., M, K] @ b, where b is [K, N] (or, with transB, [N, K]: a
 * linear layer's weight) shared over a's leading dims, or a batch [..., K, N] (or [..., N, K])
 * with the same leading dims as a. Returns [..., M, N]. Backward: dA = dC op(B)^T,
 * dB = op(A)^T dC, by the same kernel.
 */
export function matmul(args: MatmulArgs): Float32Array;
export function matmul(a: Tensor, b: Tensor, options?: { transB?: boolean }): Tensor;
export function matmul(first: MatmulArgs | Tensor, second?: Tensor, options: { transB?: boolean } = {}): Float32Array | Tensor {
  if (!isTensor(first)) return matmulArrays(first);
  return disposeOnThrow(() => {
    const a = tensorArgument('matmul', 'a', first);
    const b = tensorArgument('matmul', 'b', second);
    const { transB: transBValue } = readArgs('matmul', options, ['transB'] as const);
    const transB = checkOptionalBoolean('transB', transBValue);
    if (a.shape.length < 2) throw shapeError('matmul', 'a of shape [..., M, K]', a);
    const k = a.shape[a.shape.length - 1];
    const shared = b.shape.length === 2;
    const leading = a.shape.slice(0, -2);
    if (!shared && (b.shape.length !== a.shape.length || leading.some((d, i) => d !== b.shape[i]))) {
      throw new TypeError(`matmul: expected b of shape [K, N] or [${leading}, K, N] but received [${b.shape}] with a of [${a.shape}]`);
    }
    if (b.shape.length < 2) throw shapeError('matmul', 'b of shape [K, N]', b);
    const bk = b.shape[b.shape.length - (transB ? 1 : 2)];
    const n = b.shape[b.shape.length - (transB ? 2 : 1)];
    if (bk !== k) {
      throw new TypeError(`matmul: expected b's K (${transB ? 'last' : 'second to last'} dim) to be ${k} but received [${b.shape}] with a of [${a.shape}]${transB ? ', transB' : ''}`);
    }
    // A shared b lets every row of a's leading dims go through one product of M' = all rows.
    const batch = shared ? 1 : sizeOf(leading);
    const m = shared ? (k === 0 ? sizeOf(a.shape.slice(0, -1)) : a.size / k) : a.shape[a.shape.length - 2];
    const outShape = [...a.shape.slice(0, -1), n];
    const out = product({ a, b, transA: false, transB, batch, m, n, k }, outShape);
    return record(out, {
      op: 'matmul',
      inputs: [a, b],
      saved: [a, b],
      backward: (g) => {
        // dA [M, K] = dC [M, N] @ op(B)^T: B is [K, N] -> transB; B is [N, K] -> as stored.
        const da = tracksGrad(a) ? product({ a: g, b, transA: false, transB: !transB, batch, m, n: k, k: n }, a.shape) : null;
        // dB = op(A)^T dC: [K, N] = A^T [K, M] @ dC [M, N]; with transB, [N, K] = dC^T @ A.
        const db = !tracksGrad(b) ? null : transB
          ? product({ a: g, b: a, transA: true, transB: false, batch, m: n, n: k, k: m }, b.shape)
          : product({ a, b: g, transA: true, transB: false, batch, m: k, n, k: m }, b.shape);
        return [da, db];
      },
    });
  });
}

/** x [..., in] @ weight^T + bias: weight [out, in] (PyTorch's layout), bias [out] or none. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  return disposeOnThrow(() => {
    const w = tensorArgument('linear', 'weight', weight);
    if (w.shape.length !== 2) throw shapeError('linear', 'a weight of shape [out, in]', w);
    const y = matmul(x, w, { transB: true });
    if (bias === undefined || bias === null) return y;
    return add(y, tensorArgument('linear', 'bias', bias));
  });
}
