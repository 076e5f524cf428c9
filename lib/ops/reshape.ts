/**
 * A view of a tensor in another shape of the same size, on the graph: its gradient is the
 * output's gradient viewed in the input's shape (no copy either way). `Tensor.reshape` makes the
 * same view off the graph.
 */
import { record } from '../autograd';
import type { Tensor } from '../tensor';
import { tensorArgument } from './common';

export function reshape(xValue: Tensor, shape: readonly number[]): Tensor {
  const x = tensorArgument('reshape', 'x', xValue);
  const out = x.reshape(shape);
  return record(out, { op: 'reshape', inputs: [x], saved: [], backward: (g) => [g.reshape(x.shape)] });
}
