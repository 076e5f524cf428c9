/**
 * The one place that loads the native addon, and the one interface that declares all of it.
 *
 * Two binaries may exist:
 * - the CPU addon, found by node-gyp-build: a local `build/Release/fusedpo.node` (built from
 *   source), then `prebuilds/<platform>-<arch>/` (shipped in the npm package);
 * - the CUDA addon (`build-cmake/Release/` in a clone, or the optional package
 *   `fusedpo-cuda-<platform>-<arch>` installed beside this one: `CUDA_PACKAGE`),
 *   which node-gyp-build cannot choose between, so this
 *   loader looks for it itself and uses it only when a CUDA device answers.
 *
 * `FUSEDPO_ADDON` names one CPU addon file to load instead (a sanitizer build, for the tests).
 * `FUSEDPO_DEVICE` picks: `auto` (default: CUDA when a device answers, else CPU), `cpu`, `cuda`
 * (an error when no device answers). `FUSEDPO_THREADS` sets the CPU thread pool's size (default:
 * `os.availableParallelism()`), `FUSEDPO_SIMD` caps the CPU's instruction set
 * (`avx512`, `avx2`, `generic`).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { NativeLoadError } from './errors';
import { expected } from './validate';
import type { PreferenceMetrics } from './losses';
import type { ParameterName } from './losses/registry';

/**
 * A buffer the kernels read or write: a typed array, or a tensor's NativeStorage (then the
 * request carries `<field>ByteOffset` beside it).
 */
export type NativeBuffer<T extends ArrayBufferView> = T | NativeStorage;

type F32 = NativeBuffer<Float32Array>;
type I32 = NativeBuffer<Int32Array>;

/**
 * The loss and its parameters (LossParams of native/core/preference_loss.h): `lossKind` is the
 * loss's index in the registry (lib/losses/registry.ts), and every number parameter of the
 * registry is a field, filled with its default where the loss does not take it.
 */
export type NativeLossParameters = {
  lossKind?: number;
  averageLogProb?: boolean;
  nllWeight?: number;
  /** 0: tokenMean, 1: sum. */
  nllReduction?: 0 | 1;
} & { [K in ParameterName]?: number };

/** What `lib/losses` sends: every field validated there before the call. */
export interface NativeLossRequest extends NativeLossParameters, Partial<NativeLossOutputs> {
  impl: 0 | 1; // 0: the scalar reference, 1: the fast path
  logits: NativeBuffer<Float32Array | Uint16Array>;
  logitsByteOffset?: number;
  dtype: 0 | 1 | 2; // f32, bf16, f16
  rows: number;
  tokens: number;
  vocab: number;
  labels: Int32Array;
  ignoreIndex: number;
  allowNonFinite: boolean;
  withLoss: boolean;
  /** Return the per-token lse (for preferenceLossBackward later). */
  returnLse?: boolean;
  refLogps?: Float32Array | null;
  /** exo's rewards, one per row. */
  rewards?: Float32Array | null;
  /** A typed array (or, for a cpu tensor's gradient, its storage) to write dlogits into. */
  dlogits?: NativeBuffer<Float32Array | Uint16Array> | null;
  dlogitsByteOffset?: number;
}

/** The fields of the backward pass alone; the storage-backed ones carry `<field>ByteOffset`. */
export interface NativeBackwardRequest {
  impl: 0 | 1;
  dtype: 0 | 1 | 2;
  rows: number;
  tokens: number;
  vocab: number;
  ignoreIndex: number;
  logits: NativeBuffer<Float32Array | Uint16Array>;
  logitsByteOffset?: number;
  labels: NativeBuffer<Int32Array>;
  labelsByteOffset?: number;
  lse: Float32Array;
  coef: Float32Array;
  dlogits: NativeBuffer<Float32Array | Uint16Array>;
  dlogitsByteOffset?: number;
}

/** The metrics object the addon returns: the public PreferenceMetrics, field for field. */
export type NativeMetrics = PreferenceMetrics;

