/**
 * lib/data/dataset.ts against hostile files: a line past maxLineBytes (and past V8's longest
 * string, from a sparse file) is a bad record read past without being held; lines that cross the
 * 64 KiB reads, CRLF split between two reads; ill-formed UTF-8 named with its line and byte; a
 * key given twice in one object at any depth, also spelled with escapes; a .json file too large
 * to read whole; and random bytes, which read to records or to a DatasetError, never to another
 * error.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { rejection } from '../support/datasets';

import {
  DEFAULT_MAX_LINE_BYTES,
  DatasetError,
  MAX_JSON_FILE_BYTES,
  readPreferenceDataset,
  readSftDataset,
  type ReadOptions,
} from '../../lib/data/dataset';

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'fusedpo-dataset-hostile-'));
let fileCount = 0;

/** A new file in the scratch folder holding `content`; `name` ends with the extension wanted. */
function write(name: string, content: string | Uint8Array): string {
  const file = path.join(scratch, `${fileCount++}-${name}`);
  fs.writeFileSync(file, content);
  return file;
}


/** `{"text": "xxx..."}` of exactly `bytes` bytes. */
function textLine(bytes: number, fill = 'x'): string {
  const frame = '{"text": ""}';
  return `{"text": "${fill.repeat(bytes - frame.length)}"}`;
}

const tooLong = (bytes: number) => `longer than ${bytes} bytes (maxLineBytes; fusedpo's --max-line-bytes raises it)`;

test.after(() => fs.rmSync(scratch, { recursive: true, force: true }));

// --- Long lines ----------------------------------------------------------------------------------

test('maxLineBytes: a longer line is a bad record, skipped and listed, and reading goes on', async () => {
  assert.is(DEFAULT_MAX_LINE_BYTES, 64 * 1024 * 1024);
  const bound = 1000;
  // line 2 is one byte too long; line 3 is exactly the bound, also with CRLF; line 5 is far too long
  const file = write('long.jsonl', [textLine(20), textLine(bound + 1), textLine(bound) + '\r', textLine(bound), textLine(50_000), textLine(30)].join('\n'));
  await rejection(readSftDataset(file, { maxLineBytes: bound }), file, 2, tooLong(bound));
  const read = await readSftDataset(file, { maxLineBytes: bound, skipBadLines: true });
  assert.equal(read.records.map((record) => [record.line, record.completion.length]), [[1, 8], [3, bound - 12], [4, bound - 12], [6, 18]]);
  assert.equal(read.skipped, [{ line: 2, reason: tooLong(bound) }, { line: 5, reason: tooLong(bound) }]);
  // the default bound reads all of it
  assert.is((await readSftDataset(file)).records.length, 6);
});

test('maxLineBytes: lines that cross the 64 KiB reads, a bound above one read, CRLF and a character split between reads', async () => {
  const chunk = 64 * 1024;
  const bound = 3 * chunk;
  // line 1 ends with \r as the last byte of the first read and \n as the first of the second
  const first = textLine(chunk - 1);
  const before = [first + '\r', textLine(bound), textLine(bound + 1), textLine(5 * chunk + 17)];
  // line 5 holds 'é' (2 bytes) 64 Ki times; a pad puts the first byte of one at the end of a read
  const start = Buffer.byteLength(before.join('\n') + '\n') + '{"text":"'.length;
  const pad = (Math.ceil(start / chunk) * chunk - start) % 2 === 1 ? '' : 'a';
  const accents = pad + 'é'.repeat(chunk);
  const lines = [...before, JSON.stringify({ text: accents }), textLine(40)];
  const bytes = Buffer.from(lines.join('\n'), 'utf8');
  assert.is(bytes[chunk - 1], 0x0d);
  assert.is(bytes[chunk], 0x0a);
  const boundary = Math.ceil((start + pad.length) / chunk) * chunk;
  assert.equal([bytes[boundary - 1], bytes[boundary]], [0xc3, 0xa9]);
  const file = write('chunks.jsonl', bytes);
  const read = await readSftDataset(file, { maxLineBytes: bound, skipBadLines: true });
  assert.equal(read.records.map((record) => record.line), [1, 2, 5, 6]);
  assert.is(read.records[0].completion, JSON.parse(first).text);
  assert.is(read.records[1].completion.length, bound - 12);
  assert.is(read.records[2].completion, accents);
  assert.equal(read.skipped, [{ line: 3, reason: tooLong(bound) }, { line: 4, reason: tooLong(bound) }]);
});

