/**
 * The GPT's neural-network ops on the CPU, forward and backward, f32, row-major, contiguous:
 * elementwise add/mul (broadcast), scale, sum/mean, embedding, layernorm, gelu, softmax, causal
 * self-attention, AdamW and global-norm clipping. Each function validates every argument here,
 * then makes one native call (native/napi/nn_bindings.cpp, kernels in native/core + native/cpu).
 *
 * Conventions:
 * - Forward functions write `out` (allocated when not given) and return it, with what backward
 *   needs (`mean`/`rstd` of layernorm, `att` of attention).
 * - Backward functions ACCUMULATE (`+=`) into the gradient arrays they are given, as llm.c and
 *   micrograd do: zero them once per step. Nothing is returned.
 * - Outputs may not share memory with inputs, except `out === a` for add, mul and scale.
 * - Results are bit-identical for any thread count. `implementation: 'reference'` runs the plain
 *   scalar spec (for tests).
 *
 * Not exported from lib/index.ts yet: the Tensor/autograd layer builds on these.
 */
import { native } from '../native';
import { checkInteger, checkNumber, checkOneOf, checkTypedArray, describe, expected } from '../validate';

export type Implementation = 'fast' | 'reference';

interface Options {
  /** `reference` runs the plain scalar spec instead of the fast kernels (for tests). */
  implementation?: Implementation;
}

const MAX_DIM = 2 ** 31 - 1;

function implOf(options: Options): 0 | 1 {
  const implementation = checkOneOf('implementation', options.implementation ?? 'fast', ['fast', 'reference'] as const);
  return implementation === 'reference' ? 0 : 1;
}

function checkArgs(args: unknown): void {
  if (typeof args !== 'object' || args === null) throw new TypeError(expected('an object of arguments', 'args', args));
}

function dim(name: string, value: unknown): number {
  return checkInteger(name, value, 1, MAX_DIM);
}

function floats(name: string, value: unknown, length: number, why = ''): Float32Array {
  return checkTypedArray(name, value, Float32Array, length, why);
}

/** A given output array (checked), or a new zeroed one. */
function output(name: string, value: unknown, length: number, why = ''): Float32Array {
  return value === undefined ? new Float32Array(length) : floats(name, value, length, why);
}

function overlaps(x: ArrayBufferView, y: ArrayBufferView): boolean {
  return x.buffer === y.buffer && x.byteOffset < y.byteOffset + y.byteLength && y.byteOffset < x.byteOffset + x.byteLength;
}

/** Every written array shares no memory with any other array of the call. */
function checkNoOverlap(written: Record<string, ArrayBufferView | null>, read: Record<string, ArrayBufferView | null>): void {
  const w = Object.entries(written).filter((e): e is [string, ArrayBufferView] => e[1] !== null);
  const r = Object.entries(read).filter((e): e is [string, ArrayBufferView] => e[1] !== null);
  for (let i = 0; i < w.length; i++) {
    for (const [name, other] of [...w.slice(i + 1), ...r]) {
      if (overlaps(w[i][1], other)) {
        throw new TypeError(`Expected ${w[i][0]} to share no memory with ${name} but received views of one buffer that overlap`);
      }
    }
  }
}

function product(shape: readonly number[]): number {
  return shape.reduce((p, d) => p * d, 1);
}

function checkShape(name: string, shape: unknown, minRank = 1): number[] {
  const ok = Array.isArray(shape) && shape.length >= minRank && shape.every((d) => Number.isInteger(d) && d >= 1 && d <= MAX_DIM);
  if (!ok) throw new TypeError(expected(`an array of at least ${minRank} positive integers`, name, shape));
  return shape as number[];
}

// ---- elementwise -----------------------------------------------------------------------------

export interface BinaryArgs extends Options {
  a: Float32Array;
  aShape: readonly number[];
  /** Broadcast over the leading dims of a: `bShape` must equal the trailing dims of `aShape`. */
  b: Float32Array;
  bShape: readonly number[];
  /** May be `a` itself (in place). */
  out?: Float32Array;
}

