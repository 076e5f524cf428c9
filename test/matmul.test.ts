/**
 * matmul (lib/ops/matmul.ts): the fast path and the scalar reference against a float64 product
 * (test/matmul64.ts) over every transpose combination, odd shapes, batches with broadcast and
 * gapped strides, accumulation and K = 0; the same bits for any thread count and on every run;
 * every SIMD level in a child process; and the argument checks.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { native, setThreads, SIMD_LEVELS } from '../lib/native';
import { matmul, type MatmulArgs } from '../lib/ops/matmul';
import { checkMatmul, checkOddShapes, randomArray, TRANSPOSES } from './matmul64';

test('every transpose combination on odd shapes: 1x1x1, 1x7x3, 17x33x65, 255x257x129, K = 1, N = 1, M = 1', () => {
  checkOddShapes(7);
});

test('a GPT linear layer: forward x @ W^T, backward dY @ W and dY^T @ X', () => {
  const [tokens, width, out] = [96, 64, 192];
  const x = randomArray(tokens * width, 1);
  const w = randomArray(out * width, 2);
  const dy = randomArray(tokens * out, 3);
  checkMatmul({ a: x, b: w, c: new Float32Array(tokens * out), m: tokens, n: out, k: width, transB: true });
  checkMatmul({ a: dy, b: w, c: new Float32Array(tokens * width), m: tokens, n: width, k: out });
  checkMatmul({ a: dy, b: x, c: randomArray(out * width, 4), m: out, n: width, k: tokens, transA: true, accumulate: true });
});

test('batches: contiguous, a broadcast A or B (stride 0), gaps between the C matrices', () => {
  const [batch, m, n, k] = [5, 9, 20, 33];
  for (const [transA, transB] of TRANSPOSES) {
    const a = randomArray(batch * m * k, 11);
    const b = randomArray(batch * k * n, 12);
    checkMatmul({ a, b, c: new Float32Array(batch * m * n), m, n, k, batch, transA, transB });
    checkMatmul({ a: a.subarray(0, m * k), b, c: new Float32Array(batch * m * n), m, n, k, batch, transA, transB, strideA: 0 });
    checkMatmul({ a, b: b.subarray(0, k * n), c: new Float32Array(batch * m * n), m, n, k, batch, transA, transB, strideB: 0 });
    // C matrices 7 elements apart beyond their size: the gaps must keep their values.
    const strideC = m * n + 7;
    const c = randomArray((batch - 1) * strideC + m * n, 13);
    checkMatmul({ a, b, c, m, n, k, batch, transA, transB, strideC });
    checkMatmul({ a, b, c, m, n, k, batch, transA, transB, strideC, accumulate: true });
  }
  // Many small products (split over threads a whole matrix at a time), as attention's heads are.
  const heads = 16;
  const q = randomArray(heads * 32 * 8, 14);
  const kT = randomArray(heads * 32 * 8, 15);
  checkMatmul({ a: q, b: kT, c: new Float32Array(heads * 32 * 32), m: 32, n: 32, k: 8, batch: heads, transB: true });
});

test('accumulate adds to C; K = 0 gives zeros, or leaves C as it was when accumulating', () => {
  for (const [transA, transB] of TRANSPOSES) {
    const [m, n, k] = [31, 45, 290];
    checkMatmul({ a: randomArray(m * k, 21), b: randomArray(k * n, 22), c: randomArray(m * n, 23), m, n, k, transA, transB, accumulate: true });
  }
  const c0 = randomArray(12, 24);
  for (const implementation of ['fast', 'reference'] as const) {
    const empty = new Float32Array(0);
    assert.equal(Array.from(matmul({ a: empty, b: empty, c: c0.slice(), m: 3, n: 4, k: 0, implementation })), new Array(12).fill(0));
    assert.equal(matmul({ a: empty, b: empty, c: c0.slice(), m: 3, n: 4, k: 0, accumulate: true, implementation }), c0);
    assert.is(matmul({ a: empty, b: empty, c: empty, m: 0, n: 0, k: 5, implementation }).length, 0);
  }
});

test('the same bits for 1, 2 and 3 threads and on every run (one matrix split by rows, or a batch split by matrix)', () => {
  const cases: MatmulArgs[] = [
    { a: randomArray(255 * 600, 31), b: randomArray(600 * 257, 32), c: new Float32Array(255 * 257), m: 255, n: 257, k: 600 },
    { a: randomArray(600 * 130, 33), b: randomArray(70 * 600, 34), c: new Float32Array(130 * 70), m: 130, n: 70, k: 600, transA: true, transB: true },
    { a: randomArray(6 * 40 * 24, 35), b: randomArray(6 * 24 * 50, 36), c: new Float32Array(6 * 40 * 50), m: 40, n: 50, k: 24, batch: 6 },
    { a: randomArray(3 * 40 * 24, 37), b: randomArray(24 * 50, 38), c: new Float32Array(3 * 40 * 50), m: 40, n: 50, k: 24, batch: 3, strideB: 0 },
  ];
  try {
    for (const args of cases) {
      const runs = [1, 2, 3, 2, 1].map((threads) => {
        setThreads(threads);
        return Buffer.from(matmul({ ...args, c: args.c.slice() }).buffer);
      });
      runs.forEach((bits, r) => assert.ok(bits.equals(runs[0]), `m ${args.m} n ${args.n} k ${args.k} batch ${args.batch ?? 1}: run ${r} differs from the first`));
    }
  } finally {
    setThreads(2);
  }
});

test('every SIMD level, each in a child process: odd shapes against float64 and the same bits for any thread count', () => {
  const detected = native().info().simd;
  const child = path.join(__dirname, 'matmul-child.ts');
  for (const level of SIMD_LEVELS) {
    const result = spawnSync(process.execPath, ['-r', 'tsx/cjs', child], {
      cwd: path.resolve(__dirname, '..'),
      encoding: 'utf8',
      env: { ...process.env, FUSEDPO_SIMD: level, FUSEDPO_THREADS: '2' },
    });
    assert.is(result.status, 0, `FUSEDPO_SIMD=${level}:\n${result.stdout}${result.stderr}`);
    const report = JSON.parse(result.stdout.trim().split('\n').pop()!);
    // A level this CPU lacks is capped to the best it has (the parent runs at that one).
    const expectedLevel = SIMD_LEVELS.indexOf(level) < SIMD_LEVELS.indexOf(detected as (typeof SIMD_LEVELS)[number]) ? detected : level;
    assert.is(report.simd, expectedLevel, `FUSEDPO_SIMD=${level}`);
    assert.ok(report.checked > 0 && report.sameBits, `FUSEDPO_SIMD=${level}: ${result.stdout}`);
  }
});

test('bad arguments are refused before the native call, naming the argument', () => {
  const [m, n, k] = [2, 3, 4];
  const good = (): MatmulArgs => ({ a: new Float32Array(m * k), b: new Float32Array(k * n), c: new Float32Array(m * n), m, n, k });
  const refused = (patch: Record<string, unknown>, message: string | RegExp, kind: typeof TypeError | typeof RangeError = RangeError) => {
    assert.throws(() => matmul({ ...good(), ...patch } as MatmulArgs), (error: Error) => {
      assert.instance(error, kind);
      assert.match(error.message, message);
      return true;
    });
  };
  refused({ a: new Float32Array(7) }, 'Expected a Float32Array of length 8 (batch 1 of [m, k] = [2, 4], strideA 8) for a but received Float32Array of length 7');
  refused({ b: new Float32Array(13) }, 'for b but received Float32Array of length 13');
  refused({ c: new Float32Array(5) }, 'for c but received Float32Array of length 5');
  refused({ transA: true, a: new Float32Array(9) }, '[k, m] = [4, 2]');
  refused({ c: new Float64Array(6) }, 'Expected a Float32Array (batch 1 of [m, n] = [2, 3], strideC 6) for c but received Float64Array of length 6', TypeError);
  refused({ m: 1.5 }, 'Expected an integer between 0 and 2147483647 for m but received 1.5 of type number');
  refused({ k: -1 }, 'for k but received -1 of type number');
  refused({ n: '3' }, "Expected an integer for n but received '3' of type string", TypeError);
  refused({ batch: NaN }, 'for batch but received NaN');
  refused({ strideA: 2.5 }, 'for strideA but received 2.5');
  refused({ transB: 1 }, 'Expected a boolean for transB but received 1 of type number', TypeError);
  refused({ accumulate: 'yes' }, 'for accumulate', TypeError);
  refused({ implementation: 'blas' }, "Expected one of 'fast', 'reference' for implementation", TypeError);
  refused({ batch: 2, a: new Float32Array(16), b: new Float32Array(24), c: new Float32Array(12), strideC: 5 }, 'Expected an integer >= m*n = 6 (the output matrices must not overlap) for strideC but received 5');
  const shared = new Float32Array(14);
  refused({ a: shared.subarray(0, 8), c: shared.subarray(4, 10) }, 'Expected c to share no memory with a but they overlap', TypeError);
  matmul({ ...good(), a: shared.subarray(0, 8), c: shared.subarray(8) }); // side by side in one buffer is fine
  assert.throws(() => matmul(null as unknown as MatmulArgs), /Expected an object of arguments for args but received null/);
});

test.run();