/**
 * The arrays a loss call's per-row and per-token results are written into, made here in
 * JavaScript: an allocation that fails is a RangeError naming the operation, where the addon's
 * own napi_create_arraybuffer would end the process.
 */
export interface NativeLossOutputs {
  logpsOut: Float32Array;
  tokenCountsOut: Int32Array;
  coefOut?: Float32Array;
  lseOut?: Float32Array;
}

export function lossOutputs(operation: string, rows: number, tokens: number, withLoss: boolean, returnLse: boolean): NativeLossOutputs {
  try {
    const outputs: NativeLossOutputs = { logpsOut: new Float32Array(rows), tokenCountsOut: new Int32Array(rows) };
    if (withLoss) outputs.coefOut = new Float32Array(rows);
    if (returnLse) outputs.lseOut = new Float32Array(rows * tokens);
    return outputs;
  } catch {
    throw new RangeError(`${operation}: out of memory: could not allocate ${(3 + (returnLse ? tokens : 0)) * rows * 4} bytes for the per-row results`);
  }
}

/**
 * The native result with the arrays it filled. (A call that stopped on a non-finite logit filled
 * none: its caller throws before reading them.)
 */
export function withLossOutputs(result: NativeLossResult, outputs: NativeLossOutputs): NativeLossResult {
  result.logps = outputs.logpsOut;
  result.tokenCounts = outputs.tokenCountsOut;
  if (outputs.coefOut) result.coef = outputs.coefOut;
  if (outputs.lseOut) result.lse = outputs.lseOut;
  return result;
}

/** What the addon returns. Only `nonFinite*` are set when it stopped on a non-finite logit. */
export interface NativeLossResult {
  nonFinite: { row: number; token: number; vocab: number } | null;
  nonFiniteRows: number[];
  logps?: Float32Array;
  tokenCounts?: Int32Array;
  lse?: Float32Array;
  coef?: Float32Array;
  loss?: number;
  metrics?: NativeMetrics;
  /** The first row whose gradient does not fit the dtype of dlogits (-1: none); nothing was written. */
  unrepresentableRow?: number;
}

/**
 * What `lib/losses` sends to the CUDA addon: logits (and dlogits) are CudaStorage with their
 * byte offsets; labels, refLogps, lse and coef are host arrays (small: never N*V).
 */
export interface NativeCudaLossRequest extends NativeLossParameters, Partial<NativeLossOutputs> {
  dtype: 0 | 1 | 2;
  rows: number;
  tokens: number;
  vocab: number;
  logits: NativeStorage;
  logitsByteOffset: number;
  labels: Int32Array;
  ignoreIndex: number;
  /** Device memory for the gradient (may be `logits` itself: in place), or null. */
  dlogits: NativeStorage | null;
  dlogitsByteOffset: number;
  /** true: stage 4 alone, from `lse` and `coef` (autograd's backward). */
  backwardOnly: boolean;
  lse?: Float32Array;
  coef?: Float32Array;
  allowNonFinite?: boolean;
  returnLse?: boolean;
  refLogps?: Float32Array | null;
  rewards?: Float32Array | null;
  /** false: stages 1 and 2 alone (sequenceLogps); absent: true. */
  withLoss?: boolean;
}

/** What `lib/ops/matmul.ts` sends: every field validated there before the call. */
export interface NativeMatmulRequest {
  impl: 0 | 1; // 0: the scalar reference, 1: the fast path
  a: NativeBuffer<Float32Array>;
  b: NativeBuffer<Float32Array>;
  c: NativeBuffer<Float32Array>; // written (or added to, with accumulate) in place
  batch: number;
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
  strideA: number;
  strideB: number;
  strideC: number;
  accumulate: boolean;
}

/** What `lib/bandwidth.ts` sends to the bandwidth probe (native/napi/bandwidth_bindings.cpp). */
export interface NativeBandwidthRequest {
  /** The bytes of each of the two buffers streamed: 1 MiB up to an eighth of physical memory. */
  bytes: number;
  /** Pool threads streaming at once, 1 to the pool's size (default: the pool's size). */
  threads?: number;
  /** Runs of each pass, the fastest kept: 1 to 100 (default 3). */
  repeats?: number;
}

