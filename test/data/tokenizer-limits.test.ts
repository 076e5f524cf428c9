/**
 * Tokenizers at their limits: a text far longer than any context encoded with `maxTokens`, in
 * little time and memory; a word of a million characters (its first ids from a prefix, all of it
 * in seconds); and tokenizer files in model folders, which are either read whole when the folder
 * is loaded or refused then, naming the file: a broken vocab.json or merges.txt, and a model
 * trained with the byte tokenizer, whose folder now holds the tokenizer.json that gives its ids
 * and a tokenizer_config.json.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { BpeTokenizer, ByteTokenizer, byteTokenizerJSON, type Tokenizer } from '../../lib/data/tokenizer';
import { GPT } from '../../lib/nn/gpt';
import { PretrainedError, huggingFaceTokenizer, loadPretrained, savePretrained } from '../../lib/nn/pretrained';

const tinyFile = path.resolve(__dirname, '..', 'fixtures', 'tokenizer-tiny.json');
const tinyJSON = (): any => JSON.parse(fs.readFileSync(tinyFile, 'utf8'));

const mebibyte = 2 ** 20;

test('a 60-million-character line with maxTokens 1024: milliseconds, and no memory beyond the text', () => {
  // 60 million UTF-16 code units ('Ж' makes the string two bytes a unit): 120 MB, as JSON.parse
  // gives a 60 MB JSONL line of such text. indexOf flattens the string that repeat built, so
  // that the memory measured below is the encoding's alone.
  const phrase = 'the quick brown fox jumps over the lazy dog, naïve café, Жук ';
  const text = phrase.repeat(Math.ceil(60e6 / phrase.length)).slice(0, 60e6);
  assert.is(text.indexOf('\u0000'), -1);
  const prefixedJSON = tinyJSON();
  prefixedJSON.pre_tokenizer.add_prefix_space = true;
  const tokenizers: [string, Tokenizer][] = [
    ['byte', new ByteTokenizer()],
    ['bpe', BpeTokenizer.fromFile(tinyFile)],
    ['bpe add_prefix_space', BpeTokenizer.fromJSON(prefixedJSON)],
  ];
  for (const [name, tokenizer] of tokenizers) {
    const rssBefore = process.memoryUsage().rss;
    const start = performance.now();
    const ids = tokenizer.encode(text, { maxTokens: 1024 });
    const milliseconds = performance.now() - start;
    const grown = (process.memoryUsage().rss - rssBefore) / mebibyte;
    // The first 1024 ids come from the first few thousand characters: a prefix of them gives the same.
    assert.equal(ids, tokenizer.encode(text.slice(0, 100_000)).slice(0, 1024), name);
    // Measured: 25 ms and 2 MB (bpe: prefixes of a few thousand characters, encoded), against
    // seconds and hundreds of MB for encoding all of it and cutting. The 1024 ids and the prefixes take kilobytes; 64
    // MB leaves room for the engine's own growth (its young generation, compiled code) and a
    // second is room for a slow or busy machine, while either fails by far if the whole text
    // is split, mapped or merged.
    assert.ok(milliseconds < 1000, `${name}: ${milliseconds.toFixed(0)} ms for 1024 ids of a 60-million-character text`);
    assert.ok(grown < 64, `${name}: resident memory grew by ${grown.toFixed(0)} MB for 1024 ids`);
  }
});

test('a word of a million characters: its first 1024 ids in well under a second, and all of them in seconds', () => {
  // The fixture merges 'a a' only: 500,000 merges of equal rank, leftmost first. With maxTokens
  // the word is encoded from a prefix (it has no whitespace to cut at, so a prefix of whole code
  // points), and the ids are those of the whole word.
  const tiny = BpeTokenizer.fromFile(tinyFile);
  const word = 'a'.repeat(1_000_000);
  let start = performance.now();
  const first = tiny.encode(word, { maxTokens: 1024 });
  const firstMilliseconds = performance.now() - start;
  assert.equal(first, new Array(1024).fill(268));
  start = performance.now();
  const pairs = tiny.encode(word);
  const pairsMilliseconds = performance.now() - start;
  assert.is(pairs.length, 500_000);
  assert.ok(pairs.every((id) => id === 268), 'every id is "aa" (268)');

  // Merges of 2, 4, ..., 1024 a's: 100,000 = 97 * 1024 + 512 + 128 + 32, each rank merged
  // leftmost first, so 97 of a^1024, then a^512, a^128 and a^32.
  const json = tinyJSON();
  json.model.merges = [];
  for (let size = 1; size < 1024; size *= 2) {
    const half = 'a'.repeat(size);
    json.model.vocab[half + half] = 270 + Math.log2(size);
    json.model.merges.push(`${half} ${half}`);
  }
  const powers = BpeTokenizer.fromJSON(json, 'powers of two');
  start = performance.now();
  const blocks = powers.encode(word.slice(0, 100_000));
  const blocksMilliseconds = performance.now() - start;
  assert.equal(blocks, [...new Array(97).fill(270 + 9), 270 + 8, 270 + 6, 270 + 4]);

  // Measured: 40 ms, 1.7 s and 1 s (Hugging Face's BPE, a heap of merges: n log n, not the n^2 of
  // rescanning the word after each merge, which would take hours for the million). The bounds
  // are room for a slow or busy machine; a quadratic step still fails them by far.
  assert.ok(firstMilliseconds < 1000, `the first 1024 ids of 'a' * 1e6 in ${firstMilliseconds.toFixed(0)} ms`);
  assert.ok(pairsMilliseconds < 20_000, `'a' * 1e6 merged by 'a a' in ${pairsMilliseconds.toFixed(0)} ms`);
  assert.ok(blocksMilliseconds < 20_000, `'a' * 1e5 merged up to a^1024 in ${blocksMilliseconds.toFixed(0)} ms`);
});

/** A fresh temporary folder, removed after `body`. */
function inTemporaryFolder(body: (directory: string) => void): void {
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'fusedpo-tokenizer-limits-'));
  try {
    body(directory);
  } finally {
    fs.rmSync(directory, { recursive: true, force: true });
  }
}

