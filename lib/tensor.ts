/**
 * Tensor: a shape, a dtype, a device and native storage (native/napi/storage.h on the CPU,
 * CudaStorage of native/napi/cuda_bindings.cpp on a GPU).
 *
 * Devices: `cpu` tensors feed every op; `cuda` tensors live in GPU memory (the CUDA addon and a
 * device are needed) and feed `preferenceLoss` / `preferenceLossAsync`. Move data between them
 * with `to(device)`; an op given a tensor on a device it does not run on says so.
 *
 * Memory: a tensor's bytes live outside V8's heap, so they are freed the moment `dispose()` is
 * called, not whenever the collector runs; the bytes are reported to V8 all the same, and a
 * finalizer frees what was never disposed. `withScope(fn)` disposes every tensor created inside
 * `fn` except the ones it returns or `keep()`s: a training step runs inside one, so its
 * intermediates are gone when it returns.
 *
 * Data moves in and out by copy (`Tensor.from`, `toArray`, `item`): JavaScript never holds a view
 * of native memory that could outlive `dispose()`. Storage is contiguous; `reshape` makes a view
 * that shares it (the storage is freed when its last tensor is disposed).
 */
import { cudaAddon, native, type NativeStorage } from './native';
import { checkOneOf, describe, expected } from './validate';

/** `f16` is a storage type for logits (preferenceLoss); the other ops take f32 (and bf16 where they say). */
export type TensorDType = 'f32' | 'bf16' | 'f16' | 'i32';
export type Device = 'cpu' | 'cuda';
export const TENSOR_DTYPES: readonly TensorDType[] = ['f32', 'bf16', 'f16', 'i32'];
export const DEVICES: readonly Device[] = ['cpu', 'cuda'];
const BYTES_PER_ELEMENT: Record<TensorDType, number> = { f32: 4, bf16: 2, f16: 2, i32: 4 };

export type TensorData = Float32Array | Uint16Array | Int32Array;

/** Where a tensor's bytes are, for the kernels: its storage (either device) and offset in it. */
export interface StorageView {
  storage: NativeStorage;
  byteOffset: number;
  byteLength: number;
}

/** A native allocation shared by a tensor and its views: freed when the last one lets go. */
class SharedStorage {
  private users = 0;
  constructor(readonly handle: NativeStorage, readonly device: Device) {}
  retain(): void {
    this.users++;
  }
  release(): void {
    if (--this.users === 0) this.handle.dispose();
  }
}

function emptyArray(dtype: TensorDType, length: number): TensorData {
  return dtype === 'f32' ? new Float32Array(length) : dtype === 'i32' ? new Int32Array(length) : new Uint16Array(length);  // bf16, f16: bits
}

function checkShape(shape: unknown, name = 'shape'): number[] {
  if (!Array.isArray(shape) || !shape.every((d) => typeof d === 'number' && Number.isInteger(d) && d >= 0)) {
    throw new TypeError(expected('an array of non-negative integers', name, shape));
  }
  return [...shape];
}

export function sizeOf(shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}

/** lib/autograd.ts registers its backward() here (it imports this module, not the reverse). */
let runBackward: ((root: Tensor) => void) | null = null;
export function registerBackward(fn: (root: Tensor) => void): void {
  runBackward = fn;
}

/** The scopes of withScope, innermost last: each collects the tensors created while it runs. */
const scopes: Set<Tensor>[] = [];

export class Tensor {
  readonly shape: readonly number[];
  readonly dtype: TensorDType;
  readonly device: Device;
  /** Elements. */
  readonly size: number;
  /** Whether backward() should give this tensor a gradient (parameters, or leaves you ask for). */
  requiresGrad = false;
  /** The accumulated gradient, for tensors that require it. */
  grad: Tensor | null = null;
  /** @internal the autograd node that made this tensor (lib/autograd.ts), or null for a leaf. */
  node: unknown = null;
  private readonly storage: SharedStorage;
  private readonly byteOffset: number;
  private alive = true;

  /** @internal use Tensor.from, Tensor.zeros, to() or an op. New storage is not zeroed on cuda. */
  constructor(shape: readonly number[], dtype: TensorDType, storage: SharedStorage | Device = 'cpu', byteOffset = 0) {
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.size = sizeOf(shape);
    if (!(storage instanceof SharedStorage)) {
      const bytes = this.size * BYTES_PER_ELEMENT[dtype];
      const handle = storage === 'cuda'
        ? new (cudaAddon(`a cuda tensor of shape [${shape}] (${dtype})`).CudaStorage)(bytes)
        : new (native().NativeStorage)(bytes);
      storage = new SharedStorage(handle, storage);
    }
    this.storage = storage;
    this.device = storage.device;
    this.storage.retain();
    this.byteOffset = byteOffset;
    scopes[scopes.length - 1]?.add(this);
  }

  /** A tensor of zeros, on the CPU or (`device: 'cuda'`) in GPU memory. */
  static zeros(shape: readonly number[], dtype: TensorDType = 'f32', device: Device = 'cpu'): Tensor {
    const tensor = new Tensor(checkShape(shape), checkOneOf('dtype', dtype, TENSOR_DTYPES), checkOneOf('device', device, DEVICES));
    if (tensor.device === 'cuda') tensor.storage.handle.fill(0);  // host storage starts zeroed
    return tensor;
  }

