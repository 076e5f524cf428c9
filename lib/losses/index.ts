/**
 * The fused preference losses: log-softmax at each label, masked sums per sequence, the loss of
 * every pair (or group of K responses), its metrics and the gradient with respect to the logits,
 * in one native call that never materializes a log-softmax or probability tensor.
 *
 * The contract (formulas, kinks, layout, metrics, bad input) is docs/losses.md; the list of
 * losses and their parameters is the registry (./registry.ts). In short:
 *
 * - `logits` `[2P, T, V]`: rows `0..P-1` chosen, rows `P..2P-1` rejected (pair `i` is rows
 *   `i` and `P+i`); for `exo`, `[K*P, T, V]` with row `k*P + i` response `k` of prompt `i`.
 *   `labels[s,t]` is the token `logits[s,t,:]` predicts (no shift is done); `ignoreIndex` marks
 *   uncounted tokens.
 * - `pi[s] = sum_t m[s,t] * (z[s,t,y] - logsumexp(z[s,t,:]))`; for pair `i`,
 *   `uw = pi[i] - ref[i]`, `ul = pi[P+i] - ref[P+i]`, `D = uw - ul`.
 * - `dpo`: `-(1-e)*logsigmoid(b*D) - e*logsigmoid(-b*D)` (Rafailov et al. 2023).
 * - `minordpo`: the same with `z = b*(uw - max(0, ul))` (arXiv 2408.09834): the rejected answer
 *   is pushed down only while the policy still rates it above the reference.
 * - `dlogits[s,t,v] = c[s] * m[s,t] * ([v == y] - softmax(z[s,t,:])[v])` with `c[s] = dLoss/dpi[s]`.
 */
import { markAsUntransferable } from 'node:worker_threads';

import { NonFiniteLogitError } from '../errors';
import { needsGrad, record } from '../autograd';
import {
  cudaAddon, lossOutputs, native, withLossOutputs, type NativeCudaLossRequest, type NativeLossRequest, type NativeLossResult, type NativeStorage,
} from '../native';
import { Tensor, cudaStorage, disposeOnThrow, hostStorage, isTensor } from '../tensor';
import { LOSS_INPUT_KEYS, LOSS_PARAMETER_KEYS, checkLoss, lossInputs, type CheckedLoss, type LossParameterArgs } from './parameters';
import { LOSS_NAMES, REFERENCE_FREE_LOSSES, type LossName } from './registry';
import {
  checkBoolean,
  checkInteger,
  checkOneOf,
  checkTypedArray,
  describe,
  expected,
  isResizable,
  readArgs,
  readArray,
  typedArrayFacts,
} from '../validate';

export { LOSSES, LOSS_NAMES, REFERENCE_FREE_LOSSES, PARAMETERS, lossEntry, type CanonicalLossName, type LossEntry, type LossName } from './registry';
export type { LossNumberParameters, LossParameterArgs, NllReduction } from './parameters';

export type LogitsDType = 'f32' | 'bf16' | 'f16';
const DTYPES: readonly LogitsDType[] = ['f32', 'bf16', 'f16'];
const DTYPE_CODES: Record<LogitsDType, 0 | 1 | 2> = { f32: 0, bf16: 1, f16: 2 };

/** `f32` logits are a Float32Array; `bf16`/`f16` logits are their bits in a Uint16Array. */
export type Logits = Float32Array | Uint16Array;

export interface SequenceLogpsArgs {
  logits: Logits;
  /** Storage type of `logits` (default `f32`). */
  dtype?: LogitsDType;
  /** `[2P, T, V]` for the losses; any even or odd row count for `sequenceLogps`. */
  shape: readonly [number, number, number];
  /** `int32`, length `rows*T`: the token each position predicts, or `ignoreIndex`. */
  labels: Int32Array;
  /** The label of uncounted tokens (default -100). */
  ignoreIndex?: number;
  /** Divide each row's sum by its token count (TRL's `average_log_prob`; default false). */
  averageLogProb?: boolean;
  /** Let non-finite logits through: the affected rows yield NaN and are reported. */
  allowNonFinite?: boolean;
  /** `reference` runs the plain scalar spec instead of the fast kernels (for tests). */
  implementation?: 'fast' | 'reference';
}

/** The per-row inputs of the loss besides the logits (docs/losses.md). */
export interface LossInputArgs {
  /**
   * The reference model's sequence log-probs, one per row in the rows' order (not for `simpo`,
   * `orpo`): a Float32Array (or a `[rows]` f32 tensor), or an array of K of them, combined as
   * MRPO (arXiv 2405.16388) with `referenceWeights` and `referenceClip`.
   */
  refLogps?: Float32Array | Tensor | readonly (Float32Array | Tensor)[];
  /** K positive weights of the references (normalized; default 1/K each). */
  referenceWeights?: readonly number[];
  /** `eps` >= 0: each reference after the first is clipped to within `eps * |r_0|` of the first (default: no clip). */
  referenceClip?: number;
  /** `exo`'s rewards, one per row (optional): the target is `softmax_k(R_k / exoRewardBeta)`. */
  rewards?: Float32Array | Tensor;
}

export interface PreferenceLossArgs extends SequenceLogpsArgs, LossParameterArgs, LossInputArgs {
  /** Compute `dlogits` (default true). */
  grad?: boolean;
  /** Write `dlogits` over `logits` (default false). */
  inPlace?: boolean;
  /**
   * Write `dlogits` into this array (same kind and length as `logits`) instead of a new one:
   * a training loop that reuses it saves an allocation (and its page faults) per step.
   */
  out?: Logits;
}

