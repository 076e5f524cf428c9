/**
 * A module's parameters in the safetensors format (https://github.com/huggingface/safetensors),
 * which the Python `safetensors` library, `torch` tools and Hugging Face read:
 *
 *   [0, 8)          N, the header's byte length, u64 little-endian
 *   [8, 8 + N)      a JSON object: { "<name>": { "dtype": "F32", "shape": [..],
 *                   "data_offsets": [begin, end] }, ..., "__metadata__": { "<key>": "<string>" } },
 *                   padded with spaces to a multiple of 8 (so the data is 8-byte aligned)
 *   [8 + N, end)    the tensors' bytes, little-endian, row-major; offsets are relative to 8 + N,
 *                   contiguous, in the order written (the parameters' order)
 *
 * Written as F32 (or, asked, rounded to BF16 or F16: a checkpoint's own dtype); read as F32, F16
 * or BF16 (widened to f32). Every check that can fail names the
 * file and the tensor: a truncated file, a header that is not the format, a tensor the module
 * does not have or lacks, a shape that differs (both shapes given).
 *
 * Files are read by ranges (the header, then each tensor into its own array), never whole, so a
 * checkpoint past 2 GiB reads like any other; a path that is not a regular file (a FIFO, a
 * device such as /dev/zero, a directory) is refused before anything is read, and nothing blocks
 * opening it. Saving writes a temporary file beside the target, flushes it and renames it over
 * the target: a failed save (a full disk) leaves the previous checkpoint as it was. Names are
 * looked up as own properties and kept in Maps: `constructor`, `toString` or `__proto__` are
 * names like any other.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { fromBf16, fromF16, toBf16, toF16 } from './dtype';
import { FusedpoError } from './errors';
import { Module } from './nn/module';
import { Tensor, hostStorage, isTensor } from './tensor';
import { describe, readArray, typedArrayFacts } from './validate';

/** The longest header accepted (the Python library's limit). */
const MAX_HEADER_BYTES = 100_000_000;
const BYTES_PER_ELEMENT: ReadonlyMap<string, number> = new Map([['F32', 4], ['F16', 2], ['BF16', 2]]);
type SafetensorsDType = 'F32' | 'F16' | 'BF16';
/** One read or write call moves at most this many bytes (Linux moves at most 2^31 - 4096 per call). */
const CHUNK_BYTES = 2 ** 30;

export interface SafetensorsTensor {
  /** The stored dtype (the data is f32 whatever it was). */
  dtype: SafetensorsDType;
  shape: number[];
  data: Float32Array;
}

export interface SafetensorsFile {
  /** In file order (by data offset). */
  tensors: Map<string, SafetensorsTensor>;
  metadata: Record<string, string>;
}

/** A safetensors file that cannot be read or written: the message names the file and what is wrong. */
export class SafetensorsError extends FusedpoError {
  override name = 'SafetensorsError';
}

function fail(source: string, message: string): Error {
  return new SafetensorsError(`safetensors (${source}): ${message}`);
}

function hasOwn(object: object, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(object, key);
}

/** Sets an own data property, whatever its name (`__proto__` included). */
function defineOwn(object: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
}

// ---- Writing ---------------------------------------------------------------------------------

type NamedTensors = Module | readonly (readonly [string, Tensor | { shape: readonly number[]; data: Float32Array }])[];

interface Entry {
  name: string;
  shape: number[];
  /** The f32 values, read when written (a tensor's copy is made one at a time). */
  values: () => Float32Array;
  bytes: number;
}

/** How a file stores its values: f32 as they are, or rounded to bf16 or f16 (round to nearest even). */
export type StoredDType = 'F32' | 'BF16' | 'F16';

