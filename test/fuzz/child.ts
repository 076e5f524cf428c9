/**
 * The fuzz test's child process: reads one program (spec.ts) per line on stdin, builds its
 * arguments (hostile values included), runs it against the package as built (dist/), and writes
 * one Outcome per line on stdout. A crash ends this process, which is the point: the parent sees
 * it, records it, and starts another child for the next program.
 *
 * Judged here, where the values live: whether an error is the package's own (a TypeError,
 * RangeError or Error whose message says what was expected, not an engine message such as
 * "Cannot read properties of undefined", and not the addon's internal "native request" checks,
 * which lib/ must make unreachable); whether tensors leaked once everything the program made is
 * disposed; and, for programs with valid arguments, whether the result matches the float64
 * reference of test/fp64.ts.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import * as readline from 'node:readline';

import type * as Fusedpo from '../../lib/index';
import { mulberry32 } from '../../lib/example';
import { batchLoss64, coefByFiniteDifference, decodeLogits, defaultOptions, dlogits64, numberToBf16, numberToF16, tokenLogps } from '../fp64';
import { LOSS_PARAMETER_KEYS } from '../../lib/losses/parameters';
import { collectGarbage } from '../memory';
import type { AfterAction, FileKind, Fill, Outcome, ParamsKind, Program, TypedArrayType, ValueSpec } from './spec';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const f = require(process.env.FUSEDPO_FUZZ_PACKAGE ?? path.join(__dirname, '..', '..', 'dist', 'index.js')) as typeof Fusedpo;

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'fusedpo-fuzz-'));
process.on('exit', () => fs.rmSync(scratch, { recursive: true, force: true }));

/** Errors the package means: its own classes, with a message that says what was expected. */
const CLEAR = /Expected|expected|was disposed|out of memory|was freed|does not depend on|not a regular file|safetensors \(|truncated|bad header|no such file|ENOENT|EISDIR|ENOTDIR|fuzz-trap|is fixed when it is made|scopes are synchronous|same parameter|cannot have a gradient|needs a usable CUDA device|cannot be summed|appears twice|missing tensor|unexpected tensor|has shape|has dtype|does not fit/;
/** Messages that are the engine's or the addon's internals, never a caller's answer. */
const UNCLEAR = /Cannot read propert|Cannot set propert|is not a function|is not iterable|is not a constructor|native request|\(native\)|Invalid argument|Maximum call stack|Cannot convert|Invalid typed array length|Invalid array length|Cannot mix BigInt|Cannot access private|private member|Assertion|a released storage/;

function judgeError(error: unknown): { name: string; message: string; ours: boolean } {
  if (!(error instanceof Error)) return { name: typeof error, message: String(error), ours: false };
  const kinds = ['TypeError', 'RangeError', 'Error', 'NonFiniteLogitError', 'NativeLoadError', 'FusedpoError', 'SafetensorsError', 'DatasetError', 'TrainingFileError', 'PretrainedError'];
  const ours = kinds.includes(error.name) && CLEAR.test(error.message) && !UNCLEAR.test(error.message);
  return { name: error.name, message: error.message.slice(0, 400), ours };
}

// ---- Building values ---------------------------------------------------------------------

class BuildError extends Error {}

interface Context {
  random: () => number;
  named: Map<string, unknown>;
  tensors: Fusedpo.Tensor[];
  modules: { dispose(): void }[];
  /** Whether any value of the program was built hostile (a valid program has none). */
}

const TYPED: Record<TypedArrayType, { new (n: number | ArrayBufferLike): ArrayLike<number> & { [i: number]: number }; BYTES_PER_ELEMENT: number }> = {
  Float32Array, Float64Array, Uint16Array, Int32Array, Uint8Array,
} as never;

/** Where a 'badLabel' array holds its one bad label, and which: first, last or anywhere. */
let badAt = 0;
let badValue = 0;

function fillValue(fill: Fill, type: TypedArrayType, i: number, random: () => number, vocab: number): number {
  switch (fill) {
    case 'zeros': return 0;
    case 'labels': return random() < 0.25 ? -100 : Math.floor(random() * vocab);
    case 'badLabel': return i === badAt ? badValue : Math.floor(random() * vocab);
    case 'nan': return i === 1 ? NaN : random() * 2 - 1;
    case 'huge': return (random() < 0.5 ? -1 : 1) * 3e38;
    case 'bf16': return numberToBf16((random() * 2 - 1) * 4);
    case 'f16': return numberToF16((random() * 2 - 1) * 4);
    case 'ints': return Math.floor(random() * vocab);
    case 'random': return type === 'Int32Array' || type === 'Uint16Array' || type === 'Uint8Array' ? Math.floor(random() * vocab) : (random() * 2 - 1) * 3;
  }
}

function typedArray(spec: Extract<ValueSpec, { k: 'ta' }>, random: () => number): unknown {
  const Kind = TYPED[spec.type];
  const n = spec.length;
  const bytes = n * Kind.BYTES_PER_ELEMENT;
  const fillInto = (array: { [i: number]: number }) => {
    if (spec.fill === 'badLabel') {
      const where = Math.floor(random() * 3);
      badAt = where === 0 ? 0 : where === 1 ? n - 1 : Math.floor(random() * n);
      badValue = [spec.vocab, spec.vocab + 1, -1, -99, -101, 2147483647, -2147483648][Math.floor(random() * 7)];
    }
    for (let i = 0; i < n; i++) array[i] = fillValue(spec.fill, spec.type, i, random, spec.vocab);
    return array;
  };
  switch (spec.variant) {
    case 'plain':
      return fillInto(new Kind(n));
    case 'offset': {
      const wide = new Kind(n + 5) as unknown as { subarray(a: number, b: number): { [i: number]: number } };
      return fillInto(wide.subarray(3, 3 + n));
    }
    case 'shared':
      return fillInto(new Kind(new SharedArrayBuffer(bytes)));
    case 'detached': {
      const array = fillInto(new Kind(n)) as unknown as { buffer: ArrayBuffer };
      structuredClone(array.buffer, { transfer: [array.buffer] });
      return array;
    }
    case 'resizable': {
      const Resizable = ArrayBuffer as unknown as new (b: number, o: { maxByteLength: number }) => ArrayBuffer;
      return fillInto(new Kind(new Resizable(bytes, { maxByteLength: 2 * bytes + 8 })));
    }
    case 'lyingLength': {
      const array = fillInto(new Kind(n));
      Object.defineProperty(array, 'length', { get: () => n + 7 });
      return array;
    }
    case 'lyingBuffer': {
      const array = fillInto(new Kind(n));
      Object.defineProperty(array, 'buffer', { get: () => new ArrayBuffer(bytes * 4) });
      Object.defineProperty(array, 'byteOffset', { get: () => 8 });
      return array;
    }
    case 'fake':
      return Object.create((Kind as unknown as { prototype: object }).prototype);
    case 'proxy':
      return new Proxy(fillInto(new Kind(n)) as object, {});
  }
}

function tensorData(spec: Extract<ValueSpec, { k: 'tensor' }>, random: () => number): Float32Array | Uint16Array | Int32Array {
  const size = spec.shape.reduce((a, b) => a * b, 1);
  if (spec.dtype === 'i32') return Int32Array.from({ length: size }, () => Math.floor(random() * spec.vocab));
  const fill = spec.fill === 'bf16' || spec.fill === 'f16' ? 'random' : spec.fill;
  const values = Array.from({ length: size }, (_, i) => fillValue(fill, 'Float32Array', i, random, spec.vocab));
  if (spec.dtype === 'f32') return Float32Array.from(values);
  return Uint16Array.from(values, (x) => (spec.dtype === 'bf16' ? numberToBf16(x) : numberToF16(x)));
}

function tensor(spec: Extract<ValueSpec, { k: 'tensor' }>, ctx: Context): unknown {
  if (spec.variant === 'fake') return Object.create(f.Tensor.prototype);
  const make = () => f.Tensor.from(tensorData(spec, ctx.random), spec.shape, spec.dtype);
  const t = make();
  ctx.tensors.push(t);
  if (spec.variant === 'disposed') t.dispose();
  if (spec.variant === 'param' && spec.dtype !== 'i32') t.requiresGrad = true;
  if (spec.variant === 'view') {
    const view = t.reshape(spec.shape);
    ctx.tensors.push(view);
    return view;
  }
  return t;
}

function fn(kind: string): unknown {
  switch (kind) {
    case 'returnsTensor': return () => f.Tensor.zeros([2]);
    case 'returnsNumber': return () => 42;
    case 'throws': return () => { throw new Error('fuzz-trap: thrown by the program'); };
    case 'returnsPromise': return async () => f.Tensor.zeros([2]);
    default: return () => ({ a: [f.Tensor.zeros([1])], b: { c: f.Tensor.zeros([3]) } });
  }
}

/** A small valid safetensors file's bytes. */
function validFileBytes(random: () => number): Buffer {
  return Buffer.from(f.encodeSafetensors([['w', { shape: [2, 3], data: Float32Array.from({ length: 6 }, () => random()) }], ['b', { shape: [3], data: new Float32Array(3) }]], { note: 'fuzz' }));
}

function fileOf(header: unknown, data = new Uint8Array(0)): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, json, data]);
}

