/**
 * RMS normalization over the last dim (the Llama family's norms, Qwen 3's per-head q and k norms),
 * forward and backward (native/core/rms_norm.h): the typed-array forms and the Tensor form on one
 * checked path.
 *
 *   inp, out, dout, dinp [rows, C]     weight, dweight [C]     rstd [rows] (saved)
 *   rstd = 1 / sqrt(mean(x^2) + eps);  out = x rstd (weight + offset)   (offset 1: Gemma's 1 + w)
 *   backward, with g = dout (weight + offset), n = x rstd:
 *   dinp += rstd (g - n mean(g n));  dweight += sum_rows dout n
 */
import { record } from '../autograd';
import { native } from '../native';
import { Tensor, newTensor, disposeOnThrow } from '../tensor';
import { checkNumber, readArgs } from '../validate';
import { FAST, checkNoOverlap, dim, f32, gradsFor, implOf, outputArray, shapeError, tensorArgument, type F32Operand, type Options } from './common';

function forwardKernel(impl: 0 | 1, inp: F32Operand, weight: F32Operand, out: F32Operand, rstd: F32Operand, rows: number, C: number,
  eps: number, offset: number): void {
  const op = 'rmsNormForward';
  const why = ` ([rows ${rows}, channels ${C}])`;
  const x = f32(op, 'inp', inp, rows * C, why);
  const w = f32(op, 'weight', weight, C, ` ([channels ${C}])`);
  const o = f32(op, 'out', out, rows * C, why);
  const r = f32(op, 'rstd', rstd, rows, ` ([rows ${rows}])`);
  checkNoOverlap(op, [o, r], [x, w]);
  native().rmsNormForward(impl, x.buffer, w.buffer, o.buffer, r.buffer, rows, C, eps, offset);
}

function backwardKernel(impl: 0 | 1, dout: F32Operand, inp: F32Operand, weight: F32Operand, rstd: F32Operand, dinp: F32Operand,
  dweight: F32Operand, rows: number, C: number, offset: number): void {
  const op = 'rmsNormBackward';
  const why = ` ([rows ${rows}, channels ${C}])`;
  const g = f32(op, 'dout', dout, rows * C, why);
  const x = f32(op, 'inp', inp, rows * C, why);
  const w = f32(op, 'weight', weight, C, ` ([channels ${C}])`);
  const r = f32(op, 'rstd', rstd, rows, ` ([rows ${rows}])`);
  const dx = f32(op, 'dinp', dinp, rows * C, why);
  const dw = f32(op, 'dweight', dweight, C, ` ([channels ${C}])`);
  checkNoOverlap(op, [dx, dw], [g, x, w, r]);
  native().rmsNormBackward(impl, g.buffer, x.buffer, w.buffer, r.buffer, dx.buffer, dw.buffer, rows, C, offset);
}

export interface RmsNormOptions {
  /** Added to the mean square before the root (default 1e-6; Llama's configs say 1e-5 or 1e-6: rms_norm_eps). */
  eps?: number;
  /** Added to the weight (default 0; 1 for Gemma, whose checkpoints store w - 1). */
  offset?: number;
}

function readOptions(op: string, options: { eps?: unknown; offset?: unknown }): { eps: number; offset: number } {
  return {
    eps: checkNumber('eps', options.eps ?? 1e-6, { min: 0, minExclusive: true }),
    offset: checkNumber('offset', options.offset ?? 0, {}),
  };
}

// ---- the typed-array forms -------------------------------------------------------------------

/** RMS norm over the last dim: inp, out `[rows, channels]`; rstd `[rows]`. */
export function rmsNormForward(args: { rows: number; channels: number; inp: Float32Array; weight: Float32Array; out?: Float32Array; rstd?: Float32Array }
  & RmsNormOptions & Options): { out: Float32Array; rstd: Float32Array } {
  const x = readArgs('rmsNormForward', args, ['rows', 'channels', 'inp', 'weight', 'out', 'rstd', 'eps', 'offset', 'implementation'] as const);
  const rows = dim('rows', x.rows), C = dim('channels', x.channels);
  const { eps, offset } = readOptions('rmsNormForward', x);
  const out = outputArray(x.out, rows * C) as Float32Array;
  const rstd = outputArray(x.rstd, rows) as Float32Array;
  forwardKernel(implOf(x.implementation), x.inp as Float32Array, x.weight as Float32Array, out, rstd, rows, C, eps, offset);
  return { out, rstd };
}

/** Accumulates dinp and dweight from dout and what forward saved (rstd). */
export function rmsNormBackward(args: {
  rows: number; channels: number; dout: Float32Array; inp: Float32Array; weight: Float32Array; rstd: Float32Array; dinp: Float32Array; dweight: Float32Array;
  offset?: number;
} & Options): void {
  const x = readArgs('rmsNormBackward', args, ['rows', 'channels', 'dout', 'inp', 'weight', 'rstd', 'dinp', 'dweight', 'offset', 'implementation'] as const);
  const rows = dim('rows', x.rows), C = dim('channels', x.channels);
  const offset = checkNumber('offset', x.offset ?? 0, {});
  backwardKernel(implOf(x.implementation), x.dout as Float32Array, x.inp as Float32Array, x.weight as Float32Array, x.rstd as Float32Array,
    x.dinp as Float32Array, x.dweight as Float32Array, rows, C, offset);
}

// ---- the Tensor form -------------------------------------------------------------------------

/** RMS normalization over the last dim C, with weight [C]. */
export function rmsNorm(xValue: Tensor, weightValue: Tensor, options: RmsNormOptions = {}): Tensor {
  return disposeOnThrow(() => {
    const x = tensorArgument('rmsNorm', 'x', xValue);
    const weight = tensorArgument('rmsNorm', 'weight', weightValue);
    const { eps, offset } = readOptions('rmsNorm', readArgs('rmsNorm options', options, ['eps', 'offset'] as const));
    if (x.shape.length < 1 || x.size === 0) throw shapeError('rmsNorm', 'an input with elements', x);
    const C = x.shape[x.shape.length - 1];
    if (weight.shape.length !== 1 || weight.shape[0] !== C) throw shapeError('rmsNorm', `a weight of shape [${C}]`, weight);
    const rows = x.size / C;
    const out = newTensor('rmsNorm', x.shape);
    const rstd = newTensor('rmsNorm', [rows]);
    forwardKernel(FAST, x, weight, out, rstd, rows, C, eps, offset);
    return record(out, {
      op: 'rmsNorm',
      inputs: [x, weight],
      saved: [x, weight, rstd],
      owned: [rstd],
      backward: (g) => {
        // the kernel writes both: scratch for the one nobody needs (autograd drops it)
        const grads = [x, weight].map((t) => newTensor('rmsNorm backward', t.shape));
        backwardKernel(FAST, g, x, weight, rstd, grads[0], grads[1], rows, C, offset);
        return grads;
      },
    });
  });
}
