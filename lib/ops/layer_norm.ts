/**
 * Layer normalization over the last dim (GPT-2's ln_1, ln_2, ln_f), eps 1e-5, forward and
 * backward (native/core/layer_norm.h): the typed-array forms and the Tensor form on one path.
 *
 *   inp, out, dout, dinp [rows, C]     weight, bias, dweight, dbias [C]     mean, rstd [rows]
 *   out = (x - mean) rstd * weight + bias
 *   backward, with g = dout * weight and n = (x - mean) rstd:
 *   dinp += rstd (g - mean(g) - n mean(g n));  dweight += sum_rows dout n;  dbias += sum_rows dout
 */
import { record } from '../autograd';
import { native } from '../native';
import { Tensor, newTensor, disposeOnThrow } from '../tensor';
import { readArgs } from '../validate';
import { FAST, checkNoOverlap, dim, f32, implOf, outputArray, shapeError, tensorArgument, type F32Operand, type Options } from './common';

function layerNormForwardKernel(impl: 0 | 1, inp: F32Operand, weight: F32Operand, bias: F32Operand, out: F32Operand, mean: F32Operand,
  rstd: F32Operand, rows: number, C: number): void {
  const op = 'layerNormForward';
  const why = ` ([rows ${rows}, channels ${C}])`;
  const x = f32(op, 'inp', inp, rows * C, why);
  const w = f32(op, 'weight', weight, C, ` ([channels ${C}])`);
  const b = f32(op, 'bias', bias, C, ` ([channels ${C}])`);
  const o = f32(op, 'out', out, rows * C, why);
  const m = f32(op, 'mean', mean, rows, ` ([rows ${rows}])`);
  const r = f32(op, 'rstd', rstd, rows, ` ([rows ${rows}])`);
  checkNoOverlap(op, [o, m, r], [x, w, b]);
  native().layerNormForward(impl, x.buffer, w.buffer, b.buffer, o.buffer, m.buffer, r.buffer, rows, C);
}

function layerNormBackwardKernel(impl: 0 | 1, dout: F32Operand, inp: F32Operand, weight: F32Operand, mean: F32Operand, rstd: F32Operand,
  dinp: F32Operand, dweight: F32Operand, dbias: F32Operand, rows: number, C: number): void {
  const op = 'layerNormBackward';
  const why = ` ([rows ${rows}, channels ${C}])`;
  const g = f32(op, 'dout', dout, rows * C, why);
  const x = f32(op, 'inp', inp, rows * C, why);
  const w = f32(op, 'weight', weight, C, ` ([channels ${C}])`);
  const m = f32(op, 'mean', mean, rows, ` ([rows ${rows}])`);
  const r = f32(op, 'rstd', rstd, rows, ` ([rows ${rows}])`);
  const dx = f32(op, 'dinp', dinp, rows * C, why);
  const dw = f32(op, 'dweight', dweight, C, ` ([channels ${C}])`);
  const db = f32(op, 'dbias', dbias, C, ` ([channels ${C}])`);
  checkNoOverlap(op, [dx, dw, db], [g, x, w, m, r]);
  native().layerNormBackward(impl, g.buffer, x.buffer, w.buffer, m.buffer, r.buffer, dx.buffer, dw.buffer, db.buffer, rows, C);
}

// ---- the typed-array forms -------------------------------------------------------------------

export interface RowsShape extends Options {
  rows: number;
  channels: number;
}

/** Layer norm over the last dim, eps 1e-5: inp, out `[rows, channels]`; mean, rstd `[rows]`. */
export function layerNormForward(
  args: RowsShape & { inp: Float32Array; weight: Float32Array; bias: Float32Array; out?: Float32Array; mean?: Float32Array; rstd?: Float32Array },
): { out: Float32Array; mean: Float32Array; rstd: Float32Array } {
  const x = readArgs('layerNormForward', args, ['rows', 'channels', 'inp', 'weight', 'bias', 'out', 'mean', 'rstd', 'implementation'] as const);
  const rows = dim('rows', x.rows);
  const C = dim('channels', x.channels);
  const out = outputArray(x.out, rows * C) as Float32Array;
  const mean = outputArray(x.mean, rows) as Float32Array;
  const rstd = outputArray(x.rstd, rows) as Float32Array;
  layerNormForwardKernel(implOf(x.implementation), x.inp as Float32Array, x.weight as Float32Array, x.bias as Float32Array, out, mean, rstd, rows, C);
  return { out, mean, rstd };
}

/** Accumulates dinp, dweight and dbias from dout and what forward saved. */
export function layerNormBackward(
  args: RowsShape & {
    dout: Float32Array; inp: Float32Array; weight: Float32Array; mean: Float32Array; rstd: Float32Array;
    dinp: Float32Array; dweight: Float32Array; dbias: Float32Array;
  },
): void {
  const x = readArgs('layerNormBackward', args,
    ['rows', 'channels', 'dout', 'inp', 'weight', 'mean', 'rstd', 'dinp', 'dweight', 'dbias', 'implementation'] as const);
  const rows = dim('rows', x.rows);
  const C = dim('channels', x.channels);
  layerNormBackwardKernel(implOf(x.implementation), x.dout as Float32Array, x.inp as Float32Array, x.weight as Float32Array,
    x.mean as Float32Array, x.rstd as Float32Array, x.dinp as Float32Array, x.dweight as Float32Array, x.dbias as Float32Array, rows, C);
}

// ---- the Tensor form -------------------------------------------------------------------------

/** Layer normalization over the last dim C (eps 1e-5), with weight and bias [C]. */
export function layerNorm(xValue: Tensor, weightValue: Tensor, biasValue: Tensor): Tensor {
  return disposeOnThrow(() => {
    const x = tensorArgument('layerNorm', 'x', xValue);
    const weight = tensorArgument('layerNorm', 'weight', weightValue);
    const bias = tensorArgument('layerNorm', 'bias', biasValue);
    if (x.shape.length < 1 || x.size === 0) throw shapeError('layerNorm', 'an input with elements', x);
    const channels = x.shape[x.shape.length - 1];
    if (weight.shape.length !== 1 || weight.shape[0] !== channels) throw shapeError('layerNorm', `a weight of shape [${channels}]`, weight);
    if (bias.shape.length !== 1 || bias.shape[0] !== channels) throw shapeError('layerNorm', `a bias of shape [${channels}]`, bias);
    const rows = x.size / channels;
    const out = newTensor('layerNorm', x.shape);
    const mean = newTensor('layerNorm', [rows]);
    const rstd = newTensor('layerNorm', [rows]);
    layerNormForwardKernel(FAST, x, weight, bias, out, mean, rstd, rows, channels);
    return record(out, {
      op: 'layerNorm',
      inputs: [x, weight, bias],
      saved: [x, weight, mean, rstd],
      owned: [mean, rstd],
      backward: (g) => {
        // The kernel writes all three: scratch for the ones nobody needs (autograd drops them).
        const grads = [x, weight, bias].map((t) => newTensor('layerNorm backward', t.shape));
        layerNormBackwardKernel(FAST, g, x, weight, mean, rstd, grads[0], grads[1], grads[2], rows, channels);
        return grads;
      },
    });
  });
}