test('savePretrained with the byte tokenizer writes a tokenizer.json that loadPretrained reads back with the same ids', () => {
  inTemporaryFolder((directory) => {
    const byte = new ByteTokenizer();
    const model = new GPT({ layers: 1, width: 8, heads: 2, context: 8, vocab: 257 });
    try {
      savePretrained(directory, model, byte);
    } finally {
      model.dispose();
    }
    assert.equal(JSON.parse(fs.readFileSync(path.join(directory, 'tokenizer.json'), 'utf8')), byteTokenizerJSON());
    assert.equal(JSON.parse(fs.readFileSync(path.join(directory, 'tokenizer_config.json'), 'utf8')), { tokenizer_class: 'PreTrainedTokenizerFast', eos_token: '<|endoftext|>' });
    const loaded = loadPretrained(directory);
    try {
      const tokenizer = loaded.tokenizer;
      assert.ok(tokenizer, 'the folder has a tokenizer');
      assert.is(tokenizer!.vocabSize, 257);
      assert.is(tokenizer!.eosId, 256);
      for (const text of ['hello world', 'a  b\n\n c', 'café, Привет, こんにちは, 😀👍🏽', '\u0000\u007f\ud800', '']) {
        assert.equal(tokenizer!.encode(text), byte.encode(text), JSON.stringify(text));
        assert.is(tokenizer!.decode(tokenizer!.encode(text)), byte.decode(byte.encode(text)), JSON.stringify(text));
      }
    } finally {
      loaded.model.dispose();
    }
  });
});

/** Asserts that `fn` throws a PretrainedError naming `file`, its message matching `pattern`. */
function refusedNaming(fn: () => unknown, file: string, pattern: RegExp): void {
  try {
    fn();
  } catch (error) {
    assert.instance(error, PretrainedError);
    assert.is((error as PretrainedError).file, file);
    assert.ok((error as Error).message.startsWith(`${file}: `), (error as Error).message);
    assert.is((error as Error).message.split(file).length, 2, `the file is named once: ${(error as Error).message}`);
    assert.match((error as Error).message, pattern);
    return;
  }
  assert.unreachable(`expected a PretrainedError naming ${file}`);
}

