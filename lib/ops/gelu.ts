/**
 * GELU with GPT-2's tanh approximation (Hendrycks and Gimpel 2016), forward and backward
 * (native/core/gelu.h): the typed-array forms and the Tensor form on one checked path.
 *
 *   u = sqrt(2/pi) (x + 0.044715 x^3);  out = x/2 (1 + tanh u)
 *   dinp += dout (1/2 (1 + tanh u) + x/2 (1 - tanh^2 u) sqrt(2/pi) (1 + 3 0.044715 x^2))
 */
import { record } from '../autograd';
import { native } from '../native';
import { Tensor, newTensor, disposeOnThrow } from '../tensor';
import { readArgs } from '../validate';
import { FAST, checkNoOverlap, f32, floatLength, gradsFor, implOf, outputArray, tensorArgument, type F32Operand, type Options } from './common';

function geluForwardKernel(impl: 0 | 1, inp: F32Operand, out: F32Operand, count: number): void {
  const x = f32('geluForward', 'inp', inp, count);
  const y = f32('geluForward', 'out', out, count, ' (the length of inp)');
  checkNoOverlap('geluForward', [y], [x]);
  native().geluForward(impl, x.buffer, y.buffer, count);
}

function geluBackwardKernel(impl: 0 | 1, inp: F32Operand, dout: F32Operand, dinp: F32Operand, count: number): void {
  const x = f32('geluBackward', 'inp', inp, count);
  const g = f32('geluBackward', 'dout', dout, count, ' (the length of inp)');
  const dx = f32('geluBackward', 'dinp', dinp, count, ' (the length of inp)');
  checkNoOverlap('geluBackward', [dx], [x, g]);
  native().geluBackward(impl, x.buffer, g.buffer, dx.buffer, count);
}

/** GELU, GPT-2's tanh approximation, elementwise. */
export function geluForward(args: { inp: Float32Array; out?: Float32Array } & Options): Float32Array {
  const x = readArgs('geluForward', args, ['inp', 'out', 'implementation'] as const);
  const count = floatLength('geluForward', 'inp', x.inp);
  const out = outputArray(x.out, count) as Float32Array;
  geluForwardKernel(implOf(x.implementation), x.inp as Float32Array, out, count);
  return out;
}

/** `dinp += gelu'(inp) * dout`. */
export function geluBackward(args: { inp: Float32Array; dout: Float32Array; dinp: Float32Array } & Options): void {
  const x = readArgs('geluBackward', args, ['inp', 'dout', 'dinp', 'implementation'] as const);
  const count = floatLength('geluBackward', 'inp', x.inp);
  geluBackwardKernel(implOf(x.implementation), x.inp as Float32Array, x.dout as Float32Array, x.dinp as Float32Array, count);
}

/** GELU, tanh approximation (GPT-2's). */
export function gelu(xValue: Tensor): Tensor {
  return disposeOnThrow(() => {
    const x = tensorArgument('gelu', 'x', xValue);
    const out = newTensor('gelu', x.shape);
    if (x.size > 0) geluForwardKernel(FAST, x, out, x.size);
    return record(out, {
      op: 'gelu',
      inputs: [x],
      saved: [x],
      backward: (g) => {
        const [dx] = gradsFor('gelu', [x]);
        if (dx && x.size > 0) geluBackwardKernel(FAST, x, g, dx, x.size);
        return [dx];
      },
    });
  });
}
