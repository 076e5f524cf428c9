/**
 * sum and mean over the last dim or over all elements, forward and backward (native/core/
 * elementwise.h), fp64 accumulation: the typed-array forms and the Tensor forms on one path.
 *
 *   out[r] = sum_c a[r,c] (mean: / cols)        da[r,c] += dout[r] (mean: dout[r] / cols)
 */
import { record } from '../autograd';
import { native } from '../native';
import { Tensor, checkShape, newTensor, sizeOf, disposeOnThrow } from '../tensor';
import { checkOneOf, readArgs } from '../validate';
import { FAST, checkNoOverlap, f32, gradsFor, implOf, outputArray, shapeError, tensorArgument, type F32Operand, type Options } from './common';

export type Reduction = 'sum' | 'mean';

function reduceForwardKernel(reduction: Reduction, impl: 0 | 1, a: F32Operand, out: F32Operand, rows: number, cols: number): void {
  const op = `${reduction}Forward`;
  const x = f32(op, 'a', a, rows * cols, ` ([${rows}, ${cols}])`);
  const y = f32(op, 'out', out, rows, ` ([${rows}])`);
  checkNoOverlap(op, [y], [x]);
  native()[reduction === 'sum' ? 'sumForward' : 'meanForward'](impl, x.buffer, y.buffer, rows, cols);
}

function reduceBackwardKernel(reduction: Reduction, impl: 0 | 1, dout: F32Operand, da: F32Operand, rows: number, cols: number): void {
  const op = `${reduction}Backward`;
  const g = f32(op, 'dout', dout, rows, ` ([${rows}])`);
  const dx = f32(op, 'da', da, rows * cols, ` ([${rows}, ${cols}])`);
  checkNoOverlap(op, [dx], [g]);
  native()[reduction === 'sum' ? 'sumBackward' : 'meanBackward'](impl, g.buffer, dx.buffer, rows, cols);
}

// ---- the typed-array forms -------------------------------------------------------------------

export interface ReduceArgs extends Options {
  a: Float32Array;
  shape: readonly number[];
  /** `all`: one number (out of length 1); `last`: over the last dim (out of shape[:-1]). */
  over: 'all' | 'last';
  out?: Float32Array;
}

function rowsCols(shapeValue: unknown, overValue: unknown): { rows: number; cols: number } {
  const shape = checkShape(shapeValue);
  const over = checkOneOf('over', overValue, ['all', 'last'] as const);
  if (shape.length === 0 || sizeOf(shape) === 0) throw new RangeError(`Expected a shape with at least one element for shape but received [${shape}]`);
  const cols = over === 'all' ? sizeOf(shape) : shape[shape.length - 1];
  return { rows: sizeOf(shape) / cols, cols };
}

/** Sum or mean of all elements or of the last dim; fp64 accumulation. */
export function reduceForward(reduction: Reduction, args: ReduceArgs): Float32Array {
  checkOneOf('reduction', reduction, ['sum', 'mean'] as const);
  const x = readArgs(`${reduction}Forward`, args, ['a', 'shape', 'over', 'out', 'implementation'] as const);
  const { rows, cols } = rowsCols(x.shape, x.over);
  const out = outputArray(x.out, rows);
  reduceForwardKernel(reduction, implOf(x.implementation), x.a as Float32Array, out as Float32Array, rows, cols);
  return out as Float32Array;
}

/** `da += dout` broadcast back over the reduced elements (`/ count` for the mean). */
export function reduceBackward(
  reduction: Reduction,
  args: Omit<ReduceArgs, 'a' | 'out'> & { dout: Float32Array; da: Float32Array },
): void {
  checkOneOf('reduction', reduction, ['sum', 'mean'] as const);
  const x = readArgs(`${reduction}Backward`, args, ['shape', 'over', 'dout', 'da', 'implementation'] as const);
  const { rows, cols } = rowsCols(x.shape, x.over);
  reduceBackwardKernel(reduction, implOf(x.implementation), x.dout as Float32Array, x.da as Float32Array, rows, cols);
}

// ---- the Tensor forms ------------------------------------------------------------------------

function reduceAll(reduction: Reduction, aValue: Tensor): Tensor {
  return disposeOnThrow(() => {
    const a = tensorArgument(reduction, 'a', aValue);
    if (a.size === 0) throw shapeError(reduction, 'a tensor with elements', a);
    const out = newTensor(reduction, []);
    reduceForwardKernel(reduction, FAST, a, out, 1, a.size);
    return record(out, {
      op: reduction,
      inputs: [a],
      saved: [],
      backward: (g) => {
        const [da] = gradsFor(reduction, [a]);
        if (da) reduceBackwardKernel(reduction, FAST, g, da, 1, a.size);
        return [da];
      },
    });
  });
}

/** The sum of all elements (a one-element tensor). */
export function sum(a: Tensor): Tensor {
  return reduceAll('sum', a);
}

/** The mean of all elements (a one-element tensor). */
export function mean(a: Tensor): Tensor {
  return reduceAll('mean', a);
}
