/**
 * Tensor: a shape, a dtype, a device and native storage (native/napi/storage.h on the CPU,
 * CudaStorage of native/napi/cuda_bindings.cpp on a GPU), and the autograd tape at micrograd's
 * size: an op that is given a tensor needing a gradient records a node on its output (its
 * inputs, the tensors its backward reads, and a backward closure: lib/autograd.ts), and
 * `loss.backward()` walks the graph in reverse topological order, sums the gradients that meet at
 * a tensor and accumulates (`+=`) into `.grad` of the leaves that require one.
 *
 * Devices: `cpu` tensors feed every op; `cuda` tensors live in GPU memory (the CUDA addon and a
 * device are needed) and feed `preferenceLoss` / `preferenceLossAsync`. Move data between them
 * with `to(device)`; an op given a tensor on a device it does not run on says so.
 *
 * Lifetimes (the README's "Tensor lifetimes"):
 * - A tensor's shape, dtype, device, size and storage are fixed at construction (private fields
 *   behind getters); `.grad` can be assigned only a live tensor of the same shape, dtype and
 *   device; `.requiresGrad` only a boolean.
 * - `dispose()` ends a tensor at once: every later use is an Error naming the operation. Its
 *   storage goes back to a pool (by size class, up to 256 MiB; `hostEmptyCache()` frees it) from
 *   which the next tensor of that size class is served, zeroed: a training loop's steady state
 *   allocates no native memory at all, so a synchronous loop that disposes runs flat.
 * - `withScope(fn)` disposes every tensor created inside `fn` except its result and `keep()`s.
 * - A tensor dropped without dispose() is freed by a finalizer once the garbage collector finds
 *   it, which in a loop that never yields is never: `hostMemory().liveTensors` counts them, and a
 *   warning is emitted when they pass FUSEDPO_LIVE_TENSOR_WARNING (default 100000; 0: never).
 * - A job off the event loop (preferenceLossAsync) pins the storages it uses: a tensor disposed
 *   meanwhile is unusable at once, and its memory is reused only when the job is done.
 * - backward() reads what the forward pass saved; if any of it was disposed it throws naming the
 *   op and the tensor, before touching any gradient. A graph is walked once: a second backward()
 *   on it says that its graph was freed.
 *
 * Data moves in and out by copy (`Tensor.from`, `toArray`, `item`): JavaScript never holds a view
 * of native memory that could outlive `dispose()`. Storage is contiguous; `reshape` makes a view
 * that shares it (the storage is released when its last tensor is disposed).
 */
import type { GradNode } from './autograd';
import { cudaAddon, native, type NativeStorage } from './native';
import { checkBoolean, checkOneOf, describe, expected, readArray, typedArrayFacts } from './validate';

/** `f16` is a storage type for logits (preferenceLoss); the other ops take f32 (and bf16 where they say). */
export type TensorDType = 'f32' | 'bf16' | 'f16' | 'i32';
export type Device = 'cpu' | 'cuda';
export const TENSOR_DTYPES: readonly TensorDType[] = ['f32', 'bf16', 'f16', 'i32'];
export const DEVICES: readonly Device[] = ['cpu', 'cuda'];
const BYTES_PER_ELEMENT: Record<TensorDType, number> = { f32: 4, bf16: 2, f16: 2, i32: 4 };
const ARRAY_KIND: Record<TensorDType, string> = { f32: 'Float32Array', bf16: 'Uint16Array', f16: 'Uint16Array', i32: 'Int32Array' };

/** The most elements a tensor may have: every byte count stays an exact double. */
export const MAX_TENSOR_ELEMENTS = 2 ** 50;

export type TensorData = Float32Array | Uint16Array | Int32Array;

/** Where a tensor's bytes are, for the kernels: its storage (either device) and offset in it. */
export interface StorageView {
  storage: NativeStorage;
  byteOffset: number;
  /** The tensor's own bytes (its storage may be larger: storages are pooled by size class). */
  byteLength: number;
}

// ---- The host storage pool -------------------------------------------------------------------

