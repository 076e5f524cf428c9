/**
 * The layers of GPT-2 as Modules over the ops of lib/functional.ts: Linear, Embedding,
 * LayerNorm, CausalSelfAttention, MLP, Block. Shapes (B batch, T tokens, C width):
 *
 *   Linear              x [..., in]  -> [..., out]     weight [out, in] (PyTorch's layout), bias [out]
 *   Embedding           ids [...]    -> [..., dim]     weight [count, dim]
 *   LayerNorm           x [..., C]   -> [..., C]       weight, bias [C]
 *   CausalSelfAttention x [B, T, C]  -> [B, T, C]      qkv: Linear C -> 3C, proj: Linear C -> C
 *   MLP                 x [B, T, C]  -> [B, T, C]      fc: Linear C -> 4C, gelu, proj: Linear 4C -> C
 *   Block               x [B, T, C]  -> [B, T, C]      x + attn(ln1(x)), then + mlp(ln2(x)) (pre-norm)
 *
 * Initialization is GPT-2's (Radford et al. 2019; nanoGPT's `_init_weights`): weights and
 * embeddings normal(0, 0.02), biases 0, LayerNorm weight 1; the projections that write into the
 * residual stream (attn.proj, mlp.proj) get std 0.02 / sqrt(2 * layers), so that the stream's
 * variance does not grow with depth. Every draw comes from one seeded generator, in the order the
 * parameters are registered: a seed gives the same model on every machine.
 */
import { mulberry32 } from '../example';
import { add, causalSelfAttention, embedding, gelu, layerNorm, linear } from '../functional';
import { checkBoolean, checkNumber, describe, expected, readArgs } from '../validate';
import { Tensor, checkShape, disposeOnThrow, isTensor } from '../tensor';
import { Module } from './module';

/** Draws from normal(0, 1). */
export type NormalRandom = () => number;

/** A seeded normal(0, 1) generator: mulberry32 uniforms through Box-Muller. */
export function normalRandom(seed: number): NormalRandom {
  checkSeed(seed);
  const uniform = mulberry32(seed);
  let spare: number | null = null;
  return () => {
    if (spare !== null) {
      const value = spare;
      spare = null;
      return value;
    }
    const u1 = 1 - uniform(); // (0, 1]: log(u1) is finite
    const u2 = uniform();
    const radius = Math.sqrt(-2 * Math.log(u1));
    spare = radius * Math.sin(2 * Math.PI * u2);
    return radius * Math.cos(2 * Math.PI * u2);
  };
}

/** A tensor of `shape` drawn from normal(0, std). */
export function normalTensor(shape: readonly number[], std: number, random: NormalRandom): Tensor {
  const size = checkShape(shape).reduce((n, d) => n * d, 1);
  let values: Float32Array;
  try {
    values = new Float32Array(size);
  } catch {
    throw new RangeError(`out of memory: could not allocate ${size * 4} bytes for initial weights of shape [${shape}]`);
  }
  for (let i = 0; i < size; i++) values[i] = random() * std;
  return Tensor.from(values, shape);
}

/** A seed is an integer in [0, 2^32): NaN, fractions and negatives are errors, not 0. */
export function checkSeed(seed: unknown, name = 'seed'): number {
  if (typeof seed !== 'number' || !Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new RangeError(expected('an integer in [0, 2^32)', name, seed));
  }
  return seed;
}

/** A layer's options, read once: random a function, std and projStd positive numbers, bias a boolean. */
function layerOptions<K extends 'random' | 'std' | 'projStd' | 'bias'>(layer: string, options: unknown, keys: readonly K[]):
  { random?: NormalRandom; std?: number; projStd?: number; bias?: boolean } {
  const x = readArgs(`${layer} options`, options, keys) as Record<string, unknown>;
  if (x.random !== undefined && typeof x.random !== 'function') throw new TypeError(expected('a function returning normal(0, 1) draws', `${layer} options.random`, x.random));
  for (const key of ['std', 'projStd']) {
    if (x[key] !== undefined) checkNumber(`${layer} options.${key}`, x[key], { min: 0, minExclusive: true });
  }
  if (x.bias !== undefined) checkBoolean(`${layer} options.bias`, x.bias);
  return x as { random?: NormalRandom; std?: number; projStd?: number; bias?: boolean };
}

function checkDim(layer: string, name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 2 ** 31 - 1) {
    throw new RangeError(`${layer}: expected a positive integer for ${name} but received ${describe(value)}`);
  }
  return value;
}

/** Throws unless x is a live f32 tensor whose last dim is `size`, naming the layer and both shapes. */
function checkInput(layer: string, x: Tensor, size: number): void {
  if (!isTensor(x)) throw new TypeError(`${layer}: expected a Tensor input but received ${describe(x)}`);
  x.assertAlive(layer);
  if (x.dtype !== 'f32') throw new TypeError(`${layer}: expected an f32 input but received ${x}`);
  if (x.shape.length < 1 || x.shape[x.shape.length - 1] !== size) {
    throw new RangeError(`${layer}: expected an input of shape [..., ${size}] but received [${x.shape}]`);
  }
}

export interface LinearOptions {
  /** Add a bias (default true). */
  bias?: boolean;
  /** The generator of the initial weights (default: seed 0). */
  random?: NormalRandom;
  /** The std of the initial weights (default 0.02). */
  std?: number;
}