function file(kind: FileKind, random: () => number): unknown {
  switch (kind) {
    case 'devZero': return '/dev/zero';
    case 'fifo': {
      const fifo = path.join(scratch, `fifo-${Math.floor(random() * 1e9)}`);
      if (spawnSync('mkfifo', [fifo]).status !== 0) throw new BuildError('mkfifo failed');
      return fifo;
    }
    case 'directory': return scratch;
    case 'missing': return path.join(scratch, 'missing', 'model.safetensors');
    case 'valid': {
      const p = path.join(scratch, `valid-${Math.floor(random() * 1e9)}.safetensors`);
      fs.writeFileSync(p, validFileBytes(random));
      return p;
    }
    case 'validBytes': return new Uint8Array(validFileBytes(random));
    case 'truncated': {
      const bytes = validFileBytes(random);
      return new Uint8Array(bytes.subarray(0, Math.floor(random() * bytes.length)));
    }
    case 'randomBytes': return Uint8Array.from({ length: Math.floor(random() * 64) }, () => Math.floor(random() * 256));
    case 'headerPastEnd': {
      const bytes = Buffer.alloc(24);
      bytes.writeBigUInt64LE(BigInt(Math.floor(random() * 2 ** 40)));
      return new Uint8Array(bytes);
    }
    case 'prototypeDtype': return new Uint8Array(fileOf({ w: { dtype: ['toString', 'constructor', '__proto__', 'valueOf'][Math.floor(random() * 4)], shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)));
    case 'prototypeNames': return new Uint8Array(fileOf(JSON.parse('{"__proto__": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "constructor": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}'), new Uint8Array(8)));
    case 'hugeOffsets': return new Uint8Array(fileOf({ w: { dtype: 'F32', shape: [2 ** 30, 2 ** 30], data_offsets: [0, 2 ** 62] } }, new Uint8Array(4)));
    case 'badMetadata': return new Uint8Array(fileOf({ __metadata__: { a: 1 }, w: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)));
  }
}

function params(kind: ParamsKind, ctx: Context): unknown {
  const model = new f.Linear(3, 2, { random: f.normalRandom(1) });
  ctx.modules.push(model);
  for (const [, p] of model.parameters()) p.grad = f.Tensor.from(Float32Array.from({ length: p.size }, () => ctx.random()), p.shape);
  const w = model.weight;
  switch (kind) {
    case 'module': return model;
    case 'list': return [w, model.bias!];
    case 'pairs': return model.parameters();
    case 'duplicate': return [w, w];
    case 'view': {
      const v = w.reshape([6]);
      ctx.tensors.push(v);
      return [w, v];
    }
    case 'notTensor': return [w, { shape: [2] }];
    case 'i32': {
      const i = f.Tensor.from(new Int32Array(2), [2], 'i32');
      ctx.tensors.push(i);
      return [i];
    }
    case 'disposed': {
      const d = f.Tensor.zeros([2]);
      d.dispose();
      return [w, d];
    }
    case 'empty': return [];
  }
}

function build(spec: ValueSpec, ctx: Context): unknown {
  switch (spec.k) {
    case 'num': return spec.v === 'NaN' ? NaN : spec.v === 'Infinity' ? Infinity : spec.v === '-Infinity' ? -Infinity : spec.v === '-0' ? -0 : spec.v;
    case 'str': return spec.v;
    case 'bool': return spec.v;
    case 'null': return null;
    case 'undef': return undefined;
    case 'sym': return Symbol('fuzz');
    case 'big': return 12n;
    case 'fn': return fn(spec.kind);
    case 'arr': return spec.items.map((item) => build(item, ctx));
    case 'sparse': return new Array(spec.length);
    case 'obj': {
      const out: Record<string, unknown> = {};
      for (const [key, value] of spec.props) {
        if (value.k === 'getter') {
          const first = build(value.first, ctx);
          const then = build(value.then, ctx);
          let reads = 0;
          Object.defineProperty(out, key, { get: () => (reads++ === 0 ? first : then), enumerable: true, configurable: true });
        } else {
          out[key] = build(value, ctx);
        }
      }
      if (spec.proxy === 'throws') return new Proxy(out, { get: (t, key) => { if (key === 'labels' || key === 'shape') throw new Error('fuzz-trap: a throwing getter'); return Reflect.get(t, key); } });
      if (spec.proxy === 'counts') {
        const seen = new Map<PropertyKey, number>();
        return new Proxy(out, { get: (t, key) => { seen.set(key, (seen.get(key) ?? 0) + 1); return seen.get(key)! > 1 ? undefined : Reflect.get(t, key); } });
      }
      return out;
    }
    case 'getter': return build(spec.first, ctx);
    case 'ta': return typedArray(spec, ctx.random);
    case 'tensor': return tensor(spec, ctx);
    case 'file': return file(spec.kind, ctx.random);
    case 'params': return params(spec.kind, ctx);
    case 'ref': return ctx.named.get(spec.name);
    case 'named': {
      const value = build(spec.value, ctx);
      ctx.named.set(spec.name, value);
      return value;
    }
  }
}

// ---- Calls -------------------------------------------------------------------------------

/** Whether a value is a real Tensor, not Object.create(Tensor.prototype) (the harness's own check). */
function isRealTensor(value: unknown): boolean {
  try {
    void (value as Fusedpo.Tensor).size;
    return true;
  } catch {
    return false;
  }
}

const F = f.F as unknown as Record<string, (...args: unknown[]) => unknown>;

function smallGpt(ctx: Context): Fusedpo.GPT {
  const model = new f.GPT({ layers: 1, width: 8, heads: 2, context: 6, vocab: 11 }, { seed: 3 });
  ctx.modules.push(model);
  return model;
}

const CALLS: Record<string, (a: unknown[], ctx: Context) => unknown> = {
  preferenceLoss: (a) => f.preferenceLoss(a[0] as never),
  preferenceLossAsync: (a) => f.preferenceLossAsync(a[0] as never),
  sequenceLogps: (a) => f.sequenceLogps(a[0] as never),
  'Tensor.from': (a) => f.Tensor.from(a[0] as never, a[1] as never, a[2] as never, a[3] as never),
  'Tensor.zeros': (a) => f.Tensor.zeros(a[0] as never, a[1] as never, a[2] as never),
  'tensor.reshape': (a) => (a[0] as Fusedpo.Tensor).reshape(a[1] as never),
  'tensor.to': (a) => (a[0] as Fusedpo.Tensor).to(a[1] as never),
  'tensor.item': (a) => (a[0] as Fusedpo.Tensor).item(),
  'tensor.toArray': (a) => (a[0] as Fusedpo.Tensor).toArray(),
  'tensor.backward': (a) => (a[0] as Fusedpo.Tensor).backward(),
  'tensor.dispose': (a) => { (a[0] as Fusedpo.Tensor).dispose(); (a[0] as Fusedpo.Tensor).dispose(); },
  'tensor.grad=': (a) => { (a[0] as { grad: unknown }).grad = a[1]; },
  'tensor.requiresGrad=': (a) => { (a[0] as { requiresGrad: unknown }).requiresGrad = a[1]; },
  'tensor.shape=': (a) => { (a[0] as { shape: unknown }).shape = a[1]; },
  'tensor.size=': (a) => { (a[0] as { size: unknown }).size = a[1]; },
  toBf16: (a) => f.toBf16(a[0] as never),
  toF16: (a) => f.toF16(a[0] as never),
  fromBf16: (a) => f.fromBf16(a[0] as never),
  fromF16: (a) => f.fromF16(a[0] as never),
  'new GPT': (a, ctx) => { const m = new f.GPT(a[0] as never, a[1] as never); ctx.modules.push(m); return m.parameterCount(); },
  'gpt.forward': (a, ctx) => smallGpt(ctx).forward(a[0] as never, a[1] as never),
  'new Linear': (a, ctx) => { const m = new f.Linear(a[0] as never, a[1] as never, a[2] as never); ctx.modules.push(m); return m.forward(f.Tensor.zeros([2, m.inFeatures])); },
  'new Embedding': (a, ctx) => { const m = new f.Embedding(a[0] as never, a[1] as never); ctx.modules.push(m); return m.forward(new Int32Array([0])); },
  'new LayerNorm': (a, ctx) => { const m = new f.LayerNorm(a[0] as never); ctx.modules.push(m); return m.parameterCount(); },
  'new AdamW': (a) => { const o = new f.AdamW(a[0] as never, a[1] as never); o.step(); o.step(); o.dispose(); },
  clipGradNorm: (a) => f.clipGradNorm(a[0] as never, a[1] as never),
  cosineSchedule: (a) => f.cosineSchedule(a[0] as never, a[1] as never),
  normalRandom: (a) => f.normalRandom(a[0] as never)(),
  setThreads: (a) => { try { f.setThreads(a[0] as never); } finally { f.setThreads(2); } },
  withScope: (a) => f.withScope(a[0] as never),
  keep: (a) => f.keep(a[0] as never),
  noGrad: (a) => f.noGrad(a[0] as never),
  encodeSafetensors: (a) => f.encodeSafetensors(a[0] as never, a[1] as never),
  readSafetensors: (a) => f.readSafetensors(a[0] as never),
  loadSafetensors: (a, ctx) => {
    const m = new f.Linear(3, 2);
    ctx.modules.push(m);
    return f.loadSafetensors(m, a[0] as never);
  },
  saveSafetensors: (a) => f.saveSafetensors(path.join(scratch, 'saved.safetensors'), a[0] as never, a[1] as never),
  hostEmptyCache: () => f.hostEmptyCache(),
  cudaAvailable: () => f.cudaAvailable(),
  cudaMemory: () => f.cudaMemory(),
  doctorReport: () => f.doctorReport(),
};
for (const name of ['add', 'mul', 'scale', 'sum', 'mean', 'matmul', 'linear', 'embedding', 'layerNorm', 'gelu', 'softmax', 'causalSelfAttention', 'crossEntropy']) {
  CALLS[`F.${name}`] = (a) => F[name](...a);
  // The op, then the gradient of the sum of its output with respect to every parameter.
  CALLS[`F.${name}+backward`] = (a) => {
    const out = F[name](...a) as Fusedpo.Tensor;
    const loss = out.size === 1 ? out : f.F.sum(out);
    loss.backward();
    return a.filter((x): x is Fusedpo.Tensor => x instanceof f.Tensor && Object.getPrototypeOf(x) === f.Tensor.prototype && isRealTensor(x) && x.requiresGrad).map((x) => x.grad);
  };
}

// ---- Judging results ---------------------------------------------------------------------

/** Every tensor in a result (nested in arrays and plain objects), for disposal. */
function tensorsIn(value: unknown, into: Set<Fusedpo.Tensor>, depth = 0): void {
  if (depth > 4 || value === null || typeof value !== 'object' || ArrayBuffer.isView(value)) return;
  if (value instanceof f.Tensor) {
    if (Object.getPrototypeOf(value) === f.Tensor.prototype) into.add(value);
    return;
  }
  try {
    if (Array.isArray(value)) value.slice(0, 64).forEach((v) => tensorsIn(v, into, depth + 1));
    else if (Object.getPrototypeOf(value) === Object.prototype) Object.values(value).forEach((v) => tensorsIn(v, into, depth + 1));
  } catch {
    // a Proxy whose traps throw
  }
}

function maxAbs(values: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < values.length; i++) m = Math.max(m, Math.abs(values[i]));
  return m;
}

