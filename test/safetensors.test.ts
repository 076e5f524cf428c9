/**
 * lib/safetensors.ts: the bytes we write equal the reference library's own serialization tests
 * (huggingface/safetensors, safetensors/src/tensor.rs: test_serialization, test_empty); a GPT's
 * parameters round-trip bit for bit with their metadata; F16/BF16 files load widened to f32; and
 * every broken file or mismatched module fails with an error naming the tensor and the shapes.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { GPT, encodeSafetensors, loadSafetensors, readSafetensors, saveSafetensors, toBf16, toF16 } from '../lib/index';

/** A file made by hand from a header object and raw data bytes. */
function fileOf(header: object | string, data: Uint8Array = new Uint8Array(0)): Buffer {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, json, data]);
}

test('byte for byte the reference serialization (tensor.rs test_serialization, test_empty)', () => {
  const data = Float32Array.from([0, 1, 2, 3, 4, 5]);
  assert.equal([...encodeSafetensors([['attn.0', { shape: [1, 2, 3], data }]])], [
    64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100,
    116, 121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34,
    58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115,
    101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63,
    0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64,
  ]);
  // The header padded with spaces so that the data starts 8-byte aligned.
  const aligned = Buffer.from(encodeSafetensors([['attn0', { shape: [1, 1, 2, 3], data }]]));
  assert.is(aligned.readBigUInt64LE(0), 72n);
  assert.is(aligned.subarray(8, 80).toString().trimEnd(), '{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}');
  assert.equal([...encodeSafetensors([])], [8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]);
  assert.equal([...encodeSafetensors([], { framework: 'pt' })], [
    40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97, 116, 97, 95,
    95, 34, 58, 123, 34, 102, 114, 97, 109, 101, 119, 111, 114, 107, 34, 58, 34, 112,
    116, 34, 125, 125, 32, 32, 32, 32, 32,
  ]);
});

test('a GPT round-trips through a file, bit for bit, with its metadata', () => {
  const config = { layers: 2, width: 16, heads: 2, context: 8, vocab: 20 };
  const source = new GPT(config, { seed: 1 });
  const target = new GPT(config, { seed: 2 });
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'fusedpo-')), 'gpt.safetensors');
  saveSafetensors(file, source, { config: JSON.stringify(config) });
  assert.equal(loadSafetensors(target, file), { config: JSON.stringify(config) });
  for (const [name, tensor] of source.parameters()) {
    assert.equal(Array.from(target.getParameter(name)!.toArray()), Array.from(tensor.toArray()), name);
  }
  const read = readSafetensors(file);
  assert.equal([...read.tensors.keys()], source.parameters().map(([name]) => name));
  assert.equal(read.tensors.get('blocks.1.mlp.fc.weight')!.shape, [64, 16]);
  fs.rmSync(path.dirname(file), { recursive: true });
  source.dispose();
  target.dispose();
});

test('F16 and BF16 tensors are read widened to f32', () => {
  const values = Float32Array.from([1, -2.5, 0.375, 65504]);
  const half = toF16(values);
  const brain = toBf16(values);
  const data = Buffer.concat([Buffer.from(half.buffer), Buffer.from(brain.buffer)]);
  const file = fileOf({ h: { dtype: 'F16', shape: [4], data_offsets: [0, 8] }, b: { dtype: 'BF16', shape: [2, 2], data_offsets: [8, 16] } }, data);
  const { tensors } = readSafetensors(file);
  assert.equal(Array.from(tensors.get('h')!.data), [1, -2.5, 0.375, 65504]);
  assert.equal(tensors.get('b')!.dtype, 'BF16');
  assert.equal(Array.from(tensors.get('b')!.data), [1, -2.5, 0.375, 65536]);
});

test('broken files: truncated, bad header, bad entries', () => {
  const good = Buffer.from(encodeSafetensors([['w', { shape: [2, 3], data: new Float32Array(6) }]]));
  assert.throws(() => readSafetensors(good.subarray(0, 5)), /safetensors \(buffer\): truncated: 5 bytes, fewer than the 8 of the header length/);
  const headerLength = Number(good.readBigUInt64LE(0));
  assert.throws(() => readSafetensors(good.subarray(0, 30)), new RegExp(`truncated: the header needs ${headerLength} bytes but only 22 follow its length`));
  assert.throws(() => readSafetensors(good.subarray(0, good.length - 4)), /truncated: tensor w ends at byte 24 of the data but the data has 20 bytes/);
  const huge = Buffer.alloc(16);
  huge.writeBigUInt64LE(2n ** 40n);
  assert.throws(() => readSafetensors(huge), /bad header: a length of 1099511627776 bytes .*is this a safetensors file\?/);
  assert.throws(() => readSafetensors(fileOf('{"w": {"dtype"')), /bad header: not JSON/);
  assert.throws(() => readSafetensors(fileOf('[1, 2]')), /bad header: not a JSON object/);
  assert.throws(() => readSafetensors(fileOf({ w: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8))), /tensor w has dtype "I64"; supported: F32, F16, BF16/);
  assert.throws(() => readSafetensors(fileOf({ w: { dtype: 'F32', shape: [2, -1], data_offsets: [0, 8] } }, new Uint8Array(8))), /tensor w has shape \[2,-1\], not an array of non-negative integers/);
  assert.throws(() => readSafetensors(fileOf({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8))), /tensor w of shape \[3\] \(F32\) needs 12 bytes but its data_offsets \[0, 8\] hold 8/);
  const gap = { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } };
  assert.throws(() => readSafetensors(fileOf(gap, new Uint8Array(12))), /tensor b starts at byte 8 of the data, expected 4 \(overlap or gap\)/);
  assert.throws(() => readSafetensors(fileOf({ a: gap.a }, new Uint8Array(12))), /the tensors cover 4 bytes of data but the file holds 12/);
  assert.throws(() => readSafetensors(fileOf({ __metadata__: { n: 1 } })), /__metadata__ must be an object of strings/);
});