/** The probe's answer: GB/s are 1e9 bytes per second. */
export interface NativeBandwidthResult {
  /** Streaming read: `bytes` summed, over the fastest run's seconds. */
  readGBps: number;
  /** Read + write: `bytes` read and `bytes` written (b = 1.5 * a), over the fastest run's seconds. */
  readWriteGBps: number;
  readSeconds: number;
  readWriteSeconds: number;
  /** The bytes of each buffer as used (rounded down to whole 128-byte blocks). */
  bytes: number;
  threads: number;
  repeats: number;
  /** The sums the read passes computed (so that no compiler can drop them): no meaning. */
  checksum: number;
}

export interface NativeInfo {
  addonVersion: string;
  napiVersion: number;
  simd: string;
  cpuFeatures: string;
  threads: number;
  cuda: boolean;
}

export interface CudaDevice {
  index: number;
  name: string;
  computeCapability: string;
  totalMemoryBytes: number;
  /** Free memory when asked (the current device only; -1 for the others). */
  freeMemoryBytes?: number;
}

export interface CudaInfo {
  driverFound: boolean;
  driverVersion: number;
  runtimeVersion: number;
  devices: CudaDevice[];
  /** Why no device answered, when none did. */
  error: string | null;
}

/** Device memory of cuda tensors: held by live tensors, and freed but kept for reuse. */
export interface CudaMemory {
  tensorBytes: number;
  cachedBytes: number;
}

/** Native memory behind a Tensor (native/napi/storage.h): copied in and out, never viewed. */
export interface NativeStorage {
  readonly byteLength: number;
  readonly disposed: boolean;
  dispose(): void;
  write(array: ArrayBufferView, byteOffset: number): void;
  read(array: ArrayBufferView, byteOffset: number): void;
  fill(byte: number): void;
}

