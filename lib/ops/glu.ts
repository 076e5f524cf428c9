/**
 * The gated unit of the Llama family's MLP, between its projections: SwiGLU (SiLU: Llama, Qwen)
 * and GeGLU (tanh GELU: Gemma), forward and backward (native/core/glu.h): the typed-array forms
 * and the Tensor form on one checked path.
 *
 *   gate, up, out [count]:  out = act(gate) * up
 *   dgate += dout * up * act'(gate);  dup += dout * act(gate)
 */
import { record } from '../autograd';
import { native } from '../native';
import { Tensor, newTensor, disposeOnThrow } from '../tensor';
import { checkOneOf, readArgs } from '../validate';
import { FAST, checkNoOverlap, f32, floatLength, gradsFor, implOf, optionalF32, outputArray, shapeError, tensorArgument, type F32Operand, type Options } from './common';

export type GluActivation = 'silu' | 'gelu_tanh';
const ACTIVATIONS: readonly GluActivation[] = ['silu', 'gelu_tanh'];
const code = (a: GluActivation): 0 | 1 => (a === 'silu' ? 0 : 1);

function forwardKernel(impl: 0 | 1, gate: F32Operand, up: F32Operand, out: F32Operand, count: number, activation: GluActivation): void {
  const op = 'gluForward';
  const g = f32(op, 'gate', gate, count);
  const u = f32(op, 'up', up, count, ' (the length of gate)');
  const o = f32(op, 'out', out, count, ' (the length of gate)');
  checkNoOverlap(op, [o], [g, u]);
  native().gluForward(impl, g.buffer, u.buffer, o.buffer, count, code(activation));
}

function backwardKernel(impl: 0 | 1, gate: F32Operand, up: F32Operand, dout: F32Operand, dgate: F32Operand | null, dup: F32Operand | null,
  count: number, activation: GluActivation): void {
  const op = 'gluBackward';
  const g = f32(op, 'gate', gate, count);
  const u = f32(op, 'up', up, count, ' (the length of gate)');
  const d = f32(op, 'dout', dout, count, ' (the length of gate)');
  const dg = optionalF32(op, 'dgate', dgate, count, ' (the length of gate)');
  const du = optionalF32(op, 'dup', dup, count, ' (the length of gate)');
  checkNoOverlap(op, [dg, du], [g, u, d]);
  native().gluBackward(impl, g.buffer, u.buffer, d.buffer, dg?.buffer ?? null, du?.buffer ?? null, count, code(activation));
}

/** act(gate) * up, elementwise. */
export function gluForward(args: { gate: Float32Array; up: Float32Array; activation?: GluActivation; out?: Float32Array } & Options): Float32Array {
  const x = readArgs('gluForward', args, ['gate', 'up', 'activation', 'out', 'implementation'] as const);
  const count = floatLength('gluForward', 'gate', x.gate);
  const activation = checkOneOf('activation', x.activation ?? 'silu', ACTIVATIONS);
  const out = outputArray(x.out, count) as Float32Array;
  forwardKernel(implOf(x.implementation), x.gate as Float32Array, x.up as Float32Array, out, count, activation);
  return out;
}

/** `dgate += dout * up * act'(gate)`, `dup += dout * act(gate)` (either may be null). */
export function gluBackward(args: { gate: Float32Array; up: Float32Array; dout: Float32Array; dgate: Float32Array | null; dup: Float32Array | null;
  activation?: GluActivation } & Options): void {
  const x = readArgs('gluBackward', args, ['gate', 'up', 'dout', 'dgate', 'dup', 'activation', 'implementation'] as const);
  const count = floatLength('gluBackward', 'gate', x.gate);
  const activation = checkOneOf('activation', x.activation ?? 'silu', ACTIVATIONS);
  backwardKernel(implOf(x.implementation), x.gate as Float32Array, x.up as Float32Array, x.dout as Float32Array,
    x.dgate as Float32Array | null, x.dup as Float32Array | null, count, activation);
}

/** act(gate) * up for tensors of one shape (SwiGLU with 'silu', GeGLU with 'gelu_tanh'). */
export function glu(gateValue: Tensor, upValue: Tensor, activationValue: GluActivation = 'silu'): Tensor {
  return disposeOnThrow(() => {
    const gate = tensorArgument('glu', 'gate', gateValue);
    const up = tensorArgument('glu', 'up', upValue);
    const activation = checkOneOf('activation', activationValue, ACTIVATIONS);
    if (up.shape.length !== gate.shape.length || up.shape.some((d, i) => d !== gate.shape[i])) throw shapeError('glu', `up of gate's shape [${gate.shape}]`, up);
    const out = newTensor('glu', gate.shape);
    if (gate.size > 0) forwardKernel(FAST, gate, up, out, gate.size, activation);
    return record(out, {
      op: 'glu',
      inputs: [gate, up],
      saved: [gate, up],
      backward: (g) => {
        const [dgate, dup] = gradsFor('glu', [gate, up]);
        if ((dgate || dup) && gate.size > 0) backwardKernel(FAST, gate, up, g, dgate, dup, gate.size, activation);
        return [dgate, dup];
      },
    });
  });
}