test('maxLineBytes: a line past V8 longest string (a sparse file) is read past, never held whole', async () => {
  // 513 MiB of NUL bytes and no newline between two records: a reader that made a string of the
  // line would throw a RangeError; one that held it would grow by 513 MiB.
  const file = write('huge-line.jsonl', '{"text": "before"}\n');
  fs.truncateSync(file, 513 * 1024 * 1024);
  fs.appendFileSync(file, '\n{"text": "after"}\n');
  const maxRssBefore = process.resourceUsage().maxRSS;  // KiB
  const read = await readSftDataset(file, { skipBadLines: true });
  const grownMiB = (process.resourceUsage().maxRSS - maxRssBefore) / 1024;
  fs.rmSync(file);
  assert.equal(read.records, [{ prompt: '', completion: 'before', line: 1 }, { prompt: '', completion: 'after', line: 3 }]);
  assert.equal(read.skipped, [{ line: 2, reason: tooLong(DEFAULT_MAX_LINE_BYTES) }]);
  // at most the bound of one line is held (64 MiB, and the copy that grows it): far from 513 MiB
  assert.ok(grownMiB < 256, `max RSS grew by ${grownMiB.toFixed(0)} MiB`);
});

// --- UTF-8 -----------------------------------------------------------------------------------

test('utf-8: an ill-formed byte is a bad record naming its byte in the line, never a U+FFFD', async () => {
  const good = Buffer.from('{"text": "ok é"}');
  /** A line `{"text": "ab<bytes>cd"}`: the bytes start at byte 13 of the line. */
  const bad = (...bytes: number[]) => Buffer.concat([Buffer.from('{"text": "ab'), Buffer.from(bytes), Buffer.from('cd"}')]);
  const cases: [Buffer, string][] = [
    [bad(0xff), 'invalid UTF-8 at byte 13 of the line (0xFF)'],
    [bad(0x80), 'invalid UTF-8 at byte 13 of the line (0x80)'],  // a continuation byte with no lead
    [bad(0xc0, 0xaf), 'invalid UTF-8 at byte 13 of the line (0xC0)'],  // an overlong '/'
    [bad(0xed, 0xa0, 0x80), 'invalid UTF-8 at byte 13 of the line (0xED)'],  // a lone surrogate, U+D800
    [bad(0xf4, 0x90, 0x80, 0x80), 'invalid UTF-8 at byte 13 of the line (0xF4)'],  // above U+10FFFF
    [bad(0xe2, 0x82), 'invalid UTF-8 at byte 13 of the line (0xE2)'],  // cut short
    [bad(0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xfe), 'invalid UTF-8 at byte 18 of the line (0xFE)'],  // after é and €
  ];
  for (const [line, reason] of cases) {
    const file = write('bad-utf8.jsonl', Buffer.concat([good, Buffer.from('\n'), line, Buffer.from('\r\n'), good]));
    await rejection(readSftDataset(file), file, 2, reason);
    const read = await readSftDataset(file, { skipBadLines: true });
    assert.equal(read.records.map((record) => [record.line, record.completion]), [[1, 'ok é'], [3, 'ok é']]);
    assert.equal(read.skipped, [{ line: 2, reason }]);
  }
  // a byte order mark is taken off line 1 only; a sequence cut at the end of a line is not
  // completed by the next line's bytes
  const cut = write('cut.jsonl', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), good, Buffer.from([0x0a, 0xe2, 0x82, 0x0a, 0xac]), good]));
  await rejection(readSftDataset(cut), cut, 2, 'invalid UTF-8 at byte 1 of the line (0xE2)');
});

test('utf-8: a .json file with an ill-formed byte names the line of the file and the byte in it', async () => {
  const text = JSON.stringify([{ text: 'a' }, { text: 'b' }, { text: 'é c' }], null, 2).split('\n');
  // line 9 of the file is `    "text": "é c"`: its 'é' (bytes 14 and 15) loses its second byte
  const at = text.findIndex((line) => line.includes('é'));
  assert.is(at, 8);
  const lines = text.map((line) => Buffer.from(line));
  lines[at] = Buffer.concat([Buffer.from('    "text": "'), Buffer.from([0xc3, 0x20]), Buffer.from('c"')]);
  const file = write('bad-utf8.json', Buffer.concat(lines.flatMap((line) => [line, Buffer.from('\n')])));
  await rejection(readSftDataset(file), file, null, 'invalid UTF-8 on line 9 of the file, at byte 14 of that line (0xC3)');
  // the whole file is refused, skipBadLines or not (its records cannot be told apart yet)
  await rejection(readSftDataset(file, { skipBadLines: true }), file, null, /: invalid UTF-8 on line 9 of the file/);
  const first = write('bad-first.json', Buffer.from([0xff, 0x5b, 0x5d]));
  await rejection(readSftDataset(first), first, null, 'invalid UTF-8 on line 1 of the file, at byte 1 of that line (0xFF)');
});