test('huggingFaceTokenizer: every broken tokenizer file is a PretrainedError naming the file', () => {
  inTemporaryFolder((directory) => {
    const json = tinyJSON();
    const vocabFile = path.join(directory, 'vocab.json');
    const mergesFile = path.join(directory, 'merges.txt');
    const tokenizerFile = path.join(directory, 'tokenizer.json');
    const vocab = { ...json.model.vocab, '<|endoftext|>': 269 };
    const mergesText = `#version: 0.2\n${(json.model.merges as string[]).join('\n')}\n`;
    const write = (vocabText: string, merges: string): void => {
      fs.writeFileSync(vocabFile, vocabText);
      fs.writeFileSync(mergesFile, merges);
    };

    // The good files first: the fixture's ids, with "\n" or "\r\n" line ends.
    const tiny = BpeTokenizer.fromFile(tinyFile);
    write(JSON.stringify(vocab), mergesText);
    assert.equal(huggingFaceTokenizer(directory).encode('the thing<|endoftext|>'), tiny.encode('the thing<|endoftext|>'));
    write(JSON.stringify(vocab), mergesText.replace(/\n/g, '\r\n'));
    assert.equal(huggingFaceTokenizer(directory).encode('the thing'), tiny.encode('the thing'));

    write('{ "a": 1, ', mergesText);
    refusedNaming(() => huggingFaceTokenizer(directory), vocabFile, /: not valid JSON \(/);
    write('[1, 2]', mergesText);
    refusedNaming(() => huggingFaceTokenizer(directory), vocabFile, /: expected an object of token to id but found an array$/);
    write('"a"', mergesText);
    refusedNaming(() => huggingFaceTokenizer(directory), vocabFile, /: expected an object of token to id but found a string$/);
    write(JSON.stringify({ ...vocab, b: 97 }), mergesText);
    refusedNaming(() => huggingFaceTokenizer(directory), vocabFile, /: model\.vocab gives the id 97 to both "a" and "b"$/);
    write(JSON.stringify({ ...vocab, a: 'one' }), mergesText);
    refusedNaming(() => huggingFaceTokenizer(directory), vocabFile, /: Expected an id, a non-negative integer for the id of "a" in model\.vocab but received 'one' of type string$/);
    const { '<|endoftext|>': _end, ...withoutEnd } = vocab;
    write(JSON.stringify(withoutEnd), mergesText);
    refusedNaming(() => huggingFaceTokenizer(directory), vocabFile, /: the tokenizer has no end-of-text token/);

    write(JSON.stringify(vocab), '#version: 0.2\nĠ t\na b c\n');
    refusedNaming(() => huggingFaceTokenizer(directory), mergesFile, /: line 3: expected two tokens apart by one space but found "a b c"$/);
    write(JSON.stringify(vocab), 'Ġ t\nq zz\n');
    refusedNaming(() => huggingFaceTokenizer(directory), mergesFile, /: line 2: "q zz" names "zz", which vocab\.json lacks$/);
    write(JSON.stringify(vocab), 'q z\n');
    refusedNaming(() => huggingFaceTokenizer(directory), mergesFile, /: line 1: "q z" makes "qz", which vocab\.json lacks$/);

    fs.rmSync(vocabFile);
    fs.mkdirSync(vocabFile);
    refusedNaming(() => huggingFaceTokenizer(directory), vocabFile, /: not readable \(/);

    // A tokenizer.json comes first; its errors name it too, once.
    fs.writeFileSync(tokenizerFile, '{ not json');
    refusedNaming(() => huggingFaceTokenizer(directory), tokenizerFile, /: not valid JSON \(/);
    fs.writeFileSync(tokenizerFile, JSON.stringify({ ...json, model: { ...json.model, type: 'WordPiece' } }));
    refusedNaming(() => huggingFaceTokenizer(directory), tokenizerFile, /: the model is of type WordPiece; only BPE is supported$/);
    fs.writeFileSync(tokenizerFile, JSON.stringify(json));
    assert.equal(huggingFaceTokenizer(directory).encode('the thing'), tiny.encode('the thing'));
  });
});

test.run();