export interface PreferenceMetrics {
  rewardsChosen: number;
  rewardsRejected: number;
  rewardsAccuracy: number;
  rewardsMargin: number;
  logpsChosen: number;
  logpsRejected: number;
  /** The NLL term's NLL: the weighted one when `nllWeight > 0`, orpo's own otherwise, else 0. */
  nll: number;
  /** The fraction of pairs whose rejected answer the policy rates below the reference (`ul < 0`); losses with a reference only. */
  rejectedBelowReference?: number;
}

export interface SequenceLogpsResult {
  /** Per row: the summed (or, with `averageLogProb`, averaged) log-probs of counted tokens. */
  logps: Float32Array;
  /** Per row: how many tokens were counted. */
  tokenCounts: Int32Array;
  /** Rows with no counted token (their logps are 0). */
  emptyRows: number[];
  /** Rows holding a non-finite logit (only with `allowNonFinite`). */
  nonFiniteRows: number[];
}

export interface PreferenceLossResult extends SequenceLogpsResult {
  /** The batch loss: the mean over pairs, plus `nllWeight * NLL`. */
  loss: number;
  /** Same kind and length as `logits`; the `logits` array itself when `inPlace`. */
  dlogits?: Logits;
  metrics: PreferenceMetrics;
}

const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;

interface CheckedShape {
  rows: number;
  tokens: number;
  vocab: number;
}

/** The shape; with `rowsPerPrompt` (2 for pairs, K for exo), its rows a multiple of it. */
function checkShape(shapeValue: unknown, rowsPerPrompt: number | null): CheckedShape {
  const shape = readArray(shapeValue, 8, 'shape');  // each dim read once
  const isTriple =
    shape !== null &&
    shape.length === 3 &&
    shape.every((d) => typeof d === 'number' && Number.isInteger(d) && d > 0);
  if (!isTriple) {
    throw new TypeError(expected('three positive integers [2P, T, V]', 'shape', shapeValue));
  }
  const [rows, tokens, vocab] = shape as number[];
  if (rows * tokens * vocab > 2 ** 50) throw new RangeError(expected('a shape of at most 2^50 logits', 'shape', shapeValue));
  if (vocab > INT32_MAX) throw new RangeError(expected(`V <= ${INT32_MAX}`, 'shape', shape));
  if (rowsPerPrompt === 2 && rows % 2 !== 0) {
    throw new RangeError(
      `Expected an even number of rows (2P: P chosen then P rejected) for shape but received ${rows} rows in [${shape}]`,
    );
  }
  if (rowsPerPrompt !== null && rows % rowsPerPrompt !== 0) {
    throw new RangeError(
      `Expected a number of rows divisible by groupSize ${rowsPerPrompt} (K*P: response k of prompt i at row k*P + i) for shape but received ${rows} rows in [${shape}]`,
    );
  }
  return { rows, tokens, vocab };
}

/** Labels already checked to hold rows * tokens elements (read by index: never by their length). */
function checkLabels(labels: Int32Array, shape: CheckedShape, ignoreIndex: number): void {
  const { rows, tokens, vocab } = shape;
  for (let i = 0; i < rows * tokens; i++) {
    const y = labels[i];
    if ((y < 0 || y >= vocab) && y !== ignoreIndex) {
      const row = Math.floor(i / tokens);
      throw new RangeError(
        `Expected labels in [0, ${vocab}) or ignoreIndex ${ignoreIndex} but received ${y} at row ${row}, position ${i - row * tokens}`,
      );
    }
  }
}

function checkLogits(args: { dtype?: unknown; logits?: unknown }, shape: CheckedShape): { dtype: LogitsDType; logits: Logits } {
  const dtype = checkOneOf('dtype', args.dtype ?? 'f32', DTYPES);
  const length = shape.rows * shape.tokens * shape.vocab;
  const why = ` (shape [${shape.rows}, ${shape.tokens}, ${shape.vocab}], dtype ${dtype})`;
  const logits =
    dtype === 'f32'
      ? checkTypedArray('logits', args.logits, Float32Array, length, why)
      : checkTypedArray('logits', args.logits, Uint16Array, length, `${why}, as 16-bit patterns`);
  return { dtype, logits };
}

/** A request whose logits are a typed array (the typed-array API). */
type TypedLossRequest = NativeLossRequest & { logits: Logits; dlogits?: Logits | null };

/** The arguments of sequenceLogps, and of every loss form. */
const SEQUENCE_KEYS = ['logits', 'dtype', 'shape', 'labels', 'ignoreIndex', 'averageLogProb', 'allowNonFinite', 'implementation'] as const;
/** Every argument preferenceLoss and preferenceLossAsync take, in either form. */
const LOSS_KEYS = [...SEQUENCE_KEYS, ...LOSS_PARAMETER_KEYS, ...LOSS_INPUT_KEYS, 'grad', 'inPlace', 'out'] as const;

/** The arguments of one call, each read once (validate.ts's readArgs): nothing trusted yet. */
type Snapshot = { [K in (typeof LOSS_KEYS)[number]]?: unknown };

function snapshot(op: string, args: unknown, keys: readonly string[]): Snapshot {
  return readArgs(op, args, keys) as unknown as Snapshot;
}

