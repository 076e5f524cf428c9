/**
 * Training a module's parameters: AdamW (one fused native update per parameter tensor),
 * clipping by the global gradient norm, and GPT-style warmup then cosine decay of the rate.
 *
 * AdamW (Loshchilov and Hutter 2019, https://arxiv.org/abs/1711.05101), at step t >= 1:
 *   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *   param -= lr (m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps) + wd param)
 * (native/core/adamw.h; the same as torch.optim.AdamW). The decay is decoupled from the
 * gradient and, as in GPT-2/nanoGPT, applied by default only to tensors of rank 2 and up
 * (matrices and embeddings), not to biases and LayerNorm gains.
 *
 * The state m, v [numel] of every parameter is a Tensor made on the first step, kept out of any
 * withScope and freed by dispose().
 */
import { Module } from './nn/module';
import { native } from './native';
import { Tensor, keep } from './tensor';
import { checkInteger, checkNumber } from './validate';

const FAST = 1;

/** A module, its parameters() list, or bare tensors. */
export type Parameters = Module | readonly (readonly [string, Tensor])[] | readonly Tensor[];

function named(params: Parameters, op: string): [string, Tensor][] {
  if (params instanceof Module) return params.parameters();
  if (!Array.isArray(params)) throw new TypeError(`${op}: expected a Module, its parameters() or an array of tensors but received ${String(params)}`);
  return params.map((p, i): [string, Tensor] => {
    const [name, tensor] = p instanceof Tensor ? [`params[${i}]`, p] : (p as [string, Tensor]);
    if (!(tensor instanceof Tensor)) throw new TypeError(`${op}: expected a Tensor for ${name} but received ${String(tensor)}`);
    if (tensor.dtype !== 'f32') throw new TypeError(`${op}: expected an f32 tensor for ${name} but received ${tensor}`);
    return [name, tensor];
  });
}

/** The storage of a tensor for a kernel that reads it whole (from byte 0 to its end). */
function wholeStorage(tensor: Tensor, op: string) {
  const { storage, byteOffset, byteLength } = tensor.nativeStorage(op);
  if (byteOffset !== 0 || byteLength !== storage.byteLength) {
    throw new Error(`${op}: expected a tensor that owns its storage but received a view ${tensor}`);
  }
  return storage;
}

export interface AdamWOptions {
  /** The learning rate (default 1e-3); change it per step with `optimizer.lr = ...`. */
  lr?: number;
  /** [b1, b2] (default [0.9, 0.999]). */
  betas?: readonly [number, number];
  /** Default 1e-8. */
  eps?: number;
  /** Decoupled weight decay (default 0.01, torch's). */
  weightDecay?: number;
  /** Which parameters decay (default: rank >= 2). */
  decays?: (name: string, tensor: Tensor) => boolean;
}

export class AdamW {
  /** The learning rate of the next step. */
  lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  /** Steps taken so far. */
  stepCount = 0;
  private readonly params: { name: string; tensor: Tensor; decay: boolean; m: Tensor | null; v: Tensor | null }[];

  constructor(params: Parameters, options: AdamWOptions = {}) {
    this.lr = checkNumber('lr', options.lr ?? 1e-3, { min: 0 });
    const [beta1, beta2] = options.betas ?? [0.9, 0.999];
    this.beta1 = checkNumber('betas[0]', beta1, { min: 0, max: 1, maxExclusive: true });
    this.beta2 = checkNumber('betas[1]', beta2, { min: 0, max: 1, maxExclusive: true });
    this.eps = checkNumber('eps', options.eps ?? 1e-8, { min: 0, minExclusive: true });
    this.weightDecay = checkNumber('weightDecay', options.weightDecay ?? 0.01, { min: 0 });
    const decays = options.decays ?? ((_: string, t: Tensor) => t.shape.length >= 2);
    this.params = named(params, 'AdamW').map(([name, tensor]) => ({ name, tensor, decay: decays(name, tensor), m: null, v: null }));
  }