export interface BinaryBackwardArgs extends Options {
  aShape: readonly number[];
  bShape: readonly number[];
  dout: Float32Array;
  /** `+= dout (* b)`; omit when a needs no gradient. */
  da?: Float32Array;
  /** `+= dout (* a)` summed over the broadcast dims; omit when b needs no gradient. */
  db?: Float32Array;
}

/** [rows, cols] of a and b once bShape is checked to be a suffix of aShape. */
function broadcast(aShapeValue: unknown, bShapeValue: unknown): { rows: number; cols: number } {
  const aShape = checkShape('aShape', aShapeValue);
  const bShape = checkShape('bShape', bShapeValue);
  const suffix = aShape.slice(aShape.length - bShape.length);
  if (bShape.length > aShape.length || suffix.some((d, i) => d !== bShape[i])) {
    throw new RangeError(`Expected bShape equal to the trailing dims of aShape [${aShape}] but received [${bShape}]`);
  }
  const cols = product(bShape);
  return { rows: product(aShape) / cols, cols };
}

function binaryForward(args: BinaryArgs, kernel: 'addForward' | 'mulForward'): Float32Array {
  checkArgs(args);
  const impl = implOf(args);
  const { rows, cols } = broadcast(args.aShape, args.bShape);
  const a = floats('a', args.a, rows * cols, ` (aShape [${args.aShape}])`);
  const b = floats('b', args.b, cols, ` (bShape [${args.bShape}])`);
  const out = output('out', args.out, rows * cols, ` (aShape [${args.aShape}])`);
  checkNoOverlap({ out: out === a ? null : out }, { a, b });
  if (out === a) checkNoOverlap({ out }, { b });
  native()[kernel](impl, a, b, out, rows, cols);
  return out;
}

function binaryGrads(args: BinaryBackwardArgs) {
  checkArgs(args);
  const impl = implOf(args);
  const { rows, cols } = broadcast(args.aShape, args.bShape);
  const dout = floats('dout', args.dout, rows * cols, ` (aShape [${args.aShape}])`);
  const da = args.da === undefined ? null : floats('da', args.da, rows * cols, ` (aShape [${args.aShape}])`);
  const db = args.db === undefined ? null : floats('db', args.db, cols, ` (bShape [${args.bShape}])`);
  return { impl, rows, cols, dout, da, db };
}

/** `out = a + b`, b broadcast over the leading dims of a. */
export function addForward(args: BinaryArgs): Float32Array {
  return binaryForward(args, 'addForward');
}

/** `da += dout`, `db += dout` summed over the broadcast dims. */
export function addBackward(args: BinaryBackwardArgs): void {
  const { impl, rows, cols, dout, da, db } = binaryGrads(args);
  checkNoOverlap({ da, db }, { dout });
  native().addBackward(impl, dout, da, db, rows, cols);
}

/** `out = a * b`, b broadcast over the leading dims of a. */
export function mulForward(args: BinaryArgs): Float32Array {
  return binaryForward(args, 'mulForward');
}

/** `da += dout * b`, `db += dout * a` summed over the broadcast dims. Needs a and b. */
export function mulBackward(args: BinaryBackwardArgs & { a: Float32Array; b: Float32Array }): void {
  const { impl, rows, cols, dout, da, db } = binaryGrads(args);
  const a = floats('a', args.a, rows * cols, ` (aShape [${args.aShape}])`);
  const b = floats('b', args.b, cols, ` (bShape [${args.bShape}])`);
  checkNoOverlap({ da, db }, { dout, a, b });
  native().mulBackward(impl, a, b, dout, da, db, rows, cols);
}

/** `out = s * a` (out may be a: in place). */
export function scaleForward(args: { a: Float32Array; s: number; out?: Float32Array } & Options): Float32Array {
  checkArgs(args);
  const impl = implOf(args);
  const a = checkTypedArray('a', args.a, Float32Array, (args.a as Float32Array)?.length ?? -1);
  const s = checkNumber('s', args.s);
  const out = output('out', args.out, a.length, ' (the length of a)');
  if (out !== a) checkNoOverlap({ out }, { a });
  native().scaleForward(impl, a, s, out, a.length);
  return out;
}

