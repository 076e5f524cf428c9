/**
 * lib/data/tokenizer.ts: the byte tokenizer round-trips any text; the byte-level BPE gives, on a
 * small hand-made tokenizer.json (test/fixtures/tokenizer-tiny.json), the ids that Hugging Face's
 * rules give: GPT-2's split, GPT-2's byte-to-character mapping, merges by rank, added tokens found
 * first. The fixture's ids 0..255 are the byte-level symbols of bytes 0..255 (so a byte left
 * unmerged is its own value), and its merges, in rank order, make ids 256..268:
 *   256 'Ġ t'  257 'h e'  258 't he'  259 'Ġt he'  260 't h'  261 'i n'  262 'in g'
 *   263 '1 2'  264 'Ġ Ġ'  265 'Ċ Ċ'  266 '. .'   267 'Ã ©' (é)  268 'a a'
 * and 269 is <|endoftext|>, an added special token. Every malformed file is refused with a message
 * naming the file and what is wrong.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { BpeTokenizer, ByteTokenizer, loadTokenizer, tokenizerFrom } from '../../lib/data/tokenizer';

const fixtures = path.resolve(__dirname, '..', 'fixtures');
const tinyFile = path.join(fixtures, 'tokenizer-tiny.json');

/** A fresh copy of the fixture's JSON, to be changed by a test. */
function tinyJSON(): any {
  return JSON.parse(fs.readFileSync(tinyFile, 'utf8'));
}

const tiny = BpeTokenizer.fromFile(tinyFile);

/** Texts that every tokenizer must give back unchanged. */
const roundTripTexts = [
  '',
  'hello world',
  'the thing, then the other thing...',
  'a  b\n\n c',
  '   leading and trailing   ',
  'tabs\tand\r\nwindows lines',
  "it's what we'll do, isn't it? I'd say we've done it",
  'numbers 12 123 3.14159 -42',
  'café, été, naïve, Ärger',
  'Привет, мир',
  'こんにちは世界',
  'emoji 😀👍🏽 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢',
  'a<|endoftext|>b <|endoftext|><|endoftext|> c',
  '<|endoftext',
  '\u0000\u0001\u007f\u00a0\u00ad',
  '\ufeffa byte order mark, \u0085 a next line, \u3000 an ideographic space',
];

function throwsMatching(fn: () => unknown, kind: ErrorConstructor, pattern: RegExp): void {
  try {
    fn();
  } catch (error) {
    assert.instance(error, kind);
    assert.match((error as Error).message, pattern);
    return;
  }
  assert.unreachable(`expected a ${kind.name} matching ${pattern}`);
}

test('byte tokenizer: the UTF-8 bytes, and back', () => {
  const byte = new ByteTokenizer();
  assert.is(byte.kind, 'byte');
  assert.is(byte.vocabSize, 257);
  assert.is(byte.eosId, 256);
  assert.equal(byte.encode('Hi!'), [72, 105, 33]);
  assert.equal(byte.encode('é'), [195, 169]);
  assert.equal(byte.encode('😀'), [240, 159, 152, 128]);
  assert.equal(byte.encode(''), []);
  for (const text of roundTripTexts) assert.is(byte.decode(byte.encode(text)), text, text);
  assert.is(byte.decode(Int32Array.from([104, 105])), 'hi');
  assert.is(byte.decode([104, 105, 256]), 'hi<|endoftext|>');
  assert.equal(byte.describe(), { kind: 'byte' });
});

test('byte tokenizer: refuses what is not a string or not an id, naming the position', () => {
  const byte = new ByteTokenizer();
  throwsMatching(() => byte.encode(3 as unknown as string), TypeError, /^Expected a string for text but received 3 of type number$/);
  throwsMatching(() => byte.decode([65, 257]), RangeError, /^Expected a token id, an integer in \[0, 257\) for ids\[1\] but received 257 of type number$/);
  throwsMatching(() => byte.decode([-1]), RangeError, /for ids\[0\] but received -1 of type number/);
  throwsMatching(() => byte.decode([65, 66, 1.5]), RangeError, /for ids\[2\] but received 1\.5 of type number/);
  throwsMatching(() => byte.decode(['a' as unknown as number]), TypeError, /for ids\[0\] but received 'a' of type string/);
  throwsMatching(() => byte.decode(7 as unknown as number[]), TypeError, /^Expected an array of token ids for ids but received 7 of type number$/);
});