/** The whole native surface. The CUDA addon has everything the CPU one has, plus `cudaInfo`. */
export interface NativeAddon {
  info(): NativeInfo;
  setThreadCount(threads: number): void;
  /** Advises a fresh ArrayBuffer's untouched pages onto huge pages where the OS allows. */
  adviseHugePages(buffer: ArrayBuffer): void;
  preferenceLoss(request: NativeLossRequest): NativeLossResult;
  preferenceLossAsync(request: NativeLossRequest): Promise<NativeLossResult>;
  /** Stage 4 alone: dlogits = coef[s] * m * (onehot - exp(z - lse)). */
  preferenceLossBackward(request: NativeBackwardRequest): void;
  NativeStorage: new (bytes: number) => NativeStorage;
  /** The external bytes reported to V8 so far (NativeStorage adds and removes its own). */
  externalMemory(): number;
  /** C[b] (+)= op(A[b]) @ op(B[b]), f32, in place in `request.c` (native/core/matmul.h). */
  matmul(request: NativeMatmulRequest): void;
  /**
   * This machine's streaming read and read+write bandwidth on the thread pool, over two buffers
   * of `bytes` (native/cpu/memory_bandwidth.h): the floor of `fusedpo bench`. Runs on the
   * calling thread (and the pool) for about a second.
   */
  memoryBandwidth(request: NativeBandwidthRequest): NativeBandwidthResult;
  /**
   * Handles SIGINT and SIGTERM in native code (native/cpu/interrupts.h): the first is recorded
   * (interruptSignal) and `message` written on stderr at once, a second stops the process. False
   * where signals are not POSIX.
   */
  watchInterrupts(message: string): boolean;
  /** Puts back the signal dispositions watchInterrupts replaced. */
  unwatchInterrupts(): void;
  /** The first signal received since watchInterrupts (2 SIGINT, 15 SIGTERM), or 0. */
  interruptSignal(): number;
  cudaInfo?(): CudaInfo;
  /** Device memory behind a cuda Tensor (the CUDA addon only); the NativeStorage interface. */
  CudaStorage?: new (bytes: number) => NativeStorage;
  /** The fused loss on device memory, waited for (`undefined` for backwardOnly). */
  /** The loss on cuda storage; undefined for a backward pass alone. */
  cudaPreferenceLoss?(request: NativeCudaLossRequest): NativeLossResult | undefined;
  /** The same on a worker thread: the event loop runs while the GPU works. */
  cudaPreferenceLossAsync?(request: NativeCudaLossRequest): Promise<NativeLossResult | undefined>;
  cudaMemory?(): CudaMemory;
  cudaEmptyCache?(): void;
  // The GPT's ops (native/napi/nn_bindings.cpp), each called by its file in lib/ops after its
  // checks (typed arrays, or tensors' storage at offset 0); the binding checks every extent again.
  // impl: 0 reference, 1 fast. Backward functions accumulate (+=) into their gradients; null skips one.
  addForward(impl: 0 | 1, a: F32, b: F32, out: F32, rows: number, cols: number): void;
  addBackward(impl: 0 | 1, dout: F32, da: F32 | null, db: F32 | null, rows: number, cols: number): void;
  mulForward(impl: 0 | 1, a: F32, b: F32, out: F32, rows: number, cols: number): void;
  mulBackward(impl: 0 | 1, a: F32, b: F32, dout: F32, da: F32 | null, db: F32 | null, rows: number, cols: number): void;
  scaleForward(impl: 0 | 1, a: F32, s: number, out: F32, count: number): void;
  scaleBackward(impl: 0 | 1, dout: F32, s: number, da: F32, count: number): void;
  sumForward(impl: 0 | 1, a: F32, out: F32, rows: number, cols: number): void;
  sumBackward(impl: 0 | 1, dout: F32, da: F32, rows: number, cols: number): void;
  meanForward(impl: 0 | 1, a: F32, out: F32, rows: number, cols: number): void;
  meanBackward(impl: 0 | 1, dout: F32, da: F32, rows: number, cols: number): void;
  embeddingForward(impl: 0 | 1, idx: I32, table: F32, out: F32, count: number, channels: number, vocab: number): void;
  embeddingBackward(impl: 0 | 1, idx: I32, dout: F32, dtable: F32, count: number, channels: number, vocab: number): void;
  layerNormForward(impl: 0 | 1, inp: F32, weight: F32, bias: F32, out: F32, mean: F32, rstd: F32, rows: number, channels: number): void;
  layerNormBackward(impl: 0 | 1, dout: F32, inp: F32, weight: F32, mean: F32, rstd: F32, dinp: F32, dweight: F32, dbias: F32, rows: number, channels: number): void;
  geluForward(impl: 0 | 1, inp: F32, out: F32, count: number): void;
  geluBackward(impl: 0 | 1, inp: F32, dout: F32, dinp: F32, count: number): void;
  softmaxForward(impl: 0 | 1, inp: F32, out: F32, rows: number, cols: number): void;
  softmaxBackward(impl: 0 | 1, out: F32, dout: F32, dinp: F32, rows: number, cols: number): void;
  causalSelfAttentionForward(impl: 0 | 1, qkv: F32, att: F32, out: F32, batch: number, tokens: number, channels: number, heads: number): void;
  causalSelfAttentionBackward(impl: 0 | 1, qkv: F32, att: F32, dout: F32, dqkv: F32, batch: number, tokens: number, channels: number, heads: number): void;
  rmsNormForward(impl: 0 | 1, inp: F32, weight: F32, out: F32, rstd: F32, rows: number, channels: number, eps: number, offset: number): void;
  rmsNormBackward(impl: 0 | 1, dout: F32, inp: F32, weight: F32, rstd: F32, dinp: F32, dweight: F32, rows: number, channels: number, offset: number): void;
  ropeForward(impl: 0 | 1, inp: F32, cos: F32, sin: F32, out: F32, batch: number, tokens: number, heads: number, headDim: number): void;
  ropeBackward(impl: 0 | 1, dout: F32, cos: F32, sin: F32, dinp: F32, batch: number, tokens: number, heads: number, headDim: number): void;
  /** activation: 0 SiLU (SwiGLU), 1 tanh GELU (GeGLU). */
  gluForward(impl: 0 | 1, gate: F32, up: F32, out: F32, count: number, activation: 0 | 1): void;
  gluBackward(impl: 0 | 1, gate: F32, up: F32, dout: F32, dgate: F32 | null, dup: F32 | null, count: number, activation: 0 | 1): void;
  attentionForward(impl: 0 | 1, q: F32, k: F32, v: F32, att: F32, out: F32, batch: number, tokens: number, heads: number, kvHeads: number,
    headDim: number, scale: number, window: number): void;
  attentionBackward(impl: 0 | 1, q: F32, k: F32, v: F32, att: F32, dout: F32, dq: F32, dk: F32, dv: F32, batch: number, tokens: number,
    heads: number, kvHeads: number, headDim: number, scale: number, window: number): void;
  adamwUpdate(impl: 0 | 1, param: F32, grad: F32, m: F32, v: F32, count: number, lr: number, beta1: number, beta2: number, eps: number, weightDecay: number, step: number): void;
  /** grads[k] holds counts[k] floats. */
  globalGradNorm(impl: 0 | 1, grads: F32[], counts: number[]): number;
}