/** `da += s * dout`. */
export function scaleBackward(args: { dout: Float32Array; s: number; da: Float32Array } & Options): void {
  checkArgs(args);
  const impl = implOf(args);
  const dout = checkTypedArray('dout', args.dout, Float32Array, (args.dout as Float32Array)?.length ?? -1);
  const s = checkNumber('s', args.s);
  const da = floats('da', args.da, dout.length, ' (the length of dout)');
  checkNoOverlap({ da }, { dout });
  native().scaleBackward(impl, dout, s, da, dout.length);
}

export type Reduction = 'sum' | 'mean';

export interface ReduceArgs extends Options {
  a: Float32Array;
  shape: readonly number[];
  /** `all`: one number (out of length 1); `last`: over the last dim (out of shape[:-1]). */
  over: 'all' | 'last';
  out?: Float32Array;
}

function reduceRowsCols(args: { shape: unknown; over: unknown }): { rows: number; cols: number } {
  const shape = checkShape('shape', args.shape);
  const over = checkOneOf('over', args.over, ['all', 'last'] as const);
  const cols = over === 'all' ? product(shape) : shape[shape.length - 1];
  return { rows: product(shape) / cols, cols };
}

/** Sum or mean of all elements or of the last dim; fp64 accumulation. */
export function reduceForward(reduction: Reduction, args: ReduceArgs): Float32Array {
  checkArgs(args);
  const impl = implOf(args);
  checkOneOf('reduction', reduction, ['sum', 'mean'] as const);
  const { rows, cols } = reduceRowsCols(args);
  const a = floats('a', args.a, rows * cols, ` (shape [${args.shape}])`);
  const out = output('out', args.out, rows, ` (shape [${args.shape}] reduced over ${args.over})`);
  checkNoOverlap({ out }, { a });
  native()[reduction === 'sum' ? 'sumForward' : 'meanForward'](impl, a, out, rows, cols);
  return out;
}

/** `da += dout` broadcast back over the reduced elements (`/ count` for the mean). */
export function reduceBackward(
  reduction: Reduction,
  args: Omit<ReduceArgs, 'a' | 'out'> & { dout: Float32Array; da: Float32Array },
): void {
  checkArgs(args);
  const impl = implOf(args);
  checkOneOf('reduction', reduction, ['sum', 'mean'] as const);
  const { rows, cols } = reduceRowsCols(args);
  const dout = floats('dout', args.dout, rows, ` (shape [${args.shape}] reduced over ${args.over})`);
  const da = floats('da', args.da, rows * cols, ` (shape [${args.shape}])`);
  checkNoOverlap({ da }, { dout });
  native()[reduction === 'sum' ? 'sumBackward' : 'meanBackward'](impl, dout, da, rows, cols);
}

// ---- embedding -------------------------------------------------------------------------------

export interface EmbeddingShape extends Options {
  /** `int32`, each in [0, vocab). */
  idx: Int32Array;
  vocab: number;
  channels: number;
}

function checkIndices(args: EmbeddingShape): { idx: Int32Array; vocab: number; channels: number } {
  if (!(args.idx instanceof Int32Array)) throw new TypeError(expected('an Int32Array', 'idx', args.idx));
  const vocab = dim('vocab', args.vocab);
  const channels = dim('channels', args.channels);
  const idx = checkTypedArray('idx', args.idx, Int32Array, args.idx.length);
  if (idx.length === 0) throw new RangeError(expected('at least one index', 'idx', idx));
  for (let i = 0; i < idx.length; i++) {
    if (idx[i] < 0 || idx[i] >= vocab) {
      throw new RangeError(`Expected idx in [0, ${vocab}) but received ${idx[i]} at position ${i}`);
    }
  }
  return { idx, vocab, channels };
}

