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
 * Written as F32; read as F32, F16 or BF16 (widened to f32). Every check that can fail names the
 * file and the tensor: a truncated file, a header that is not the format, a tensor the module
 * does not have or lacks, a shape that differs (both shapes given).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';

import { fromBf16, fromF16 } from './dtype';
import { Module } from './nn/module';
import { Tensor } from './tensor';

/** The longest header accepted (the Python library's limit). */
const MAX_HEADER_BYTES = 100_000_000;
const BYTES_PER_ELEMENT = { F32: 4, F16: 2, BF16: 2 } as const;
type SafetensorsDType = keyof typeof BYTES_PER_ELEMENT;

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

function fail(source: string, message: string): Error {
  return new Error(`safetensors (${source}): ${message}`);
}

/** Little-endian bytes of f32 values (a copy). */
function littleEndianBytes(values: Float32Array): Buffer {
  const bytes = Buffer.alloc(values.length * 4);
  if (os.endianness() === 'LE') Buffer.from(values.buffer, values.byteOffset, values.byteLength).copy(bytes);
  else for (let i = 0; i < values.length; i++) bytes.writeFloatLE(values[i], i * 4);
  return bytes;
}

/** The file's bytes for named f32 tensors (a module's parameters(), or [name, tensor] pairs). */
export function encodeSafetensors(
  tensors: Module | readonly (readonly [string, Tensor | { shape: readonly number[]; data: Float32Array }])[],
  metadata: Record<string, string> = {},
): Buffer {
  const list = tensors instanceof Module ? tensors.parameters() : tensors;
  const header: Record<string, unknown> = {};
  if (typeof metadata !== 'object' || metadata === null || Object.values(metadata).some((v) => typeof v !== 'string')) {
    throw new TypeError('saveSafetensors: expected metadata to be an object of string values');
  }
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  const chunks: Buffer[] = [];
  let offset = 0;
  for (const [name, tensor] of list) {
    if (name in header) throw new Error(`saveSafetensors: the name ${name} appears twice`);
    let shape: readonly number[];
    let data: Float32Array;
    if (tensor instanceof Tensor) {
      if (tensor.dtype !== 'f32') throw new TypeError(`saveSafetensors: expected an f32 tensor for ${name} but received ${tensor}`);
      shape = tensor.shape;
      data = tensor.toArray() as Float32Array;
    } else {
      shape = tensor.shape;
      data = tensor.data;
    }
    const bytes = littleEndianBytes(data);
    header[name] = { dtype: 'F32', shape: [...shape], data_offsets: [offset, offset + bytes.length] };
    chunks.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.length));
  return Buffer.concat([prefix, headerBytes, ...chunks]);
}

/** Writes a module's parameters (or named tensors) to `path`. */
export function saveSafetensors(
  path: string,
  tensors: Parameters<typeof encodeSafetensors>[0],
  metadata: Record<string, string> = {},
): void {
  fs.writeFileSync(path, encodeSafetensors(tensors, metadata));
}

function isShape(value: unknown): value is number[] {
  return Array.isArray(value) && value.every((d) => Number.isInteger(d) && d >= 0);
}