export type DeviceChoice = 'auto' | 'cpu' | 'cuda';
export const DEVICE_CHOICES: readonly DeviceChoice[] = ['auto', 'cpu', 'cuda'];
export const SIMD_LEVELS = ['avx512', 'avx2', 'generic'] as const;

export interface LoadedAddon {
  addon: NativeAddon;
  kind: 'cpu' | 'cuda';
  path: string;
  /** Why the CUDA addon was not used, when it was not. */
  cudaSkipped: string | null;
  /** The CUDA addon's report, when one was loaded (even with no device). */
  cudaInfo: CudaInfo | null;
}

/** The package root: this file is lib/native.ts when run from source, dist/native.js when built. */
export const packageRoot = path.resolve(__dirname, '..');

const platformArch = `${process.platform}-${process.arch}`;

/**
 * The optional package that holds this platform's CUDA addon. It is not in the main tarball: at
 * about 3.5 MB it would be eight times the CPU addon, for every user, most with no NVIDIA GPU
 * (docs/install.md). `npm install fusedpo-cuda-linux-x64` beside fusedpo is how to get it.
 */
export const CUDA_PACKAGE = `fusedpo-cuda-${platformArch}`;

/** Where the CUDA addon is looked for, in order: a local build, then the optional package. */
export function cudaAddonCandidates(root = packageRoot): string[] {
  const candidates = [path.join(root, 'build-cmake', 'Release', 'fusedpo-cuda.node')];
  try {
    candidates.push(require.resolve(`${CUDA_PACKAGE}/fusedpo-cuda.node`, { paths: [root] }));
  } catch {
    // not installed: the CPU addon alone
  }
  return candidates;
}

/** Where node-gyp-build looks for the CPU addon, in order. */
export function cpuAddonCandidates(root = packageRoot): string[] {
  return [
    path.join(root, 'build', 'Release'),
    path.join(root, 'build', 'Debug'),
    path.join(root, 'prebuilds', platformArch),
  ];
}

function libc(): string {
  if (process.platform !== 'linux') return 'n/a';
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
  const glibc = report?.header?.glibcVersionRuntime;
  return glibc ? `glibc ${glibc}` : 'musl (or glibc not detected)';
}

export function deviceChoice(): DeviceChoice {
  const value = process.env.FUSEDPO_DEVICE || 'auto'; // empty counts as unset
  if (!(DEVICE_CHOICES as readonly string[]).includes(value)) {
    throw new NativeLoadError(
      `Expected FUSEDPO_DEVICE to be one of 'auto', 'cpu', 'cuda' but received '${value}'. ` +
        `Unset it, or set it to 'cpu' to force the CPU addon.`,
    );
  }
  return value as DeviceChoice;
}

