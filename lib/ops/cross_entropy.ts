/**
 * Mean cross-entropy of logits against labels, through the fused log-softmax-gather kernels of
 * the preference loss (native/core/preference_loss.h): no probability tensor is ever made.
 *
 *   logits [..., T, V] (or [N, V]), f32 or bf16     labels: one per row of V, ignoreIndex not counted
 *   loss = -(sum of counted log-softmax at the label) / count
 *   dlogits = -(onehot - softmax) / count, times the upstream gradient
 *
 * The labels are copied when the forward pass runs: the backward pass uses what the forward
 * pass saw, whatever the caller does with its array meanwhile.
 */
import { record } from '../autograd';
import { runLoss } from '../losses';
import { native } from '../native';
import { Tensor, hostStorage, isTensor, newTensor, sizeOf, disposeOnThrow } from '../tensor';
import { checkInteger, expected, typedArrayFacts } from '../validate';
import { FAST, shapeError, tensorArgument } from './common';

export function crossEntropy(logitsValue: Tensor, labelsValue: Int32Array | Tensor, ignoreIndexValue = -100): Tensor {
  return disposeOnThrow(() => {
    const logits = tensorArgument('crossEntropy', 'logits', logitsValue);
    if (logits.shape.length < 2 || logits.size === 0) throw shapeError('crossEntropy', 'logits of shape [..., V] with elements', logits);
    if (logits.dtype !== 'f32' && logits.dtype !== 'bf16') throw shapeError('crossEntropy', 'f32 or bf16 logits', logits);
    const ignoreIndex = checkInteger('ignoreIndex', ignoreIndexValue, -2147483648, 2147483647);
    const vocab = logits.shape[logits.shape.length - 1];
    const rows = logits.shape.length === 2 ? 1 : sizeOf(logits.shape.slice(0, -2));
    const tokens = logits.size / vocab / rows;
    let labels: Int32Array;
    if (isTensor(labelsValue)) {
      if (labelsValue.dtype !== 'i32' || labelsValue.size !== rows * tokens) {
        throw new TypeError(expected(`an i32 tensor of ${rows * tokens} labels`, 'crossEntropy labels', labelsValue));
      }
      labels = labelsValue.toArray() as Int32Array;
    } else {
      const facts = typedArrayFacts(labelsValue);
      if (!facts || facts.kind !== 'Int32Array' || facts.length !== rows * tokens) {
        throw new TypeError(expected(`an Int32Array of ${rows * tokens} labels`, 'crossEntropy labels', labelsValue));
      }
      labels = Int32Array.prototype.slice.call(labelsValue);  // the forward pass's own copy
    }
    const bad = labels.findIndex((y) => (y < 0 || y >= vocab) && y !== ignoreIndex);
    if (bad >= 0) throw new RangeError(`crossEntropy: expected labels in [0, ${vocab}) or ${ignoreIndex} but received ${labels[bad]} at position ${bad}`);
    const source = hostStorage(logits, 'crossEntropy');
    const dtype = logits.dtype === 'f32' ? 0 : 1;
    const result = runLoss({
      impl: FAST, dtype, rows, tokens, vocab, labels, ignoreIndex,
      logits: source.storage, logitsByteOffset: source.byteOffset,
      allowNonFinite: false, withLoss: false, returnLse: true,
    }, 'crossEntropy');
    if (result.nonFinite) {
      const { row, token, vocab: v } = result.nonFinite;
      throw new RangeError(`crossEntropy: expected finite logits but found a non-finite one at row ${row}, token ${token}, vocabulary index ${v}`);
    }
    let logpSum = 0;
    let count = 0;
    result.logps!.forEach((p, s) => {
      logpSum += p;
      count += result.tokenCounts![s];
    });
    const lse = result.lse!;
    const out = Tensor.from([count > 0 ? -logpSum / count : 0], []);
    return record(out, {
      op: 'crossEntropy',
      inputs: [logits],
      saved: [logits],
      backward: (g) => {
        const dlogits = newTensor('crossEntropy backward', logits.shape, logits.dtype);
        const input = hostStorage(logits, 'crossEntropy backward');
        const output = hostStorage(dlogits, 'crossEntropy backward');
        native().preferenceLossBackward({
          impl: FAST, dtype, rows, tokens, vocab, ignoreIndex, labels, lse,
          coef: new Float32Array(rows).fill(count > 0 ? -g.item() / count : 0),
          logits: input.storage, logitsByteOffset: input.byteOffset,
          dlogits: output.storage, dlogitsByteOffset: output.byteOffset,
        });
        return [dlogits];
      },
    });
  });
}