/** Copies of the inputs a reference needs, taken before the call (as plain typed arrays). */
function snapshotInputs(args: Record<string, unknown>): Record<string, unknown> {
  const copy = (value: unknown) => (ArrayBuffer.isView(value) ? (value as Float32Array).slice() : value);
  const logits = args.logits instanceof f.Tensor ? args.logits : copy(args.logits);
  return {
    logits,
    storedLogits: args.logits instanceof f.Tensor ? args.logits.toArray() : logits,
    labels: args.labels instanceof f.Tensor ? args.labels.toArray() : copy(args.labels),
    refLogps: args.refLogps instanceof f.Tensor ? args.refLogps.toArray() : copy(args.refLogps),
    shape: args.logits instanceof f.Tensor ? [...args.logits.shape] : Array.isArray(args.shape) ? [...args.shape] : args.shape,
  };
}

/**
 * The reference of a call: one array, or several combined as docs/losses.md's MRPO with equal
 * weights (the valid programs give no weights or clip), in float64, rounded to fp32 as the kernels
 * see it.
 */
function referenceOf(refLogps: Float32Array | Float32Array[] | undefined): Float32Array | null {
  if (refLogps === undefined) return null;
  if (!Array.isArray(refLogps)) return refLogps;
  return Float32Array.from(refLogps[0], (_, s) => -Math.log(refLogps.reduce((sum, r) => sum + Math.exp(-r[s]), 0) / refLogps.length));
}

