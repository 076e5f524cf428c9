/**
 * matmul against a float64 product computed here in TypeScript (written from the contract in
 * lib/ops/matmul.ts, not from the C++), for test/matmul.test.ts and its per-SIMD-level child
 * processes (test/matmul-child.ts).
 *
 * Tolerance: an fp32 sum of K products, in any order and with or without fused multiply-adds,
 * is within (K + 1) u sum_p |a_ip b_pj| of the exact value (u = 2^-24, Higham, "Accuracy and
 * Stability of Numerical Algorithms", 3.1); one more rounding for adding the old C.
 */
import { mulberry32 } from '../lib/example';
import { matmul, type MatmulArgs } from '../lib/ops/matmul';
import { assertClose } from './batch';

/** Uniform in [-1, 1), rounded to f32. */
export function randomArray(length: number, seed: number): Float32Array {
  const random = mulberry32(seed);
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = random() * 2 - 1;
  return out;
}

export interface Expected {
  /** Every element of the c array: the exact product where a matrix of C lies, c0 elsewhere. */
  value: Float64Array;
  /** |c0| + sum_p |a_ip b_pj| at each element, for the tolerance. */
  magnitude: Float64Array;
}

/** The product in float64, with the same defaults as matmul (contiguous strides, batch 1). */
export function product64(args: MatmulArgs, c0: Float32Array): Expected {
  const { a, b, m, n, k, batch = 1, transA = false, transB = false, accumulate = false } = args;
  const strideA = args.strideA ?? m * k;
  const strideB = args.strideB ?? k * n;
  const strideC = args.strideC ?? m * n;
  const value = Float64Array.from(c0);
  const magnitude = new Float64Array(c0.length);
  for (let s = 0; s < batch; s++) {
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        const at = s * strideC + i * n + j;
        let sum = accumulate ? c0[at] : 0;
        let size = accumulate ? Math.abs(c0[at]) : 0;
        for (let p = 0; p < k; p++) {
          const x = transA ? a[s * strideA + p * m + i] : a[s * strideA + i * k + p];
          const y = transB ? b[s * strideB + j * k + p] : b[s * strideB + p * n + j];
          sum += x * y;
          size += Math.abs(x * y);
        }
        value[at] = sum;
        magnitude[at] = size;
      }
    }
  }
  return { value, magnitude };
}

function describeArgs(args: MatmulArgs): string {
  const { m, n, k, batch = 1, transA = false, transB = false, accumulate = false } = args;
  const flags = [transA && 'transA', transB && 'transB', accumulate && 'accumulate'].filter(Boolean).join(' ');
  const strides = ['strideA', 'strideB', 'strideC'].filter((s) => (args as unknown as Record<string, unknown>)[s] !== undefined)
    .map((s) => `${s} ${(args as unknown as Record<string, number>)[s]}`).join(' ');
  return `batch ${batch} m ${m} n ${n} k ${k}${flags ? ' ' + flags : ''}${strides ? ' ' + strides : ''}`;
}

/**
 * Runs args with both implementations on copies of args.c and checks both against float64 and
 * the fast one against the reference (within the sum of their bounds). Returns the fast result.
 */
export function checkMatmul(args: MatmulArgs): Float32Array {
  const where = describeArgs(args);
  const expected = product64(args, args.c);
  const fast = matmul({ ...args, c: args.c.slice(), implementation: 'fast' });
  const reference = matmul({ ...args, c: args.c.slice(), implementation: 'reference' });
  const unit = 2 ** -24;
  const tolerance = (i: number) => (args.k + 2) * unit * expected.magnitude[i];
  assertClose(`${where}: fast vs float64`, fast, expected.value, tolerance);
  assertClose(`${where}: reference vs float64`, reference, expected.value, tolerance);
  assertClose(`${where}: fast vs reference`, fast, reference, (i) => 2 * tolerance(i));
  return fast;
}

/** Shapes [m, n, k] that cover single elements, tile edges on every side and K past one block. */
export const ODD_SHAPES: ReadonlyArray<readonly [number, number, number]> = [
  [1, 1, 1], [1, 7, 3], [17, 33, 65], [255, 257, 129], [13, 29, 1], [40, 1, 300], [1, 70, 41], [25, 48, 600],
];

export const TRANSPOSES = [
  [false, false], [false, true], [true, false], [true, true],
] as const;

/** Every transpose combination on every odd shape, batch 1. */
export function checkOddShapes(seed: number): number {
  let count = 0;
  for (const [m, n, k] of ODD_SHAPES) {
    for (const [transA, transB] of TRANSPOSES) {
      const a = randomArray(m * k, seed + count);
      const b = randomArray(k * n, seed + count + 1000);
      checkMatmul({ a, b, c: new Float32Array(m * n), m, n, k, transA, transB });
      count++;
    }
  }
  return count;
}
