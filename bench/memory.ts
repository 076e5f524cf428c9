/**
 * One fused call in a fresh process, reporting the peak resident memory above the inputs:
 * `tsx bench/memory.ts fused|reused|inplace PAIRS TOKENS VOCAB`. Run by bench/loss.ts.
 */
import { exampleBatch } from '../lib/example';
import { preferenceLoss, sequenceLogps } from '../lib/index';

const [mode = 'fused', pairs = '4', tokens = '256', vocab = '32000'] = process.argv.slice(2);
const batch = exampleBatch(Number(pairs), Number(tokens), Number(vocab), 1, 2);
const refLogps = sequenceLogps({ logits: batch.logits, shape: batch.shape, labels: batch.labels }).logps;
const out = mode === 'reused' ? new Float32Array(batch.logits.length).fill(0) : undefined;
const args = { loss: 'minordpo' as const, logits: batch.logits, shape: batch.shape, labels: batch.labels, refLogps };
// Resident memory before and after, with the result still alive: what the call added and kept
// (dlogits), plus the high-water mark, in case a transient buffer rose above that.
const before = process.memoryUsage().rss;
const peakBefore = process.resourceUsage().maxRSS * 1024;
const result = preferenceLoss(mode === 'inplace' ? { ...args, inPlace: true } : { ...args, out });
const after = process.memoryUsage().rss;
const peakAfter = process.resourceUsage().maxRSS * 1024;
const transient = peakAfter > peakBefore ? peakAfter - before : 0;
console.log(JSON.stringify({ mode, loss: result.loss, peakAboveInputsBytes: Math.max(0, after - before, transient) }));
