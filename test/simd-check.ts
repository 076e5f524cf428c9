/**
 * Run in a child process by simd.test.ts with FUSEDPO_SIMD set (it is read once per process):
 * the fast path at that level against the scalar reference, every dtype, odd shapes, extreme
 * logits and a few losses. Prints one JSON line; exits 1 with the first mismatches on failure.
 */
import { preferenceLoss, sequenceLogps, type LogitsDType, type LossName } from '../lib/index';
import { native } from '../lib/native';
import { decoded, makeBatch, UNIT } from './batch';

const failures: string[] = [];
let compared = 0;
for (const dtype of ['f32', 'bf16', 'f16'] as LogitsDType[]) {
  for (const [pairs, tokens, vocab, scale] of [[1, 3, 1, 3], [1, 47, 2, 3], [2, 5, 15, 3], [2, 5, 16, 3], [2, 5, 17, 3], [1, 4, 123, 1e4], [1, 2, 4097, 5], [1, 2, 50257, 3]]) {
    const batch = makeBatch({ pairs, tokens, vocab, dtype, scale: dtype === 'f16' ? Math.min(scale, 6e4) : scale, seed: vocab + tokens });
    const refLogps = sequenceLogps({ logits: batch.logits, dtype, shape: batch.shape, labels: batch.labels, implementation: 'reference' }).logps.map((p, s) => p + Math.cos(s));
    for (const loss of ['dpo', 'minordpo', 'ipo'] as LossName[]) {
      const args = { loss, dtype, logits: batch.logits, shape: batch.shape, labels: batch.labels, refLogps };
      const fast = preferenceLoss(args);
      const reference = preferenceLoss({ ...args, implementation: 'reference' });
      const where = `${loss} ${dtype} [${batch.shape}] scale ${scale}`;
      const a = decoded(fast.dlogits!, dtype);
      const b = decoded(reference.dlogits!, dtype);
      const maxGrad = b.reduce((m, g) => Math.max(m, Math.abs(g)), 0);
      for (let i = 0; i < a.length; i++) {
        compared++;
        const tolerance = Math.abs(b[i]) * 2 * UNIT[dtype] + maxGrad * 2 ** -20 + (dtype === 'f16' ? 2 ** -24 : 0);
        if (!(Math.abs(a[i] - b[i]) <= tolerance) && failures.length < 8) failures.push(`${where}: dlogits[${i}] fast ${a[i]} reference ${b[i]}`);
      }
      for (let s = 0; s < fast.logps.length; s++) {
        const tolerance = 1e-6 * (1 + Math.abs(reference.logps[s])) * batch.shape[1];
        if (!(Math.abs(fast.logps[s] - reference.logps[s]) <= tolerance) && failures.length < 8) failures.push(`${where}: logps[${s}] fast ${fast.logps[s]} reference ${reference.logps[s]}`);
      }
      if (!(Math.abs(fast.loss - reference.loss) <= 1e-5 * (1 + Math.abs(reference.loss))) && failures.length < 8) failures.push(`${where}: loss fast ${fast.loss} reference ${reference.loss}`);
    }
  }
}
console.log(JSON.stringify({ simd: native().info().simd, compared, failures }));
process.exitCode = failures.length ? 1 : 0;