test('utf-8: the byte named is where the first ill-formed sequence starts (random lines)', async () => {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const decodes = (bytes: Uint8Array) => {
    try {
      decoder.decode(bytes);
      return true;
    } catch {
      return false;
    }
  };
  // bytes of the text field: ASCII letters, lead and continuation bytes, whole characters
  const piece = fc.oneof(
    fc.constantFrom(...[0x41, 0x80, 0xbf, 0xc0, 0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff, 0xa0, 0x90, 0x8f].map((byte) => [byte])),
    fc.constantFrom('é', '€', '😀', '\uFFFD').map((char) => [...Buffer.from(char)]),
  );
  await fc.assert(
    fc.asyncProperty(fc.array(piece, { maxLength: 12 }), async (pieces) => {
      const content = Uint8Array.from(pieces.flat());
      const line = Buffer.concat([Buffer.from('{"text": "'), content, Buffer.from('"}')]);
      const file = write('random-utf8.jsonl', line);
      try {
        const read = await readSftDataset(file);
        assert.ok(decodes(line), 'read, so it decodes');
        assert.equal(Buffer.from(read.records[0].completion), Buffer.from(content));
      } catch (error) {
        assert.instance(error, DatasetError);
        const reason = (error as DatasetError).reason;
        const match = /^invalid UTF-8 at byte (\d+) of the line \(0x([0-9A-F]{2})\)$/.exec(reason);
        if (match === null) {
          // well-formed, but not a record (an empty text)
          assert.ok(decodes(line) && content.length === 0, reason);
          return;
        }
        const start = Number(match[1]) - 1;
        assert.is(line[start], parseInt(match[2], 16));
        assert.ok(decodes(line.subarray(0, start)), `the bytes before byte ${start + 1} decode`);
        // an ill-formed sequence shows within 4 bytes of its start
        assert.not.ok(decodes(line.subarray(0, Math.min(line.length, start + 4))), `the bytes to ${start + 4} do not`);
      } finally {
        fs.rmSync(file);
      }
    }),
    { numRuns: 300 },
  );
});

// --- Duplicated keys -------------------------------------------------------------------------------

test('duplicated keys: a key given twice in one object, at any depth, is a bad record', async () => {
  const reason = (key: string) => `duplicated key ${JSON.stringify(key)} (JSON keeps only the last; fix the record)`;
  const good = '{"prompt": "p", "chosen": "c", "rejected": "r"}';
  const cases: [string, string][] = [
    ['{"prompt": "a", "prompt": "b", "chosen": "c", "rejected": "r"}', 'prompt'],
    ['{"prompt": "a", "chosen": "c", "rejected": "r", "prompt": "a"}', 'prompt'],  // even with the same value
    ['{"\\u0070rompt": "a", "prompt": "b", "chosen": "c", "rejected": "r"}', 'prompt'],  // an escaped spelling
    ['{"prompt": [{"role": "user", "role": "system", "content": "q"}], "chosen": [{"role": "assistant", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]}', 'role'],
    ['{"prompt": "p", "chosen": "c", "rejected": "r", "meta": {"a": 1, "b": [{"x": 1, "x": 2}]}}', 'x'],
    ['{"prompt": "p", "chosen": "c", "rejected": "r", "meta": {"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k5":0}}', 'k5'],
    ['{"prompt": "p", "chosen": "c", "rejected": "r", "a\\"b": 1, "a\\u0022b": 2}', 'a"b'],
    ['{"": 1, "prompt": "p", "chosen": "c", "rejected": "r", "": 2}', ''],
  ];
  for (const [line, key] of cases) {
    assert.not.throws(() => JSON.parse(line), line);
    const file = write('duplicated.jsonl', [good, line, good].join('\n'));
    await rejection(readPreferenceDataset(file), file, 2, reason(key));
    const read = await readPreferenceDataset(file, { skipBadLines: true });
    assert.equal(read.records.map((record) => record.line), [1, 3]);
    assert.equal(read.skipped, [{ line: 2, reason: reason(key) }]);
  }
  // not duplicates: the same key in different objects, keys spelled inside strings, keys that
  // differ only by an escape that decodes differently, and escaped quotes and backslashes
  const fine = [
    '{"prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]}',
    '{"prompt": "\\"prompt\\": 1, \\"prompt\\": 2", "chosen": "{\\"a\\":1,\\"a\\":2}", "rejected": "r"}',
    '{"prompt": "p", "chosen": "c", "rejected": "r", "a\\\\": 1, "a": 2, "a\\\\\\\\": 3, "\\u00e9": 4, "é\\u0301": 5}',
    '{"prompt": "p", "chosen": "c", "rejected": "r", "meta": [[{"x": 1}], {"x": {"x": {"x": []}}}, {}, [], "x"]}',
  ];
  const file = write('fine.jsonl', fine.join('\n'));
  assert.is((await readPreferenceDataset(file)).records.length, fine.length);
});