/**
 * The float64 reference of a preference-loss call with valid arguments (`args` with the inputs
 * as they were before the call); null when the result matches it.
 */
function compareWithReference(kind: NonNullable<Program['reference']>, args: Record<string, unknown>, result: Record<string, unknown>,
  original: Record<string, unknown>): string | null {
  const isTensor = original.logits instanceof f.Tensor;
  const logitsTensor = original.logits as Fusedpo.Tensor;
  const dtype = (isTensor ? logitsTensor.dtype : (args.dtype as string | undefined) ?? 'f32') as 'f32' | 'bf16' | 'f16';
  const stored = args.storedLogits as Float32Array | Uint16Array;
  const shape = args.shape as number[];
  const labels = args.labels as Int32Array;
  const z = decodeLogits(stored, dtype);
  const lp = tokenLogps(z, shape, labels, (args.ignoreIndex as number | undefined) ?? -100);
  const logps = result.logps as Float32Array;
  for (let s = 0; s < shape[0]; s++) {
    const expected = args.averageLogProb && kind === 'sequenceLogps' ? (lp.n[s] > 0 ? lp.pi[s] / lp.n[s] : 0) : lp.pi[s];
    if (!(Math.abs(logps[s] - expected) <= 1e-4 * (1 + Math.abs(expected)))) return `logps[${s}] ${logps[s]} vs float64 ${expected}`;
  }
  if (kind === 'sequenceLogps') return null;
  const loss = (args.loss as Fusedpo.LossName | undefined) ?? 'dpo';
  const options = defaultOptions(loss, Object.fromEntries([...LOSS_PARAMETER_KEYS, 'rewards'].filter((k) => k !== 'loss' && args[k] !== undefined)
    .map((k) => [k, args[k]])));
  const ref = referenceOf(args.refLogps as Float32Array | Float32Array[] | undefined);
  // The kernels compare fp32-rounded sums with the fp32 references (docs/losses.md): so does this.
  const pi = Array.from(lp.pi, (x) => Math.fround(x));
  const expectedLoss = batchLoss64(loss, options, pi, lp.n, ref);
  const got = isTensor ? (result.loss as Fusedpo.Tensor).item() : (result.loss as number);
  const lossTolerance = 1e-4 * (1 + Math.abs(expectedLoss)) + (isTensor ? 1e-6 * Math.abs(expectedLoss) : 0);
  if (!(Math.abs(got - expectedLoss) <= lossTolerance)) return `loss ${got} vs float64 ${expectedLoss}`;
  const gradient = kind === 'preferenceLossGrad' ? logitsTensor.grad?.toArray() : (result.dlogits as Float32Array | Uint16Array | undefined);
  if (!gradient) return kind === 'preferenceLossGrad' ? 'no gradient after backward()' : null;
  // A pair within one step of a kink (dpop's max(0, -uw), hinge, minordpo) makes the central
  // difference straddle it: a mismatch is checked again with a step 1000 times smaller.
  for (const h of [1e-4, 1e-7]) {
    const mismatch = compareGradient(loss, options, pi, lp, ref, z, shape, labels, args, gradient as Float32Array | Uint16Array, dtype, h);
    if (mismatch === null) return null;
    if (h === 1e-7) return mismatch;
  }
  return null;
}

