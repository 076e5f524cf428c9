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

// ---- grouped-query attention: separate q, k, v (the Llama family) -----------------------------

/** The shape of grouped-query attention. */
export interface AttentionShape extends Options {
  batch: number;
  tokens: number;
  /** Query heads. */
  heads: number;
  /** Key/value heads, dividing heads (default heads: multi-head attention). */
  kvHeads?: number;
  headDim: number;
  /** The scores' factor (default 1 / sqrt(headDim)). */
  scale?: number;
  /** Keys within this many positions of the query, itself included (default 0: every earlier position). */
  window?: number;
}

interface GroupedShape {
  B: number;
  T: number;
  NH: number;
  NKV: number;
  D: number;
  scale: number;
  window: number;
}

function groupedShapeOf(op: string, x: { batch: unknown; tokens: unknown; heads: unknown; kvHeads?: unknown; headDim: unknown; scale?: unknown; window?: unknown }): GroupedShape {
  const B = dim('batch', x.batch), T = dim('tokens', x.tokens), NH = dim('heads', x.heads);
  const NKV = dim('kvHeads', x.kvHeads ?? NH), D = dim('headDim', x.headDim);
  if (NH % NKV !== 0) throw new RangeError(`Expected kvHeads dividing heads (${NH}) but received ${describe(x.kvHeads)} (${op})`);
  const scale = x.scale === undefined ? 1 / Math.sqrt(D) : x.scale;
  if (typeof scale !== 'number' || !(scale > 0) || !Number.isFinite(scale)) throw new RangeError(`Expected a finite number > 0 for scale but received ${describe(scale)} (${op})`);
  const window = x.window === undefined ? 0 : x.window;
  if (typeof window !== 'number' || !Number.isInteger(window) || window < 0 || window > 2 ** 31 - 1) {
    throw new RangeError(`Expected a non-negative integer for window but received ${describe(window)} (${op})`);
  }
  return { B, T, NH, NKV, D, scale, window };
}

function groupedOperands(op: string, s: GroupedShape, q: F32Operand, k: F32Operand, v: F32Operand) {
  return {
    qo: f32(op, 'q', q, s.B * s.T * s.NH * s.D, ` ([B ${s.B}, T ${s.T}, heads ${s.NH} x headDim ${s.D}])`),
    ko: f32(op, 'k', k, s.B * s.T * s.NKV * s.D, ` ([B ${s.B}, T ${s.T}, kvHeads ${s.NKV} x headDim ${s.D}])`),
    vo: f32(op, 'v', v, s.B * s.T * s.NKV * s.D, ` ([B ${s.B}, T ${s.T}, kvHeads ${s.NKV} x headDim ${s.D}])`),
  };
}

function attentionForwardKernel(impl: 0 | 1, q: F32Operand, k: F32Operand, v: F32Operand, att: F32Operand, out: F32Operand, s: GroupedShape): void {
  const op = 'attentionForward';
  const { qo, ko, vo } = groupedOperands(op, s, q, k, v);
  const a = f32(op, 'att', att, s.B * s.NH * s.T * s.T, ` ([B ${s.B}, heads ${s.NH}, T ${s.T}, T ${s.T}])`);
  const o = f32(op, 'out', out, s.B * s.T * s.NH * s.D, ` ([B ${s.B}, T ${s.T}, heads ${s.NH} x headDim ${s.D}])`);
  checkNoOverlap(op, [o, a], [qo, ko, vo]);
  native().attentionForward(impl, qo.buffer, ko.buffer, vo.buffer, a.buffer, o.buffer, s.B, s.T, s.NH, s.NKV, s.D, s.scale, s.window);
}

function attentionBackwardKernel(impl: 0 | 1, q: F32Operand, k: F32Operand, v: F32Operand, att: F32Operand, dout: F32Operand,
  dq: F32Operand, dk: F32Operand, dv: F32Operand, s: GroupedShape): void {
  const op = 'attentionBackward';
  const { qo, ko, vo } = groupedOperands(op, s, q, k, v);
  const a = f32(op, 'att', att, s.B * s.NH * s.T * s.T, ` ([B ${s.B}, heads ${s.NH}, T ${s.T}, T ${s.T}])`);
  const g = f32(op, 'dout', dout, s.B * s.T * s.NH * s.D, ` ([B ${s.B}, T ${s.T}, heads ${s.NH} x headDim ${s.D}])`);
  const grads = groupedOperands(op, s, dq, dk, dv);
  const [dqo, dko, dvo] = [{ ...grads.qo, name: 'dq' }, { ...grads.ko, name: 'dk' }, { ...grads.vo, name: 'dv' }];
  checkNoOverlap(op, [dqo, dko, dvo], [qo, ko, vo, a, g]);
  native().attentionBackward(impl, qo.buffer, ko.buffer, vo.buffer, a.buffer, g.buffer, dqo.buffer, dko.buffer, dvo.buffer, s.B, s.T, s.NH, s.NKV,
    s.D, s.scale, s.window);
}

