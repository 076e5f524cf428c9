// Run by test/workers.test.ts under `ulimit -v`: allocations that cannot be had are RangeErrors
// naming the operation and the bytes, never an abort. Prints one line of JSON: name -> message.
'use strict';
const path = require('node:path');
const f = require(path.join(__dirname, '..', '..', 'dist', 'index.js'));

const [P, T, V] = [4, 256, 4000];
const args = { logits: new Float32Array(2 * P * T * V), shape: [2 * P, T, V], labels: new Int32Array(2 * P * T), refLogps: new Float32Array(2 * P) };
const cases = {
  tensor: () => f.Tensor.zeros([2 ** 31]),
  op: () => {
    const t = f.Tensor.zeros([2 ** 26]);
    const outs = [];
    for (;;) outs.push(f.F.gelu(t));
  },
  toArray: () => {
    const t = f.Tensor.zeros([2 ** 26]);
    const copies = [];
    for (;;) copies.push(t.toArray());
  },
  dlogits: () => {
    const kept = [];
    for (;;) kept.push(f.preferenceLoss(args).dlogits);
  },
};
const out = {};
for (const [name, run] of Object.entries(cases)) {
  try {
    run();
    out[name] = 'no error';
  } catch (error) {
    out[name] = `${error.name}: ${error.message}`;
  }
  f.hostEmptyCache();
  if (global.gc) global.gc();
}
process.stdout.write(JSON.stringify(out) + '\n');