/** Parses a safetensors file (a path, or its bytes), checking everything the format promises. */
export function readSafetensors(file: string | Uint8Array): SafetensorsFile {
  const source = typeof file === 'string' ? file : 'buffer';
  const bytes = typeof file === 'string' ? fs.readFileSync(file) : Buffer.from(file.buffer, file.byteOffset, file.byteLength);
  if (bytes.length < 8) throw fail(source, `truncated: ${bytes.length} bytes, fewer than the 8 of the header length`);
  const headerLength = bytes.readBigUInt64LE(0);
  if (headerLength > BigInt(MAX_HEADER_BYTES)) throw fail(source, `bad header: a length of ${headerLength} bytes (more than ${MAX_HEADER_BYTES}); is this a safetensors file?`);
  const dataStart = 8 + Number(headerLength);
  if (dataStart > bytes.length) throw fail(source, `truncated: the header needs ${headerLength} bytes but only ${bytes.length - 8} follow its length`);
  let header: unknown;
  try {
    header = JSON.parse(bytes.subarray(8, dataStart).toString('utf8'));
  } catch (error) {
    throw fail(source, `bad header: not JSON (${(error as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw fail(source, 'bad header: not a JSON object');
  const dataLength = bytes.length - dataStart;
  const metadata: Record<string, string> = {};
  const entries: { name: string; dtype: SafetensorsDType; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, value] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (typeof value !== 'object' || value === null || Object.values(value).some((v) => typeof v !== 'string')) {
        throw fail(source, 'bad header: __metadata__ must be an object of strings');
      }
      Object.assign(metadata, value);
      continue;
    }
    const entry = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof entry !== 'object' || entry === null) throw fail(source, `bad header: the entry of tensor ${name} is not an object`);
    if (typeof entry.dtype !== 'string' || !(entry.dtype in BYTES_PER_ELEMENT)) {
      throw fail(source, `tensor ${name} has dtype ${JSON.stringify(entry.dtype)}; supported: F32, F16, BF16`);
    }
    if (!isShape(entry.shape)) throw fail(source, `bad header: tensor ${name} has shape ${JSON.stringify(entry.shape)}, not an array of non-negative integers`);
    const offsets = entry.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isInteger(o) && o >= 0) || offsets[0] > offsets[1]) {
      throw fail(source, `bad header: tensor ${name} has data_offsets ${JSON.stringify(offsets)}, not [begin, end] with 0 <= begin <= end`);
    }
    const dtype = entry.dtype as SafetensorsDType;
    const [begin, end] = offsets as [number, number];
    const want = entry.shape.reduce((n, d) => n * d, 1) * BYTES_PER_ELEMENT[dtype];
    if (end - begin !== want) {
      throw fail(source, `bad header: tensor ${name} of shape [${entry.shape}] (${dtype}) needs ${want} bytes but its data_offsets [${begin}, ${end}] hold ${end - begin}`);
    }
    if (end > dataLength) throw fail(source, `truncated: tensor ${name} ends at byte ${end} of the data but the data has ${dataLength} bytes`);
    entries.push({ name, dtype, shape: entry.shape, begin, end });
  }
  // As the Python library requires: the tensors tile the data exactly, with no gap or overlap.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const e of entries) {
    if (e.begin !== cursor) throw fail(source, `bad header: tensor ${e.name} starts at byte ${e.begin} of the data, expected ${cursor} (overlap or gap)`);
    cursor = e.end;
  }
  if (cursor !== dataLength) throw fail(source, `bad header: the tensors cover ${cursor} bytes of data but the file holds ${dataLength}`);

  const tensors = new Map<string, SafetensorsTensor>();
  for (const e of entries) {
    const raw = bytes.subarray(dataStart + e.begin, dataStart + e.end);
    const count = (e.end - e.begin) / BYTES_PER_ELEMENT[e.dtype];
    let data: Float32Array;
    if (e.dtype === 'F32') {
      if (os.endianness() === 'LE') {
        data = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length)); // an aligned copy
      } else {
        data = new Float32Array(count);
        for (let i = 0; i < count; i++) data[i] = raw.readFloatLE(i * 4);
      }
    } else {
      const bits = new Uint16Array(count);
      for (let i = 0; i < count; i++) bits[i] = raw.readUInt16LE(i * 2);
      data = e.dtype === 'BF16' ? fromBf16(bits) : fromF16(bits);
    }
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data });
  }
  return { tensors, metadata };
}

/**
 * Loads a file's tensors into a module's parameters, by name. Every parameter must be in the
 * file with its exact shape, and every tensor of the file must be a parameter (strict, as
 * torch's load_state_dict). Returns the file's metadata.
 */
export function loadSafetensors(module: Module, file: string | Uint8Array): Record<string, string> {
  if (!(module instanceof Module)) throw new TypeError(`loadSafetensors: expected a Module but received ${String(module)}`);
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
    const { storage, byteOffset } = param.nativeStorage('loadSafetensors');
    storage.write(tensors.get(name)!.data, byteOffset);
  }
  return metadata;
}