/** `out[i,:] = table[idx[i],:]`; table `[vocab, channels]`, out `[idx.length, channels]`. */
export function embeddingForward(args: EmbeddingShape & { table: Float32Array; out?: Float32Array }): Float32Array {
  checkArgs(args);
  const impl = implOf(args);
  const { idx, vocab, channels } = checkIndices(args);
  const table = floats('table', args.table, vocab * channels, ` ([vocab ${vocab}, channels ${channels}])`);
  const out = output('out', args.out, idx.length * channels, ` ([${idx.length} indices, channels ${channels}])`);
  checkNoOverlap({ out }, { table, idx });
  native().embeddingForward(impl, idx, table, out, idx.length, channels);
  return out;
}

/** `dtable[idx[i],:] += dout[i,:]`, repeated indices added in index order. */
export function embeddingBackward(args: EmbeddingShape & { dout: Float32Array; dtable: Float32Array }): void {
  checkArgs(args);
  const impl = implOf(args);
  const { idx, vocab, channels } = checkIndices(args);
  const dout = floats('dout', args.dout, idx.length * channels, ` ([${idx.length} indices, channels ${channels}])`);
  const dtable = floats('dtable', args.dtable, vocab * channels, ` ([vocab ${vocab}, channels ${channels}])`);
  checkNoOverlap({ dtable }, { dout, idx });
  native().embeddingBackward(impl, idx, dout, dtable, idx.length, channels);
}

// ---- layernorm -------------------------------------------------------------------------------

export interface RowsShape extends Options {
  rows: number;
  channels: number;
}

/** Layer norm over the last dim, eps 1e-5: inp, out `[rows, channels]`; mean, rstd `[rows]`. */
export function layernormForward(
  args: RowsShape & { inp: Float32Array; weight: Float32Array; bias: Float32Array; out?: Float32Array; mean?: Float32Array; rstd?: Float32Array },
): { out: Float32Array; mean: Float32Array; rstd: Float32Array } {
  checkArgs(args);
  const impl = implOf(args);
  const rows = dim('rows', args.rows);
  const C = dim('channels', args.channels);
  const why = ` ([rows ${rows}, channels ${C}])`;
  const inp = floats('inp', args.inp, rows * C, why);
  const weight = floats('weight', args.weight, C, ` ([channels ${C}])`);
  const bias = floats('bias', args.bias, C, ` ([channels ${C}])`);
  const out = output('out', args.out, rows * C, why);
  const mean = output('mean', args.mean, rows, ` ([rows ${rows}])`);
  const rstd = output('rstd', args.rstd, rows, ` ([rows ${rows}])`);
  checkNoOverlap({ out, mean, rstd }, { inp, weight, bias });
  native().layernormForward(impl, inp, weight, bias, out, mean, rstd, rows, C);
  return { out, mean, rstd };
}

/** Accumulates dinp, dweight and dbias from dout and what forward saved. */
export function layernormBackward(
  args: RowsShape & {
    dout: Float32Array; inp: Float32Array; weight: Float32Array; mean: Float32Array; rstd: Float32Array;
    dinp: Float32Array; dweight: Float32Array; dbias: Float32Array;
  },
): void {
  checkArgs(args);
  const impl = implOf(args);
  const rows = dim('rows', args.rows);
  const C = dim('channels', args.channels);
  const why = ` ([rows ${rows}, channels ${C}])`;
  const dout = floats('dout', args.dout, rows * C, why);
  const inp = floats('inp', args.inp, rows * C, why);
  const weight = floats('weight', args.weight, C, ` ([channels ${C}])`);
  const mean = floats('mean', args.mean, rows, ` ([rows ${rows}])`);
  const rstd = floats('rstd', args.rstd, rows, ` ([rows ${rows}])`);
  const dinp = floats('dinp', args.dinp, rows * C, why);
  const dweight = floats('dweight', args.dweight, C, ` ([channels ${C}])`);
  const dbias = floats('dbias', args.dbias, C, ` ([channels ${C}])`);
  checkNoOverlap({ dinp, dweight, dbias }, { dout, inp, weight, mean, rstd });
  native().layernormBackward(impl, dout, inp, weight, mean, rstd, dinp, dweight, dbias, rows, C);
}

// ---- gelu ------------------------------------------------------------------------------------