  /** Updates every parameter that has a gradient; parameters without one are left alone. */
  step(): void {
    checkNumber('lr', this.lr, { min: 0 });
    const t = this.stepCount + 1;
    for (const p of this.params) {
      p.tensor.assertAlive('AdamW.step');
      const grad = p.tensor.grad;
      if (!grad) continue;
      if (grad.shape.length !== p.tensor.shape.length || grad.size !== p.tensor.size) {
        throw new RangeError(`AdamW.step: the gradient of ${p.name} has shape [${grad.shape}] but the parameter [${p.tensor.shape}]`);
      }
      p.m ??= keep(Tensor.zeros(p.tensor.shape));
      p.v ??= keep(Tensor.zeros(p.tensor.shape));
      native().adamwUpdate(FAST, wholeStorage(p.tensor, 'AdamW.step'), wholeStorage(grad, 'AdamW.step'),
        wholeStorage(p.m, 'AdamW.step'), wholeStorage(p.v, 'AdamW.step'), p.tensor.size,
        this.lr, this.beta1, this.beta2, this.eps, p.decay ? this.weightDecay : 0, t);
    }
    this.stepCount = t;
  }

  /** Frees every parameter's gradient. */
  zeroGrad(): void {
    for (const p of this.params) {
      p.tensor.grad?.dispose();
      p.tensor.grad = null;
    }
  }

  /** Frees the state m, v (the parameters are the module's). */
  dispose(): void {
    for (const p of this.params) {
      p.m?.dispose();
      p.v?.dispose();
      p.m = p.v = null;
    }
  }
}

/**
 * Scales every gradient in place by maxNorm / (norm + 1e-6) when their global L2 norm exceeds
 * maxNorm (torch.nn.utils.clip_grad_norm_). The norm is summed natively in fp64, in parameter
 * order. Returns the norm before clipping. Parameters without a gradient are skipped.
 */
export function clipGradNorm(params: Parameters, maxNorm: number): number {
  checkNumber('maxNorm', maxNorm, { min: 0, minExclusive: true });
  const grads = named(params, 'clipGradNorm').flatMap(([, t]) => (t.grad ? [t.grad] : []));
  const storages = grads.map((g) => wholeStorage(g, 'clipGradNorm'));
  const norm = native().globalGradNorm(FAST, storages);
  if (norm > maxNorm) {
    const factor = maxNorm / (norm + 1e-6);
    grads.forEach((g, k) => native().scaleForward(FAST, storages[k], factor, storages[k], g.size));
  }
  return norm;
}

export interface CosineScheduleOptions {
  /** The rate at the end of warmup. */
  maxLr: number;
  /** The rate from totalSteps on (default maxLr / 10). */
  minLr?: number;
  /** Steps of linear warmup (default 0). */
  warmupSteps?: number;
  /** The step at which the decay reaches minLr. */
  totalSteps: number;
}

/**
 * The learning rate of step `step` (from 0): linear warmup to maxLr over warmupSteps
 * (maxLr (step + 1) / warmupSteps), then cosine decay to minLr at totalSteps, minLr after
 * (nanoGPT's get_lr).
 */
export function cosineSchedule(step: number, options: CosineScheduleOptions): number {
  checkInteger('step', step, 0, Number.MAX_SAFE_INTEGER);
  const maxLr = checkNumber('maxLr', options.maxLr, { min: 0 });
  const minLr = checkNumber('minLr', options.minLr ?? maxLr / 10, { min: 0, max: maxLr });
  const warmupSteps = checkInteger('warmupSteps', options.warmupSteps ?? 0, 0, Number.MAX_SAFE_INTEGER);
  const totalSteps = checkInteger('totalSteps', options.totalSteps, warmupSteps, Number.MAX_SAFE_INTEGER);
  if (step < warmupSteps) return (maxLr * (step + 1)) / warmupSteps;
  if (step >= totalSteps) return minLr;
  const progress = (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps);
  return minLr + 0.5 * (1 + Math.cos(Math.PI * progress)) * (maxLr - minLr);
}
