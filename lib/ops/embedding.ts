/**
 * Embedding lookup (GPT-2's token and position tables), forward and backward (native/core/
 * embedding.h): the typed-array forms and the Tensor form on one checked path.
 *
 *   idx [count] int32 in [0, vocab)    table, dtable [vocab, channels]    out, dout [count, channels]
 *   out[i,:] = table[idx[i],:]         dtable[idx[i],:] += dout[i,:] (repeated indices in order)
 *
 * The indices are checked here for the message and again by the binding, which copies them
 * before checking, so nothing can change an index between its check and its use.
 */
import { record } from '../autograd';
import { native } from '../native';
import { Tensor, isTensor, newTensor, disposeOnThrow } from '../tensor';
import { expected, readArgs, typedArrayFacts } from '../validate';
import { FAST, checkNoOverlap, dim, f32, gradsFor, i32, implOf, outputArray, shapeError, tensorArgument, type F32Operand, type I32Operand, type Options } from './common';

/** The first index outside [0, vocab), as an error naming its position. */
function checkIndexValues(op: string, name: string, values: Int32Array, count: number, vocab: number): void {
  for (let i = 0; i < count; i++) {
    if (values[i] < 0 || values[i] >= vocab) {
      throw new RangeError(`${op}: expected ${name} in [0, ${vocab}) but received ${values[i]} at position ${i}`);
    }
  }
}

function embeddingForwardKernel(impl: 0 | 1, idx: I32Operand, table: F32Operand, out: F32Operand, count: number, channels: number, vocab: number): void {
  const op = 'embeddingForward';
  const ids = i32(op, 'idx', idx, count);
  const t = f32(op, 'table', table, vocab * channels, ` ([vocab ${vocab}, channels ${channels}])`);
  const o = f32(op, 'out', out, count * channels, ` ([${count} indices, channels ${channels}])`);
  checkNoOverlap(op, [o], [t, ids]);
  native().embeddingForward(impl, ids.buffer, t.buffer, o.buffer, count, channels, vocab);
}

function embeddingBackwardKernel(impl: 0 | 1, idx: I32Operand, dout: F32Operand, dtable: F32Operand, count: number, channels: number, vocab: number): void {
  const op = 'embeddingBackward';
  const ids = i32(op, 'idx', idx, count);
  const g = f32(op, 'dout', dout, count * channels, ` ([${count} indices, channels ${channels}])`);
  const dt = f32(op, 'dtable', dtable, vocab * channels, ` ([vocab ${vocab}, channels ${channels}])`);
  checkNoOverlap(op, [dt], [g, ids]);
  native().embeddingBackward(impl, ids.buffer, g.buffer, dt.buffer, count, channels, vocab);
}

// ---- the typed-array forms -------------------------------------------------------------------

export interface EmbeddingShape extends Options {
  /** `int32`, each in [0, vocab). */
  idx: Int32Array;
  vocab: number;
  channels: number;
}

function checkedIndices(op: string, x: { idx: unknown; vocab: unknown; channels: unknown }): { idx: Int32Array; count: number; vocab: number; channels: number } {
  const vocab = dim('vocab', x.vocab);
  const channels = dim('channels', x.channels);
  const facts = typedArrayFacts(x.idx);
  if (!facts || facts.kind !== 'Int32Array') throw new TypeError(expected('an Int32Array', 'idx', x.idx));
  if (facts.length === 0) throw new RangeError(expected('at least one index', 'idx', x.idx));
  const idx = x.idx as Int32Array;
  checkIndexValues(op, 'idx', idx, facts.length, vocab);
  return { idx, count: facts.length, vocab, channels };
}

/** `out[i,:] = table[idx[i],:]`; table `[vocab, channels]`, out `[idx.length, channels]`. */
export function embeddingForward(args: EmbeddingShape & { table: Float32Array; out?: Float32Array }): Float32Array {
  const x = readArgs('embeddingForward', args, ['idx', 'vocab', 'channels', 'table', 'out', 'implementation'] as const);
  const { idx, count, vocab, channels } = checkedIndices('embeddingForward', x);
  const out = outputArray(x.out, count * channels);
  embeddingForwardKernel(implOf(x.implementation), idx, x.table as Float32Array, out as Float32Array, count, channels, vocab);
  return out as Float32Array;
}

/** `dtable[idx[i],:] += dout[i,:]`, repeated indices added in index order. */
export function embeddingBackward(args: EmbeddingShape & { dout: Float32Array; dtable: Float32Array }): void {
  const x = readArgs('embeddingBackward', args, ['idx', 'vocab', 'channels', 'dout', 'dtable', 'implementation'] as const);
  const { idx, count, vocab, channels } = checkedIndices('embeddingBackward', x);
  embeddingBackwardKernel(implOf(x.implementation), idx, x.dout as Float32Array, x.dtable as Float32Array, count, channels, vocab);
}

// ---- the Tensor form -------------------------------------------------------------------------

/**
 * Rows of `table` [V, C] picked by `indices` (an i32 tensor, or an Int32Array, copied, of shape
 * [length]; values in [0, V)): [...indices.shape, C].
 */
export function embedding(tableValue: Tensor, indices: Tensor | Int32Array): Tensor {
  return disposeOnThrow(() => {
    const table = tensorArgument('embedding', 'table', tableValue);
    if (table.shape.length !== 2) throw shapeError('embedding', 'a table of shape [V, C]', table);
    const [vocab, channels] = table.shape;
    let idx: Tensor;
    let madeIndices = false;
    if (isTensor(indices)) {
      idx = tensorArgument('embedding', 'indices', indices);
      if (idx.dtype !== 'i32') throw shapeError('embedding', 'i32 indices', idx);
    } else {
      const facts = typedArrayFacts(indices);
      if (!facts || facts.kind !== 'Int32Array') throw new TypeError(expected('an i32 Tensor or an Int32Array', 'embedding indices', indices));
      idx = Tensor.from(indices, [facts.length], 'i32');  // a copy: the caller may reuse its array
      madeIndices = true;
    }
    if (idx.size === 0) throw shapeError('embedding', 'at least one index', idx);
    checkIndexValues('embedding', 'indices', idx.toArray() as Int32Array, idx.size, vocab);
    const out = newTensor('embedding', [...idx.shape, channels]);
    embeddingForwardKernel(FAST, idx, table, out, idx.size, channels, vocab);
    return record(out, {
      op: 'embedding',
      inputs: [table],
      saved: [idx],
      owned: madeIndices ? [idx] : [],
      backward: (g) => {
        const [dtable] = gradsFor('embedding', [table]);
        if (dtable) embeddingBackwardKernel(FAST, idx, g, dtable, idx.size, channels, vocab);
        return [dtable];
      },
    });
  });
}
