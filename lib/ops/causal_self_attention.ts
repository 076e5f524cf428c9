/**
 * Causal multi-head self-attention of GPT-2 (between the qkv and the output projections),
 * forward and backward (native/core/causal_self_attention.h): the typed-array forms and the
 * Tensor form on one checked path.
 *
 *   qkv, dqkv [B, T, 3C]   att [B, NH, T, T] (the softmax weights, saved)   out, dout [B, T, C]
 */
import { record } from '../autograd';
import { native } from '../native';
import { Tensor, newTensor, disposeOnThrow } from '../tensor';
import { describe, readArgs } from '../validate';
import { FAST, checkNoOverlap, dim, f32, gradsFor, implOf, outputArray, shapeError, tensorArgument, type F32Operand, type Options } from './common';

interface Shape {
  B: number;
  T: number;
  C: number;
  NH: number;
}

function forwardKernel(impl: 0 | 1, qkv: F32Operand, att: F32Operand, out: F32Operand, s: Shape): void {
  const op = 'causalSelfAttentionForward';
  const q = f32(op, 'qkv', qkv, s.B * s.T * 3 * s.C, ` ([B ${s.B}, T ${s.T}, 3C ${3 * s.C}])`);
  const a = f32(op, 'att', att, s.B * s.NH * s.T * s.T, ` ([B ${s.B}, NH ${s.NH}, T ${s.T}, T ${s.T}])`);
  const o = f32(op, 'out', out, s.B * s.T * s.C, ` ([B ${s.B}, T ${s.T}, C ${s.C}])`);
  checkNoOverlap(op, [o, a], [q]);
  native().causalSelfAttentionForward(impl, q.buffer, a.buffer, o.buffer, s.B, s.T, s.C, s.NH);
}

function backwardKernel(impl: 0 | 1, qkv: F32Operand, att: F32Operand, dout: F32Operand, dqkv: F32Operand, s: Shape): void {
  const op = 'causalSelfAttentionBackward';
  const q = f32(op, 'qkv', qkv, s.B * s.T * 3 * s.C, ` ([B ${s.B}, T ${s.T}, 3C ${3 * s.C}])`);
  const a = f32(op, 'att', att, s.B * s.NH * s.T * s.T, ` ([B ${s.B}, NH ${s.NH}, T ${s.T}, T ${s.T}])`);
  const g = f32(op, 'dout', dout, s.B * s.T * s.C, ` ([B ${s.B}, T ${s.T}, C ${s.C}])`);
  const dq = f32(op, 'dqkv', dqkv, s.B * s.T * 3 * s.C, ` ([B ${s.B}, T ${s.T}, 3C ${3 * s.C}])`);
  checkNoOverlap(op, [dq], [q, a, g]);
  native().causalSelfAttentionBackward(impl, q.buffer, a.buffer, g.buffer, dq.buffer, s.B, s.T, s.C, s.NH);
}

export interface CausalSelfAttentionShape extends Options {
  batch: number;
  tokens: number;
  channels: number;
  /** Must divide channels. */
  heads: number;
}

function shapeOf(x: { batch: unknown; tokens: unknown; channels: unknown; heads: unknown }): Shape {
  const B = dim('batch', x.batch);
  const T = dim('tokens', x.tokens);
  const C = dim('channels', x.channels);
  const NH = dim('heads', x.heads);
  if (C % NH !== 0) throw new RangeError(`Expected heads dividing channels (${C}) but received ${describe(x.heads)}`);
  return { B, T, C, NH };
}

const KEYS = ['batch', 'tokens', 'channels', 'heads', 'implementation'] as const;

/**
 * Causal self-attention: qkv `[B, T, 3C]` (q, k, v, each split into heads) to out `[B, T, C]`;
 * att `[B, NH, T, T]` (the softmax weights) is saved for backward.
 */
export function causalSelfAttentionForward(
  args: CausalSelfAttentionShape & { qkv: Float32Array; out?: Float32Array; att?: Float32Array },
): { out: Float32Array; att: Float32Array } {
  const x = readArgs('causalSelfAttentionForward', args, [...KEYS, 'qkv', 'out', 'att'] as const);
  const s = shapeOf(x);
  const out = outputArray(x.out, s.B * s.T * s.C) as Float32Array;
  const att = outputArray(x.att, s.B * s.NH * s.T * s.T) as Float32Array;
  forwardKernel(implOf(x.implementation), x.qkv as Float32Array, att, out, s);
  return { out, att };
}

/** `dqkv +=` the gradient of causalSelfAttentionForward's out, given dout and the saved att. */
export function causalSelfAttentionBackward(
  args: CausalSelfAttentionShape & { qkv: Float32Array; att: Float32Array; dout: Float32Array; dqkv: Float32Array },
): void {
  const x = readArgs('causalSelfAttentionBackward', args, [...KEYS, 'qkv', 'att', 'dout', 'dqkv'] as const);
  backwardKernel(implOf(x.implementation), x.qkv as Float32Array, x.att as Float32Array, x.dout as Float32Array, x.dqkv as Float32Array, shapeOf(x));
}

/**
 * Causal self-attention: qkv [B, T, 3C] (queries, keys, values side by side) with `heads`
 * heads dividing C, to [B, T, C]. Saves the attention weights [B, heads, T, T] for backward.
 */
export function causalSelfAttention(qkvValue: Tensor, heads: number): Tensor {
  return disposeOnThrow(() => {
    const qkv = tensorArgument('causalSelfAttention', 'qkv', qkvValue);
    if (qkv.shape.length !== 3 || qkv.shape[2] % 3 !== 0 || qkv.size === 0) throw shapeError('causalSelfAttention', 'qkv of shape [B, T, 3C]', qkv);
    const [B, T, threeC] = qkv.shape;
    const C = threeC / 3;
    if (typeof heads !== 'number' || !Number.isInteger(heads) || heads < 1 || C % heads !== 0) {
      throw new RangeError(`causalSelfAttention: expected a head count dividing C = ${C} but received ${describe(heads)}`);
    }
    const s: Shape = { B, T, C, NH: heads };
    const att = newTensor('causalSelfAttention', [B, heads, T, T]);
    const out = newTensor('causalSelfAttention', [B, T, C]);
    forwardKernel(FAST, qkv, att, out, s);
    return record(out, {
      op: 'causalSelfAttention',
      inputs: [qkv],
      saved: [qkv, att],
      owned: [att],
      backward: (g) => {
        const [dqkv] = gradsFor('causalSelfAttention', [qkv]);
        if (dqkv) backwardKernel(FAST, qkv, att, g, dqkv, s);
        return [dqkv];
      },
    });
  });
}
