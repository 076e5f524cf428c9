// Run by test/workers.test.ts in a child process: fusedpo in worker threads that are terminated,
// or exit, in the middle of its calls (sync, async, on tensors), and in several workers at once.
// Prints one line of JSON: each worker's exit code. A crash ends this process instead.
'use strict';
const path = require('node:path');
const { Worker, isMainThread, workerData, parentPort } = require('node:worker_threads');

const fusedpo = path.join(__dirname, '..', '..', 'dist', 'index.js');

if (isMainThread) {
  const run = (job) => new Promise((resolve) => {
    const worker = new Worker(__filename, { workerData: job });
    worker.on('error', (error) => resolve(`error: ${error.message}`));
    worker.on('message', (message) => {
      if (message === 'started' && job.terminateAfterMs !== undefined) setTimeout(() => worker.terminate(), job.terminateAfterMs);
    });
    worker.on('exit', (code) => resolve(code));
  });
  (async () => {
    const codes = {};
    for (const mode of ['sync', 'async', 'tensorAsync', 'training']) {
      codes[mode] = [];
      for (let k = 0; k < 4; k++) codes[mode].push(await run({ mode, terminateAfterMs: 5 + 15 * k }));
    }
    codes.exit = await Promise.all([0, 1, 2].map(() => run({ mode: 'exitDuringAsync' })));
    codes.parallel = await Promise.all([0, 1, 2, 3].map((seed) => run({ mode: 'parallel', seed })));
    process.stdout.write(JSON.stringify(codes) + '\n');
  })();
} else {
  const f = require(fusedpo);
  const [P, T, V] = [4, 64, 4000];
  const logits = new Float32Array(2 * P * T * V).map((_, i) => Math.sin(i));
  const labels = new Int32Array(2 * P * T).map((_, i) => (i * 7) % V);
  const args = { loss: 'minordpo', logits, shape: [2 * P, T, V], labels, refLogps: new Float32Array(2 * P).fill(-3e4) };
  const train = (steps) => {
    const model = new f.GPT({ layers: 1, width: 16, heads: 2, context: 8, vocab: 32 }, { seed: 1 });
    const optimizer = new f.AdamW(model);
    for (let s = 0; s < steps; s++) {
      f.withScope(() => {
        f.F.crossEntropy(model.forward(new Int32Array(16).fill(3), [2, 8]), new Int32Array(16).fill(4)).backward();
        optimizer.step();
        optimizer.zeroGrad();
      });
    }
    return model;
  };
  parentPort.postMessage('started');
  const { mode } = workerData;
  if (mode === 'sync') for (;;) f.preferenceLoss(args);
  if (mode === 'async') (async () => { for (;;) await Promise.all([1, 2, 3, 4].map(() => f.preferenceLossAsync(args))); })();
  if (mode === 'tensorAsync') {
    (async () => {
      for (;;) {
        const t = f.Tensor.from(logits, args.shape);
        const pending = f.preferenceLossAsync({ logits: t, labels, refLogps: args.refLogps });
        t.dispose();
        (await pending).dlogits.dispose();
      }
    })();
  }
  if (mode === 'training') for (;;) train(1000).dispose();
  if (mode === 'exitDuringAsync') {
    for (let k = 0; k < 4; k++) f.preferenceLossAsync(args);
    setTimeout(() => process.exit(3), 2);
  }
  if (mode === 'parallel') {
    const expected = f.preferenceLoss(args).loss;
    train(30).dispose();
    Promise.all([1, 2, 3].map(() => f.preferenceLossAsync(args))).then((results) => {
      process.exit(results.every((r) => r.loss === expected) ? 0 : 5);
    });
  }
}