function baseRequest(args: Snapshot, rowsPerPrompt: number | null): TypedLossRequest {
  const shape = checkShape(args.shape, rowsPerPrompt);
  const { dtype, logits } = checkLogits(args, shape);
  const labels = checkTypedArray('labels', args.labels, Int32Array, shape.rows * shape.tokens,
    ` (shape [${shape.rows}, ${shape.tokens}])`);
  const ignoreIndex = checkInteger('ignoreIndex', args.ignoreIndex ?? -100, INT32_MIN, INT32_MAX);
  checkLabels(labels, shape, ignoreIndex);
  const implementation = checkOneOf('implementation', args.implementation ?? 'fast', ['fast', 'reference'] as const);
  return {
    impl: implementation === 'reference' ? 0 : 1,
    logits,
    dtype: DTYPE_CODES[dtype],
    ...shape,
    labels,
    ignoreIndex,
    allowNonFinite: checkBoolean('allowNonFinite', args.allowNonFinite ?? false),
    withLoss: false,
  };
}

/** Arrays from 2 MiB up come from the addon, on huge pages: V8's own cost 4 KiB page faults. */
const LARGE_ARRAY_BYTES = 2 ** 21;

function newLogitsArray(dtype: 0 | 1 | 2, length: number): Logits {
  const bytes = length * (dtype === 0 ? 4 : 2);
  if (bytes < LARGE_ARRAY_BYTES) {
    try {
      return dtype === 0 ? new Float32Array(length) : new Uint16Array(length);
    } catch {
      throw new RangeError(`preferenceLoss: out of memory: could not allocate ${bytes} bytes for dlogits`);
    }
  }
  let buffer: ArrayBuffer;
  try {
    buffer = new ArrayBuffer(bytes);  // a RangeError when memory is short, never an abort
  } catch {
    throw new RangeError(`preferenceLoss: out of memory: could not allocate ${bytes} bytes for dlogits`);
  }
  native().adviseHugePages(buffer);
  return dtype === 0 ? new Float32Array(buffer) : new Uint16Array(buffer);
}

/** The per-row arrays of a loss call: a tensor's data copied (checked against dtype f32 and shape [rows]). */
function rowArray(name: string, value: unknown, rows: number): Float32Array | undefined {
  return isTensor(value) ? arrayOfTensor<Float32Array>(name, value, 'f32', [rows]) : undefined;
}

/**
 * `grad` and `inPlace`, checked together and against `out` (an array or a tensor, by form): in
 * place needs the gradient, and an out buffer makes sense only for a gradient not in place.
 */
function gradientOptions(args: { grad?: unknown; inPlace?: unknown; out?: unknown }, outKind: 'array' | 'tensor'): { grad: boolean; inPlace: boolean } {
  const grad = checkBoolean('grad', args.grad ?? true);
  const inPlace = checkBoolean('inPlace', args.inPlace ?? false);
  if (inPlace && !grad) {
    throw new TypeError('Expected grad: true with inPlace: true (in place writes dlogits over logits) but received grad: false');
  }
  if (args.out !== undefined && (!grad || inPlace)) {
    throw new TypeError(`Expected no out ${outKind} with ${inPlace ? 'inPlace: true' : 'grad: false'} but received ${describe(args.out)}`);
  }
  return { grad, inPlace };
}

function lossRequest(args: Snapshot): { request: TypedLossRequest; inPlace: boolean } {
  const loss = checkLoss(args);
  const request = baseRequest(args, loss.rowsPerPrompt);
  const { fields } = loss;
  const { grad, inPlace } = gradientOptions(args, 'array');
  const { refLogps, rewards } = lossInputs(args, loss, request.rows, rowArray);
  const logitCount = request.rows * request.tokens * request.vocab;  // checked: the logits hold exactly this many
  let dlogits: Logits | null = null;
  if (args.out !== undefined) {
    const kind = request.dtype === 0 ? Float32Array : Uint16Array;
    dlogits = checkTypedArray('out', args.out, kind, logitCount, ' (the kind and length of logits)');
    if (typedArrayFacts(dlogits)!.buffer === typedArrayFacts(request.logits)!.buffer) {
      throw new TypeError('Expected an out array that does not share memory with logits (use inPlace: true to write over them)');
    }
  } else if (grad) {
    dlogits = inPlace ? request.logits : newLogitsArray(request.dtype, logitCount);
  }
  return { inPlace, request: { ...request, ...fields, withLoss: true, refLogps, rewards, dlogits } };
}

/** The fused loss on the CPU, synchronously, with its result arrays made here (native.ts). */
export function runLoss(request: NativeLossRequest, operation = 'preferenceLoss'): NativeLossResult {
  const outputs = lossOutputs(operation, request.rows, request.tokens, request.withLoss, request.returnLse ?? false);
  return withLossOutputs(native().preferenceLoss({ ...request, ...outputs }), outputs);
}

/** The same on a worker thread. */
async function runLossAsync(request: NativeLossRequest): Promise<NativeLossResult> {
  const outputs = lossOutputs('preferenceLossAsync', request.rows, request.tokens, request.withLoss, request.returnLse ?? false);
  return withLossOutputs(await native().preferenceLossAsync({ ...request, ...outputs }), outputs);
}