test('duplicated keys: in a .json file each record is told by its index + 1', async () => {
  const text = `[
    {"text": "a"},
    {"text": "b", "meta": {"id": 1, "id": 2}},
    {"text": "c", "text": "d"},
    {"text": "e"}
  ]`;
  const file = write('duplicated.json', text);
  await rejection(readSftDataset(file), file, 2, 'duplicated key "id" (JSON keeps only the last; fix the record)');
  const read = await readSftDataset(file, { skipBadLines: true });
  assert.equal(read.records.map((record) => [record.line, record.completion]), [[1, 'a'], [4, 'e']]);
  assert.equal(read.skipped.map((bad) => [bad.line, bad.reason]), [
    [2, 'duplicated key "id" (JSON keeps only the last; fix the record)'],
    [3, 'duplicated key "text" (JSON keeps only the last; fix the record)'],
  ]);
});

test('duplicated keys: found exactly when an object of a random record repeats a key', async () => {
  type Node = string | number | Node[] | { entries: [string, Node][] };
  /** A key as JSON, some letters written as \u escapes (the same key, spelled otherwise). */
  const spelled = (key: string, escapes: boolean[]) =>
    '"' + [...key].map((char, index) => (escapes[index % escapes.length] ? `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}` : JSON.stringify(char).slice(1, -1))).join('') + '"';
  const render = (node: Node, escapes: boolean[]): string => {
    if (typeof node !== 'object') return JSON.stringify(node);
    if (Array.isArray(node)) return `[${node.map((item) => render(item, escapes)).join(',')}]`;
    return `{${node.entries.map(([key, value]) => `${spelled(key, escapes)}: ${render(value, escapes)}`).join(', ')}}`;
  };
  const repeats = (node: Node): boolean => {
    if (typeof node !== 'object') return false;
    if (Array.isArray(node)) return node.some(repeats);
    const keys = node.entries.map(([key]) => key);
    return new Set(keys).size !== keys.length || node.entries.some(([, value]) => repeats(value));
  };
  const { node } = fc.letrec<{ node: Node }>((tie) => ({
    node: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      fc.constantFrom('v', 'a"b', '\\', '{"k": 1, "k": 2}', ''),
      fc.integer(),
      fc.array(tie('node'), { maxLength: 3 }),
      fc.record({ entries: fc.array(fc.tuple(fc.constantFrom('k', 'key', 'é', 'a"b', '\\', ''), tie('node')), { maxLength: 12 }) }),
    ),
  }));
  await fc.assert(
    fc.asyncProperty(node, fc.array(fc.boolean(), { minLength: 1, maxLength: 3 }), async (meta, escapes) => {
      const line = `{"text": "t", "meta": ${render(meta, escapes)}}`;
      const file = write('random-keys.jsonl', line);
      try {
        const read = await readSftDataset(file, { skipBadLines: true });
        if (repeats(meta)) assert.match(read.skipped[0]?.reason ?? '', /^duplicated key /, line);
        else assert.is(read.records.length, 1, line);
      } catch (error) {
        // every record skipped: only when it repeats a key
        assert.instance(error, DatasetError);
        assert.ok(repeats(meta), `${line}: ${(error as Error).message}`);
        assert.match((error as Error).message, /\(the one record was skipped as bad: line 1: duplicated key /);
      } finally {
        fs.rmSync(file);
      }
    }),
    { numRuns: 300 },
  );
});

// --- .json size ------------------------------------------------------------------------------------

