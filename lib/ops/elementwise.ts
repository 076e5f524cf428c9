/**
 * add, mul (b broadcast over a's leading dims) and scale, forward and backward (native/core/
 * elementwise.h): the typed-array forms and the Tensor forms, on one checked path each.
 *
 *   add:   out[r,c] = a[r,c] + b[c]      da[r,c] += dout[r,c];        db[c] += sum_r dout[r,c]
 *   mul:   out[r,c] = a[r,c] * b[c]      da[r,c] += dout[r,c] b[c];   db[c] += sum_r dout[r,c] a[r,c]
 *   scale: out[i] = s a[i]               da[i] += s dout[i]
 *
 * a is [rows, cols] and b is [cols] once b's shape is checked to be the trailing dims of a's
 * ([..., C] + [C], [B, T, C] + [T, C], equal shapes). out may be a itself (in place).
 */
import { record } from '../autograd';
import { native } from '../native';
import { Tensor, checkShape, newTensor, sizeOf, disposeOnThrow } from '../tensor';
import { checkNumber, expected, readArgs } from '../validate';
import {
  FAST, checkNoOverlap, f32, floatLength, gradsFor, implOf, optionalF32, outputArray, tensorArgument, type F32Operand, type Options,
} from './common';

/** [rows, cols] of a and b once b's shape is checked to be the trailing dims of a's. */
function broadcast(op: string, aShape: readonly number[], bShape: readonly number[]): { rows: number; cols: number } {
  const offset = aShape.length - bShape.length;
  const cols = sizeOf(bShape);
  if (offset < 0 || bShape.some((d, i) => d !== aShape[offset + i]) || cols === 0 || sizeOf(aShape) === 0) {
    throw new RangeError(`${op}: expected the second shape to be the trailing dims of the first (broadcast over leading dims) ` +
      `but received [${aShape}] and [${bShape}]`);
  }
  return { rows: sizeOf(aShape) / cols, cols };
}

type Binary = 'add' | 'mul';

function binaryForwardKernel(op: Binary, impl: 0 | 1, a: F32Operand, b: F32Operand, out: F32Operand, rows: number, cols: number): void {
  const name = `${op}Forward`;
  const why = ` ([${rows}, ${cols}])`;
  const x = f32(name, 'a', a, rows * cols, why);
  const y = f32(name, 'b', b, cols, ` ([${cols}])`);
  const z = f32(name, 'out', out, rows * cols, why);
  checkNoOverlap(name, [z], [x, y], { out: 'a' });
  native()[op === 'add' ? 'addForward' : 'mulForward'](impl, x.buffer, y.buffer, z.buffer, rows, cols);
}

function binaryBackwardKernel(op: Binary, impl: 0 | 1, a: F32Operand | null, b: F32Operand | null, dout: F32Operand,
  da: F32Operand | null, db: F32Operand | null, rows: number, cols: number): void {
  const name = `${op}Backward`;
  const why = ` ([${rows}, ${cols}])`;
  const g = f32(name, 'dout', dout, rows * cols, why);
  const dx = optionalF32(name, 'da', da, rows * cols, why);
  const dy = optionalF32(name, 'db', db, cols, ` ([${cols}])`);
  if (op === 'add') {
    checkNoOverlap(name, [dx, dy], [g]);
    native().addBackward(impl, g.buffer, dx?.buffer ?? null, dy?.buffer ?? null, rows, cols);
    return;
  }
  const x = f32(name, 'a', a, rows * cols, why);
  const y = f32(name, 'b', b, cols, ` ([${cols}])`);
  checkNoOverlap(name, [dx, dy], [g, x, y]);
  native().mulBackward(impl, x.buffer, y.buffer, g.buffer, dx?.buffer ?? null, dy?.buffer ?? null, rows, cols);
}

// ---- the typed-array forms -------------------------------------------------------------------

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

const BINARY_KEYS = ['a', 'aShape', 'b', 'bShape', 'out', 'implementation'] as const;
const BINARY_BACKWARD_KEYS = ['a', 'b', 'aShape', 'bShape', 'dout', 'da', 'db', 'implementation'] as const;

function binaryForward(op: Binary, args: BinaryArgs): Float32Array {
  const x = readArgs(`${op}Forward`, args, BINARY_KEYS);
  const { rows, cols } = broadcast(`${op}Forward`, checkShape(x.aShape, 'aShape'), checkShape(x.bShape, 'bShape'));
  const out = outputArray(x.out, rows * cols);
  binaryForwardKernel(op, implOf(x.implementation), x.a as Float32Array, x.b as Float32Array, out as Float32Array, rows, cols);
  return out as Float32Array;
}

function binaryBackward(op: Binary, args: BinaryBackwardArgs & { a?: Float32Array; b?: Float32Array }): void {
  const x = readArgs(`${op}Backward`, args, BINARY_BACKWARD_KEYS);
  const { rows, cols } = broadcast(`${op}Backward`, checkShape(x.aShape, 'aShape'), checkShape(x.bShape, 'bShape'));
  binaryBackwardKernel(op, implOf(x.implementation), (x.a ?? null) as Float32Array | null, (x.b ?? null) as Float32Array | null,
    x.dout as Float32Array, (x.da ?? null) as Float32Array | null, (x.db ?? null) as Float32Array | null, rows, cols);
}

