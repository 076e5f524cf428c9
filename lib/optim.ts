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
import { adamwUpdateKernel, checkAdamWHyperparameters, clipGradients } from './ops/adamw';
import { FAST } from './ops/common';
import { Tensor, hostStorage, isTensor, keep } from './tensor';
import { checkInteger, checkNumber, describe, readArgs, readArray, typedArrayFacts } from './validate';

/** A module, its parameters() list, or bare tensors. */
export type Parameters = Module | readonly (readonly [string, Tensor])[] | readonly Tensor[];

/**
 * The named parameters, each a live f32 tensor, each once: a tensor listed twice (`[w, w]`, or a
 * name and a view of one storage) would be stepped twice per step, so it is an error.
 */
function named(params: Parameters, op: string): [string, Tensor][] {
  if (params instanceof Module) return params.parameters();
  if (!Array.isArray(params)) throw new TypeError(`${op}: expected a Module, its parameters() or an array of tensors but received ${describe(params)}`);
  const list = readArray(params, 1 << 20, `${op}'s parameters`)!.map((p, i): [string, Tensor] => {
    const pair = Array.isArray(p) ? readArray(p, 2, `${op}'s parameter ${i}`) : null;
    const [name, tensor] = isTensor(p) ? [`params[${i}]`, p] : pair && pair.length === 2 && typeof pair[0] === 'string' ? pair : [`params[${i}]`, p];
    if (!isTensor(tensor)) throw new TypeError(`${op}: expected a Tensor for ${String(name)} but received ${describe(tensor)}`);
    if (tensor.dtype !== 'f32') throw new TypeError(`${op}: expected an f32 tensor for ${String(name)} but received ${tensor}`);
    return [String(name), tensor];
  });
  for (let i = 0; i < list.length; i++) {
    for (let j = 0; j < i; j++) {
      if (Tensor.sameStorage(list[i][1], list[j][1])) {
        throw new TypeError(`${op}: ${list[j][0]} and ${list[i][0]} are the same parameter (or views of one storage): each must appear once`);
      }
    }
  }
  return list;
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

/** What AdamW.state() returns and loadState() takes. */
export interface AdamWState {
  stepCount: number;
  moments: { name: string; m: Float32Array; v: Float32Array }[];
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

  constructor(params: Parameters, optionsValue: AdamWOptions = {}) {
    const options = readArgs('AdamW', optionsValue, ['lr', 'betas', 'eps', 'weightDecay', 'decays'] as const);
    this.lr = checkNumber('lr', options.lr ?? 1e-3, { min: 0 });
    const betas = options.betas === undefined ? [0.9, 0.999] : readArray(options.betas, 2, 'betas');
    if (!betas || betas.length !== 2) throw new TypeError(`AdamW: expected betas to be [beta1, beta2] but received ${describe(options.betas)}`);
    const [beta1, beta2] = betas;
    this.beta1 = checkNumber('betas[0]', beta1, { min: 0, max: 1, maxExclusive: true });
    this.beta2 = checkNumber('betas[1]', beta2, { min: 0, max: 1, maxExclusive: true });
    this.eps = checkNumber('eps', options.eps ?? 1e-8, { min: 0, minExclusive: true });
    this.weightDecay = checkNumber('weightDecay', options.weightDecay ?? 0.01, { min: 0 });
    const decays = (options.decays ?? ((_: string, t: Tensor) => t.shape.length >= 2)) as (name: string, tensor: Tensor) => boolean;
    if (typeof decays !== 'function') throw new TypeError(`AdamW: expected decays to be a function but received ${describe(options.decays)}`);
    this.params = named(params, 'AdamW').map(([name, tensor]) => ({ name, tensor, decay: decays(name, tensor) === true, m: null, v: null }));
  }

  /** Updates every parameter that has a gradient; parameters without one are left alone. */
  step(): void {
    const base = checkAdamWHyperparameters({ lr: this.lr, beta1: this.beta1, beta2: this.beta2, eps: this.eps, weightDecay: this.weightDecay, step: this.stepCount + 1 });
    for (const p of this.params) {
      p.tensor.assertAlive(`AdamW.step (${p.name})`);
      const grad = p.tensor.grad;
      if (!grad || p.tensor.size === 0) continue;
      p.m ??= keep(Tensor.zeros(p.tensor.shape));
      p.v ??= keep(Tensor.zeros(p.tensor.shape));
      adamwUpdateKernel(FAST, p.tensor, grad, p.m, p.v, p.tensor.size, { ...base, weightDecay: p.decay ? base.weightDecay : 0 });
    }
    this.stepCount = base.step;
  }

  /** Frees every parameter's gradient. */
  zeroGrad(): void {
    for (const p of this.params) {
      p.tensor.grad?.dispose();
      p.tensor.grad = null;
    }
  }

  /**
   * The state a resumed run needs: the step count and each parameter's moments m and v (copies;
   * absent for a parameter not updated yet). The learning rate is the caller's schedule.
   */
  state(): AdamWState {
    return {
      stepCount: this.stepCount,
      moments: this.params.flatMap((p) => (p.m && p.v ? [{ name: p.name, m: p.m.toArray() as Float32Array, v: p.v.toArray() as Float32Array }] : [])),
    };
  }

  /** Restores what state() returned, for the same parameters: every name and length is checked first. */
  loadState(state: AdamWState): void {
    const { stepCount, moments } = readArgs('AdamW.loadState', state, ['stepCount', 'moments'] as const) as unknown as AdamWState;
    checkInteger('stepCount', stepCount, 0, Number.MAX_SAFE_INTEGER);
    const list = readArray(moments, this.params.length, 'moments');
    if (!list) throw new TypeError(`AdamW.loadState: expected at most ${this.params.length} moments but received ${describe(moments)}`);
    const byName = new Map(this.params.map((p) => [p.name, p]));
    const checked = (list as AdamWState['moments']).map((entry, k) => {
      const p = entry && typeof entry === 'object' ? byName.get(entry.name) : undefined;
      if (!p) throw new RangeError(`AdamW.loadState: moments[${k}] names no parameter of this optimizer (${describe(entry?.name)})`);
      for (const key of ['m', 'v'] as const) {
        const facts = typedArrayFacts(entry[key]);
        if (!facts || facts.kind !== 'Float32Array' || facts.length !== p.tensor.size) {
          throw new RangeError(`AdamW.loadState: expected a Float32Array of ${p.tensor.size} values for ${key} of ${p.name} but received ${describe(entry[key])}`);
        }
      }
      return { p, m: entry.m, v: entry.v };
    });
    for (const { p, m, v } of checked) {
      p.m ??= keep(Tensor.zeros(p.tensor.shape));
      p.v ??= keep(Tensor.zeros(p.tensor.shape));
      for (const [target, values] of [[p.m, m], [p.v, v]] as const) {
        const { storage, byteOffset } = hostStorage(target, 'AdamW.loadState');
        storage.write(values, byteOffset);
      }
    }
    this.stepCount = stepCount;
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
  return clipGradients(grads, maxNorm);
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
