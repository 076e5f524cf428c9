/**
 * Run by test/matmul.test.ts in a child process per FUSEDPO_SIMD level (the level is fixed at a
 * process's first kernel call): every transpose combination on the odd shapes against float64
 * and the reference, and the same bits for 1, 2 and 3 threads. Prints one line of JSON.
 */
import { native, setThreads } from '../lib/native';
import { matmul } from '../lib/ops/matmul';
import { checkOddShapes, randomArray } from './matmul64';

const checked = checkOddShapes(41);

const [m, n, k] = [77, 100, 300];
const a = randomArray(m * k, 1);
const b = randomArray(n * k, 2);
const bits = [1, 2, 3].map((threads) => {
  setThreads(threads);
  return Buffer.from(matmul({ a, b, c: new Float32Array(m * n), m, n, k, transB: true }).buffer);
});
const sameBits = bits.every((x) => x.equals(bits[0]));

process.stdout.write(JSON.stringify({ simd: native().info().simd, checked, sameBits }) + '\n');