function compareGradient(loss: Fusedpo.LossName, options: ReturnType<typeof defaultOptions>, pi: number[], lp: ReturnType<typeof tokenLogps>,
  ref: Float32Array | null, z: Float64Array, shape: number[], labels: Int32Array, args: Record<string, unknown>,
  gradient: Float32Array | Uint16Array, dtype: 'f32' | 'bf16' | 'f16', h: number): string | null {
  const coef = coefByFiniteDifference(loss, options, pi, lp.n, ref, h);
  const expectedGrad = dlogits64(z, shape, labels, lp.lse, coef, (args.ignoreIndex as number | undefined) ?? -100);
  // As many elements as the shape says: an array that lies about its length is read by index.
  const count = shape[0] * shape[1] * shape[2];
  const values = dtype === 'f32' ? new Float32Array(count) : new Uint16Array(count);
  for (let i = 0; i < count; i++) values[i] = (gradient as Float32Array)[i];
  const gotGrad = decodeLogits(values, dtype);
  const scale = maxAbs(expectedGrad) + 1e-9;
  const unit = dtype === 'f32' ? 1e-4 : dtype === 'bf16' ? 1e-2 : 2e-3;
  for (let i = 0; i < gotGrad.length; i++) {
    if (!(Math.abs(gotGrad[i] - expectedGrad[i]) <= unit * scale + 1e-6)) return `dlogits[${i}] ${gotGrad[i]} vs float64 ${expectedGrad[i]} (scale ${scale})`;
  }
  return null;
}

