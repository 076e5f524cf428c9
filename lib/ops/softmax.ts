/**
 * Softmax over the last dim, forward and backward (native/core/softmax.h): the typed-array forms
 * and the Tensor form on one checked path.
 *
 *   inp, out, dout, dinp [rows, cols]
 *   out = exp(x - max x) / sum exp(x - max x);  dinp += out (dout - sum_c dout[c] out[c])
 * Backward reads the saved out, not the input.
 */
import { record } from '../autograd';
import { native } from '../native';
import { Tensor, newTensor, disposeOnThrow } from '../tensor';
import { readArgs } from '../validate';
import { FAST, checkNoOverlap, dim, f32, gradsFor, implOf, outputArray, shapeError, tensorArgument, type F32Operand, type Options } from './common';

function softmaxForwardKernel(impl: 0 | 1, inp: F32Operand, out: F32Operand, rows: number, cols: number): void {
  const why = ` ([rows ${rows}, cols ${cols}])`;
  const x = f32('softmaxForward', 'inp', inp, rows * cols, why);
  const y = f32('softmaxForward', 'out', out, rows * cols, why);
  checkNoOverlap('softmaxForward', [y], [x]);
  native().softmaxForward(impl, x.buffer, y.buffer, rows, cols);
}

function softmaxBackwardKernel(impl: 0 | 1, out: F32Operand, dout: F32Operand, dinp: F32Operand, rows: number, cols: number): void {
  const why = ` ([rows ${rows}, cols ${cols}])`;
  const y = f32('softmaxBackward', 'out', out, rows * cols, why);
  const g = f32('softmaxBackward', 'dout', dout, rows * cols, why);
  const dx = f32('softmaxBackward', 'dinp', dinp, rows * cols, why);
  checkNoOverlap('softmaxBackward', [dx], [y, g]);
  native().softmaxBackward(impl, y.buffer, g.buffer, dx.buffer, rows, cols);
}

/** Softmax over the last dim: inp, out `[rows, cols]`. */
export function softmaxForward(args: { inp: Float32Array; rows: number; cols: number; out?: Float32Array } & Options): Float32Array {
  const x = readArgs('softmaxForward', args, ['inp', 'rows', 'cols', 'out', 'implementation'] as const);
  const rows = dim('rows', x.rows);
  const cols = dim('cols', x.cols);
  const out = outputArray(x.out, rows * cols) as Float32Array;
  softmaxForwardKernel(implOf(x.implementation), x.inp as Float32Array, out, rows, cols);
  return out;
}

/** `dinp += out * (dout - sum(dout * out))`, from the forward's output. */
export function softmaxBackward(
  args: { out: Float32Array; dout: Float32Array; dinp: Float32Array; rows: number; cols: number } & Options,
): void {
  const x = readArgs('softmaxBackward', args, ['out', 'dout', 'dinp', 'rows', 'cols', 'implementation'] as const);
  const rows = dim('rows', x.rows);
  const cols = dim('cols', x.cols);
  softmaxBackwardKernel(implOf(x.implementation), x.out as Float32Array, x.dout as Float32Array, x.dinp as Float32Array, rows, cols);
}

/** Softmax over the last dim. */
export function softmax(xValue: Tensor): Tensor {
  return disposeOnThrow(() => {
    const x = tensorArgument('softmax', 'x', xValue);
    const cols = x.shape[x.shape.length - 1];
    if (x.shape.length < 1 || cols === 0 || x.size === 0) throw shapeError('softmax', 'a tensor with a non-empty last dim', x);
    const rows = x.size / cols;
    const out = newTensor('softmax', x.shape);
    softmaxForwardKernel(FAST, x, out, rows, cols);
    return record(out, {
      op: 'softmax',
      inputs: [x],
      saved: [out],
      backward: (g) => {
        const [dx] = gradsFor('softmax', [x]);
        if (dx) softmaxBackwardKernel(FAST, out, g, dx, rows, cols);
        return [dx];
      },
    });
  });
}
