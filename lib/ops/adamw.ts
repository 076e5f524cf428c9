/**
 * The optimizer's ops (native/core/adamw.h): the fused AdamW update of one parameter tensor
 * (Loshchilov and Hutter 2019, https://arxiv.org/abs/1711.05101) and the global gradient norm
 * with clipping by it, on typed arrays or tensors alike: lib/optim.ts runs them through here.
 *
 *   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *   param -= lr (m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps) + wd param)
 *   norm = sqrt(sum over tensors, in order, of sum_i g_i^2), fp64
 */
import { native } from '../native';
import { Tensor, isTensor } from '../tensor';
import { checkInteger, checkNumber, expected, readArgs, readArray, typedArrayFacts } from '../validate';
import { checkNoOverlap, f32, floatLength, implOf, type F32Operand, type Options } from './common';
import { scaleInPlace } from './elementwise';

export interface AdamWHyperparameters {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** The step number, from 1, for the bias corrections. */
  step: number;
}

/** One update, checked: param, m, v are written; grad is read; all of `count` elements. */
export function adamwUpdateKernel(impl: 0 | 1, param: F32Operand, grad: F32Operand, m: F32Operand, v: F32Operand, count: number,
  h: AdamWHyperparameters): void {
  const op = 'adamwUpdate';
  const p = f32(op, 'param', param, count);
  const g = f32(op, 'grad', grad, count, ' (the length of param)');
  const mm = f32(op, 'm', m, count, ' (the length of param)');
  const vv = f32(op, 'v', v, count, ' (the length of param)');
  checkNoOverlap(op, [p, mm, vv], [g]);
  native().adamwUpdate(impl, p.buffer, g.buffer, mm.buffer, vv.buffer, count, h.lr, h.beta1, h.beta2, h.eps, h.weightDecay, h.step);
}

export interface AdamWArgs extends Options {
  /** Updated in place, with m and v. */
  param: Float32Array;
  grad: Float32Array;
  m: Float32Array;
  v: Float32Array;
  lr: number;
  /** Default 0.9. */
  beta1?: number;
  /** Default 0.999. */
  beta2?: number;
  /** Default 1e-8. */
  eps?: number;
  /** Decoupled weight decay (default 0). */
  weightDecay?: number;
  /** The step number, from 1, for the bias corrections. */
  step: number;
}

/** Checks the hyperparameters of one step (defaults applied). */
export function checkAdamWHyperparameters(x: { lr: unknown; beta1?: unknown; beta2?: unknown; eps?: unknown; weightDecay?: unknown; step: unknown }): AdamWHyperparameters {
  return {
    lr: checkNumber('lr', x.lr, { min: 0 }),
    beta1: checkNumber('beta1', x.beta1 ?? 0.9, { min: 0, max: 1, maxExclusive: true }),
    beta2: checkNumber('beta2', x.beta2 ?? 0.999, { min: 0, max: 1, maxExclusive: true }),
    eps: checkNumber('eps', x.eps ?? 1e-8, { min: 0, minExclusive: true }),
    weightDecay: checkNumber('weightDecay', x.weightDecay ?? 0, { min: 0 }),
    step: checkInteger('step', x.step, 1, Number.MAX_SAFE_INTEGER),
  };
}

/** One fused AdamW update of one parameter array. */
export function adamwUpdate(args: AdamWArgs): void {
  const x = readArgs('adamwUpdate', args, ['param', 'grad', 'm', 'v', 'lr', 'beta1', 'beta2', 'eps', 'weightDecay', 'step', 'implementation'] as const);
  const count = floatLength('adamwUpdate', 'param', x.param);
  adamwUpdateKernel(implOf(x.implementation), x.param as Float32Array, x.grad as Float32Array, x.m as Float32Array, x.v as Float32Array,
    count, checkAdamWHyperparameters(x));
}

/** Each gradient (a Float32Array or an f32 tensor) with its element count. */
function gradientList(grads: unknown): { buffers: F32Operand[]; counts: number[] } {
  if (!Array.isArray(grads)) throw new TypeError(expected('an array of Float32Arrays or tensors', 'grads', grads));
  const list = readArray(grads, 1 << 20, 'grads')!;
  const buffers: F32Operand[] = [];
  const counts: number[] = [];
  list.forEach((g, k) => {
    const count = isTensor(g) ? g.size : typedArrayFacts(g)?.length ?? -1;
    if (count < 0) throw new TypeError(expected('a Float32Array or an f32 tensor', `grads[${k}]`, g));
    if (count === 0) return;  // adds nothing to the norm
    buffers.push(g as F32Operand);
    counts.push(count);
  });
  return { buffers, counts };
}

function normOf(impl: 0 | 1, buffers: F32Operand[], counts: number[]): number {
  const storages = buffers.map((g, k) => f32('globalGradNorm', `grads[${k}]`, g, counts[k]).buffer);
  return native().globalGradNorm(impl, storages, counts);
}

/** sqrt of the sum of squares of every gradient, in list order, accumulated in fp64. */
export function globalGradNorm(grads: (Float32Array | Tensor)[], options: Options = {}): number {
  const { implementation } = readArgs('globalGradNorm', options, ['implementation'] as const);
  const { buffers, counts } = gradientList(grads);
  return normOf(implOf(implementation), buffers, counts);
}

/**
 * Scales every gradient in place by `maxNorm / (norm + 1e-6)` when their global norm exceeds
 * maxNorm (PyTorch's clip_grad_norm_); returns the norm before clipping. lib/optim.ts's
 * clipGradNorm (on a module's parameters) runs this.
 */
export function clipGradients(grads: (Float32Array | Tensor)[], maxNorm: number, options: Options = {}): number {
  const { implementation } = readArgs('clipGradients', options, ['implementation'] as const);
  const { buffers, counts } = gradientList(grads);
  checkNumber('maxNorm', maxNorm, { min: 0, minExclusive: true });
  const norm = normOf(implOf(implementation), buffers, counts);
  if (norm > maxNorm) {
    const factor = maxNorm / (norm + 1e-6);
    buffers.forEach((g, k) => scaleInPlace(g, factor, counts[k]));
  }
  return norm;
}