test('json: a file above MAX_JSON_FILE_BYTES is refused before it is read (JSON Lines streams)', async () => {
  assert.is(MAX_JSON_FILE_BYTES, 256 * 1024 * 1024);
  const file = write('huge.json', '[{"text": "a"}');
  fs.truncateSync(file, MAX_JSON_FILE_BYTES + 1);  // sparse: no byte of it is written
  await rejection(
    readSftDataset(file),
    file,
    null,
    `is ${MAX_JSON_FILE_BYTES + 1} bytes, and a .json file is read whole, so it may be at most ${MAX_JSON_FILE_BYTES} bytes (256 MiB): write it as JSON Lines (.jsonl, one record a line), which is read as a stream`,
  );
  fs.rmSync(file);
});

// --- Any bytes at all ------------------------------------------------------------------------------

test('odd lines: only \\r, NUL bytes, a lone \\r inside a line, whitespace only', async () => {
  const file = write('odd.jsonl', '\r\n\r\n{"text": "a"}\r\n\0\0\0\n{"text": "b"}\r{"text": "c"}\n \t \r\n{"text": "d"}\r\r\n');
  const read = await readSftDataset(file, { skipBadLines: true });
  assert.equal(read.records.map((record) => [record.line, record.completion]), [[3, 'a'], [7, 'd']]);
  // NUL bytes are not JSON; a lone \r is not a line end, so line 5 is two objects on one line
  assert.equal(read.skipped.map((bad) => bad.line), [4, 5]);
  assert.match(read.skipped[0].reason, /^not valid JSON: /);
  assert.match(read.skipped[1].reason, /^not valid JSON: /);
});

test('nesting: a long line nested deeper than 1000 levels is refused before JSON.parse (which takes seconds and gigabytes on it)', async () => {
  const deep = write('deep.jsonl', `${'['.repeat(3 << 20)}${']'.repeat(3 << 20)}\n{"text": "a"}\n`);
  const started = Date.now();
  await rejection(readSftDataset(deep), deep, 1, 'nested more than 1000 levels deep: not a dataset record');
  assert.ok(Date.now() - started < 5000, `refused in ${Date.now() - started} ms`);
  // brackets inside strings are text, and a short deep line is parsed (and refused for what it is)
  const inString = write('brackets.jsonl', `{"text": "${'['.repeat(2 << 20)}"}\n`);
  assert.is((await readSftDataset(inString)).records[0].completion.length, 2 << 20);
  const shallow = write('shallow.jsonl', `${'['.repeat(2000)}${']'.repeat(2000)}\n`);
  await rejection(readSftDataset(shallow), shallow, 1, /expected a JSON object but received an array/);
});

test('random bytes read to records or to a DatasetError, never to another error', async () => {
  const byte = fc.oneof(
    fc.constantFrom(0x0a, 0x0d, 0x00, 0x7b, 0x7d, 0x5b, 0x5d, 0x22, 0x5c, 0x3a, 0x2c, 0x20, 0xef, 0xbb, 0xbf, 0xff, 0xc3, 0xa9).map((value) => [value]),
    fc.integer({ min: 0, max: 255 }).map((value) => [value]),
    fc.constantFrom('{"text": "a"}\n', '{"prompt": "p", "chosen": "c", "rejected": "r"}\n', '[{"text": "a"}', ',', '"text"', '"a"', ']').map((text) => [...Buffer.from(text)]),
  );
  const options = fc.record(
    { skipBadLines: fc.boolean(), maxLineBytes: fc.integer({ min: 1, max: 64 }), limit: fc.integer({ min: 1, max: 3 }) },
    { requiredKeys: [] },
  );
  await fc.assert(
    fc.asyncProperty(fc.array(byte, { maxLength: 200 }), fc.constantFrom('.jsonl', '.json'), options, async (pieces, extension, settings: ReadOptions) => {
      const file = write(`random${extension}`, Uint8Array.from(pieces.flat()));
      try {
        for (const reader of [readSftDataset, readPreferenceDataset] as const) {
          try {
            const read = await reader(file, settings);
            assert.ok(read.records.length > 0 && read.records.length <= (settings.limit ?? Infinity));
          } catch (error) {
            if (!(error instanceof DatasetError)) throw error;
            assert.ok(error.message.startsWith(`${file}:`) || error.message.startsWith(`${file}: `), error.message);
          }
        }
      } finally {
        fs.rmSync(file);
      }
    }),
    { numRuns: 300 },
  );
});

test.run();