  /**
   * A tensor holding a copy of `data`: a typed array of the dtype's kind (Float32Array for f32,
   * Int32Array for i32, Uint16Array of bf16 or f16 bits for bf16 and f16) or an array of numbers
   * (for bf16 and f16: their bit patterns). With `device: 'cuda'` the copy goes to GPU memory.
   */
  static from(data: TensorData | ArrayLike<number>, shape: readonly number[], dtype: TensorDType = 'f32', device: Device = 'cpu'): Tensor {
    const checkedShape = checkShape(shape);
    checkOneOf('dtype', dtype, TENSOR_DTYPES);
    checkOneOf('device', device, DEVICES);
    const size = sizeOf(checkedShape);
    const kind = emptyArray(dtype, 0).constructor as { new (a: ArrayLike<number>): TensorData; name: string };
    let array: TensorData;
    if (ArrayBuffer.isView(data)) {
      if (!(data instanceof kind)) {
        throw new TypeError(expected(`a ${kind.name} (dtype ${dtype}) or an array of numbers`, 'data', data));
      }
      array = data as TensorData;
    } else if (Array.isArray(data) || (typeof data === 'object' && data !== null && 'length' in data)) {
      array = new kind(data);
    } else {
      throw new TypeError(expected('a typed array or an array of numbers', 'data', data));
    }
    if (array.length !== size) {
      throw new RangeError(`Expected ${size} elements for shape [${checkedShape}] but received ${describe(data)}`);
    }
    const tensor = new Tensor(checkedShape, dtype, device);
    tensor.storage.handle.write(array, 0);
    return tensor;
  }

  /** This tensor on `device`: itself when it is there already, else a copy (through host memory). */
  to(device: Device): Tensor {
    checkOneOf('device', device, DEVICES);
    this.assertAlive(`to('${device}')`);
    if (device === this.device) return this;
    return Tensor.from(this.toArray(), this.shape, this.dtype, device);
  }

  get disposed(): boolean {
    return !this.alive;
  }

  /** Throws the error of a use after dispose(), naming the operation. */
  assertAlive(operation: string): void {
    if (!this.alive) {
      throw new Error(`${operation}: the tensor of shape [${this.shape}] (${this.dtype}) was disposed`);
    }
  }

  /** @internal the host storage and the byte offset of this tensor in it, for the CPU kernels. */
  nativeStorage(operation: string): StorageView {
    this.assertAlive(operation);
    if (this.device !== 'cpu') {
      throw new TypeError(`${operation}: runs on the CPU, but this tensor of shape [${this.shape}] (${this.dtype}) is on ${this.device}: ` +
        `copy it with .to('cpu') (on cuda, only preferenceLoss runs so far)`);
    }
    return this.storageView();
  }

  /** @internal the GPU storage and the byte offset of this tensor in it, for the CUDA kernels. */
  deviceStorage(operation: string): StorageView {
    this.assertAlive(operation);
    if (this.device !== 'cuda') throw new TypeError(`${operation}: expected a cuda tensor but this one is on ${this.device}`);
    return this.storageView();
  }

  private storageView(): StorageView {
    return { storage: this.storage.handle, byteOffset: this.byteOffset, byteLength: this.size * BYTES_PER_ELEMENT[this.dtype] };
  }

  /** A copy of the data (from either device), as the dtype's typed array. */
  toArray(): TensorData {
    this.assertAlive('toArray');
    const out = emptyArray(this.dtype, this.size);
    this.storage.handle.read(out, this.byteOffset);
    return out;
  }

  /** The value of a one-element tensor. */
  item(): number {
    if (this.size !== 1) throw new RangeError(`item: expected a tensor of one element but its shape is [${this.shape}]`);
    return this.toArray()[0];
  }

  /** A view with another shape of the same number of elements, sharing the storage. */
  reshape(shape: readonly number[]): Tensor {
    this.assertAlive('reshape');
    const next = checkShape(shape);
    if (sizeOf(next) !== this.size) {
      throw new RangeError(`reshape: expected a shape of ${this.size} elements (from [${this.shape}]) but received [${next}]`);
    }
    return new Tensor(next, this.dtype, this.storage, this.byteOffset);
  }

  /**
   * Backpropagates from this one-element tensor (a loss) into the `.grad` of every tensor it
   * depends on that requires a gradient (lib/autograd.ts).
   */
  backward(): void {
    if (!runBackward) throw new Error('backward: autograd is not loaded (import fusedpo, not lib/tensor alone)');
    runBackward(this);
  }

  /** Frees this tensor's storage (once no view shares it) and its gradient. Idempotent. */
  dispose(): void {
    if (!this.alive) return;
    this.alive = false;
    this.node = null;
    this.storage.release();
    this.grad?.dispose();
    this.grad = null;
    for (const scope of scopes) scope.delete(this);
  }

  toString(): string {
    return `Tensor(shape [${this.shape}], ${this.dtype}, ${this.device}${this.alive ? '' : ', disposed'})`;
  }
}

/** Leaves `tensor` alive when the enclosing withScope ends. Returns it. */
export function keep<T extends Tensor>(tensor: T): T {
  for (const scope of scopes) scope.delete(tensor);
  return tensor;
}

function collect(value: unknown, into: Set<Tensor>): void {
  if (value instanceof Tensor) into.add(value);
  else if (Array.isArray(value)) value.forEach((v) => collect(v, into));
  else if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    Object.values(value).forEach((v) => collect(v, into));
  }
}

/**
 * Runs `fn`; then disposes every tensor created during it, except those in its result (a tensor,
 * or arrays and plain objects holding tensors) and those passed to keep(). Tensors returned from
 * an inner scope belong to the outer one.
 */
export function withScope<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (error) {
    scopes.pop();
    for (const tensor of scope) tensor.dispose();
    throw error;
  }
  scopes.pop();
  const survivors = new Set<Tensor>();
  collect(result, survivors);
  for (const tensor of scope) {
    if (survivors.has(tensor)) scopes[scopes.length - 1]?.add(tensor);
    else tensor.dispose();
  }
  return result;
}