test('bpe: the fixture loads with its sizes and end-of-text id', () => {
  assert.is(tiny.kind, 'bpe');
  assert.is(tiny.vocabSize, 270);
  assert.is(tiny.eosId, 269);
  assert.equal(tiny.describe(), { kind: 'bpe', file: tinyFile });
  assert.equal(BpeTokenizer.fromJSON(tinyJSON()).describe(), { kind: 'bpe', file: 'tokenizer.json' });
});

test('bpe: merges by rank, not left to right', () => {
  // t h e: 'h e' (rank 1) comes before 't h' (rank 4), then 't he' (rank 2).
  assert.equal(tiny.encode('the'), [258]);
  // t h i n g: 't h' (4) before 'i n' (5), then 'in g' (6).
  assert.equal(tiny.encode('thing'), [260, 262]);
  // Of two equal pairs the leftmost merges first: aa a, then aa aa.
  assert.equal(tiny.encode('aaa'), [268, 97]);
  assert.equal(tiny.encode('aaaa'), [268, 268]);
  assert.equal(tiny.encode('hello'), [257, 108, 108, 111]);
});

test('bpe: a leading space is part of the word after it (Ġ)', () => {
  // Ġ t h e: 'Ġ t' (0), 'h e' (1), then 'Ġt he' (3).
  assert.equal(tiny.encode(' the'), [259]);
  assert.equal(tiny.encode('hello the'), [257, 108, 108, 111, 259]);
  const prefixed = tinyJSON();
  prefixed.pre_tokenizer.add_prefix_space = true;
  const withPrefix = BpeTokenizer.fromJSON(prefixed);
  assert.equal(withPrefix.encode('the'), [259]);
  assert.equal(withPrefix.encode(' the'), [259]);
  // The space is added to each piece between added tokens.
  assert.equal(withPrefix.encode('a<|endoftext|>the'), [32, 97, 269, 259]);
});

test('bpe: digits, punctuation, contractions, newlines and runs of spaces split as GPT-2 splits them', () => {
  assert.equal(tiny.encode('x 123'), [120, 32, 263, 51]);
  assert.equal(tiny.encode('12345'), [263, 51, 52, 53]);
  assert.equal(tiny.encode('hi...'), [104, 105, 266, 46]);
  assert.equal(tiny.encode("it's"), [105, 116, 39, 115]);
  // 'a', ' ', ' b', '\n\n', ' c': a run of whitespace leaves its last space to the word after it.
  assert.equal(tiny.encode('a  b\n\n c'), [97, 32, 32, 98, 265, 32, 99]);
  assert.equal(tiny.encode('a   b'), [97, 264, 32, 98]);
  assert.equal(tiny.encode('a  '), [97, 264]);
  assert.equal(tiny.encode('a\nb'), [97, 10, 98]);
  // U+0085 is whitespace to Hugging Face's regex engine, though not to JavaScript's \s: with
  // JavaScript's the run would end before it and give '\n', '\n', '\u0085' (10, 10, 194, 133).
  assert.equal(tiny.encode('\n\n\u0085'), [265, 194, 133]);
});

test('bpe: non-ASCII text goes through GPT-2 byte characters', () => {
  // é is the bytes C3 A9, the characters 'Ã' '©', merged by 'Ã ©'.
  assert.equal(tiny.encode('café'), [99, 97, 102, 267]);
  assert.equal(tiny.encode('été'), [267, 116, 267]);
  assert.equal(tiny.encode('😀'), [240, 159, 152, 128]);
});

test('bpe: <|endoftext|> inside text is its id', () => {
  assert.equal(tiny.encode('hi<|endoftext|> the'), [104, 105, 269, 259]);
  assert.equal(tiny.encode('<|endoftext|><|endoftext|>'), [269, 269]);
  assert.is(tiny.decode([258, 269]), 'the<|endoftext|>');
});

test('bpe: decode(encode(text)) is the text', () => {
  for (const text of roundTripTexts) assert.is(tiny.decode(tiny.encode(text)), text, text);
  assert.is(tiny.decode(Int32Array.from(tiny.encode('the thing'))), 'the thing');
});

test('bpe: merges written as ["a", "b"] pairs give the same ids', () => {
  const json = tinyJSON();
  json.model.merges = json.model.merges.map((merge: string) => merge.split(' '));
  const pairs = BpeTokenizer.fromJSON(json, 'pairs');
  for (const text of roundTripTexts) assert.equal(pairs.encode(text), tiny.encode(text), text);
});

