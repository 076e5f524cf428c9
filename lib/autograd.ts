/**
 * Reverse-mode autograd at micrograd's size: every op that is given a tensor needing a gradient
 * records a node on its output (its inputs and a backward closure that calls the native backward
 * kernels); `loss.backward()` walks the graph in reverse topological order, sums the gradients
 * that meet at a tensor, and accumulates (`+=`) into `.grad` of the leaves that require it.
 *
 * Memory: backward() disposes every intermediate gradient it made and cuts the graph (each
 * tensor's node is dropped), so the tensors of a step can be disposed by their scope right after.
 * The gradients of leaves (`param.grad`) are kept across scopes, and summed over calls until the
 * optimizer zeroes them.
 */
import { Tensor, keep, registerBackward } from './tensor';

export interface GradNode {
  /** The op's name, for error messages. */
  op: string;
  inputs: Tensor[];
  /** The gradients of the inputs (null where an input gets none), given the output's. */
  backward(gradOutput: Tensor): (Tensor | null)[];
}

let noGradDepth = 0;

/** Runs fn without recording any graph (e.g. a reference model's forward pass). */
export function noGrad<T>(fn: () => T): T {
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

/** Whether an op on these inputs must record a node. */
export function needsGrad(inputs: readonly Tensor[]): boolean {
  return isGradEnabled() && inputs.some((t) => t.requiresGrad || t.node !== null);
}

/** Records `node` as the maker of `output` when any input needs a gradient. Returns output. */
export function record(output: Tensor, node: GradNode): Tensor {
  if (needsGrad(node.inputs)) output.node = node;
  return output;
}

/**
 * How gradients meeting at one tensor are summed: `sum(a, b)` returns a new tensor a + b. Set
 * by lib/ops (the native add kernel) when it loads.
 */
let sumGradients: ((a: Tensor, b: Tensor) => Tensor) | null = null;
export function registerGradientSum(fn: (a: Tensor, b: Tensor) => Tensor): void {
  sumGradients = fn;
}

function add(a: Tensor, b: Tensor): Tensor {
  if (!sumGradients) throw new Error('backward: no gradient sum is registered (import fusedpo, not lib/autograd alone)');
  const total = sumGradients(a, b);
  a.dispose();
  b.dispose();
  return total;
}

function topologicalOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  // Iterative depth-first search: a deep graph (many layers x many ops) must not overflow the stack.
  const stack: [Tensor, boolean][] = [[root, false]];
  while (stack.length) {
    const [tensor, expanded] = stack.pop()!;
    if (expanded) {
      order.push(tensor);
      continue;
    }
    if (seen.has(tensor)) continue;
    seen.add(tensor);
    stack.push([tensor, true]);
    const node = tensor.node as GradNode | null;
    for (const input of node?.inputs ?? []) if (!seen.has(input)) stack.push([input, false]);
  }
  return order;
}

/** Backpropagates from a one-element tensor: see the file's comment. */
export function backward(root: Tensor): void {
  root.assertAlive('backward');
  if (root.size !== 1) {
    throw new RangeError(`backward: expected a tensor of one element (a loss) but its shape is [${root.shape}]`);
  }
  if (root.node === null && !root.requiresGrad) {
    throw new Error('backward: this tensor does not depend on any tensor that requires a gradient');
  }
  const order = topologicalOrder(root);
  const grads = new Map<Tensor, Tensor>([[root, Tensor.from([1], root.shape, 'f32')]]);
  for (let i = order.length - 1; i >= 0; i--) {
    const tensor = order[i];
    const grad = grads.get(tensor);
    if (!grad) continue;
    grads.delete(tensor);
    const node = tensor.node as GradNode | null;
    if (node) {
      const inputGrads = node.backward(grad);
      node.inputs.forEach((input, k) => {
        const g = inputGrads[k];
        if (!g) return;
        if (!input.requiresGrad && input.node === null) {
          g.dispose();
          return;
        }
        const previous = grads.get(input);
        grads.set(input, previous ? add(previous, g) : g);
      });
    }
    if (tensor.requiresGrad && node === null) {
      tensor.grad = keep(tensor.grad ? add(tensor.grad, grad) : grad);
    } else {
      grad.dispose();
    }
  }
  for (const tensor of order) tensor.node = null;
}

registerBackward(backward);