const GROUPED_KEYS = ['batch', 'tokens', 'heads', 'kvHeads', 'headDim', 'scale', 'window', 'implementation'] as const;

/**
 * Grouped-query causal attention: q `[B, T, heads x headDim]`, k and v `[B, T, kvHeads x
 * headDim]` to out `[B, T, heads x headDim]`; att `[B, heads, T, T]` (the softmax weights) is
 * saved for backward.
 */
export function attentionForward(args: AttentionShape & { q: Float32Array; k: Float32Array; v: Float32Array; out?: Float32Array; att?: Float32Array }):
  { out: Float32Array; att: Float32Array } {
  const x = readArgs('attentionForward', args, [...GROUPED_KEYS, 'q', 'k', 'v', 'out', 'att'] as const);
  const s = groupedShapeOf('attentionForward', x);
  const out = outputArray(x.out, s.B * s.T * s.NH * s.D) as Float32Array;
  const att = outputArray(x.att, s.B * s.NH * s.T * s.T) as Float32Array;
  attentionForwardKernel(implOf(x.implementation), x.q as Float32Array, x.k as Float32Array, x.v as Float32Array, att, out, s);
  return { out, att };
}

/** `dq, dk, dv +=` the gradients of attentionForward's out, given dout and the saved att. */
export function attentionBackward(args: AttentionShape & {
  q: Float32Array; k: Float32Array; v: Float32Array; att: Float32Array; dout: Float32Array; dq: Float32Array; dk: Float32Array; dv: Float32Array;
}): void {
  const x = readArgs('attentionBackward', args, [...GROUPED_KEYS, 'q', 'k', 'v', 'att', 'dout', 'dq', 'dk', 'dv'] as const);
  attentionBackwardKernel(implOf(x.implementation), x.q as Float32Array, x.k as Float32Array, x.v as Float32Array, x.att as Float32Array,
    x.dout as Float32Array, x.dq as Float32Array, x.dk as Float32Array, x.dv as Float32Array, groupedShapeOf('attentionBackward', x));
}

/**
 * Grouped-query causal attention of tensors: q [B, T, heads x headDim], k and v [B, T, kvHeads x
 * headDim] (kvHeads dividing heads; the keys and values of a group are never repeated in memory)
 * to [B, T, heads x headDim]. `scale` defaults to 1 / sqrt(headDim); `window` to 0 (every earlier
 * position). Saves the attention weights [B, heads, T, T] for backward.
 */
export function groupedQueryAttention(qValue: Tensor, kValue: Tensor, vValue: Tensor,
  options: { heads: number; kvHeads?: number; headDim: number; scale?: number; window?: number }): Tensor {
  return disposeOnThrow(() => {
    const op = 'groupedQueryAttention';
    const q = tensorArgument(op, 'q', qValue), k = tensorArgument(op, 'k', kValue), v = tensorArgument(op, 'v', vValue);
    const o = readArgs(`${op} options`, options, ['heads', 'kvHeads', 'headDim', 'scale', 'window'] as const);
    if (q.shape.length !== 3 || q.size === 0) throw shapeError(op, 'q of shape [B, T, heads x headDim]', q);
    const [B, T] = q.shape;
    const s = groupedShapeOf(op, { batch: B, tokens: T, heads: o.heads, kvHeads: o.kvHeads, headDim: o.headDim, scale: o.scale, window: o.window });
    if (q.shape[2] !== s.NH * s.D) throw shapeError(op, `q of shape [${B}, ${T}, ${s.NH * s.D}]`, q);
    for (const [name, t] of [['k', k], ['v', v]] as const) {
      if (t.shape.length !== 3 || t.shape[0] !== B || t.shape[1] !== T || t.shape[2] !== s.NKV * s.D) throw shapeError(op, `${name} of shape [${B}, ${T}, ${s.NKV * s.D}]`, t);
    }
    const att = newTensor(op, [B, s.NH, T, T]);
    const out = newTensor(op, [B, T, s.NH * s.D]);
    attentionForwardKernel(FAST, q, k, v, att, out, s);
    return record(out, {
      op,
      inputs: [q, k, v],
      saved: [q, k, v, att],
      owned: [att],
      backward: (g) => {
        // the kernel writes all three: scratch for the ones nobody needs (autograd drops them)
        const grads = [q, k, v].map((t) => newTensor(`${op} backward`, t.shape));
        attentionBackwardKernel(FAST, q, k, v, att, g, grads[0], grads[1], grads[2], s);
        return grads;
      },
    });
  });
}
