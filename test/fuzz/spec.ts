/**
 * The fuzz test's programs, as plain data: fast-check makes them in the parent process (they
 * print, shrink and replay as JSON), and the child process (child.ts) turns each into live
 * values, hostile ones included, then runs it. A program is one call of the public surface
 * (`call`) on built arguments (`args`), possibly followed by actions taken while an async call is
 * in flight or after it returned (`after`).
 */

export type TypedArrayType = 'Float32Array' | 'Float64Array' | 'Uint16Array' | 'Int32Array' | 'Uint8Array';
export type TensorDTypeName = 'f32' | 'bf16' | 'f16' | 'i32';

/** How a typed array is made: on its own buffer, at an offset in a larger one, shared, ... */
export type ArrayVariant =
  | 'plain'
  | 'offset'      // a view at an element offset into a larger buffer
  | 'shared'      // over a SharedArrayBuffer
  | 'detached'    // its ArrayBuffer transferred away
  | 'resizable'   // over a resizable ArrayBuffer
  | 'lyingLength' // an own `length` property that is not the real one
  | 'lyingBuffer' // an own `buffer` property that is another buffer
  | 'fake'        // Object.create(Float32Array.prototype): not a typed array at all
  | 'proxy';      // a Proxy of a typed array

export type TensorVariant = 'live' | 'disposed' | 'view' | 'param' | 'fake';

/** What the elements are. */
export type Fill = 'random' | 'zeros' | 'labels' | 'badLabel' | 'nan' | 'huge' | 'bf16' | 'f16' | 'ints';

export type FunctionKind = 'returnsTensor' | 'returnsNumber' | 'throws' | 'returnsPromise' | 'returnsNested';

export type FileKind =
  | 'devZero' | 'fifo' | 'directory' | 'missing' | 'valid' | 'validBytes' | 'truncated' | 'randomBytes'
  | 'headerPastEnd' | 'prototypeDtype' | 'prototypeNames' | 'hugeOffsets' | 'badMetadata';

export type ParamsKind = 'module' | 'list' | 'pairs' | 'duplicate' | 'view' | 'notTensor' | 'i32' | 'disposed' | 'empty';

export type ValueSpec =
  | { k: 'num'; v: number | 'NaN' | 'Infinity' | '-Infinity' | '-0' }
  | { k: 'str'; v: string }
  | { k: 'bool'; v: boolean }
  | { k: 'null' }
  | { k: 'undef' }
  | { k: 'sym' }
  | { k: 'big' }
  | { k: 'fn'; kind: FunctionKind }
  | { k: 'arr'; items: ValueSpec[] }
  | { k: 'sparse'; length: number }
  | { k: 'obj'; props: [string, ValueSpec][]; proxy?: 'none' | 'throws' | 'counts' }
  | { k: 'getter'; first: ValueSpec; then: ValueSpec }
  | { k: 'ta'; type: TypedArrayType; length: number; fill: Fill; variant: ArrayVariant; seed: number; vocab: number }
  | { k: 'tensor'; shape: number[]; dtype: TensorDTypeName; variant: TensorVariant; fill: Fill; seed: number; vocab: number }
  | { k: 'file'; kind: FileKind; seed: number }
  | { k: 'params'; kind: ParamsKind }
  | { k: 'ref'; name: string }
  | { k: 'named'; name: string; value: ValueSpec };

/** Done after the call returned, before its promise (if any) settles. */
export type AfterAction =
  | 'overwriteLabels'   // fill args[0].labels with out-of-range values
  | 'transferLogits'    // structuredClone args[0].logits' buffer with transfer, then collect garbage
  | 'disposeLogits'     // dispose args[0].logits (a tensor)
  | 'collectGarbage'
  | 'backward'          // the result's loss (or the result itself) .backward()
  | 'backwardTwice'
  | 'disposeResult';

export interface Program {
  id: number;
  /** Which generator made it (for the tallies). */
  family: string;
  /** A name of the public surface, or of a method on args[0] (`tensor.reshape`). */
  call: string;
  args: ValueSpec[];
  after: AfterAction[];
  /** Valid arguments, unchanged: the result is compared with the float64 reference. */
  reference?: 'preferenceLoss' | 'sequenceLogps' | 'preferenceLossGrad';
}

/** What the child reports for one program. */
export interface Outcome {
  id: number;
  /** 'returned', 'threw', or 'build' (the hostile value itself could not be made: skipped). */
  result: 'returned' | 'threw' | 'build';
  error?: { name: string; message: string; ours: boolean };
  /** Tensors made by the program and not freed once it and its arguments are disposed. */
  leakedTensors: number;
  /** Why the result is wrong (a reference mismatch, a NaN where none may be), or null. */
  wrong: string | null;
  ms: number;
}
