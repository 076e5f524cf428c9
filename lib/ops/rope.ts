/**
 * Rotary position embeddings in the `rotate_half` form of Hugging Face's Llama, Qwen and Gemma,
 * forward and backward (native/core/rope.h): the typed-array forms and the Tensor form on one
 * checked path. The angle tables are the caller's (lib/nn/rope_tables.ts makes them from a
 * config's rope_theta and rope scaling).
 *
 *   inp, out [B, T, H, D] (D even)     cos, sin [T, D/2]: the angles of position t
 *   out[i] = x[i] cos_i - x[i + D/2] sin_i;  out[i + D/2] = x[i + D/2] cos_i + x[i] sin_i
 */
import { record } from '../autograd';
import { native } from '../native';
import { Tensor, newTensor, disposeOnThrow } from '../tensor';
import { describe, readArgs } from '../validate';
import { FAST, checkNoOverlap, dim, f32, gradsFor, implOf, outputArray, shapeError, tensorArgument, type F32Operand, type Options } from './common';

interface Shape {
  B: number;
  T: number;
  H: number;
  D: number;
}

function operands(op: string, s: Shape, cos: F32Operand, sin: F32Operand) {
  const why = ` ([T ${s.T}, D/2 ${s.D / 2}])`;
  return { c: f32(op, 'cos', cos, s.T * (s.D / 2), why), n: f32(op, 'sin', sin, s.T * (s.D / 2), why) };
}

function forwardKernel(impl: 0 | 1, inp: F32Operand, cos: F32Operand, sin: F32Operand, out: F32Operand, s: Shape): void {
  const op = 'ropeForward';
  const why = ` ([B ${s.B}, T ${s.T}, H ${s.H}, D ${s.D}])`;
  const x = f32(op, 'inp', inp, s.B * s.T * s.H * s.D, why);
  const { c, n } = operands(op, s, cos, sin);
  const o = f32(op, 'out', out, s.B * s.T * s.H * s.D, why);
  checkNoOverlap(op, [o], [x, c, n]);
  native().ropeForward(impl, x.buffer, c.buffer, n.buffer, o.buffer, s.B, s.T, s.H, s.D);
}

function backwardKernel(impl: 0 | 1, dout: F32Operand, cos: F32Operand, sin: F32Operand, dinp: F32Operand, s: Shape): void {
  const op = 'ropeBackward';
  const why = ` ([B ${s.B}, T ${s.T}, H ${s.H}, D ${s.D}])`;
  const g = f32(op, 'dout', dout, s.B * s.T * s.H * s.D, why);
  const { c, n } = operands(op, s, cos, sin);
  const dx = f32(op, 'dinp', dinp, s.B * s.T * s.H * s.D, why);
  checkNoOverlap(op, [dx], [g, c, n]);
  native().ropeBackward(impl, g.buffer, c.buffer, n.buffer, dx.buffer, s.B, s.T, s.H, s.D);
}

function shapeOf(x: { batch: unknown; tokens: unknown; heads: unknown; headDim: unknown }): Shape {
  const s = { B: dim('batch', x.batch), T: dim('tokens', x.tokens), H: dim('heads', x.heads), D: dim('headDim', x.headDim) };
  if (s.D % 2 !== 0) throw new RangeError(`Expected an even headDim but received ${describe(x.headDim)}`);
  return s;
}

export interface RopeShape extends Options {
  batch: number;
  tokens: number;
  heads: number;
  /** Even. */
  headDim: number;
}

const KEYS = ['batch', 'tokens', 'heads', 'headDim', 'cos', 'sin', 'implementation'] as const;

/** The rotation of `inp` [B, T, H, D] by the angles `cos`, `sin` [T, D/2]. */
export function ropeForward(args: RopeShape & { inp: Float32Array; cos: Float32Array; sin: Float32Array; out?: Float32Array }): Float32Array {
  const x = readArgs('ropeForward', args, [...KEYS, 'inp', 'out'] as const);
  const s = shapeOf(x);
  const out = outputArray(x.out, s.B * s.T * s.H * s.D) as Float32Array;
  forwardKernel(implOf(x.implementation), x.inp as Float32Array, x.cos as Float32Array, x.sin as Float32Array, out, s);
  return out;
}

/** `dinp +=` the transposed rotation of dout. */
export function ropeBackward(args: RopeShape & { dout: Float32Array; cos: Float32Array; sin: Float32Array; dinp: Float32Array }): void {
  const x = readArgs('ropeBackward', args, [...KEYS, 'dout', 'dinp'] as const);
  backwardKernel(implOf(x.implementation), x.dout as Float32Array, x.cos as Float32Array, x.sin as Float32Array, x.dinp as Float32Array, shapeOf(x));
}

/**
 * Rotary embeddings of x [B, T, H * headDim] (a projection's output, heads side by side), by the
 * angle tables `cos`, `sin` [T', headDim / 2] for the positions 0..T'-1, T' >= T (the first T rows
 * are used): the rotated tensor, same shape. The tables are constants (no gradient).
 */
export function rope(xValue: Tensor, cos: Float32Array, sin: Float32Array, headDim: number): Tensor {
  return disposeOnThrow(() => {
    const x = tensorArgument('rope', 'x', xValue);
    if (x.shape.length !== 3 || x.size === 0) throw shapeError('rope', 'x of shape [B, T, H * headDim]', x);
    const [B, T, width] = x.shape;
    const D = dim('headDim', headDim);
    if (D % 2 !== 0 || width % D !== 0) throw new RangeError(`rope: expected an even headDim dividing ${width} but received ${describe(headDim)}`);
    const s: Shape = { B, T, H: width / D, D };
    // the first T rows of the tables: views, no copy
    const c = (cos as Float32Array).subarray(0, T * (D / 2)), n = (sin as Float32Array).subarray(0, T * (D / 2));
    const out = newTensor('rope', x.shape);
    forwardKernel(FAST, x, c, n, out, s);
    return record(out, {
      op: 'rope',
      inputs: [x],
      saved: [],
      backward: (g) => {
        const [dx] = gradsFor('rope', [x]);
        if (dx) backwardKernel(FAST, g, c, n, dx, s);
        return [dx];
      },
    });
  });
}