/** The fused loss on cuda tensors (the backward pass alone returns nothing). */
function runCudaLoss(request: NativeCudaLossRequest, operation: string): NativeLossResult {
  const addon = cudaAddon(operation);
  if (request.backwardOnly) {
    addon.cudaPreferenceLoss(request);
    return { nonFinite: null, nonFiniteRows: [] };
  }
  const outputs = lossOutputs(operation, request.rows, request.tokens, true, request.returnLse ?? false);
  return withLossOutputs(addon.cudaPreferenceLoss({ ...request, ...outputs })!, outputs);
}

async function runCudaLossAsync(request: NativeCudaLossRequest, operation: string): Promise<NativeLossResult> {
  const outputs = lossOutputs(operation, request.rows, request.tokens, true, request.returnLse ?? false);
  return withLossOutputs((await cudaAddon(operation).cudaPreferenceLossAsync({ ...request, ...outputs }))!, outputs);
}

/** Decodes one stored logit for an error message. */
function logitValue(logits: Logits, dtype: 0 | 1 | 2, index: number): number {
  if (dtype === 0) return logits[index];
  const bits = logits[index];
  if (dtype === 1) return new Float32Array(new Uint32Array([bits << 16]).buffer)[0];
  const exponent = (bits >> 10) & 0x1f;
  const sign = bits & 0x8000 ? -1 : 1;
  if (exponent === 0x1f) return bits & 0x3ff ? NaN : sign * Infinity;
  return sign * (exponent === 0 ? (bits & 0x3ff) * 2 ** -24 : (1 + (bits & 0x3ff) / 1024) * 2 ** (exponent - 15));
}

const DTYPE_NAMES: readonly LogitsDType[] = ['f32', 'bf16', 'f16'];

/**
 * Throws NonFiniteLogitError when the kernels stopped on a non-finite logit, and a RangeError
 * naming the pair when a gradient does not fit the dtype of dlogits (nothing was written then).
 */
function throwIfStopped(request: Pick<NativeLossRequest, 'allowNonFinite' | 'tokens' | 'vocab' | 'dtype'>, result: NativeLossResult,
  valueAt: (index: number) => number): void {
  if (result.nonFinite !== null && !request.allowNonFinite) {
    const { row, token, vocab } = result.nonFinite;
    const index = (row * request.tokens + token) * request.vocab + vocab;
    throw new NonFiniteLogitError(row, token, vocab, valueAt(index));
  }
  const row = result.unrepresentableRow ?? -1;
  if (row >= 0) {
    const rows = result.coef?.length ?? 0;
    const pair = rows > 0 ? row % (rows / 2) : row;
    const dtype = DTYPE_NAMES[request.dtype];
    throw new RangeError(
      `Expected a gradient that fits ${dtype} but the loss's derivative for row ${row} (pair ${pair}) is ${result.coef?.[row]} ` +
        `(loss ${result.loss}): the sequence log-ratios are too large for this loss; check refLogps and the scale of the logits. ` +
        'No gradient was written.',
    );
  }
}

/** The per-row fields every result has, from the native result of a run that did not stop. */
function sequenceFields(result: NativeLossResult): SequenceLogpsResult {
  const tokenCounts = result.tokenCounts!;
  return { logps: result.logps!, tokenCounts, emptyRows: emptyRowsOf(tokenCounts), nonFiniteRows: result.nonFiniteRows };
}

function emptyRowsOf(tokenCounts: Int32Array): number[] {
  const rows: number[] = [];
  tokenCounts.forEach((n, s) => {
    if (n === 0) rows.push(s);
  });
  return rows;
}

function toLossResult(request: TypedLossRequest, result: NativeLossResult, inPlace: boolean): PreferenceLossResult {
  throwIfStopped(request, result, (i) => logitValue(request.logits, request.dtype, i));
  const out: PreferenceLossResult = { loss: result.loss!, metrics: result.metrics!, ...sequenceFields(result) };
  if (request.dlogits) out.dlogits = inPlace ? request.logits : request.dlogits;
  return out;
}

/**
 * The fused preference loss, forward and (unless `grad: false`) backward, synchronously.
 *
 * With typed arrays, the gradient comes back as `dlogits`. With a Tensor of logits (the autograd
 * form), the loss comes back as a one-element Tensor whose `backward()` writes the gradient into
 * whatever made the logits (or `logits.grad` for a leaf); the backward pass runs then, from the
 * lse saved by the forward pass and the labels copied by it.
 *
 * Every argument is read once; an argument this function does not take is an error.
 *
 * @example
 * const P = 1, T = 2, V = 3;
 * const r = preferenceLoss({
 *   loss: 'minordpo', beta: 0.1,
 *   logits: new Float32Array(2 * P * T * V), shape: [2 * P, T, V],
 *   labels: new Int32Array([0, 1, 2, -100]), refLogps: new Float32Array([-2.2, -1.1]),
 * });
 * r.loss; r.dlogits; r.metrics.rewardsMargin;
 */
export function preferenceLoss(args: TensorPreferenceLossArgs): TensorPreferenceLossResult;
export function preferenceLoss(args: PreferenceLossArgs): PreferenceLossResult;
export function preferenceLoss(args: PreferenceLossArgs | TensorPreferenceLossArgs): PreferenceLossResult | TensorPreferenceLossResult {
  const x = snapshot('preferenceLoss', args, LOSS_KEYS);
  if (isTensor(x.logits)) return preferenceLossOnTensor(x);
  const { request, inPlace } = lossRequest(x);
  return toLossResult(request, runLoss(request), inPlace);
}

