/**
 * Recording the graph: an op given a tensor that needs a gradient records a node on its output,
 * holding its inputs, the tensors its backward closure reads (`saved`) and the closure, which
 * calls the native backward kernels. `loss.backward()` (lib/tensor.ts) walks the nodes.
 *
 * Layering: this module imports lib/tensor.ts, never the reverse (tensor.ts knows a node only as
 * a type), so the tape has no hidden cycle and no run-time registration.
 *
 * Memory: backward() disposes every intermediate gradient it made and cuts the graph (each
 * tensor's node is dropped), so the tensors of a step can be disposed by their scope right after.
 * The gradients of leaves (`param.grad`) are kept across scopes, and summed over calls until the
 * optimizer zeroes them.
 */
import { Tensor } from './tensor';
import { expected } from './validate';

export interface GradNode {
  /** The op's name, for error messages. */
  op: string;
  inputs: Tensor[];
  /**
   * The tensors the backward closure reads (inputs or outputs of the forward pass, or scratch it
   * saved): backward() refuses to run, naming the op and the tensor, when one was disposed.
   */
  saved: Tensor[];
  /**
   * Tensors the op made for its backward alone (layerNorm's mean and rstd, attention's weights):
   * disposed with the op's output, or once backward() has walked the graph.
   */
  owned?: Tensor[];
  /** The gradients of the inputs (null where an input gets none), given the output's. */
  backward(gradOutput: Tensor): (Tensor | null)[];
}

let noGradDepth = 0;

/** Runs fn without recording any graph (e.g. a reference model's forward pass). */
export function noGrad<T>(fn: () => T): T {
  if (typeof fn !== 'function') throw new TypeError(expected('a function', 'noGrad fn', fn));
  noGradDepth++;
  try {
    return fn();
  } finally {
    noGradDepth--;
  }
}

export function isGradEnabled(): boolean {
  return noGradDepth === 0;
}

/** Whether a tensor takes part in a graph: it requires a gradient or was made by a recorded op. */
export function tracksGrad(tensor: Tensor): boolean {
  return tensor.requiresGrad || Tensor.nodeOf(tensor) !== null;
}

/** Whether an op on these inputs must record a node. */
export function needsGrad(inputs: readonly Tensor[]): boolean {
  return isGradEnabled() && inputs.some(tracksGrad);
}

/**
 * Records `node` as the maker of `output` when any input needs a gradient; otherwise what the op
 * kept for a backward pass (its `owned` tensors) is disposed at once. Returns output.
 */
export function record(output: Tensor, node: GradNode): Tensor {
  if (needsGrad(node.inputs)) Tensor.setNode(output, node);
  else node.owned?.forEach((t) => t.dispose());
  return output;
}