/** GELU, GPT-2's tanh approximation, elementwise. */
export function geluForward(args: { inp: Float32Array; out?: Float32Array } & Options): Float32Array {
  checkArgs(args);
  const impl = implOf(args);
  const inp = checkTypedArray('inp', args.inp, Float32Array, (args.inp as Float32Array)?.length ?? -1);
  const out = output('out', args.out, inp.length, ' (the length of inp)');
  checkNoOverlap({ out }, { inp });
  native().geluForward(impl, inp, out, inp.length);
  return out;
}

/** `dinp += gelu'(inp) * dout`. */
export function geluBackward(args: { inp: Float32Array; dout: Float32Array; dinp: Float32Array } & Options): void {
  checkArgs(args);
  const impl = implOf(args);
  const inp = checkTypedArray('inp', args.inp, Float32Array, (args.inp as Float32Array)?.length ?? -1);
  const dout = floats('dout', args.dout, inp.length, ' (the length of inp)');
  const dinp = floats('dinp', args.dinp, inp.length, ' (the length of inp)');
  checkNoOverlap({ dinp }, { inp, dout });
  native().geluBackward(impl, inp, dout, dinp, inp.length);
}

// ---- softmax ---------------------------------------------------------------------------------

/** Softmax over the last dim: inp, out `[rows, cols]`. */
export function softmaxForward(args: { inp: Float32Array; rows: number; cols: number; out?: Float32Array } & Options): Float32Array {
  checkArgs(args);
  const impl = implOf(args);
  const rows = dim('rows', args.rows);
  const cols = dim('cols', args.cols);
  const inp = floats('inp', args.inp, rows * cols, ` ([rows ${rows}, cols ${cols}])`);
  const out = output('out', args.out, rows * cols, ` ([rows ${rows}, cols ${cols}])`);
  checkNoOverlap({ out }, { inp });
  native().softmaxForward(impl, inp, out, rows, cols);
  return out;
}

/** `dinp += out * (dout - sum(dout * out))`, from the forward's output. */
export function softmaxBackward(
  args: { out: Float32Array; dout: Float32Array; dinp: Float32Array; rows: number; cols: number } & Options,
): void {
  checkArgs(args);
  const impl = implOf(args);
  const rows = dim('rows', args.rows);
  const cols = dim('cols', args.cols);
  const why = ` ([rows ${rows}, cols ${cols}])`;
  const out = floats('out', args.out, rows * cols, why);
  const dout = floats('dout', args.dout, rows * cols, why);
  const dinp = floats('dinp', args.dinp, rows * cols, why);
  checkNoOverlap({ dinp }, { out, dout });
  native().softmaxBackward(impl, out, dout, dinp, rows, cols);
}

// ---- attention -------------------------------------------------------------------------------

export interface AttentionShape extends Options {
  batch: number;
  tokens: number;
  channels: number;
  /** Must divide channels. */
  heads: number;
}

function attentionShape(args: AttentionShape): { B: number; T: number; C: number; NH: number } {
  const B = dim('batch', args.batch);
  const T = dim('tokens', args.tokens);
  const C = dim('channels', args.channels);
  const NH = dim('heads', args.heads);
  if (C % NH !== 0) {
    throw new RangeError(`Expected heads dividing channels (${C}) but received ${describe(args.heads)}`);
  }
  return { B, T, C, NH };
}

/**
 * Causal self-attention: qkv `[B, T, 3C]` (q, k, v, each split into heads) to out `[B, T, C]`;
 * att `[B, NH, T, T]` (the softmax weights) is saved for backward.
 */
export function attentionForward(
  args: AttentionShape & { qkv: Float32Array; out?: Float32Array; att?: Float32Array },
): { out: Float32Array; att: Float32Array } {
  checkArgs(args);
  const impl = implOf(args);
  const { B, T, C, NH } = attentionShape(args);
  const qkv = floats('qkv', args.qkv, B * T * 3 * C, ` ([B ${B}, T ${T}, 3C ${3 * C}])`);
  const out = output('out', args.out, B * T * C, ` ([B ${B}, T ${T}, C ${C}])`);
  const att = output('att', args.att, B * NH * T * T, ` ([B ${B}, NH ${NH}, T ${T}, T ${T}])`);
  checkNoOverlap({ out, att }, { qkv });
  native().attentionForward(impl, qkv, att, out, B, T, C, NH);
  return { out, att };
}