/** `out = a + b`, b broadcast over the leading dims of a. */
export function addForward(args: BinaryArgs): Float32Array {
  return binaryForward('add', args);
}

/** `da += dout`, `db += dout` summed over the broadcast dims. */
export function addBackward(args: BinaryBackwardArgs): void {
  binaryBackward('add', args);
}

/** `out = a * b`, b broadcast over the leading dims of a. */
export function mulForward(args: BinaryArgs): Float32Array {
  return binaryForward('mul', args);
}

/** `da += dout * b`, `db += dout * a` summed over the broadcast dims. Needs a and b. */
export function mulBackward(args: BinaryBackwardArgs & { a: Float32Array; b: Float32Array }): void {
  binaryBackward('mul', args);
}

function scaleForwardKernel(impl: 0 | 1, a: F32Operand, s: number, out: F32Operand, count: number): void {
  const x = f32('scaleForward', 'a', a, count);
  const y = f32('scaleForward', 'out', out, count);
  checkNoOverlap('scaleForward', [y], [x], { out: 'a' });
  native().scaleForward(impl, x.buffer, s, y.buffer, count);
}

function scaleBackwardKernel(impl: 0 | 1, dout: F32Operand, s: number, da: F32Operand, count: number): void {
  const g = f32('scaleBackward', 'dout', dout, count);
  const dx = f32('scaleBackward', 'da', da, count);
  checkNoOverlap('scaleBackward', [dx], [g]);
  native().scaleBackward(impl, g.buffer, s, dx.buffer, count);
}

/** `out = s * a` (out may be a: in place). */
export function scaleForward(args: { a: Float32Array; s: number; out?: Float32Array } & Options): Float32Array {
  const x = readArgs('scaleForward', args, ['a', 's', 'out', 'implementation'] as const);
  const count = floatLength('scaleForward', 'a', x.a);
  const s = checkNumber('s', x.s);
  const out = outputArray(x.out, count);
  scaleForwardKernel(implOf(x.implementation), x.a as Float32Array, s, out as Float32Array, count);
  return out as Float32Array;
}

/** `da += s * dout`. */
export function scaleBackward(args: { dout: Float32Array; s: number; da: Float32Array } & Options): void {
  const x = readArgs('scaleBackward', args, ['dout', 's', 'da', 'implementation'] as const);
  const count = floatLength('scaleBackward', 'dout', x.dout);
  scaleBackwardKernel(implOf(x.implementation), x.dout as Float32Array, checkNumber('s', x.s), x.da as Float32Array, count);
}

/** Scales every element of a tensor (or Float32Array) in place by s: clipping's last step. */
export function scaleInPlace(target: F32Operand, s: number, count: number): void {
  scaleForwardKernel(FAST, target, s, target, count);
}

// ---- the Tensor forms ------------------------------------------------------------------------

function binary(op: Binary, aValue: Tensor, bValue: Tensor): Tensor {
  return disposeOnThrow(() => {
    const a = tensorArgument(op, 'a', aValue);
    const b = tensorArgument(op, 'b', bValue);
    const { rows, cols } = broadcast(op, a.shape, b.shape);
    const out = newTensor(op, a.shape);
    binaryForwardKernel(op, FAST, a, b, out, rows, cols);
    return record(out, {
      op,
      inputs: [a, b],
      saved: op === 'mul' ? [a, b] : [],
      backward: (g) => {
        const [da, db] = gradsFor(op, [a, b]);
        binaryBackwardKernel(op, FAST, op === 'mul' ? a : null, op === 'mul' ? b : null, g, da, db, rows, cols);
        return [da, db];
      },
    });
  });
}

/** a + b, b broadcast over a's leading dims ([..., C] + [C], [B, T, C] + [T, C], equal shapes). */
export function add(a: Tensor, b: Tensor): Tensor {
  return binary('add', a, b);
}

/** a * b elementwise, b broadcast as in add. */
export function mul(a: Tensor, b: Tensor): Tensor {
  return binary('mul', a, b);
}

/** a * s for a number s. */
export function scale(aValue: Tensor, s: number): Tensor {
  return disposeOnThrow(() => {
    const a = tensorArgument('scale', 'a', aValue);
    if (typeof s !== 'number' || !Number.isFinite(s)) throw new TypeError(expected('a finite number', 'scale s', s));
    const out = newTensor('scale', a.shape);
    if (a.size > 0) scaleForwardKernel(FAST, a, s, out, a.size);
    return record(out, {
      op: 'scale',
      inputs: [a],
      saved: [],
      backward: (g) => {
        const [da] = gradsFor('scale', [a]);
        if (da && a.size > 0) scaleBackwardKernel(FAST, g, s, da, a.size);
        return [da];
      },
    });
  });
}