/** The thread count from FUSEDPO_THREADS, or every core this process may use. */
export function threadSetting(): number {
  const value = process.env.FUSEDPO_THREADS;
  if (value === undefined || value === '') return os.availableParallelism();
  // Decimal digits only: Number() would take '0x10' as 16, '1e1' as 10 and ' 4 ' as 4.
  const threads = /^[0-9]{1,4}$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(threads) || threads < 1 || threads > 1024) {
    throw new NativeLoadError(
      `Expected FUSEDPO_THREADS to be an integer between 1 and 1024 (decimal digits) but received '${value}'.`,
    );
  }
  return threads;
}

function checkSimdSetting(): void {
  const value = process.env.FUSEDPO_SIMD;
  if (value === undefined || value === '') return;
  if (!(SIMD_LEVELS as readonly string[]).includes(value)) {
    throw new NativeLoadError(
      `Expected FUSEDPO_SIMD to be one of ${SIMD_LEVELS.map((s) => `'${s}'`).join(', ')} but received '${value}'.`,
    );
  }
}

function loadError(tried: string[], reasons: string[]): NativeLoadError {
  const napi = process.versions.napi ?? 'unknown';
  const lines = [
    'fusedpo: no native binary could be loaded for this machine.',
    `  platform ${process.platform}, arch ${process.arch}, libc ${libc()}, Node ${process.versions.node}, Node-API ${napi}`,
    '  tried:',
    ...tried.map((p) => `    ${p}`),
    ...(reasons.length ? ['  reasons:', ...reasons.map((r) => `    ${r}`)] : []),
    '  to fix it:',
    '    npx fusedpo build        build the CPU addon from source (needs g++, make, python3)',
    '    npx fusedpo doctor       show what was found',
    '  or, in a clone of the repository: npm install && npm run compile',
  ];
  return new NativeLoadError(lines.join('\n'), tried);
}

function requireAddon(file: string): NativeAddon {
  // A plain require: both tsx and the compiled CommonJS resolve .node files through it.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(file) as NativeAddon;
}

function tryCudaAddon(tried: string[]): { loaded: LoadedAddon | null; reason: string; info: CudaInfo | null } {
  let reason = `no CUDA addon is installed (npm install ${CUDA_PACKAGE} adds it; in a clone, npm run build:cuda builds it)`;
  let lastInfo: CudaInfo | null = null;
  for (const file of cudaAddonCandidates()) {
    if (!fs.existsSync(file)) continue;
    tried.push(file);
    try {
      const addon = requireAddon(file);
      const info = addon.cudaInfo?.() ?? null;
      lastInfo = info;
      if (info && info.devices.length > 0) {
        return {
          loaded: { addon, kind: 'cuda', path: file, cudaSkipped: null, cudaInfo: info },
          reason: '',
          info,
        };
      }
      reason = `${file} loaded, but no CUDA device answered: ${info?.error ?? 'no device query in this binary'}`;
    } catch (error) {
      reason = `${file} failed to load: ${(error as Error).message.split('\n')[0]}`;
    }
  }
  return { loaded: null, reason, info: lastInfo };
}

let cached: LoadedAddon | null = null;

