/**
 * Module: a tree of named parameters, as PyTorch's nn.Module holds them. A module registers its
 * own parameters (`this.parameter(name, tensor)`) and its submodules (`this.module(name, child)`);
 * `parameters()` lists every parameter of the tree with a dotted name, in registration order
 * (`blocks.0.attn.qkv.weight`): the names of the safetensors files (lib/safetensors.ts) and the
 * order in which the optimizer and the gradient norm visit them.
 *
 * Memory: parameters are kept out of any withScope (a model outlives its training steps) and
 * freed by `dispose()`, with their gradients.
 */
import { Tensor, hostStorage, keep } from '../tensor';

export abstract class Module {
  private readonly ownParameters = new Map<string, Tensor>();
  private readonly children = new Map<string, Module>();

  /** Registers `tensor` as a trainable parameter named `name` (it gets a gradient). Returns it. */
  protected parameter(name: string, tensor: Tensor): Tensor {
    checkName(name, this.ownParameters, this.children);
    if (tensor.dtype !== 'f32') throw new TypeError(`${this.constructor.name}: expected an f32 tensor for parameter ${name} but received ${tensor}`);
    tensor.requiresGrad = true;
    this.ownParameters.set(name, keep(tensor));
    return tensor;
  }

  /** Registers `child` as the submodule named `name`. Returns it. */
  protected module<M extends Module>(name: string, child: M): M {
    checkName(name, this.ownParameters, this.children);
    if (!(child instanceof Module)) throw new TypeError(`${this.constructor.name}: expected a Module for ${name} but received ${child}`);
    this.children.set(name, child);
    return child;
  }

  /** Every parameter of this module and its submodules, as [dotted name, tensor], own ones first. */
  parameters(prefix = ''): [string, Tensor][] {
    const list: [string, Tensor][] = [];
    for (const [name, tensor] of this.ownParameters) list.push([prefix + name, tensor]);
    for (const [name, child] of this.children) list.push(...child.parameters(`${prefix}${name}.`));
    return list;
  }

  /** The parameter named `name` (dotted), or undefined. */
  getParameter(name: string): Tensor | undefined {
    return this.parameters().find(([n]) => n === name)?.[1];
  }

  /** The number of trainable scalars. */
  parameterCount(): number {
    return this.parameters().reduce((n, [, t]) => n + t.size, 0);
  }

  /** Frees every parameter's gradient (the next backward() starts from zero). */
  zeroGrad(): void {
    for (const [, tensor] of this.parameters()) {
      tensor.grad?.dispose();
      tensor.grad = null;
    }
  }

  /** Copies every parameter's values from `source`, a module of the same structure (e.g. a frozen reference). */
  copyFrom(source: Module): void {
    const theirs = new Map(source.parameters());
    const ours = this.parameters();
    if (theirs.size !== ours.length) {
      throw new RangeError(`copyFrom: expected a module with ${ours.length} parameters but received one with ${theirs.size}`);
    }
    for (const [name, tensor] of ours) {
      const other = theirs.get(name);
      if (!other) throw new RangeError(`copyFrom: the source has no parameter ${name}`);
      checkSameShape(`copyFrom: parameter ${name}`, tensor.shape, other.shape);
      if (other.dtype !== tensor.dtype) throw new TypeError(`copyFrom: parameter ${name} is ${other.dtype} in the source but ${tensor.dtype} here`);
      const { storage, byteOffset } = hostStorage(tensor, 'copyFrom');
      storage.write(other.toArray(), byteOffset);
    }
  }

  /** Frees every parameter and its gradient. The module cannot be used afterwards. */
  dispose(): void {
    for (const [, tensor] of this.parameters()) tensor.dispose();
  }
}

function checkName(name: string, parameters: Map<string, unknown>, children: Map<string, unknown>): void {
  if (typeof name !== 'string' || name === '' || name.includes('.')) {
    throw new TypeError(`Expected a non-empty name without dots for a parameter or submodule but received '${name}'`);
  }
  if (parameters.has(name) || children.has(name)) throw new Error(`A parameter or submodule named '${name}' is already registered`);
}

export function checkSameShape(what: string, expectedShape: readonly number[], receivedShape: readonly number[]): void {
  if (expectedShape.length !== receivedShape.length || expectedShape.some((d, i) => d !== receivedShape[i])) {
    throw new RangeError(`${what}: expected shape [${expectedShape}] but received [${receivedShape}]`);
  }
}