test('bpe: added tokens with lstrip take the whitespace before them', () => {
  const json = tinyJSON();
  json.added_tokens.push({ id: 270, content: '<mask>', single_word: false, lstrip: true, rstrip: false, normalized: false, special: true });
  const masked = BpeTokenizer.fromJSON(json);
  assert.is(masked.vocabSize, 271);
  assert.is(masked.eosId, 269);
  assert.equal(masked.encode('a <mask>'), [97, 270]);
  json.added_tokens[1].lstrip = false;
  assert.equal(BpeTokenizer.fromJSON(json).encode('a <mask>'), [97, 32, 270]);
  // single_word: not next to a word character (a letter, a decimal digit, '_'); '½' is none.
  json.added_tokens[1].single_word = true;
  const single = BpeTokenizer.fromJSON(json);
  assert.equal(single.encode('_<mask>'), [95, 60, 109, 97, 115, 107, 62]);
  assert.equal(single.encode('½<mask>'), [194, 189, 270]);
});

test('bpe: decode and encode refuse what is not theirs', () => {
  throwsMatching(() => tiny.encode(null as unknown as string), TypeError, /^Expected a string for text but received null$/);
  throwsMatching(() => tiny.decode([258, 270]), RangeError, /an integer in \[0, 270\) for ids\[1\] but received 270 of type number/);
  throwsMatching(() => tiny.decode([-1]), RangeError, /for ids\[0\] but received -1/);
  throwsMatching(() => tiny.decode([1, 1.5]), RangeError, /for ids\[1\] but received 1\.5/);
  // An id below vocabSize that no token has (the added token leaves a gap).
  const json = tinyJSON();
  json.added_tokens.push({ id: 300, content: '<pad>', special: true });
  const gappy = BpeTokenizer.fromJSON(json, 'gappy.json');
  assert.is(gappy.vocabSize, 301);
  throwsMatching(() => gappy.decode([97, 280]), RangeError, /for ids\[1\] but received 280 of type number, which no token of gappy\.json has/);
});

test('bpe: the end-of-text id is <|endoftext|>, else the first special added token, else an error', () => {
  const json = tinyJSON();
  json.added_tokens = [
    { id: 270, content: '<s>', special: false },
    { id: 271, content: '</s>', special: true },
  ];
  delete json.model.vocab['<|endoftext|>'];
  assert.is(BpeTokenizer.fromJSON(json).eosId, 271);
  json.added_tokens = [];
  throwsMatching(() => BpeTokenizer.fromJSON(json, 'no-eos.json'), Error, /^no-eos\.json: the tokenizer has no end-of-text token/);
});

test('bpe: malformed files are refused, naming the file and the fault', () => {
  const broken = (change: (json: any) => void, pattern: RegExp): void => {
    const json = tinyJSON();
    change(json);
    throwsMatching(() => BpeTokenizer.fromJSON(json, 'broken.json'), Error, pattern);
  };
  broken((json) => { json.model.type = 'WordPiece'; }, /^broken\.json: the model is of type WordPiece; only BPE is supported$/);
  broken((json) => { json.pre_tokenizer = { type: 'Whitespace' }; }, /^broken\.json: the pre-tokenizers are Whitespace; only a single ByteLevel/);
  broken((json) => {
    json.pre_tokenizer = { type: 'Sequence', pretokenizers: [{ type: 'Split' }, { type: 'ByteLevel' }] };
  }, /^broken\.json: the pre-tokenizers are Split, ByteLevel; only a single ByteLevel/);
  broken((json) => { json.pre_tokenizer = null; }, /^broken\.json: Expected a ByteLevel pre-tokenizer for pre_tokenizer but received null/);
  broken((json) => { json.model.merges.push('q zz'); }, /^broken\.json: model\.merges\[13\] \("q" \+ "zz"\) names "zz", which is not in model\.vocab$/);
  broken((json) => { json.model.merges.push('q z'); }, /^broken\.json: model\.merges\[13\] \("q" \+ "z"\) makes "qz", which is not in model\.vocab$/);
  broken((json) => { json.model.merges.push('a b c'); }, /^broken\.json: Expected a merge, "a b" or \["a", "b"\] for model\.merges\[13\] but received 'a b c'/);
  broken((json) => { json.model.vocab.a = 1.5; }, /^broken\.json: Expected an id, a non-negative integer for the id of "a" in model\.vocab but received 1\.5 of type number$/);
  broken((json) => { json.model.vocab.a = 98; }, /^broken\.json: model\.vocab gives the id 98 to both "a" and "b"|"b" and "a"/);
  broken((json) => { json.added_tokens[0].id = 97; }, /^broken\.json: the id 97 is "a" in model\.vocab but "<\|endoftext\|>" in added_tokens$/);
  broken((json) => { json.added_tokens.push({ id: 269, content: '<pad>' }); }, /^broken\.json: added_tokens gives the id 269 to both/);
  broken((json) => { json.added_tokens[0].id = '269'; }, /^broken\.json: Expected an id, a non-negative integer for added_tokens\[0\]\.id but received '269' of type string$/);
  broken((json) => { json.normalizer = { type: 'NFC' }; }, /^broken\.json: the normalizer is NFC/);
  broken((json) => { json.decoder = { type: 'WordPiece' }; }, /^broken\.json: the decoder is WordPiece; only ByteLevel is supported$/);
  throwsMatching(() => BpeTokenizer.fromJSON([], 'broken.json'), Error, /^broken\.json: Expected an object/);
});