test('loading into a module: a missing, an unexpected or a reshaped tensor is named', () => {
  const config = { layers: 1, width: 8, heads: 2, context: 4, vocab: 10 };
  const model = new GPT(config);
  const params = model.parameters().map(([name, t]): [string, { shape: readonly number[]; data: Float32Array }] => [name, { shape: t.shape, data: t.toArray() as Float32Array }]);
  assert.throws(() => loadSafetensors(model, encodeSafetensors(params.filter(([n]) => n !== 'lnF.bias'))), /safetensors \(buffer\): missing tensor lnF.bias \(the module has 16 parameters\)/);
  assert.throws(() => loadSafetensors(model, encodeSafetensors([...params, ['lm_head.weight', { shape: [1], data: new Float32Array(1) }]])), /unexpected tensor lm_head.weight: the module has no such parameter/);
  const reshaped = params.map(([n, t]): typeof params[number] => (n === 'wte.weight' ? [n, { shape: [8, 10], data: t.data }] : [n, t]));
  assert.throws(() => loadSafetensors(model, encodeSafetensors(reshaped)), /tensor wte.weight has shape \[8,10\] in the file but \[10,8\] in the module/);
  const wider = new GPT({ ...config, width: 16 });
  const before = wider.getParameter('wpe.weight')!.toArray();
  assert.throws(() => loadSafetensors(wider, encodeSafetensors(model)), /tensor wte.weight has shape \[10,8\] in the file but \[10,16\] in the module/);
  // A failed load leaves the module as it was: shapes are checked before anything is written.
  assert.equal(Array.from(wider.getParameter('wpe.weight')!.toArray()), Array.from(before));
  assert.throws(() => loadSafetensors(model, '/nonexistent/file.safetensors'), /ENOENT/);
  model.dispose();
  wider.dispose();
});

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'fusedpo-'));
}

test('a path that is not a regular file is refused at once: /dev/zero, a FIFO, a directory', () => {
  assert.throws(() => readSafetensors('/dev/zero'), /safetensors \(\/dev\/zero\): not a regular file \(a character device\)/);
  const dir = tempDir();
  assert.throws(() => readSafetensors(dir), /not a regular file \(a directory\)/);
  const fifo = path.join(dir, 'pipe');
  assert.is(spawnSync('mkfifo', [fifo]).status, 0);
  // In a child with a timeout: a regression would hang here waiting for a writer.
  const script = `try { require(${JSON.stringify(path.join(__dirname, '..', 'dist', 'index.js'))}).readSafetensors(${JSON.stringify(fifo)}) } catch (e) { console.log(e.message) }`;
  const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20_000 });
  assert.is(child.signal, null, 'reading a FIFO hung');
  assert.match(child.stdout, /not a regular file \(a FIFO\)/);
  fs.rmSync(dir, { recursive: true });
});