/** No NaN or infinity may come back where the caller did not allow non-finite logits. */
function silentNonFinite(args: Record<string, unknown> | undefined, result: unknown): string | null {
  if (!args || args.allowNonFinite === true || result === null || typeof result !== 'object') return null;
  const r = result as Record<string, unknown>;
  if (typeof r.loss === 'number' && !Number.isFinite(r.loss)) return `a loss of ${r.loss}`;
  const grad = r.dlogits;
  if (grad instanceof Float32Array && !grad.every(Number.isFinite)) return 'a non-finite dlogits';
  return null;
}

async function after(action: AfterAction, args: unknown[], result: unknown): Promise<void> {
  const first = args[0] as Record<string, unknown> | undefined;
  switch (action) {
    case 'overwriteLabels':
      try {
        if (ArrayBuffer.isView(first?.labels) && first!.labels instanceof Int32Array) first!.labels.fill(2 ** 30);
      } catch {
        // a detached buffer: nothing to overwrite
      }
      return;
    case 'transferLogits': {
      const logits = first?.logits as Float32Array | undefined;
      if (logits && ArrayBuffer.isView(logits) && !(logits.buffer instanceof SharedArrayBuffer)) {
        try {
          structuredClone(logits.buffer, { transfer: [logits.buffer] });
        } catch {
          // a buffer that cannot be transferred is the point
        }
      }
      collectGarbage();
      return;
    }
    case 'disposeLogits':
      if (first?.logits instanceof f.Tensor && Object.getPrototypeOf(first.logits) === f.Tensor.prototype) {
        try {
          first.logits.dispose();
        } catch {
          // a fake Tensor (Object.create(Tensor.prototype)) has no state to dispose
        }
      }
      return;
    case 'collectGarbage':
      collectGarbage();
      return;
    case 'backward':
    case 'backwardTwice': {
      const loss = (result as { loss?: unknown })?.loss ?? result;
      if (loss instanceof f.Tensor) {
        loss.backward();
        if (action === 'backwardTwice') loss.backward();
      }
      return;
    }
    case 'disposeResult': {
      const found = new Set<Fusedpo.Tensor>();
      tensorsIn(result, found);
      found.forEach((t) => t.dispose());
      return;
    }
  }
}