/**
 * Under the sanitizers (test/sanitizers/run.sh sets FUSEDPO_SANITIZER), storages are exactly as
 * large as their tensors and never pooled: a kernel that writes past a tensor, or reads one after
 * it was freed, then touches memory AddressSanitizer knows is not its own.
 */
const SANITIZED = !!process.env.FUSEDPO_SANITIZER;

/** Freed host storages kept for reuse, at most this many bytes in all. */
const HOST_CACHE_LIMIT = SANITIZED ? 0 : 256 * 2 ** 20;

/**
 * The size class of a request: 64 bytes at least, then 8 classes per power of two (a class
 * wastes at most 12.5%), so that tensors of nearby sizes share storages.
 */
export function sizeClass(bytes: number): number {
  if (SANITIZED) return bytes;
  if (bytes <= 64) return 64;
  const step = 2 ** (Math.floor(Math.log2(bytes)) - 3);
  return Math.ceil(bytes / step) * step;
}

const hostPool = {
  free: new Map<number, NativeStorage[]>(),
  cachedBytes: 0,
  /** Bytes of host storages held by tensors (views count once). */
  tensorBytes: 0,
};

function newHostStorage(bytes: number): NativeStorage {
  const Storage = native().NativeStorage;
  try {
    return new Storage(bytes);
  } catch (error) {
    if (hostPool.cachedBytes === 0) throw error;
    hostEmptyCache();  // out of memory: give the cache back and ask once more
    return new Storage(bytes);
  }
}

function takeHostStorage(bytes: number): NativeStorage {
  const size = sizeClass(bytes);
  const reused = hostPool.free.get(size)?.pop();
  let handle: NativeStorage;
  if (reused) {
    hostPool.cachedBytes -= size;
    reused.fill(0);
    handle = reused;
  } else {
    handle = newHostStorage(size);
  }
  hostPool.tensorBytes += size;
  return handle;
}

function giveHostStorage(handle: NativeStorage): void {
  const size = handle.byteLength;
  hostPool.tensorBytes -= size;
  if (handle.disposed || hostPool.cachedBytes + size > HOST_CACHE_LIMIT) {
    handle.dispose();
    return;
  }
  let list = hostPool.free.get(size);
  if (!list) hostPool.free.set(size, (list = []));
  list.push(handle);
  hostPool.cachedBytes += size;
}

/** Host memory of tensors: live tensors (either device), bytes they hold, bytes kept for reuse. */
export interface HostMemory {
  /** Tensors neither disposed nor collected, on either device. */
  liveTensors: number;
  /** Bytes of host storage held by live tensors (by size class). */
  tensorBytes: number;
  /** Bytes of freed host storage kept for reuse (at most 256 MiB). */
  cachedBytes: number;
}

export function hostMemory(): HostMemory {
  return { liveTensors, tensorBytes: hostPool.tensorBytes, cachedBytes: hostPool.cachedBytes };
}

/** Frees the host storages kept for reuse (`hostMemory().cachedBytes`). */
export function hostEmptyCache(): void {
  for (const list of hostPool.free.values()) for (const handle of list) handle.dispose();
  hostPool.free.clear();
  hostPool.cachedBytes = 0;
}

/**
 * A native allocation shared by a tensor and its views: released when the last one lets go, or,
 * while a job off the event loop has it pinned, when that job is done. Released, its handle is
 * dropped, so that no stale tensor can reach the storage that another tensor now uses.
 */