/**
 * The tensor forms' arguments: logits as a Tensor (cpu or cuda), labels and refLogps as tensors
 * (on either device) or arrays. `shape` and `dtype` may be given; they must be the logits'.
 */
export interface TensorPreferenceLossArgs extends LossParameterArgs, LossInputArgs {
  /** `[2P, T, V]` (`[K*P, T, V]` for exo), f32, bf16 or f16, on the CPU or on cuda. */
  logits: Tensor;
  /** `[2P, T]` i32 tensor, or an Int32Array of 2P*T labels (copied). */
  labels: Tensor | Int32Array;
  ignoreIndex?: number;
  allowNonFinite?: boolean;
  implementation?: 'fast' | 'reference';
  /** `false`: the loss and metrics only, no graph (as under noGrad). Default true. */
  grad?: boolean;
  /** When given, the logits' shape. */
  shape?: readonly [number, number, number];
  /** When given, the logits' dtype. */
  dtype?: LogitsDType;
}

export interface TensorPreferenceLossResult extends SequenceLogpsResult {
  /** The batch loss, a one-element tensor: call `loss.backward()`. */
  loss: Tensor;
  metrics: PreferenceMetrics;
}

/** A copy of a tensor argument's data, checked against the dtype and shape it must have. */
function arrayOfTensor<T extends Int32Array | Float32Array>(name: string, value: Tensor, dtype: 'i32' | 'f32', shape: number[]): T {
  value.assertAlive(`preferenceLoss (${name})`);
  if (value.dtype !== dtype || value.shape.length !== shape.length || value.shape.some((d, i) => d !== shape[i])) {
    throw new TypeError(expected(`a ${dtype} tensor of shape [${shape}]`, name, value));
  }
  return value.toArray() as T;
}

/** The checked parts of a tensor-form request, common to the cpu and cuda paths. */
interface TensorRequestParts {
  logits: Tensor;
  dtype: 0 | 1 | 2;
  shape: CheckedShape;
  /** The call's own copy. */
  labels: Int32Array;
  ignoreIndex: number;
  loss: CheckedLoss;
  fields: CheckedLoss['fields'];
  refLogps: Float32Array | null;
  rewards: Float32Array | null;
  allowNonFinite: boolean;
  impl: 0 | 1;
}

/** The logits tensor's shape (checked against `shape` and `dtype` when given), and its labels, copied and checked. */
function tensorLogitsParts(args: Snapshot, logits: Tensor, rowsPerPrompt: number | null, operation: string):
  { shape: CheckedShape; labels: Int32Array; ignoreIndex: number } {
  logits.assertAlive(operation);
  if (logits.dtype === 'i32' || logits.shape.length !== 3) {
    throw new TypeError(expected(`an f32, bf16 or f16 tensor of shape ${rowsPerPrompt === null ? '[rows, T, V]' : '[2P, T, V]'}`, 'logits', logits));
  }
  const shape = checkShape([...logits.shape], rowsPerPrompt);
  if (args.shape !== undefined) {
    const given = readArray(args.shape, 8, 'shape');
    if (!given || given.length !== 3 || given.some((d, i) => d !== logits.shape[i])) {
      throw new TypeError(expected(`the logits' shape [${logits.shape}] (or no shape)`, 'shape', args.shape));
    }
  }
  if (args.dtype !== undefined && args.dtype !== logits.dtype) {
    throw new TypeError(expected(`the logits' dtype '${logits.dtype}' (or no dtype)`, 'dtype', args.dtype));
  }
  const { rows, tokens } = shape;
  const labels = isTensor(args.labels)
    ? arrayOfTensor<Int32Array>('labels', args.labels, 'i32', [rows, tokens])
    : Int32Array.prototype.slice.call(checkTypedArray('labels', args.labels, Int32Array, rows * tokens, ` (shape [${rows}, ${tokens}])`));
  const ignoreIndex = checkInteger('ignoreIndex', args.ignoreIndex ?? -100, INT32_MIN, INT32_MAX);
  checkLabels(labels, shape, ignoreIndex);
  return { shape, labels, ignoreIndex };
}

function tensorRequestParts(args: Snapshot, operation: string): TensorRequestParts {
  const logits = args.logits as Tensor;
  const loss = checkLoss(args);
  const { shape, labels, ignoreIndex } = tensorLogitsParts(args, logits, loss.rowsPerPrompt, operation);
  const { refLogps, rewards } = lossInputs(args, loss, shape.rows, rowArray);
  const allowNonFinite = checkBoolean('allowNonFinite', args.allowNonFinite ?? false);
  const impl = checkOneOf('implementation', args.implementation ?? 'fast', ['fast', 'reference'] as const) === 'reference' ? 0 : 1;
  return { logits, dtype: DTYPE_CODES[logits.dtype as LogitsDType], shape, labels, ignoreIndex, loss, fields: loss.fields, refLogps, rewards, allowNonFinite, impl };
}

/** Reads logit `index` of a tensor's storage (either device), for the error of a non-finite logit. */
function storedLogit(storage: NativeStorage, byteOffset: number, dtype: 0 | 1 | 2, index: number): number {
  const one = dtype === 0 ? new Float32Array(1) : new Uint16Array(1);
  storage.read(one, byteOffset + index * one.BYTES_PER_ELEMENT);
  return logitValue(one, dtype, 0);
}