/** Runs a program and disposes everything it made and got back; its values die with its frame. */
async function execute(program: Program, outcome: Outcome): Promise<void> {
  const ctx: Context = { random: mulberry32(program.id + 1), named: new Map(), tensors: [], modules: [] };
  let args: unknown[] = [];
  try {
    args = program.args.map((spec) => build(spec, ctx));
  } catch (error) {
    outcome.result = 'build';
    outcome.error = { name: (error as Error).name, message: String((error as Error).message).slice(0, 200), ours: true };
  }
  let result: unknown;
  if (outcome.result !== 'build') {
    try {
      const call = CALLS[program.call];
      if (!call) throw new Error(`fuzz: no call ${program.call}`);
      if (program.call === 'hostEmptyCache' && typeof f.hostEmptyCache !== 'function') {
        outcome.result = 'build';  // an older build (FUSEDPO_FUZZ_PACKAGE) without it: skipped
        return;
      }
      // The reference is computed from copies made before the call: after-actions change the inputs.
      const inputs = program.reference ? snapshotInputs(args[0] as Record<string, unknown>) : null;
      let value = call(args, ctx);
      if (value instanceof Promise) value.catch(() => undefined);  // awaited below; never unhandled meanwhile
      for (const action of program.after) {
        if (action === 'backward' || action === 'backwardTwice' || action === 'disposeResult') continue;
        await after(action, args, value);
      }
      if (value instanceof Promise) value = await value;
      result = value;
      for (const action of program.after) {
        if (action === 'backward' || action === 'backwardTwice' || action === 'disposeResult') await after(action, args, result);
      }
      const first = args[0] as Record<string, unknown> | undefined;
      outcome.wrong = silentNonFinite(first, result);
      if (!outcome.wrong && program.reference && first && inputs) outcome.wrong = compareWithReference(program.reference, { ...first, ...inputs }, result as Record<string, unknown>, first);
    } catch (error) {
      outcome.result = 'threw';
      outcome.error = judgeError(error);
    }
  }
  // Dispose everything the program made and everything it got back.
  const found = new Set<Fusedpo.Tensor>(ctx.tensors);
  tensorsIn(result, found);
  for (const t of found) {
    try {
      t.grad?.dispose();
      t.dispose();
    } catch {
      // a fake Tensor
    }
  }
  ctx.modules.forEach((m) => m.dispose());
}

async function run(program: Program): Promise<Outcome> {
  const start = performance.now();
  const baseline = f.hostMemory?.().liveTensors ?? 0;
  const outcome: Outcome = { id: program.id, result: 'returned', leakedTensors: 0, wrong: null, ms: 0 };
  await execute(program, outcome);
  // A tensor the program dropped without disposing is freed by the finalizer once collected: not
  // a leak. A leak is a tensor still alive after that (held by the package, or pinned forever).
  if (f.hostMemory) {
    for (let k = 0; k < 6 && f.hostMemory().liveTensors > baseline; k++) {
      collectGarbage();
      await new Promise((resolve) => setImmediate(resolve));  // the finalizers run as tasks
    }
    outcome.leakedTensors = Math.max(0, f.hostMemory().liveTensors - baseline);
  }
  outcome.ms = performance.now() - start;
  return outcome;
}

const lines = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
lines.on('line', (line) => {
  queue = queue.then(async () => {
    const outcome = await run(JSON.parse(line) as Program);
    process.stdout.write(`@@${JSON.stringify(outcome)}\n`);
  });
});
lines.on('close', () => void queue.then(() => process.exit(0)));