class SharedStorage {
  #handle: NativeStorage | null;
  #users = 0;
  #pins = 0;
  #released = false;
  constructor(handle: NativeStorage, readonly device: Device) {
    this.#handle = handle;
  }
  get handle(): NativeStorage {
    if (!this.#handle) throw new Error('fusedpo: a released storage was used (a bug: tensors check that they are alive first)');
    return this.#handle;
  }
  retain(): void {
    this.#users++;
  }
  release(): void {
    if (--this.#users === 0) {
      this.#released = true;
      if (this.#pins === 0) this.#recycle();
    }
  }
  pin(): void {
    this.#pins++;
  }
  unpin(): void {
    if (--this.#pins === 0 && this.#released) this.#recycle();
  }
  #recycle(): void {
    const handle = this.#handle;
    if (!handle) return;
    this.#handle = null;
    if (this.device === 'cpu') giveHostStorage(handle);
    else handle.dispose();  // the CUDA addon keeps freed blocks for reuse itself
  }
}

function newStorage(bytes: number, device: Device, what: string): SharedStorage {
  const handle = device === 'cuda'
    ? new (cudaAddon(what).CudaStorage)(bytes)
    : takeHostStorage(bytes);
  return new SharedStorage(handle, device);
}

// ---- Live tensors ----------------------------------------------------------------------------

let liveTensors = 0;
let liveTensorWarningAt: number | null = null;

/** FUSEDPO_LIVE_TENSOR_WARNING: the live-tensor count that triggers the warning (0: never). */
export function liveTensorWarningSetting(): number {
  const value = process.env.FUSEDPO_LIVE_TENSOR_WARNING;
  if (value === undefined || value === '') return 100_000;
  if (!/^[0-9]+$/.test(value)) {
    throw new Error(`Expected FUSEDPO_LIVE_TENSOR_WARNING to be a non-negative integer (0: no warning) but received '${value}'`);
  }
  return Number(value);
}

function countNewTensor(): void {
  liveTensors++;
  liveTensorWarningAt ??= liveTensorWarningSetting();
  if (liveTensorWarningAt > 0 && liveTensors >= liveTensorWarningAt) {
    process.emitWarning(
      `${liveTensors} tensors are alive (${hostPool.tensorBytes} bytes of host memory). A tensor that is not disposed ` +
        'is freed only when the garbage collector finds it, which a loop that never yields never lets it do: ' +
        'run each step in withScope(), or dispose() what you make. (FUSEDPO_LIVE_TENSOR_WARNING sets this threshold; 0 turns it off.)',
      { type: 'FusedpoMemoryWarning', code: 'FUSEDPO_LIVE_TENSORS' },
    );
    liveTensorWarningAt *= 10;
  }
}

/** Frees what a collected, never-disposed tensor held. */
const collected = new FinalizationRegistry<SharedStorage>((storage) => {
  liveTensors--;
  storage.release();
});

// ---- Shapes and data -------------------------------------------------------------------------

/** A copy of a shape, each dim a non-negative integer, with at most MAX_TENSOR_ELEMENTS elements. */
export function checkShape(shape: unknown, name = 'shape'): number[] {
  const dims = readArray(shape, 64, name);
  if (!dims || !dims.every((d) => typeof d === 'number' && Number.isInteger(d) && d >= 0)) {
    throw new TypeError(expected('an array of non-negative integers', name, shape));
  }
  const size = sizeOf(dims as number[]);
  if (size > MAX_TENSOR_ELEMENTS) {
    throw new RangeError(`Expected a shape of at most 2^50 elements for ${name} but received [${dims}] (${size} elements)`);
  }
  return dims as number[];
}

export function sizeOf(shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}

function emptyArray(dtype: TensorDType, length: number, operation: string): TensorData {
  try {
    return dtype === 'f32' ? new Float32Array(length) : dtype === 'i32' ? new Int32Array(length) : new Uint16Array(length);  // bf16, f16: bits
  } catch {
    throw new RangeError(`${operation}: out of memory: could not allocate ${length * BYTES_PER_ELEMENT[dtype]} bytes for a ${ARRAY_KIND[dtype]}`);
  }
}

/** The elements of an array of numbers, checked for the dtype, into a typed array of its kind. */
function arrayOfNumbers(data: ArrayLike<unknown>, length: number, dtype: TensorDType): TensorData {
  const out = emptyArray(dtype, length, 'Tensor.from');
  for (let i = 0; i < length; i++) {
    const x = data[i];
    if (typeof x !== 'number') throw new TypeError(expected('a number', `data[${i}]`, x));
    if (dtype === 'i32' && !(Number.isInteger(x) && x >= -2147483648 && x <= 2147483647)) {
      throw new RangeError(expected('an int32 integer', `data[${i}]`, x));
    }
    if ((dtype === 'bf16' || dtype === 'f16') && !(Number.isInteger(x) && x >= 0 && x <= 0xffff)) {
      throw new RangeError(expected(`a 16-bit pattern (an integer in [0, 65535]) of ${dtype}`, `data[${i}]`, x));
    }
    out[i] = x;
  }
  return out;
}

// ---- Tensor ----------------------------------------------------------------------------------

/** The scopes of withScope, innermost last: each collects the tensors created while it runs. */
const scopes: Set<Tensor>[] = [];

export class Tensor {
  readonly #shape: readonly number[];
  readonly #dtype: TensorDType;
  readonly #size: number;
  readonly #storage: SharedStorage;
  readonly #byteOffset: number;
  #alive = true;
  #requiresGrad = false;
  #grad: Tensor | null = null;
  #node: GradNode | null = null;
  #graphFreed = false;

  /**
   * @internal use Tensor.from, Tensor.zeros, to() or an op. Host storage starts zeroed; cuda
   * storage does not.
   */
  constructor(shape: readonly number[], dtype: TensorDType, storage: unknown = 'cpu', byteOffset = 0) {
    const dims = checkShape(shape);
    checkOneOf('dtype', dtype, TENSOR_DTYPES);
    const size = sizeOf(dims);
    const bytes = size * BYTES_PER_ELEMENT[dtype];
    let shared: SharedStorage;
    if (storage instanceof SharedStorage) {
      shared = storage;
      if (!Number.isInteger(byteOffset) || byteOffset < 0 || byteOffset + bytes > shared.handle.byteLength) {
        throw new RangeError(`Tensor: ${bytes} bytes at offset ${byteOffset} do not fit the storage`);
      }
    } else {
      const device = checkOneOf('device', storage, DEVICES);
      try {
        shared = newStorage(bytes, device, `a ${device} tensor of shape [${dims}] (${dtype})`);
      } catch (error) {
        if (!isOutOfMemory(error)) throw error;
        throw new RangeError(`out of memory: could not allocate ${bytes} bytes of ${device === 'cpu' ? 'host' : 'device'} memory ` +
          `for a tensor of shape [${dims}] (${dtype})`, { cause: error });
      }
      byteOffset = 0;
    }
    this.#shape = Object.freeze(dims);
    this.#dtype = dtype;
    this.#size = size;
    this.#storage = shared;
    this.#byteOffset = byteOffset;
    shared.retain();
    countNewTensor();
    collected.register(this, shared, this);
    scopes[scopes.length - 1]?.add(this);
  }

  get shape(): readonly number[] {
    return this.#shape;
  }
  set shape(_: readonly number[]) {
    throw readOnly('shape', 'reshape() makes a view of another shape');
  }
  get dtype(): TensorDType {
    return this.#dtype;
  }
  set dtype(_: TensorDType) {
    throw readOnly('dtype', 'Tensor.from(...) makes a tensor of another dtype');
  }
  get device(): Device {
    return this.#storage.device;
  }
  set device(_: Device) {
    throw readOnly('device', "to('cpu') or to('cuda') makes a copy on another device");
  }
  /** Elements. */
  get size(): number {
    return this.#size;
  }
  set size(_: number) {
    throw readOnly('size', 'it follows from the shape');
  }

  /** Whether backward() should give this tensor a gradient (parameters, or leaves you ask for). */
  get requiresGrad(): boolean {
    return this.#requiresGrad;
  }
  set requiresGrad(value: boolean) {
    checkBoolean('requiresGrad', value);
    if (value && this.#dtype === 'i32') throw new TypeError(`requiresGrad: an i32 tensor cannot have a gradient (${this})`);
    this.#requiresGrad = value;
  }

  /**
   * The accumulated gradient, for tensors that require it. Assigning one hands it to this tensor
   * (it is disposed with this tensor's gradient by dispose() and zeroGrad()); it must be a live
   * tensor of this tensor's shape, dtype and device, with storage of its own.
   */
  get grad(): Tensor | null {
    return this.#grad;
  }
  set grad(value: Tensor | null) {
    if (value === null) {
      this.#grad = null;
      return;
    }
    if (!isTensor(value)) throw new TypeError(expected('a Tensor or null', 'grad', value));
    value.assertAlive('grad');
    const same = value.#dtype === this.#dtype && value.device === this.device && value.#shape.length === this.#shape.length &&
      value.#shape.every((d, i) => d === this.#shape[i]);
    if (!same) throw new TypeError(expected(`a ${this.device} ${this.#dtype} tensor of shape [${this.#shape}]`, 'grad', value));
    if (value.#storage === this.#storage) throw new TypeError(`grad: expected a tensor with storage of its own, not a view of ${this}`);
    keep(value);
    this.#grad = value;
  }

  /** A tensor of zeros, on the CPU or (`device: 'cuda'`) in GPU memory. */
  static zeros(shape: readonly number[], dtype: TensorDType = 'f32', device: Device = 'cpu'): Tensor {
    const dims = checkShape(shape);
    checkOneOf('dtype', dtype, TENSOR_DTYPES);
    checkOneOf('device', device, DEVICES);
    return naming('Tensor.zeros', () => Tensor.zeroed(dims, dtype, device));
  }

  /** @internal a zeroed tensor of a checked shape, dtype and device. */
  static zeroed(shape: readonly number[], dtype: TensorDType, device: Device): Tensor {
    const tensor = new Tensor(shape, dtype, device);
    if (tensor.device === 'cuda') tensor.#storage.handle.fill(0);  // host storage starts zeroed
    return tensor;
  }

  /**
   * A tensor holding a copy of `data`: a typed array of the dtype's kind (Float32Array for f32,
   * Int32Array for i32, Uint16Array of bf16 or f16 bits for bf16 and f16; over an ArrayBuffer or
   * a SharedArrayBuffer) or an array of numbers (for bf16 and f16: their bit patterns). With
   * `device: 'cuda'` the copy goes to GPU memory.
   */
  static from(data: TensorData | ArrayLike<number>, shape: readonly number[], dtype: TensorDType = 'f32', device: Device = 'cpu'): Tensor {
    const dims = checkShape(shape);
    checkOneOf('dtype', dtype, TENSOR_DTYPES);
    checkOneOf('device', device, DEVICES);
    const size = sizeOf(dims);
    const facts = typedArrayFacts(data);
    let array: TensorData;
    if (facts) {
      if (facts.kind !== ARRAY_KIND[dtype]) {
        throw new TypeError(expected(`a ${ARRAY_KIND[dtype]} (dtype ${dtype}) or an array of numbers`, 'data', data));
      }
      if (facts.length !== size) throw new RangeError(`Expected ${size} elements for shape [${dims}] but received ${describe(data)}`);
      array = data as TensorData;
    } else if (Array.isArray(data) || (typeof data === 'object' && data !== null && 'length' in data)) {
      let length: unknown;
      try {
        length = (data as ArrayLike<unknown>).length;  // read once, checked before anything is copied
      } catch {
        throw new TypeError(expected('a typed array or an array of numbers', 'data', data));  // a typed array's prototype on a plain object
      }
      if (length !== size) throw new RangeError(`Expected ${size} elements for shape [${dims}] but received ${describe(data)}`);
      array = arrayOfNumbers(data as ArrayLike<unknown>, size, dtype);
    } else {
      throw new TypeError(expected('a typed array or an array of numbers', 'data', data));
    }
    const tensor = naming('Tensor.from', () => new Tensor(dims, dtype, device));
    tensor.#storage.handle.write(array, tensor.#byteOffset);
    return tensor;
  }

  /** This tensor on `device`: itself when it is there already, else a copy (through host memory). */
  to(device: Device): Tensor {
    checkOneOf('device', device, DEVICES);
    this.assertAlive(`to('${device}')`);
    if (device === this.device) return this;
    return Tensor.from(this.toArray(), this.#shape, this.#dtype, device);
  }

  get disposed(): boolean {
    return !this.#alive;
  }

  /** Throws the error of a use after dispose(), naming the operation. */
  assertAlive(operation: string): void {
    if (!this.#alive) {
      throw new Error(`${operation}: the tensor of shape [${this.#shape}] (${this.#dtype}) was disposed`);
    }
  }

  /** A copy of the data (from either device), as the dtype's typed array. */
  toArray(): TensorData {
    this.assertAlive('toArray');
    const out = emptyArray(this.#dtype, this.#size, 'toArray');
    this.#storage.handle.read(out, this.#byteOffset);
    return out;
  }

  /** The value of a one-element tensor. */
  item(): number {
    this.assertAlive('item');
    if (this.#size !== 1) throw new RangeError(`item: expected a tensor of one element but its shape is [${this.#shape}]`);
    return this.toArray()[0];
  }

  /** A view with another shape of the same number of elements, sharing the storage. */
  reshape(shape: readonly number[]): Tensor {
    this.assertAlive('reshape');
    const next = checkShape(shape);
    if (sizeOf(next) !== this.#size) {
      throw new RangeError(`reshape: expected a shape of ${this.#size} elements (from [${this.#shape}]) but received [${next}]`);
    }
    return new Tensor(next, this.#dtype, this.#storage, this.#byteOffset);
  }

  /**
   * Backpropagates from this one-element tensor (a loss) into the `.grad` of every tensor it
   * depends on that requires a gradient. See the file's comment for what it checks first.
   */
  backward(): void {
    backpropagate(this);
  }

  /**
   * Frees this tensor's storage (once no view shares it), its gradient, and what the op that made
   * it kept for its backward alone (a backward() through this tensor then says so). Idempotent.
   */
  dispose(): void {
    if (!this.#alive) return;
    this.#alive = false;
    this.#node?.owned?.forEach((t) => t.dispose());
    liveTensors--;
    collected.unregister(this);
    this.#storage.release();
    this.#grad?.dispose();
    this.#grad = null;
    for (const scope of scopes) scope.delete(this);
  }

  toString(): string {
    return `Tensor(shape [${this.#shape}], ${this.#dtype}, ${this.device}${this.#alive ? '' : ', disposed'})`;
  }

  // ---- @internal: the kernels' and autograd's access ----------------------------------------

  /** @internal */
  static storageOf(tensor: Tensor, operation: string, device: Device): StorageView {
    tensor.assertAlive(operation);
    if (tensor.device !== device) {
      if (device === 'cuda') throw new TypeError(`${operation}: expected a cuda tensor but this one is on ${tensor.device}`);
      throw new TypeError(`${operation}: runs on the CPU, but this tensor of shape [${tensor.#shape}] (${tensor.#dtype}) is on ${tensor.device}: ` +
        `copy it with .to('cpu') (on cuda, only preferenceLoss runs so far)`);
    }
    return { storage: tensor.#storage.handle, byteOffset: tensor.#byteOffset, byteLength: tensor.#size * BYTES_PER_ELEMENT[tensor.#dtype] };
  }

  /** @internal pins the storage for a job off the event loop; returns the unpin. */
  static pin(tensor: Tensor): () => void {
    const storage = tensor.#storage;
    storage.pin();
    let pinned = true;
    return () => {
      if (pinned) storage.unpin();
      pinned = false;
    };
  }

  /** @internal the autograd node that made this tensor, or null for a leaf. */
  static nodeOf(tensor: Tensor): GradNode | null {
    return tensor.#node;
  }

  /** @internal */
  static setNode(tensor: Tensor, node: GradNode): void {
    tensor.#node = node;
  }

  /** @internal whether the tensors share their storage (a view of the other, or the same). */
  static sameStorage(a: Tensor, b: Tensor): boolean {
    return a.#storage === b.#storage;
  }

  /** @internal whether a backward() already walked (and freed) the graph that made this tensor. */
  static graphWalked(tensor: Tensor): boolean {
    return tensor.#graphFreed;
  }

  /** @internal cuts the tensor from its graph once backward() walked it. */
  static freeGraph(tensor: Tensor): void {
    if (tensor.#node !== null) tensor.#graphFreed = true;
    tensor.#node?.owned?.forEach((t) => t.dispose());
    tensor.#node = null;
  }

  /** @internal a real Tensor (its private fields are there), not an object posing as one. */
  static isTensor(value: unknown): value is Tensor {
    return typeof value === 'object' && value !== null && #shape in value;
  }
}

/**
 * A new zeroed tensor (host storage is zeroed; cuda storage is filled) made for `operation`: an
 * allocation that fails is a RangeError naming the operation, the shape and the bytes.
 */
export function newTensor(operation: string, shape: readonly number[], dtype: TensorDType = 'f32', device: Device = 'cpu'): Tensor {
  return naming(operation, () => Tensor.zeroed(shape, dtype, device));
}

function isOutOfMemory(error: unknown): error is RangeError {
  return error instanceof RangeError && /out of memory/.test(error.message);
}

/** Runs `make`; an out-of-memory RangeError from it is given the operation's name in front. */
function naming<T>(operation: string, make: () => T): T {
  try {
    return make();
  } catch (error) {
    if (!isOutOfMemory(error) || error.message.startsWith(operation)) throw error;
    throw new RangeError(`${operation}: ${error.message}`, { cause: error.cause ?? error });
  }
}

/** The error of an assignment to a fixed field (in sloppy mode too, where a getter alone is silent). */
function readOnly(field: string, instead: string): TypeError {
  return new TypeError(`A tensor's ${field} is fixed when it is made and cannot be assigned: ${instead}`);
}

/** Whether `value` is a real Tensor (made by this module), not an object posing as one. */
export function isTensor(value: unknown): value is Tensor {
  return Tensor.isTensor(value);
}

/** The host storage of a live cpu tensor and its offset, for the CPU kernels. */
export function hostStorage(tensor: Tensor, operation: string): StorageView {
  return Tensor.storageOf(tensor, operation, 'cpu');
}

/** The device storage of a live cuda tensor and its offset, for the CUDA kernels. */
export function cudaStorage(tensor: Tensor, operation: string): StorageView {
  return Tensor.storageOf(tensor, operation, 'cuda');
}

// ---- Scopes ----------------------------------------------------------------------------------

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
 * an inner scope belong to the outer one. Synchronous: an `fn` that returns a promise is refused
 * (tensors made after its first await would escape the scope).
 */
export function withScope<T>(fn: () => T): T {
  if (typeof fn !== 'function') throw new TypeError(expected('a function', 'withScope fn', fn));
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
  if (result !== null && typeof result === 'object' && typeof (result as { then?: unknown }).then === 'function') {
    for (const tensor of scope) tensor.dispose();
    throw new TypeError('withScope: fn returned a promise, but scopes are synchronous (the tensors made after an await ' +
      'would escape it): await inside, then call withScope for each synchronous step');
  }
  const survivors = new Set<Tensor>();
  collect(result, survivors);
  for (const tensor of scope) {
    if (survivors.has(tensor)) scopes[scopes.length - 1]?.add(tensor);
    else tensor.dispose();
  }
  return result;
}

/**
 * Runs `fn` (an op's body); when it throws, disposes every tensor it created, so that an op that
 * fails after allocating its outputs (a bad argument found late, out of memory) leaks nothing.
 * When it returns, its tensors belong to the enclosing scope as if made there.
 */
export function disposeOnThrow<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  try {
    const result = fn();
    scopes.pop();
    const outer = scopes[scopes.length - 1];
    if (outer) for (const tensor of scope) outer.add(tensor);
    return result;
  } catch (error) {
    scopes.pop();
    for (const tensor of scope) tensor.dispose();
    throw error;
  }
}

// ---- Backpropagation -------------------------------------------------------------------------

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
    for (const input of Tensor.nodeOf(tensor)?.inputs ?? []) if (!seen.has(input)) stack.push([input, false]);
  }
  return order;
}

/** A new tensor a + b of two gradients (the native add kernel); a and b are left as they are. */
function addGradients(a: Tensor, b: Tensor): Tensor {
  if (a.dtype !== 'f32' || b.dtype !== 'f32' || a.device !== 'cpu' || b.device !== 'cpu') {
    throw new TypeError(`backward: gradients of ${a.device} ${a.dtype} tensors cannot be summed (only cpu f32 ones); ` +
      'a tensor that gets a gradient twice (used twice, or backward() called twice) must be a cpu f32 tensor');
  }
  const total = newTensor('backward', a.shape);
  if (a.size > 0) {
    native().addForward(1, hostStorage(a, 'backward').storage, hostStorage(b, 'backward').storage,
      hostStorage(total, 'backward').storage, 1, a.size);
  }
  return total;
}

/** Gradients meeting at one tensor: their sum; a and b are disposed. */
function sumGradients(a: Tensor, b: Tensor): Tensor {
  const total = addGradients(a, b);
  a.dispose();
  b.dispose();
  return total;
}

/** "tensor of shape [2,3] (f32)": a tensor in a message, alive or not. */
function tensorName(tensor: Tensor): string {
  return `tensor of shape [${tensor.shape}] (${tensor.dtype})`;
}

/** Throws when the graph cannot be walked: what the forward pass saved, or a leaf, was disposed. */
function checkWalkable(order: readonly Tensor[]): void {
  for (const tensor of order) {
    const node = Tensor.nodeOf(tensor);
    if (node === null) {
      if (tensor.requiresGrad && tensor.disposed) {
        throw new Error(`backward: the ${tensorName(tensor)} that requires a gradient was disposed before backward(), ` +
          'so its gradient has nowhere to go');
      }
      continue;
    }
    for (const saved of node.saved) {
      if (saved.disposed) {
        throw new Error(`backward: ${node.op} needs the ${tensorName(saved)} that its forward pass saved, but it was disposed ` +
          '(by dispose() or the end of a withScope) before backward(): call backward() inside the scope that made the graph, ' +
          'or keep() what it needs');
      }
    }
  }
}

function backpropagate(root: Tensor): void {
  if (!isTensor(root)) throw new TypeError(expected('a Tensor', 'backward', root));
  root.assertAlive('backward');
  if (root.size !== 1) {
    throw new RangeError(`backward: expected a tensor of one element (a loss) but its shape is [${root.shape}]`);
  }
  if (Tensor.graphWalked(root)) {
    throw new Error('backward: the graph of this tensor was freed by an earlier backward(); a graph is walked once: ' +
      'run the forward pass again for another backward()');
  }
  if (Tensor.nodeOf(root) === null && !root.requiresGrad) {
    throw new Error('backward: this tensor does not depend on any tensor that requires a gradient');
  }
  const order = topologicalOrder(root);
  checkWalkable(order);
  const grads = new Map<Tensor, Tensor>([[root, Tensor.from([1], root.shape, 'f32')]]);
  // The leaves' gradients are assigned once the whole walk succeeded: a failure part way (out of
  // memory) leaves every .grad as it was.
  const leafGrads = new Map<Tensor, Tensor>();
  let done = false;
  try {
    for (let i = order.length - 1; i >= 0; i--) {
      const tensor = order[i];
      const grad = grads.get(tensor);
      if (!grad) continue;
      grads.delete(tensor);
      const node = Tensor.nodeOf(tensor);
      if (node) {
        const inputGrads = disposeOnThrow(() => node.backward(grad));
        node.inputs.forEach((input, k) => {
          const g = inputGrads[k];
          if (!g) return;
          if (!input.requiresGrad && Tensor.nodeOf(input) === null) {
            g.dispose();
            return;
          }
          const previous = grads.get(input);
          grads.set(input, previous ? sumGradients(previous, g) : g);
        });
      }
      if (tensor.requiresGrad && node === null) {
        leafGrads.set(tensor, keep(grad));
      } else {
        grad.dispose();
      }
    }
    // Every new .grad is made first (a sum may fail), then all are assigned at once.
    const updates: [Tensor, Tensor][] = [];
    try {
      for (const [leaf, grad] of leafGrads) updates.push([leaf, leaf.grad ? addGradients(leaf.grad, grad) : grad]);
    } catch (error) {
      for (const [leaf, update] of updates) if (update !== leafGrads.get(leaf)) update.dispose();
      throw error;
    }
    for (const [leaf, update] of updates) {
      const old = leaf.grad;
      leaf.grad = update;
      if (old) old.dispose();
      if (update !== leafGrads.get(leaf)) leafGrads.get(leaf)!.dispose();
    }
    done = true;
  } finally {
    for (const grad of grads.values()) grad.dispose();
    if (!done) for (const grad of leafGrads.values()) grad.dispose();
    for (const tensor of order) Tensor.freeGraph(tensor);
  }
}