function preferenceLossOnTensor(args: Snapshot): TensorPreferenceLossResult {
  return disposeOnThrow(() => {
    if (args.out !== undefined || args.inPlace !== undefined) {
      throw new TypeError(`Expected no ${args.out !== undefined ? 'out' : 'inPlace'} with Tensor logits in preferenceLoss: its autograd form ` +
        'writes the gradient in loss.backward(); preferenceLossAsync is the functional form that takes out and inPlace');
    }
    const parts = tensorRequestParts(args, 'preferenceLoss');
    const wantGraph = checkBoolean('grad', args.grad ?? true) && needsGrad([parts.logits]);
    if (parts.logits.device === 'cuda') return preferenceLossOnCuda(parts, wantGraph);
    const { logits, dtype, shape, labels, ignoreIndex, fields, refLogps, rewards, allowNonFinite, impl } = parts;
    const { rows, tokens, vocab } = shape;
    const source = hostStorage(logits, 'preferenceLoss');
    const request: NativeLossRequest = {
      impl, dtype, ...shape, labels, ignoreIndex, refLogps, rewards, ...fields,
      logits: source.storage, logitsByteOffset: source.byteOffset,
      allowNonFinite, withLoss: true, returnLse: wantGraph, dlogits: null,
    };
    const result = runLoss(request);
    throwIfStopped(request, result, (index) => storedLogit(source.storage, source.byteOffset, dtype, index));
    return autogradLoss(logits, result, (dlogits, coef) => {
      const input = hostStorage(logits, 'preferenceLoss backward');
      const output = hostStorage(dlogits, 'preferenceLoss backward');
      native().preferenceLossBackward({
        impl, dtype, rows, tokens, vocab, ignoreIndex, labels, lse: result.lse!, coef,
        logits: input.storage, logitsByteOffset: input.byteOffset,
        dlogits: output.storage, dlogitsByteOffset: output.byteOffset,
      });
    });
  });
}

/**
 * The loss as a one-element tensor; when the forward pass returned lse (the logits need a
 * gradient), an autograd node whose backward makes a tensor like the logits (on their device)
 * and has `writeGradient` fill it with the coefficients scaled by the upstream gradient.
 */
function autogradLoss(logits: Tensor, result: NativeLossResult, writeGradient: (dlogits: Tensor, coef: Float32Array) => void): TensorPreferenceLossResult {
  const lossTensor = Tensor.from([result.loss!], []);
  const coef = result.coef!;
  if (result.lse) {
    record(lossTensor, {
      op: 'preferenceLoss',
      inputs: [logits],
      saved: [logits],
      backward: (gradOutput) => {
        const scale = gradOutput.item();
        // every element is written by the kernels; host storage starts zeroed anyway
        const dlogits = new Tensor(logits.shape, logits.dtype, logits.device);
        writeGradient(dlogits, coef.map((c) => c * scale));
        return [dlogits];
      },
    });
  }
  return tensorLossResult(lossTensor, result);
}

function tensorLossResult(loss: Tensor, result: NativeLossResult): TensorPreferenceLossResult {
  return { loss, metrics: result.metrics!, ...sequenceFields(result) };
}

/** The native request of the cuda path, without its gradient buffer. */
function cudaRequest(parts: TensorRequestParts, operation: string): NativeCudaLossRequest {
  const source = cudaStorage(parts.logits, operation);
  return {
    dtype: parts.dtype, ...parts.shape, labels: parts.labels, ignoreIndex: parts.ignoreIndex,
    logits: source.storage, logitsByteOffset: source.byteOffset,
    dlogits: null, dlogitsByteOffset: 0, backwardOnly: false,
    allowNonFinite: parts.allowNonFinite, returnLse: false, refLogps: parts.refLogps, rewards: parts.rewards, ...parts.fields,
  };
}

function throwIfStoppedOnTensor(parts: TensorRequestParts, storage: NativeStorage, byteOffset: number, result: NativeLossResult): void {
  throwIfStopped({ allowNonFinite: parts.allowNonFinite, tokens: parts.shape.tokens, vocab: parts.shape.vocab, dtype: parts.dtype }, result,
    (index) => storedLogit(storage, byteOffset, parts.dtype, index));
}

/**
 * The autograd form on cuda: the forward pass now (one read of the logits), the backward pass
 * when `loss.backward()` asks (a second read and one write), into a cuda tensor of the logits'
 * shape and dtype; the loss is a CPU scalar like every loss.
 */
function preferenceLossOnCuda(parts: TensorRequestParts, wantGraph: boolean): TensorPreferenceLossResult {
  return disposeOnThrow(() => {
    const { logits } = parts;
    const request = { ...cudaRequest(parts, 'preferenceLoss'), returnLse: wantGraph };
    const result = runCudaLoss(request, 'preferenceLoss');
    throwIfStoppedOnTensor(parts, request.logits, request.logitsByteOffset, result);
    return autogradLoss(logits, result, (dlogits, coef) => {
      const input = cudaStorage(logits, 'preferenceLoss backward');
      const output = cudaStorage(dlogits, 'preferenceLoss backward');
      runCudaLoss({
        ...request, logits: input.storage, logitsByteOffset: input.byteOffset,
        dlogits: output.storage, dlogitsByteOffset: output.byteOffset,
        backwardOnly: true, lse: result.lse!, coef,
      }, 'preferenceLoss backward');
    });
  });
}