/** y = x weight^T + bias. */
export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;

  constructor(readonly inFeatures: number, readonly outFeatures: number, optionsValue: LinearOptions = {}) {
    super();
    checkDim('Linear', 'inFeatures', inFeatures);
    checkDim('Linear', 'outFeatures', outFeatures);
    const options = layerOptions('Linear', optionsValue, ['random', 'std', 'bias'] as const);
    const random = options.random ?? normalRandom(0);
    this.weight = this.parameter('weight', normalTensor([outFeatures, inFeatures], options.std ?? 0.02, random));
    this.bias = options.bias === false ? null : this.parameter('bias', Tensor.zeros([outFeatures]));
  }

  forward(x: Tensor): Tensor {
    checkInput(`Linear(${this.inFeatures} -> ${this.outFeatures})`, x, this.inFeatures);
    return linear(x, this.weight, this.bias);
  }
}

/** Rows of a table picked by integer ids. */
export class Embedding extends Module {
  readonly weight: Tensor;

  constructor(readonly count: number, readonly dim: number, optionsValue: { random?: NormalRandom; std?: number } = {}) {
    super();
    const options = layerOptions('Embedding', optionsValue, ['random', 'std'] as const);
    checkDim('Embedding', 'count', count);
    checkDim('Embedding', 'dim', dim);
    this.weight = this.parameter('weight', normalTensor([count, dim], options.std ?? 0.02, options.random ?? normalRandom(0)));
  }

  /** ids: an i32 tensor or an Int32Array (then of shape [length]), values in [0, count). */
  forward(ids: Tensor | Int32Array): Tensor {
    return embedding(this.weight, ids);
  }
}

export class LayerNorm extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;

  constructor(readonly size: number) {
    super();
    checkDim('LayerNorm', 'size', size);
    this.weight = this.parameter('weight', Tensor.from(new Float32Array(size).fill(1), [size]));
    this.bias = this.parameter('bias', Tensor.zeros([size]));
  }

  forward(x: Tensor): Tensor {
    checkInput(`LayerNorm(${this.size})`, x, this.size);
    return layerNorm(x, this.weight, this.bias);
  }
}

/** Causal multi-head self-attention: one Linear to q, k, v side by side, the fused op, a projection. */
export class CausalSelfAttention extends Module {
  readonly qkv: Linear;
  readonly proj: Linear;

  constructor(readonly width: number, readonly heads: number, optionsValue: { random?: NormalRandom; projStd?: number } = {}) {
    super();
    const options = layerOptions('CausalSelfAttention', optionsValue, ['random', 'projStd'] as const);
    checkDim('CausalSelfAttention', 'width', width);
    checkDim('CausalSelfAttention', 'heads', heads);
    if (width % heads !== 0) throw new RangeError(`CausalSelfAttention: expected heads dividing width ${width} but received ${heads}`);
    const random = options.random ?? normalRandom(0);
    this.qkv = this.module('qkv', new Linear(width, 3 * width, { random }));
    this.proj = this.module('proj', new Linear(width, width, { random, std: options.projStd }));
  }

  /** x [B, T, C] -> [B, T, C]. */
  forward(x: Tensor): Tensor {
    checkInput(`CausalSelfAttention(${this.width}, ${this.heads} heads)`, x, this.width);
    if (x.shape.length !== 3) throw new RangeError(`CausalSelfAttention: expected an input of shape [B, T, ${this.width}] but received [${x.shape}]`);
    return disposeOnThrow(() => this.proj.forward(causalSelfAttention(this.qkv.forward(x), this.heads)));
  }
}

export class MLP extends Module {
  readonly fc: Linear;
  readonly proj: Linear;

  constructor(readonly width: number, optionsValue: { random?: NormalRandom; projStd?: number } = {}) {
    super();
    const options = layerOptions('MLP', optionsValue, ['random', 'projStd'] as const);
    checkDim('MLP', 'width', width);
    const random = options.random ?? normalRandom(0);
    this.fc = this.module('fc', new Linear(width, 4 * width, { random }));
    this.proj = this.module('proj', new Linear(4 * width, width, { random, std: options.projStd }));
  }

  forward(x: Tensor): Tensor {
    return disposeOnThrow(() => this.proj.forward(gelu(this.fc.forward(x))));
  }
}

/** GPT-2's transformer block: pre-norm residual attention, then pre-norm residual MLP. */
export class Block extends Module {
  readonly ln1: LayerNorm;
  readonly attn: CausalSelfAttention;
  readonly ln2: LayerNorm;
  readonly mlp: MLP;

  constructor(width: number, heads: number, options: { random?: NormalRandom; projStd?: number } = {}) {
    super();
    this.ln1 = this.module('ln1', new LayerNorm(width));
    this.attn = this.module('attn', new CausalSelfAttention(width, heads, options));
    this.ln2 = this.module('ln2', new LayerNorm(width));
    this.mlp = this.module('mlp', new MLP(width, options));
  }

  forward(x: Tensor): Tensor {
    return disposeOnThrow(() => {
      const afterAttention = add(x, this.attn.forward(this.ln1.forward(x)));
      return add(afterAttention, this.mlp.forward(this.ln2.forward(afterAttention)));
    });
  }
}

/** Modules registered under the names 0, 1, 2, ... (PyTorch's ModuleList). */
export class ModuleList<M extends Module> extends Module {
  readonly items: readonly M[];

  constructor(items: M[]) {
    super();
    items.forEach((item, i) => this.module(String(i), item));
    this.items = [...items];
  }
}