/** Every name, shape and data checked; the header's bytes; the entries in order. */
function plan(tensors: NamedTensors, metadataValue: unknown, op: string, dtype: StoredDType = 'F32'): { header: Buffer; entries: Entry[] } {
  const width = BYTES_PER_ELEMENT.get(dtype);
  if (width === undefined) throw new TypeError(`${op}: expected a dtype of F32, BF16 or F16 but received ${describe(dtype)}`);
  const list = tensors instanceof Module ? tensors.parameters() : readArray(tensors, 1 << 24, 'the tensors');
  if (!list) throw new TypeError(`${op}: expected a Module or an array of [name, tensor] pairs but received ${describe(tensors)}`);
  if (typeof metadataValue !== 'object' || metadataValue === null || Array.isArray(metadataValue)) {
    throw new TypeError(`${op}: expected metadata to be an object of string values but received ${describe(metadataValue)}`);
  }
  const metadata: Record<string, unknown> = {};
  for (const key of Object.keys(metadataValue)) {
    const value = (metadataValue as Record<string, unknown>)[key];
    if (typeof value !== 'string') throw new TypeError(`${op}: expected metadata to be an object of string values but ${key} is ${describe(value)}`);
    defineOwn(metadata, key, value);
  }
  const header: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  const seen = new Set<string>();
  const entries: Entry[] = [];
  let offset = 0;
  list.forEach((pair, k) => {
    const parts = readArray(pair, 2, `entry ${k}`);
    if (!parts || parts.length !== 2) throw new TypeError(`${op}: expected entry ${k} to be a [name, tensor] pair but received ${describe(pair)}`);
    const [name, tensor] = parts;
    if (typeof name !== 'string' || name === '' || name === '__metadata__') {
      throw new TypeError(`${op}: expected entry ${k}'s name to be a non-empty string other than __metadata__ but received ${describe(name)}`);
    }
    if (seen.has(name)) throw new Error(`${op}: the name ${name} appears twice`);
    seen.add(name);
    let entry: Entry;
    if (tensor instanceof Tensor && !isTensor(tensor)) {
      throw new TypeError(`${op}: expected a Tensor made by fusedpo for ${name} but received an object with Tensor's prototype`);
    }
    if (isTensor(tensor)) {
      tensor.assertAlive(`${op} (${name})`);
      if (tensor.dtype !== 'f32') throw new TypeError(`${op}: expected an f32 tensor for ${name} but received ${tensor}`);
      entry = { name, shape: [...tensor.shape], values: () => tensor.toArray() as Float32Array, bytes: tensor.size * width };
    } else {
      const item = tensor as { shape?: unknown; data?: unknown } | null;
      const shape = typeof item === 'object' && item !== null ? readArray(item.shape, 64, `the shape of ${name}`) : null;
      if (!shape || !shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)) {
        throw new TypeError(`${op}: expected a Tensor or { shape, data } with a shape of non-negative integers for ${name} but received ${describe(tensor)}`);
      }
      const data = item!.data;
      const facts = typedArrayFacts(data);
      const count = (shape as number[]).reduce((n, d) => n * d, 1);
      if (!facts || facts.kind !== 'Float32Array' || facts.length !== count) {
        throw new TypeError(`${op}: expected a Float32Array of ${count} values (shape [${shape}]) for ${name}'s data but received ${describe(data)}`);
      }
      entry = { name, shape: shape as number[], values: () => data as Float32Array, bytes: count * width };
    }
    header[name] = { dtype, shape: entry.shape, data_offsets: [offset, offset + entry.bytes] };
    offset += entry.bytes;
    entries.push(entry);
  });
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.length));
  return { header: Buffer.concat([prefix, headerBytes]), entries };
}

/** Little-endian bytes of f32 values stored as `dtype` (a view of f32 values where the machine is little-endian). */
function littleEndianBytes(values: Float32Array, dtype: StoredDType = 'F32'): Uint8Array {
  if (dtype !== 'F32') {
    const bits = dtype === 'BF16' ? toBf16(values) : toF16(values);
    if (os.endianness() === 'LE') return new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength);
    const swapped = Buffer.alloc(bits.length * 2);
    for (let i = 0; i < bits.length; i++) swapped.writeUInt16LE(bits[i], i * 2);
    return swapped;
  }
  if (os.endianness() === 'LE') return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const bytes = Buffer.alloc(values.length * 4);
  for (let i = 0; i < values.length; i++) bytes.writeFloatLE(values[i], i * 4);
  return bytes;
}