/** Loads (once) and returns the addon for the device FUSEDPO_DEVICE asks for. */
export function loadAddon(): LoadedAddon {
  if (cached) return cached;
  const device = deviceChoice();
  checkSimdSetting();
  const threads = threadSetting();
  const tried: string[] = [];
  let cudaSkipped = 'FUSEDPO_DEVICE=cpu';
  let cudaInfo: CudaInfo | null = null;

  // FUSEDPO_ADDON: this CPU addon and no other (a sanitizer build, test/sanitizers/run.sh).
  const override = process.env.FUSEDPO_ADDON;
  if (override) {
    const file = path.resolve(override);
    tried.push(file);
    let addon: NativeAddon;
    try {
      addon = requireAddon(file);
    } catch (error) {
      throw loadError(tried, [`FUSEDPO_ADDON=${override}: ${(error as Error).message.split('\n')[0]}`]);
    }
    addon.setThreadCount(threads);
    cached = { addon, kind: 'cpu', path: file, cudaSkipped: `FUSEDPO_ADDON=${override}`, cudaInfo: null };
    return cached;
  }

  if (device !== 'cpu') {
    const cuda = tryCudaAddon(tried);
    if (cuda.loaded) {
      cuda.loaded.addon.setThreadCount(threads);
      cached = cuda.loaded;
      return cached;
    }
    if (device === 'cuda') {
      throw new NativeLoadError(
        `FUSEDPO_DEVICE=cuda, but CUDA is not usable: ${cuda.reason}. ` +
          'Unset FUSEDPO_DEVICE (or set it to cpu) to run on the CPU.',
        tried,
      );
    }
    cudaSkipped = cuda.reason;
    cudaInfo = cuda.info;
  }

  const reasons: string[] = [];
  let file: string;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const nodeGypBuild = require('node-gyp-build') as { path(dir: string): string };
    file = nodeGypBuild.path(packageRoot);
  } catch (error) {
    tried.push(...cpuAddonCandidates());
    reasons.push((error as Error).message.split('\n')[0]);
    throw loadError(tried, reasons);
  }
  tried.push(file);
  let addon: NativeAddon;
  try {
    addon = requireAddon(file);
  } catch (error) {
    reasons.push(`${file}: ${(error as Error).message.split('\n')[0]}`);
    throw loadError(tried, reasons);
  }
  addon.setThreadCount(threads);
  cached = { addon, kind: 'cpu', path: file, cudaSkipped, cudaInfo };
  return cached;
}

/** The loaded addon itself, for the modules of this package. */
export function native(): NativeAddon {
  return loadAddon().addon;
}

/**
 * The CUDA addon, for an operation on cuda tensors; otherwise an Error naming the operation and
 * why CUDA is not usable here (no CUDA addon, no driver, no device, or FUSEDPO_DEVICE=cpu).
 */
export function cudaAddon(operation: string): NativeAddon & Required<Pick<NativeAddon, 'CudaStorage' | 'cudaPreferenceLoss' | 'cudaPreferenceLossAsync'>> {
  const loaded = loadAddon();
  const addon = loaded.addon;
  if (!cudaUsable(loaded)) {
    const why = loaded.kind === 'cuda' ? `the CUDA addon is older than this package (install the ${CUDA_PACKAGE} of fusedpo's version)` : loaded.cudaSkipped;
    throw new Error(`${operation}: needs a usable CUDA device, but CUDA is not usable here: ${why}`);
  }
  return addon as ReturnType<typeof cudaAddon>;
}

/** A CUDA addon loaded, a device answered, and the addon has the cuda tensor functions. */
function cudaUsable(loaded: LoadedAddon): boolean {
  const { addon } = loaded;
  return loaded.kind === 'cuda' && !!addon.CudaStorage && !!addon.cudaPreferenceLoss && !!addon.cudaPreferenceLossAsync;
}

/** Whether cuda tensors can be made in this process (a CUDA addon loaded and a device answered). */
export function cudaAvailable(): boolean {
  return cudaUsable(loadAddon());
}

/**
 * Bytes of device memory held by live cuda tensors and kept in the cache of freed blocks (reused
 * by the next tensors of the same size; at most a quarter of the device). Zeros without CUDA.
 */
export function cudaMemory(): CudaMemory {
  const loaded = loadAddon();
  return loaded.kind === 'cuda' && loaded.addon.cudaMemory ? loaded.addon.cudaMemory() : { tensorBytes: 0, cachedBytes: 0 };
}

/** Frees the cached blocks (`cudaMemory().cachedBytes`), for other programs on the same GPU. */
export function cudaEmptyCache(): void {
  const loaded = loadAddon();
  if (loaded.kind === 'cuda') loaded.addon.cudaEmptyCache?.();
}

/** Sets the CPU kernels' thread count for this process (1 or more). */
export function setThreads(threads: number): void {
  if (typeof threads !== 'number' || !Number.isInteger(threads) || threads < 1 || threads > 1024) {
    throw new RangeError(expected('an integer between 1 and 1024', 'threads', threads));
  }
  native().setThreadCount(threads);
}