/** The functional form on tensors (preferenceLossAsync with Tensor logits, cpu or cuda). */
export interface DevicePreferenceLossArgs extends Omit<TensorPreferenceLossArgs, 'grad'> {
  /** Compute `dlogits` (default true). */
  grad?: boolean;
  /** Write `dlogits` over `logits` (default false): no extra memory. */
  inPlace?: boolean;
  /** A tensor of the logits' device, shape and dtype to write `dlogits` into, instead of a new one. */
  out?: Tensor;
}

export interface DevicePreferenceLossResult extends SequenceLogpsResult {
  /** The batch loss. */
  loss: number;
  metrics: PreferenceMetrics;
  /** The gradient, a tensor on the logits' device (`logits` itself when `inPlace`, `out` when given). */
  dlogits?: Tensor;
}

/** The gradient tensor of the functional tensor form: out, the logits (in place) or a new one. */
function gradientTarget(args: Snapshot, logits: Tensor, operation: string): Tensor | undefined {
  const { grad, inPlace } = gradientOptions(args, 'tensor');
  if (args.out !== undefined) {
    const out = args.out;
    if (!isTensor(out) || out.device !== logits.device || out.dtype !== logits.dtype ||
        out.shape.length !== 3 || out.shape.some((d, i) => d !== logits.shape[i])) {
      throw new TypeError(expected(`a ${logits.device} ${logits.dtype} tensor of shape [${logits.shape}] (like logits)`, 'out', out));
    }
    out.assertAlive(`${operation} (out)`);
    if (Tensor.sameStorage(out, logits)) {
      throw new TypeError('Expected an out tensor that does not share memory with logits (use inPlace: true to write over them)');
    }
    return out;
  }
  if (!grad) return undefined;
  return inPlace ? logits : new Tensor(logits.shape, logits.dtype, logits.device);  // every element is written
}

async function preferenceLossOnTensorAsync(args: Snapshot): Promise<DevicePreferenceLossResult> {
  const operation = 'preferenceLossAsync';
  const parts = tensorRequestParts(args, operation);
  const { logits } = parts;
  const dlogits = gradientTarget(args, logits, operation);
  const made = dlogits !== undefined && dlogits !== logits && dlogits !== args.out;
  // The job reads and writes the tensors' storage off the event loop: pinned until it settles.
  const unpins = [Tensor.pin(logits), ...(dlogits && dlogits !== logits ? [Tensor.pin(dlogits)] : [])];
  let result: NativeLossResult;
  let source: { storage: NativeStorage; byteOffset: number };
  try {
    if (logits.device === 'cuda') {
      const request = cudaRequest(parts, operation);
      if (dlogits) {
        const target = cudaStorage(dlogits, `${operation} (dlogits)`);
        request.dlogits = target.storage;
        request.dlogitsByteOffset = target.byteOffset;
      }
      source = { storage: request.logits, byteOffset: request.logitsByteOffset };
      result = await runCudaLossAsync(request, operation);
    } else {
      const input = hostStorage(logits, operation);
      const target = dlogits ? hostStorage(dlogits, `${operation} (dlogits)`) : null;
      source = input;
      result = await runLossAsync({
        impl: parts.impl, dtype: parts.dtype, ...parts.shape, labels: parts.labels, ignoreIndex: parts.ignoreIndex,
        refLogps: parts.refLogps, rewards: parts.rewards, ...parts.fields, allowNonFinite: parts.allowNonFinite, withLoss: true,
        logits: input.storage, logitsByteOffset: input.byteOffset,
        dlogits: target?.storage ?? null, dlogitsByteOffset: target?.byteOffset ?? 0,
      });
    }
    throwIfStoppedOnTensor(parts, source.storage, source.byteOffset, result);
  } catch (error) {
    unpins.forEach((unpin) => unpin());
    if (made) dlogits!.dispose();
    throw error;
  }
  unpins.forEach((unpin) => unpin());
  const out: DevicePreferenceLossResult = { loss: result.loss!, metrics: result.metrics!, ...sequenceFields(result) };
  if (dlogits) out.dlogits = dlogits;
  return out;
}

/**
 * Before a typed-array job runs off the event loop: the arrays it reads and writes in place (the
 * logits and `out`) are kept from losing their memory while it runs. Their ArrayBuffers are marked
 * untransferable (worker_threads.markAsUntransferable: a later postMessage or structuredClone
 * copies them instead of moving them) and an array over a resizable ArrayBuffer, which could
 * shrink under the job, is refused. Labels and references are copied by the addon.
 */
function holdForAsync(request: TypedLossRequest): void {
  for (const [name, array] of [['logits', request.logits], ['out', request.dlogits]] as const) {
    if (!array) continue;
    const facts = typedArrayFacts(array)!;
    if (isResizable(facts)) {
      throw new TypeError(`Expected ${name} over a fixed-length ArrayBuffer for preferenceLossAsync but received one over a resizable ` +
        'ArrayBuffer, which could shrink while the job reads it: copy it into a plain typed array, or call preferenceLoss');
    }
    if (!facts.shared) markAsUntransferable(facts.buffer);
  }
}

/**
 * `preferenceLoss` off the event loop, in its functional form (the gradient comes back; no
 * autograd): typed-array logits run on a worker thread; Tensor logits run on their device (cpu:
 * a worker thread; cuda: the GPU) and dlogits comes back as a tensor. Labels and references are
 * copied when the call is made; the logits and `out` are read and written while the job runs
 * (do not write to them meanwhile); their memory is kept alive: a tensor disposed meanwhile is
 * freed when the job is done, and a typed array's ArrayBuffer is marked untransferable.
 *
 * @example
 * // on a machine with an NVIDIA GPU and the CUDA addon
 * const logits = Tensor.from(bits, [2 * P, T, V], 'bf16', 'cuda');
 * const r = await preferenceLossAsync({ loss: 'minordpo', logits, labels, refLogps });
 * r.loss; r.dlogits; // a cuda Tensor of shape [2P, T, V], bf16
 */