/** The file's bytes for named f32 tensors (a module's parameters(), or [name, tensor] pairs). */
export function encodeSafetensors(tensors: NamedTensors, metadata: Record<string, string> = {}): Uint8Array {
  const { header, entries } = plan(tensors, metadata, 'encodeSafetensors');
  const total = header.length + entries.reduce((n, e) => n + e.bytes, 0);
  if (total > 2 ** 32) throw new RangeError(`encodeSafetensors: ${total} bytes do not fit one Buffer (4 GiB); use saveSafetensors, which writes by parts`);
  return Buffer.concat([header, ...entries.map((e) => littleEndianBytes(e.values()))], total);
}

function writeAll(fd: number, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length;) {
    done += fs.writeSync(fd, bytes, done, Math.min(CHUNK_BYTES, bytes.length - done));
  }
}

/**
 * Writes a module's parameters (or named tensors) to `file`, through a temporary file in the
 * same folder that is flushed and then renamed over `file`: the old file stays whole until the
 * new one is complete. Tensors are copied out one at a time.
 */
export function saveSafetensors(file: string, tensors: NamedTensors, metadata: Record<string, string> = {}, options: { dtype?: StoredDType } = {}): void {
  if (typeof file !== 'string' || file === '') throw new TypeError(`saveSafetensors: expected a file path but received ${describe(file)}`);
  const dtype = options.dtype ?? 'F32';
  const { header, entries } = plan(tensors, metadata, 'saveSafetensors', dtype);
  const temporary = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${Date.now()}.partial`);
  let fd: number | null = null;
  try {
    fd = fs.openSync(temporary, 'wx');
    writeAll(fd, header);
    for (const entry of entries) writeAll(fd, littleEndianBytes(entry.values(), dtype));
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = null;
    fs.renameSync(temporary, file);
  } catch (error) {
    if (fd !== null) fs.closeSync(fd);
    fs.rmSync(temporary, { force: true });
    throw new SafetensorsError(`saveSafetensors (${file}): ${(error as Error).message}; the previous file, if any, is unchanged`, { cause: error });
  }
}

// ---- Reading ---------------------------------------------------------------------------------

/** Where a file's bytes come from: a file, read by ranges, or bytes in memory. */
interface Source {
  name: string;
  size: number;
  /** `length` bytes from `position` into `target` (a view). */
  read(target: Uint8Array, position: number): void;
  close(): void;
}

function fileSource(file: string): Source {
  // O_NONBLOCK: opening a FIFO does not wait for a writer; fstat then refuses it.
  const flags = fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0);
  const fd = fs.openSync(file, flags);
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) {
      const kind = stat.isFIFO() ? 'a FIFO' : stat.isCharacterDevice() ? 'a character device' : stat.isDirectory() ? 'a directory'
        : stat.isSocket() ? 'a socket' : stat.isBlockDevice() ? 'a block device' : 'not a regular file';
      throw fail(file, `not a regular file (${kind}): a safetensors file is read from a file of known size`);
    }
    return {
      name: file,
      size: stat.size,
      read(target, position) {
        for (let done = 0; done < target.length;) {
          const n = fs.readSync(fd, target, done, Math.min(CHUNK_BYTES, target.length - done), position + done);
          if (n === 0) throw fail(file, `truncated: the file ended at byte ${position + done} while ${target.length - done} more were expected`);
          done += n;
        }
      },
      close: () => fs.closeSync(fd),
    };
  } catch (error) {
    fs.closeSync(fd);
    throw error;
  }
}

function memorySource(bytes: Uint8Array): Source {
  return {
    name: 'buffer',
    size: bytes.length,
    read(target, position) {
      target.set(bytes.subarray(position, position + target.length));
    },
    close() {},
  };
}

interface HeaderEntry {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  begin: number;
  end: number;
}

function parseHeader(source: Source): { entries: HeaderEntry[]; metadata: Record<string, string>; dataStart: number } {
  const name = source.name;
  if (source.size < 8) throw fail(name, `truncated: ${source.size} bytes, fewer than the 8 of the header length`);
  const prefix = Buffer.alloc(8);
  source.read(prefix, 0);
  const headerLength = prefix.readBigUInt64LE(0);
  if (headerLength > BigInt(MAX_HEADER_BYTES)) throw fail(name, `bad header: a length of ${headerLength} bytes (more than ${MAX_HEADER_BYTES}); is this a safetensors file?`);
  const dataStart = 8 + Number(headerLength);
  if (dataStart > source.size) throw fail(name, `truncated: the header needs ${headerLength} bytes but only ${source.size - 8} follow its length`);
  const headerBytes = Buffer.alloc(Number(headerLength));
  source.read(headerBytes, 8);
  let header: unknown;
  try {
    header = JSON.parse(headerBytes.toString('utf8'));
  } catch (error) {
    throw fail(name, `bad header: not JSON (${(error as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw fail(name, 'bad header: not a JSON object');
  const dataLength = source.size - dataStart;
  const metadata: Record<string, string> = {};
  const entries: HeaderEntry[] = [];
  for (const [key, value] of Object.entries(header)) {
    if (key === '__metadata__') {
      if (typeof value !== 'object' || value === null || Array.isArray(value) || Object.values(value).some((v) => typeof v !== 'string')) {
        throw fail(name, 'bad header: __metadata__ must be an object of strings');
      }
      for (const [k, v] of Object.entries(value)) defineOwn(metadata, k, v);
      continue;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw fail(name, `bad header: the entry of tensor ${key} is not an object`);
    const entry = value as Record<string, unknown>;
    const dtype = hasOwn(entry, 'dtype') ? entry.dtype : undefined;
    if (typeof dtype !== 'string' || !BYTES_PER_ELEMENT.has(dtype)) {
      throw fail(name, `tensor ${key} has dtype ${JSON.stringify(dtype) ?? 'undefined'}; supported: F32, F16, BF16`);
    }
    const shape = hasOwn(entry, 'shape') ? entry.shape : undefined;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw fail(name, `bad header: tensor ${key} has shape ${JSON.stringify(shape) ?? 'undefined'}, not an array of non-negative integers`);
    }
    const offsets = hasOwn(entry, 'data_offsets') ? entry.data_offsets : undefined;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]) {
      throw fail(name, `bad header: tensor ${key} has data_offsets ${JSON.stringify(offsets) ?? 'undefined'}, not [begin, end] with 0 <= begin <= end`);
    }
    const [begin, end] = offsets as [number, number];
    const want = (shape as number[]).reduce((n, d) => n * d, 1) * BYTES_PER_ELEMENT.get(dtype)!;
    if (end - begin !== want) {
      throw fail(name, `bad header: tensor ${key} of shape [${shape}] (${dtype}) needs ${want} bytes but its data_offsets [${begin}, ${end}] hold ${end - begin}`);
    }
    if (end > dataLength) throw fail(name, `truncated: tensor ${key} ends at byte ${end} of the data but the data has ${dataLength} bytes`);
    entries.push({ name: key, dtype: dtype as SafetensorsDType, shape: shape as number[], begin, end });
  }
  // As the Python library requires: the tensors tile the data exactly, with no gap or overlap.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const e of entries) {
    if (e.begin !== cursor) throw fail(name, `bad header: tensor ${e.name} starts at byte ${e.begin} of the data, expected ${cursor} (overlap or gap)`);
    cursor = e.end;
  }
  if (cursor !== dataLength) throw fail(name, `bad header: the tensors cover ${cursor} bytes of data but the file holds ${dataLength}`);
  return { entries, metadata, dataStart };
}