/** `dqkv +=` the gradient of attentionForward's out, given dout and the saved att. */
export function attentionBackward(
  args: AttentionShape & { qkv: Float32Array; att: Float32Array; dout: Float32Array; dqkv: Float32Array },
): void {
  checkArgs(args);
  const impl = implOf(args);
  const { B, T, C, NH } = attentionShape(args);
  const qkv = floats('qkv', args.qkv, B * T * 3 * C, ` ([B ${B}, T ${T}, 3C ${3 * C}])`);
  const att = floats('att', args.att, B * NH * T * T, ` ([B ${B}, NH ${NH}, T ${T}, T ${T}])`);
  const dout = floats('dout', args.dout, B * T * C, ` ([B ${B}, T ${T}, C ${C}])`);
  const dqkv = floats('dqkv', args.dqkv, B * T * 3 * C, ` ([B ${B}, T ${T}, 3C ${3 * C}])`);
  checkNoOverlap({ dqkv }, { qkv, att, dout });
  native().attentionBackward(impl, qkv, att, dout, dqkv, B, T, C, NH);
}

// ---- optimizer -------------------------------------------------------------------------------

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

/** One fused AdamW update of one parameter tensor (Loshchilov and Hutter 2019). */
export function adamwUpdate(args: AdamWArgs): void {
  checkArgs(args);
  const impl = implOf(args);
  const param = checkTypedArray('param', args.param, Float32Array, (args.param as Float32Array)?.length ?? -1);
  const grad = floats('grad', args.grad, param.length, ' (the length of param)');
  const m = floats('m', args.m, param.length, ' (the length of param)');
  const v = floats('v', args.v, param.length, ' (the length of param)');
  checkNoOverlap({ param, m, v }, { grad });
  const lr = checkNumber('lr', args.lr, { min: 0 });
  const beta1 = checkNumber('beta1', args.beta1 ?? 0.9, { min: 0, max: 1, maxExclusive: true });
  const beta2 = checkNumber('beta2', args.beta2 ?? 0.999, { min: 0, max: 1, maxExclusive: true });
  const eps = checkNumber('eps', args.eps ?? 1e-8, { min: 0, minExclusive: true });
  const weightDecay = checkNumber('weightDecay', args.weightDecay ?? 0, { min: 0 });
  const step = checkInteger('step', args.step, 1, Number.MAX_SAFE_INTEGER);
  native().adamwUpdate(impl, param, grad, m, v, param.length, lr, beta1, beta2, eps, weightDecay, step);
}

function checkGradList(grads: unknown): Float32Array[] {
  if (!Array.isArray(grads)) throw new TypeError(expected('an array of Float32Arrays', 'grads', grads));
  return grads.map((g, k) => checkTypedArray(`grads[${k}]`, g, Float32Array, (g as Float32Array)?.length ?? -1));
}

/** sqrt of the sum of squares of every gradient, in list order, accumulated in fp64. */
export function globalGradNorm(grads: Float32Array[], options: Options = {}): number {
  const list = checkGradList(grads);
  return native().globalGradNorm(implOf(options), list);
}

/**
 * Scales every gradient in place by `maxNorm / (norm + 1e-6)` when their global norm exceeds
 * maxNorm (PyTorch's clip_grad_norm_); returns the norm before clipping.
 */
export function clipGradNorm(grads: Float32Array[], maxNorm: number, options: Options = {}): number {
  const list = checkGradList(grads);
  checkNumber('maxNorm', maxNorm, { min: 0, minExclusive: true });
  const impl = implOf(options);
  const norm = native().globalGradNorm(impl, list);
  if (norm > maxNorm) {
    const factor = maxNorm / (norm + 1e-6);
    for (const g of list) native().scaleForward(impl, g, factor, g, g.length);
  }
  return norm;
}
