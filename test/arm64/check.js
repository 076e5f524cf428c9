// The linux-arm64 prebuild's correctness check, run by test/arm64/run.sh with an arm64 Node under
// qemu-user (emulated: speeds mean nothing here). It loads the package's dist/ with the arm64
// addon (FUSEDPO_ADDON), reads doctor's report, and checks sequenceLogps and the fused loss
// (dpo, minordpo, in f32 and bf16, forward and backward) against float64 values computed here
// from the formulas of docs/losses.md. Prints one line per check; exits 1 on any mismatch.
'use strict';
const path = require('node:path');
const f = require(path.join(__dirname, '..', '..', 'dist', 'index.js'));

let failures = 0;
function check(what, ok, detail) {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}${ok ? '' : `: ${detail}`}`);
  if (!ok) failures += 1;
}

const report = f.doctorReport();
check('doctor: the arm64 addon is the one loaded', report.binary && report.binary.path === process.env.FUSEDPO_ADDON, JSON.stringify(report.binary));
check(`doctor: arch ${process.arch}, simd ${report.cpu ? report.cpu.simd : '?'}`, process.arch === 'arm64' && report.cpu && report.cpu.simd === 'generic', JSON.stringify(report.cpu));

// A seeded batch: 2 pairs x 5 tokens x V = 37, a prompt token masked per row, one empty row.
const [P, T, V] = [2, 5, 37];
const rows = 2 * P;
let state = 7;
const random = () => ((state = (state * 1103515245 + 12345) >>> 0) / 2 ** 32);
const z = Float32Array.from({ length: rows * T * V }, () => (random() - 0.5) * 8);
const labels = Int32Array.from({ length: rows * T }, (_, i) => (i % T === 0 || Math.floor(i / T) === 3 ? -100 : Math.floor(random() * V)));
const refLogps = Float32Array.from({ length: rows }, () => -10 - random() * 10);

function bf16(x) {
  const u = new Uint32Array(new Float32Array([x]).buffer)[0];
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}
const fromBf16 = (b) => new Float32Array(new Uint32Array([b << 16]).buffer)[0];

/** lse, lp sums per row in float64. */
function sequences(values) {
  const pi = new Float64Array(rows), lse = new Float64Array(rows * T), counts = new Int32Array(rows);
  for (let s = 0; s < rows; s++) {
    for (let t = 0; t < T; t++) {
      const k = s * T + t;
      if (labels[k] === -100) continue;
      let m = -Infinity;
      for (let v = 0; v < V; v++) m = Math.max(m, values[k * V + v]);
      let sum = 0;
      for (let v = 0; v < V; v++) sum += Math.exp(values[k * V + v] - m);
      lse[k] = m + Math.log(sum);
      pi[s] += values[k * V + labels[k]] - lse[k];
      counts[s] += 1;
    }
  }
  return { pi, lse, counts };
}
const ls = (x) => Math.min(x, 0) - Math.log1p(Math.exp(-Math.abs(x)));
const sig = (x) => 1 / (1 + Math.exp(-x));

for (const dtype of ['f32', 'bf16']) {
  const bits = dtype === 'f32' ? z : Uint16Array.from(z, bf16);
  const values = dtype === 'f32' ? Float64Array.from(z) : Float64Array.from(bits, fromBf16);
  const exact = sequences(values);
  const seq = f.sequenceLogps({ logits: bits, dtype, shape: [rows, T, V], labels });
  const piError = Math.max(...Array.from(seq.logps, (x, s) => Math.abs(x - exact.pi[s])));
  check(`${dtype}: sequenceLogps against float64 (max error ${piError.toExponential(2)})`, piError < 1e-4, piError);
  check(`${dtype}: token counts and the empty row`, seq.tokenCounts.join() === Array.from(exact.counts).join() && seq.emptyRows.join() === '3', seq.tokenCounts.join());
  for (const loss of ['dpo', 'minordpo']) {
    const b = 0.1;
    const pw = Array.from({ length: P }, (_, i) => Math.fround(exact.pi[i])), pl = Array.from({ length: P }, (_, i) => Math.fround(exact.pi[P + i]));
    let total = 0;
    const coef = new Float64Array(rows);
    for (let i = 0; i < P; i++) {
      const uw = pw[i] - refLogps[i], ul = pl[i] - refLogps[P + i];
      const x = loss === 'dpo' ? b * (uw - ul) : b * (uw - Math.max(0, ul));
      total += -ls(x);
      const g = -b * sig(-x) / P;
      if (exact.counts[i] > 0) coef[i] = g;
      if (exact.counts[P + i] > 0 && (loss === 'dpo' || ul >= 0)) coef[P + i] = -g;
    }
    const want = total / P;
    const r = f.preferenceLoss({ loss, beta: b, logits: bits, dtype, shape: [rows, T, V], labels, refLogps });
    check(`${dtype} ${loss}: loss ${r.loss.toFixed(6)} against float64 ${want.toFixed(6)}`, Math.abs(r.loss - want) < 1e-5, r.loss);
    let gradError = 0, scale = 0;
    const dl = dtype === 'f32' ? r.dlogits : Float64Array.from(r.dlogits, fromBf16);
    for (let s = 0; s < rows; s++) {
      for (let t = 0; t < T; t++) {
        const k = s * T + t;
        for (let v = 0; v < V; v++) {
          const expected = labels[k] === -100 ? 0 : coef[s] * ((v === labels[k] ? 1 : 0) - Math.exp(values[k * V + v] - exact.lse[k]));
          gradError = Math.max(gradError, Math.abs(dl[k * V + v] - expected));
          scale = Math.max(scale, Math.abs(expected));
        }
      }
    }
    const tolerance = (dtype === 'f32' ? 1e-5 : 1e-2) * scale + 1e-9;
    check(`${dtype} ${loss}: dlogits against float64 (max error ${gradError.toExponential(2)}, scale ${scale.toExponential(2)})`, gradError <= tolerance, gradError);
  }
}
// A small GPT step: the tensor engine runs too.
const model = new f.GPT({ layers: 1, width: 16, heads: 2, context: 8, vocab: 32 }, { seed: 1 });
const loss = f.withScope(() => {
  const l = f.F.crossEntropy(model.forward(new Int32Array(16).fill(3), [2, 8]), new Int32Array(16).fill(4));
  l.backward();
  return l.item();
});
check(`GPT forward and backward: cross-entropy ${loss.toFixed(4)} near ln 32 = ${Math.log(32).toFixed(4)}`, Math.abs(loss - Math.log(32)) < 0.5, loss);
model.dispose();
console.log(failures === 0 ? 'arm64 check: ok' : `arm64 check: ${failures} failed`);
process.exit(failures === 0 ? 0 : 1);