function readTensor(source: Source, e: HeaderEntry, dataStart: number): Float32Array {
  const count = (e.end - e.begin) / BYTES_PER_ELEMENT.get(e.dtype)!;
  const allocate = <T>(make: () => T): T => {
    try {
      return make();
    } catch {
      throw fail(source.name, `tensor ${e.name} of shape [${e.shape}] (${count} values) does not fit in memory as one array`);
    }
  };
  if (e.dtype === 'F32') {
    const data = allocate(() => new Float32Array(count));
    source.read(new Uint8Array(data.buffer), dataStart + e.begin);
    if (os.endianness() !== 'LE') {
      const view = new DataView(data.buffer);
      for (let i = 0; i < count; i++) data[i] = view.getFloat32(i * 4, true);
    }
    return data;
  }
  const bits = allocate(() => new Uint16Array(count));
  source.read(new Uint8Array(bits.buffer), dataStart + e.begin);
  if (os.endianness() !== 'LE') {
    const view = new DataView(bits.buffer);
    for (let i = 0; i < count; i++) bits[i] = view.getUint16(i * 2, true);
  }
  return e.dtype === 'BF16' ? fromBf16(bits) : fromF16(bits);
}

/** Parses a safetensors file (a path, or its bytes), checking everything the format promises. */
export function readSafetensors(file: string | Uint8Array): SafetensorsFile {
  const facts = typedArrayFacts(file);
  if (typeof file !== 'string' && !(facts && facts.kind === 'Uint8Array')) {
    throw new TypeError(`readSafetensors: expected a file path or a Uint8Array of the file's bytes but received ${describe(file)}`);
  }
  const source = typeof file === 'string' ? fileSource(file) : memorySource(file);
  try {
    const { entries, metadata, dataStart } = parseHeader(source);
    const tensors = new Map<string, SafetensorsTensor>();
    for (const e of entries) tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data: readTensor(source, e, dataStart) });
    return { tensors, metadata };
  } finally {
    source.close();
  }
}