export async function preferenceLossAsync(args: DevicePreferenceLossArgs): Promise<DevicePreferenceLossResult>;
export async function preferenceLossAsync(args: PreferenceLossArgs): Promise<PreferenceLossResult>;
export async function preferenceLossAsync(args: PreferenceLossArgs | DevicePreferenceLossArgs): Promise<PreferenceLossResult | DevicePreferenceLossResult> {
  const x = snapshot('preferenceLossAsync', args, LOSS_KEYS);
  if (isTensor(x.logits)) return preferenceLossOnTensorAsync(x);
  const { request, inPlace } = lossRequest(x);
  holdForAsync(request);
  return toLossResult(request, await runLossAsync(request), inPlace);
}

/** The arguments of sequenceLogps with a Tensor of logits (cpu or cuda). */
export interface TensorSequenceLogpsArgs {
  /** `[rows, T, V]`, f32, bf16 or f16, on the CPU or on cuda: read where it lies, never copied. */
  logits: Tensor;
  /** `[rows, T]` i32 tensor, or an Int32Array of rows*T labels (copied). */
  labels: Tensor | Int32Array;
  ignoreIndex?: number;
  averageLogProb?: boolean;
  allowNonFinite?: boolean;
  implementation?: 'fast' | 'reference';
  /** When given, the logits' shape. */
  shape?: readonly [number, number, number];
  /** When given, the logits' dtype. */
  dtype?: LogitsDType;
}

/** sequenceLogps on a tensor: stages 1 and 2 on the logits' own device, the row sums back. */
function sequenceLogpsOnTensor(args: Snapshot): SequenceLogpsResult {
  const operation = 'sequenceLogps';
  const logits = args.logits as Tensor;
  const { shape, labels, ignoreIndex } = tensorLogitsParts(args, logits, null, operation);
  const allowNonFinite = checkBoolean('allowNonFinite', args.allowNonFinite ?? false);
  const impl = checkOneOf('implementation', args.implementation ?? 'fast', ['fast', 'reference'] as const) === 'reference' ? 0 : 1;
  const dtype = DTYPE_CODES[logits.dtype as LogitsDType];
  const check = { allowNonFinite, tokens: shape.tokens, vocab: shape.vocab, dtype };
  let result: NativeLossResult;
  let source: { storage: NativeStorage; byteOffset: number };
  if (logits.device === 'cuda') {
    source = cudaStorage(logits, operation);
    const outputs = lossOutputs(operation, shape.rows, shape.tokens, false, false);
    result = withLossOutputs(cudaAddon(operation).cudaPreferenceLoss({
      dtype, ...shape, labels, ignoreIndex, logits: source.storage, logitsByteOffset: source.byteOffset,
      dlogits: null, dlogitsByteOffset: 0, backwardOnly: false, allowNonFinite, returnLse: false, withLoss: false, ...outputs,
    })!, outputs);
  } else {
    source = hostStorage(logits, operation);
    result = runLoss({
      impl, dtype, ...shape, labels, ignoreIndex, allowNonFinite, withLoss: false,
      logits: source.storage, logitsByteOffset: source.byteOffset,
    }, operation);
  }
  throwIfStopped(check, result, (index) => storedLogit(source.storage, source.byteOffset, dtype, index));
  return sequenceFields(result);
}

/** Divides each row's sum by its token count (averageLogProb), in place. */
function averageRows(out: SequenceLogpsResult): SequenceLogpsResult {
  const { logps, tokenCounts } = out;
  for (let s = 0; s < logps.length; s++) logps[s] = tokenCounts[s] > 0 ? logps[s] / tokenCounts[s] : 0;
  return out;
}

/**
 * Per-row sums of the log-softmax at each label, without a loss or gradient: the reference
 * model's pass. The logits may be a typed array, or a Tensor on the CPU or on cuda, read where it
 * lies (only the row sums come back).
 *
 * @example
 * const ref = sequenceLogps({ logits: referenceModelLogits, labels }); // a [rows, T, V] tensor
 * preferenceLoss({ loss: 'minordpo', logits: policyLogits, labels, refLogps: ref.logps });
 */
export function sequenceLogps(args: TensorSequenceLogpsArgs): SequenceLogpsResult;
export function sequenceLogps(args: SequenceLogpsArgs): SequenceLogpsResult;
export function sequenceLogps(args: SequenceLogpsArgs | TensorSequenceLogpsArgs): SequenceLogpsResult {
  const x = snapshot('sequenceLogps', args, SEQUENCE_KEYS);
  const averageLogProb = checkBoolean('averageLogProb', x.averageLogProb ?? false);
  if (isTensor(x.logits)) {
    const out = sequenceLogpsOnTensor(x);
    return averageLogProb ? averageRows(out) : out;
  }
  const request = baseRequest(x, null);
  const result = runLoss(request, 'sequenceLogps');
  throwIfStopped(request, result, (i) => logitValue(request.logits, request.dtype, i));
  const out = sequenceFields(result);
  return averageLogProb ? averageRows(out) : out;
}