test('names and dtypes that are Object.prototype keys are plain names; bad header values name the tensor', () => {
  const data = new Float32Array([1, 2]);
  const names = ['constructor', 'toString', '__proto__', 'hasOwnProperty'];
  const file = encodeSafetensors(names.map((n): [string, { shape: number[]; data: Float32Array }] => [n, { shape: [2], data }]), JSON.parse('{"__proto__": "meta", "constructor": "x"}') as Record<string, string>);
  const read = readSafetensors(file);
  assert.equal([...read.tensors.keys()], names);
  for (const n of names) assert.equal(Array.from(read.tensors.get(n)!.data), [1, 2], n);
  assert.is(Object.getPrototypeOf(read.metadata), Object.prototype, 'a __proto__ key did not change the prototype');
  assert.is(Object.getOwnPropertyDescriptor(read.metadata, '__proto__')?.value, 'meta');
  assert.is(read.metadata.constructor, 'x');
  for (const dtype of ['toString', 'constructor', '__proto__']) {
    assert.throws(() => readSafetensors(fileOf({ w: { dtype, shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4))), new RegExp(`tensor w has dtype "${dtype}"; supported: F32, F16, BF16`));
  }
  assert.throws(() => readSafetensors(fileOf({ w: { dtype: 'F32', shape: [1], data_offsets: [0, 2 ** 60] } }, new Uint8Array(4))), /data_offsets/);
  assert.throws(() => readSafetensors(fileOf({ w: { dtype: 'F32', shape: [2 ** 40, 2 ** 40], data_offsets: [0, 4] } }, new Uint8Array(4))), /needs .* bytes but its data_offsets \[0, 4\] hold 4/);
  const lengthPastEnd = Buffer.alloc(16);
  lengthPastEnd.writeBigUInt64LE(1000n);
  assert.throws(() => readSafetensors(lengthPastEnd), /truncated: the header needs 1000 bytes but only 8 follow its length/);
  assert.throws(() => readSafetensors(42 as unknown as string), /expected a file path or a Uint8Array of the file's bytes but received 42 of type number/);
});

test('encodeSafetensors checks what it writes: names, shapes, data, metadata', () => {
  const data = new Float32Array(6);
  assert.throws(() => encodeSafetensors([['w', { shape: [2, -3], data }]]), /shape of non-negative integers for w/);
  assert.throws(() => encodeSafetensors([['w', { shape: [2, 2], data }]]), /Float32Array of 4 values \(shape \[2,2\]\) for w's data but received Float32Array of length 6/);
  assert.throws(() => encodeSafetensors([['w', { shape: [6], data: new Float64Array(6) as unknown as Float32Array }]]), /for w's data but received Float64Array/);
  assert.throws(() => encodeSafetensors([['', { shape: [6], data }]]), /name to be a non-empty string other than __metadata__/);
  assert.throws(() => encodeSafetensors([['__metadata__', { shape: [6], data }]]), /other than __metadata__/);
  assert.throws(() => encodeSafetensors([['w', { shape: [6], data }], ['w', { shape: [6], data }]]), /the name w appears twice/);
  assert.throws(() => encodeSafetensors([], { n: 1 } as unknown as Record<string, string>), /metadata to be an object of string values but n is 1 of type number/);
  const gone = new GPT({ layers: 1, width: 8, heads: 2, context: 4, vocab: 10 });
  gone.dispose();
  assert.throws(() => encodeSafetensors(gone), /was disposed/);
});

test('a save that fails part way (the disk full) leaves the previous checkpoint whole', () => {
  const dir = tempDir();
  const file = path.join(dir, 'model.safetensors');
  const config = { layers: 1, width: 32, heads: 2, context: 8, vocab: 64 };
  const model = new GPT(config, { seed: 1 });
  saveSafetensors(file, model);
  const previous = fs.readFileSync(file);
  // A child whose files may not grow past 16 KiB (SIGXFSZ ignored, so the write fails with EFBIG
  // as on a full disk): it saves a model of 70 KB over the file.
  const script = `
    const f = require(${JSON.stringify(path.join(__dirname, '..', 'dist', 'index.js'))});
    const model = new f.GPT(${JSON.stringify(config)}, { seed: 2 });
    try { f.saveSafetensors(${JSON.stringify(file)}, model); console.log('saved'); } catch (e) { console.log(e.message); }`;
  const child = spawnSync('bash', ['-c', `trap '' XFSZ; ulimit -f 32; exec "$0" -e "$1"`, process.execPath, script], { encoding: 'utf8' });
  assert.match(child.stdout, /saveSafetensors \(.*model.safetensors\): EFBIG: file too large, write; the previous file, if any, is unchanged/, child.stdout + child.stderr);
  assert.ok(fs.readFileSync(file).equals(previous), 'the previous checkpoint changed');
  assert.equal(fs.readdirSync(dir), ['model.safetensors'], 'the partial file was removed');
  fs.rmSync(dir, { recursive: true });
  model.dispose();
});

test('a checkpoint past 2 GiB reads, by ranges', () => {
  const dir = tempDir();
  const file = path.join(dir, 'large.safetensors');
  // Two tensors of 1.125 GiB each, in a sparse file: the OS serves their zeros without disk.
  const count = 9 * 2 ** 25;
  const bytes = count * 4;
  const header = { a: { dtype: 'F32', shape: [9, 2 ** 25], data_offsets: [0, bytes] }, b: { dtype: 'F32', shape: [count], data_offsets: [bytes, 2 * bytes] } };
  const head = fileOf(header);
  const fd = fs.openSync(file, 'w');
  fs.writeSync(fd, head);
  fs.writeSync(fd, new Uint8Array(new Float32Array([1.5]).buffer), 0, 4, head.length + bytes - 4); // a's last value
  fs.writeSync(fd, new Uint8Array(new Float32Array([-2]).buffer), 0, 4, head.length + bytes); // b's first
  fs.ftruncateSync(fd, head.length + 2 * bytes);
  fs.closeSync(fd);
  assert.ok(fs.statSync(file).size > 2 ** 31);
  const read = readSafetensors(file);
  const a = read.tensors.get('a')!.data;
  const b = read.tensors.get('b')!.data;
  assert.equal([a.length, b.length], [count, count]);
  assert.equal([a[0], a[count - 1], b[0], b[count - 1]], [0, 1.5, -2, 0]);
  fs.rmSync(dir, { recursive: true });
});

test.run();