/** A tensor's entry in a safetensors header: what it is, without its data. */
export interface SafetensorsEntry {
  dtype: SafetensorsDType;
  shape: number[];
}

/**
 * The header of a safetensors file (names, dtypes, shapes and metadata), checked as readSafetensors
 * checks it, without reading any tensor: what a model's config is compared with before the
 * model is built.
 */
export function readSafetensorsHeader(file: string): { tensors: Map<string, SafetensorsEntry>; metadata: Record<string, string> } {
  if (typeof file !== 'string' || file === '') throw new TypeError(`readSafetensorsHeader: expected a file path but received ${describe(file)}`);
  const source = fileSource(file);
  try {
    const { entries, metadata } = parseHeader(source);
    return { tensors: new Map(entries.map((e) => [e.name, { dtype: e.dtype, shape: e.shape }])), metadata };
  } finally {
    source.close();
  }
}

/**
 * Loads a file's tensors into a module's parameters, by name. Every parameter must be in the
 * file with its exact shape, and every tensor of the file must be a parameter (strict, as
 * torch's load_state_dict); nothing is written unless all of them match. Returns the file's
 * metadata.
 */
export function loadSafetensors(module: Module, file: string | Uint8Array): Record<string, string> {
  if (!(module instanceof Module)) throw new TypeError(`loadSafetensors: expected a Module but received ${describe(module)}`);
  const source = typeof file === 'string' ? file : 'buffer';
  const { tensors, metadata } = readSafetensors(file);
  const params = module.parameters();
  const names = new Set(params.map(([name]) => name));
  const missing = params.filter(([name]) => !tensors.has(name)).map(([name]) => name);
  if (missing.length) throw fail(source, `missing tensor${missing.length > 1 ? 's' : ''} ${missing.join(', ')} (the module has ${params.length} parameters)`);
  const extra = [...tensors.keys()].filter((name) => !names.has(name));
  if (extra.length) throw fail(source, `unexpected tensor${extra.length > 1 ? 's' : ''} ${extra.join(', ')}: the module has no such parameter`);
  for (const [name, param] of params) {
    const { shape } = tensors.get(name)!;
    if (shape.length !== param.shape.length || shape.some((d, i) => d !== param.shape[i])) {
      throw fail(source, `tensor ${name} has shape [${shape}] in the file but [${param.shape}] in the module`);
    }
  }
  for (const [name, param] of params) {
    const { storage, byteOffset } = hostStorage(param, 'loadSafetensors');
    storage.write(tensors.get(name)!.data, byteOffset);
  }
  return metadata;
}