test('bpe: a Sequence holding only ByteLevel is accepted', () => {
  const json = tinyJSON();
  json.pre_tokenizer = { type: 'Sequence', pretokenizers: [json.pre_tokenizer] };
  // ' thing': 'Ġ t' (rank 0) takes the t before 't h' (rank 4) can.
  assert.equal(BpeTokenizer.fromJSON(json).encode(' the thing'), [259, 256, 104, 262]);
});

test('loading: by name, by file, by directory, and from a description', () => {
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'fusedpo-tokenizer-'));
  try {
    fs.copyFileSync(tinyFile, path.join(directory, 'tokenizer.json'));
    assert.instance(loadTokenizer('byte'), ByteTokenizer);
    assert.equal(loadTokenizer(tinyFile).encode('the'), [258]);
    assert.equal(loadTokenizer(directory).encode(' the'), [259]);
    const described = loadTokenizer(directory).describe();
    assert.equal(tokenizerFrom(described, '.').encode('the'), [258]);
    assert.equal(tokenizerFrom({ kind: 'bpe', file: 'tokenizer.json' }, directory).encode('the'), [258]);
    assert.instance(tokenizerFrom({ kind: 'byte' }, directory), ByteTokenizer);
    const missing = path.join(directory, 'missing.json');
    throwsMatching(() => loadTokenizer(missing), Error, /^Expected 'byte' or a path to a tokenizer\.json \(or a directory holding one\) for the tokenizer but found no file at .*missing\.json$/);
    throwsMatching(() => tokenizerFrom({ kind: 'bpe', file: 'missing.json' }, directory), Error, /^Could not read the tokenizer .*missing\.json: /);
    fs.writeFileSync(path.join(directory, 'bad.json'), '{ not json');
    throwsMatching(() => BpeTokenizer.fromFile(path.join(directory, 'bad.json')), Error, /bad\.json: not valid JSON/);
    fs.writeFileSync(path.join(directory, 'wordpiece.json'), JSON.stringify({ ...tinyJSON(), model: { type: 'WordPiece' } }));
    throwsMatching(() => loadTokenizer(path.join(directory, 'wordpiece.json')), Error, /wordpiece\.json: the model is of type WordPiece/);
    const empty = fs.mkdtempSync(path.join(directory, 'empty-'));
    throwsMatching(() => loadTokenizer(empty), Error, /holds no tokenizer\.json$/);
    throwsMatching(() => tokenizerFrom({ kind: 'sentencepiece' } as never, directory), TypeError, /^Expected \{ kind: 'byte' \} or \{ kind: 'bpe', file \} for the tokenizer description but received an object of type Object$/);
    throwsMatching(() => loadTokenizer(5 as unknown as string), TypeError, /^Expected 'byte' or a path to a tokenizer\.json for the tokenizer but received 5 of type number$/);
  } finally {
    fs.rmSync(directory, { recursive: true, force: true });
  }
});

test('bpe: JSON.stringify of a tokenizer rebuilds it', () => {
  const rebuilt = BpeTokenizer.fromJSON(JSON.parse(JSON.stringify(tiny)));
  for (const text of roundTripTexts) assert.equal(rebuilt.encode(text), tiny.encode(text), text);
});

test.run();
