/**
 * lib/data/tokenizer.ts: the byte tokenizer round-trips any text; the BPE tokenizer (Hugging
 * Face's @huggingface/tokenizers behind the checks of this package) gives, on a small hand-made
 * tokenizer.json (test/fixtures/tokenizer-tiny.json), the ids that Hugging Face's rules give:
 * GPT-2's split, GPT-2's byte-to-character mapping, merges by rank, added tokens found first. The
 * fixture's ids 0..255 are the byte-level symbols of bytes 0..255 (so a byte left unmerged is its
 * own value), and its merges, in rank order, make ids 256..268:
 *   256 'Ġ t'  257 'h e'  258 't he'  259 'Ġt he'  260 't h'  261 'i n'  262 'in g'
 *   263 '1 2'  264 'Ġ Ġ'  265 'Ċ Ċ'  266 '. .'   267 'Ã ©' (é)  268 'a a'
 * and 269 is <|endoftext|>, an added special token. Every malformed file, and every file that
 * the JavaScript package would read into other ids than the Rust one, is refused with a message
 * naming the file and what is wrong.
 *
 * The merges are checked against the plain loop of BPE (`bpeByRescanning`, the spec), on the
 * fixture and on generated tokenizers with many merges; `encode(text, { maxTokens })` against
 * `encode(text).slice(0, maxTokens)` for every cut of many texts; `byteTokenizerJSON()` against
 * the byte tokenizer; tokenizer_config.json (special tokens, chat template) and the files() a
 * folder is written with. Long texts, long words and model folders are in
 * tokenizer-limits.test.ts; the real tokenizers of Qwen3, Llama 3 and Gemma 3 in
 * test/tokenizers/real.test.ts.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

import { mulberry32 } from '../../lib/example';
import { BpeTokenizer, ByteTokenizer, TokenizerError, byteTokenizerJSON, loadTokenizer, tokenizerFrom, type Tokenizer } from '../../lib/data/tokenizer';

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
  // U+0085 is whitespace to the Rust tokenizers' regex engine (Oniguruma), which makes one run of
  // '\n\n\u0085' and gives [265, 194, 133]; Hugging Face's JavaScript package writes GPT-2's
  // pattern with JavaScript's \s, which leaves U+0085 out. Its ids are the ones inference in
  // JavaScript reads, and the ones taken here: a known difference of the two (docs/training.md).
  assert.equal(tiny.encode('\n\n\u0085'), [10, 10, 194, 133]);
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

test('bpe: added tokens with lstrip take the whitespace before them; single_word is refused', () => {
  const json = tinyJSON();
  json.added_tokens.push({ id: 270, content: '<mask>', single_word: false, lstrip: true, rstrip: false, normalized: false, special: true });
  const masked = BpeTokenizer.fromJSON(json);
  assert.is(masked.vocabSize, 271);
  assert.is(masked.eosId, 269);
  assert.equal(masked.encode('a <mask>'), [97, 270]);
  json.added_tokens[1].lstrip = false;
  assert.equal(BpeTokenizer.fromJSON(json).encode('a <mask>'), [97, 32, 270]);
  // single_word (not next to a word character): the Rust tokenizers leave '_<mask>' as text; the
  // JavaScript package would take the token there too, so such a file is refused.
  json.added_tokens[1].single_word = true;
  throwsMatching(() => BpeTokenizer.fromJSON(json, 'single.json'), Error,
    /^single\.json: added_tokens\[1\] \("<mask>"\) has single_word: true, which Hugging Face's JavaScript tokenizer does not implement/);
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
  // Without ByteLevel (or byte_fallback, or unk_token) a character the vocab lacks would be dropped.
  const dropped = /^broken\.json: model\.unk_token is not set and the model is neither byte-level nor byte_fallback: a character outside model\.vocab would be dropped without a word$/;
  broken((json) => { json.pre_tokenizer = { type: 'Whitespace' }; }, dropped);
  broken((json) => { json.pre_tokenizer = null; }, dropped);
  broken((json) => { delete json.model.vocab['Ā']; }, /^broken\.json: model\.vocab has no token for the byte 0x00 \(GPT-2's character "Ā"\) and model\.unk_token is not set$/);
  broken((json) => {
    json.pre_tokenizer = { type: 'Sequence', pretokenizers: [{ type: 'Split' }, { type: 'ByteLevel' }] };
  }, /^broken\.json: Expected \{ "String": \.\.\. \} or \{ "Regex": \.\.\. \} for the pattern of a Split pre-tokenizer but received undefined$/);
  broken((json) => {
    json.pre_tokenizer = { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { String: ' ' }, behavior: 'MergedWithPrevious' }, json.pre_tokenizer] };
  }, /^broken\.json: a Split pre-tokenizer has the behavior MergedWithPrevious, which Hugging Face's JavaScript tokenizer does not implement/);
  broken((json) => { json.pre_tokenizer = { type: 'Sequence', pretokenizers: [{ type: 'Gpt4Split' }, json.pre_tokenizer] }; },
    /^broken\.json: Hugging Face's tokenizer cannot read it: /);
  broken((json) => { json.model.merges.push('q zz'); }, /^broken\.json: model\.merges\[13\] \("q" \+ "zz"\) names "zz", which is not in model\.vocab$/);
  broken((json) => { json.model.merges.push('q z'); }, /^broken\.json: model\.merges\[13\] \("q" \+ "z"\) makes "qz", which is not in model\.vocab$/);
  broken((json) => { json.model.merges.push('a b c'); }, /^broken\.json: Expected a merge, "a b" or \["a", "b"\] for model\.merges\[13\] but received 'a b c'/);
  broken((json) => { json.model.vocab.a = 1.5; }, /^broken\.json: Expected an id, a non-negative integer for the id of "a" in model\.vocab but received 1\.5 of type number$/);
  broken((json) => { json.model.vocab.a = 98; }, /^broken\.json: model\.vocab gives the id 98 to both "a" and "b"|"b" and "a"/);
  broken((json) => { json.added_tokens[0].id = 97; }, /^broken\.json: the id 97 is "a" in model\.vocab but "<\|endoftext\|>" in added_tokens$/);
  broken((json) => { json.added_tokens.push({ id: 269, content: '<pad>' }); }, /^broken\.json: added_tokens gives the id 269 to both/);
  broken((json) => { json.added_tokens[0].id = '269'; }, /^broken\.json: Expected an id, a non-negative integer for added_tokens\[0\]\.id but received '269' of type string$/);
  broken((json) => { json.model.dropout = 0.1; }, /^broken\.json: model\.dropout is 0\.1 of type number; BPE dropout \(random merges\) is not supported$/);
  broken((json) => { json.model.unk_token = '<unk>'; }, /^broken\.json: model\.unk_token "<unk>" is not in model\.vocab$/);
  throwsMatching(() => BpeTokenizer.fromJSON([], 'broken.json'), Error, /^broken\.json: Expected an object/);
});

test('bpe: a normalizer is applied before the split (NFC makes e + U+0301 the é of the merge "Ã ©")', () => {
  const json = tinyJSON();
  json.normalizer = { type: 'NFC' };
  const nfc = BpeTokenizer.fromJSON(json, 'nfc');
  assert.equal(nfc.encode('cafe\u0301'), [99, 97, 102, 267]);
  assert.equal(tiny.encode('cafe\u0301'), [99, 97, 102, 101, 204, 129]);
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
    throwsMatching(() => tokenizerFrom({ kind: 'bpe', file: 'missing.json' }, directory), Error, /missing\.json: not readable \(ENOENT/);
    fs.writeFileSync(path.join(directory, 'bad.json'), '{ not json');
    throwsMatching(() => BpeTokenizer.fromFile(path.join(directory, 'bad.json')), Error, /bad\.json: not valid JSON/);
    fs.writeFileSync(path.join(directory, 'wordpiece.json'), JSON.stringify({ ...tinyJSON(), model: { type: 'WordPiece' } }));
    throwsMatching(() => loadTokenizer(path.join(directory, 'wordpiece.json')), Error, /wordpiece\.json: the model is of type WordPiece/);
    const empty = fs.mkdtempSync(path.join(directory, 'empty-'));
    throwsMatching(() => loadTokenizer(empty), Error, /empty-\w+: expected tokenizer\.json, or vocab\.json and merges\.txt, beside the model$/);
    throwsMatching(() => tokenizerFrom({ kind: 'sentencepiece' } as never, directory), TypeError, /^Expected \{ kind: 'byte' \} or \{ kind: 'bpe', file \} for the tokenizer description but received an object of type Object$/);
    throwsMatching(() => loadTokenizer(5 as unknown as string), TypeError, /^Expected 'byte' or a path to a tokenizer\.json for the tokenizer but received 5 of type number$/);
  } finally {
    fs.rmSync(directory, { recursive: true, force: true });
  }
});

test('bpe: its files() rebuild it: tokenizer.json as read, and a tokenizer_config.json naming its end-of-text token', () => {
  const files = tiny.files();
  assert.equal(Object.keys(files), ['tokenizer.json', 'tokenizer_config.json']);
  assert.is(files['tokenizer.json'], fs.readFileSync(tinyFile, 'utf8'));
  assert.equal(JSON.parse(files['tokenizer_config.json']), { tokenizer_class: 'PreTrainedTokenizerFast', eos_token: '<|endoftext|>' });
  const rebuilt = BpeTokenizer.fromJSON(JSON.parse(files['tokenizer.json']), 'rebuilt', JSON.parse(files['tokenizer_config.json']));
  for (const text of roundTripTexts) assert.equal(rebuilt.encode(text), tiny.encode(text), text);
  assert.is(rebuilt.eosId, tiny.eosId);
  // fromJSON writes the JSON it was given (compact); the config is written the same way
  assert.equal(JSON.parse(rebuilt.files()['tokenizer.json']), JSON.parse(files['tokenizer.json']));
  assert.is(rebuilt.files()['tokenizer_config.json'], files['tokenizer_config.json']);
});

// ---------------------------------------------------------------------------------------------
// The merges against the plain loop of BPE

/** GPT-2's byte-to-character rule, written out again so that the spec shares no code with the tokenizer. */
const gpt2Chars: string[] = (() => {
  const chars: string[] = [];
  let shifted = 0;
  for (let byte = 0; byte < 256; byte++) {
    const printable = (byte >= 0x21 && byte <= 0x7e) || (byte >= 0xa1 && byte <= 0xac) || (byte >= 0xae && byte <= 0xff);
    chars.push(String.fromCharCode(printable ? byte : 0x100 + shifted++));
  }
  return chars;
})();

/**
 * The spec of BPE on one pre-token, the plain loop (as Hugging Face's Rust BPE merges). Start from
 * the pre-token's byte characters (one not in the vocab becomes unk_token, a run of them one
 * unk_token with fuse_unk; with ignore_merges a pre-token in the vocab is its id), then merge,
 * again and again, the adjacent pair of the lowest rank, the leftmost of equals, until no pair
 * has a merge. It rescans the word after every merge: O(n^2) for n symbols.
 */
function bpeByRescanning(json: any, preToken: string): number[] {
  const model = json.model;
  const vocab = model.vocab as Record<string, number>;
  const symbols = [...Buffer.from(preToken, 'utf8')].map((byte) => gpt2Chars[byte]);
  if (model.ignore_merges && Object.hasOwn(vocab, symbols.join(''))) return [vocab[symbols.join('')]];
  const rankOf = new Map<string, number>();  // "left right" to its rank; a pair listed twice takes its later rank
  (model.merges as (string | string[])[]).forEach((merge, rank) => rankOf.set(Array.isArray(merge) ? merge.join(' ') : merge, rank));
  const tokens: string[] = [];
  let previousUnknown = false;
  for (const symbol of symbols) {
    if (Object.hasOwn(vocab, symbol)) {
      tokens.push(symbol);
      previousUnknown = false;
    } else {
      if (!(model.fuse_unk && previousUnknown)) tokens.push(model.unk_token);
      previousUnknown = true;
    }
  }
  for (;;) {
    let best = -1;
    let bestRank = Infinity;
    for (let i = 0; i + 1 < tokens.length; i++) {
      const rank = rankOf.get(`${tokens[i]} ${tokens[i + 1]}`);
      if (rank !== undefined && rank < bestRank) {
        best = i;
        bestRank = rank;
      }
    }
    if (best < 0) break;
    tokens.splice(best, 2, tokens[best] + tokens[best + 1]);
  }
  return tokens.map((token) => vocab[token]);
}


/**
 * A byte-level BPE tokenizer.json with `mergeCount` merges made at random over the letters of
 * `letters`: each joins two tokens made so far into one of at most 12 letters, new or not (two
 * pairs may make one token). The merges are then shuffled, so that their ranks are out of the
 * order the tokens were made in (where merging one pair at a time and merging a whole rank at
 * once differ), and a few pairs are listed twice (the later rank counts). Bytes 0..255 are ids
 * 0..255, except the letters of `missing`, which the vocab lacks: they become `<unk>`, id 256.
 */
function generatedJSON(seed: number, mergeCount: number, options: { letters?: string; missing?: string; fuseUnk?: boolean; ignoreMerges?: boolean } = {}): any {
  const random = mulberry32(seed);
  const pick = <T>(list: T[]): T => list[Math.floor(random() * list.length)];
  const letters = [...(options.letters ?? 'abcde')];
  const missing = new Set(options.missing ?? '');
  const vocab: Record<string, number> = {};
  gpt2Chars.forEach((char, byte) => { if (!missing.has(char)) vocab[char] = byte; });
  let nextId = 256;
  if (missing.size) vocab['<unk>'] = nextId++;
  const tokens = letters.filter((letter) => !missing.has(letter));
  const merges: string[] = [];
  const listed = new Set<string>();
  while (merges.length < mergeCount) {
    const left = pick(tokens), right = pick(tokens);
    if (left.length + right.length > 12 || listed.has(`${left} ${right}`)) continue;
    listed.add(`${left} ${right}`);
    merges.push(`${left} ${right}`);
    if (!Object.hasOwn(vocab, left + right)) {
      vocab[left + right] = nextId++;
      tokens.push(left + right);
    }
  }
  for (let i = merges.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [merges[i], merges[j]] = [merges[j], merges[i]];
  }
  for (let k = 0; k < mergeCount / 50; k++) merges.splice(Math.floor(random() * merges.length), 0, pick(merges));
  return {
    added_tokens: [{ id: nextId, content: '<|endoftext|>', special: true }],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, use_regex: true },
    decoder: { type: 'ByteLevel' },
    model: {
      type: 'BPE', vocab, merges, unk_token: missing.size ? '<unk>' : null,
      fuse_unk: options.fuseUnk ?? false, ignore_merges: options.ignoreMerges ?? false,
    },
  };
}

/** Words that are one pre-token each (letters only, or a space and letters). */
function wordsOver(letters: string, random: () => number): string[] {
  const words: string[] = [];
  // Every word of 1, 2 and 3 symbols.
  for (const a of letters) {
    words.push(a);
    for (const b of letters) {
      words.push(a + b);
      for (const c of letters) words.push(a + b + c);
    }
  }
  // Runs of one symbol or two: equal ranks everywhere, where only the leftmost may merge first.
  for (let n = 1; n <= 300; n += n < 40 ? 1 : 13) words.push('a'.repeat(n), 'ab'.repeat(n), 'aab'.repeat(Math.ceil(n / 2)), 'b' + 'a'.repeat(n));
  const randomWord = (length: number): string => Array.from({ length }, () => letters[Math.floor(random() * letters.length)]).join('');
  for (let k = 0; k < 300; k++) words.push(randomWord(4 + Math.floor(random() * 60)));
  for (let k = 0; k < 30; k++) words.push(randomWord(200 + Math.floor(random() * 800)));
  words.push(randomWord(2000), randomWord(2000));
  return [...words, ...words.slice(0, 200).map((word) => ' ' + word)];
}

test('bpe: the merges are those of the plain loop (the spec), on the fixture and on generated tokenizers', () => {
  const random = mulberry32(7);
  const cases: [string, any, string][] = [
    ['the fixture', tinyJSON(), 'aehtign'],
    ['400 random merges', generatedJSON(1, 400), 'abcde'],
    ['3000 random merges over 3 letters', generatedJSON(2, 3000, { letters: 'abc' }), 'abc'],
    ['a byte missing, unk_token', generatedJSON(3, 500, { missing: 'c' }), 'abcde'],
    ['two bytes missing, fuse_unk', generatedJSON(4, 500, { missing: 'cd', fuseUnk: true }), 'abcde'],
    ['ignore_merges', generatedJSON(5, 500, { ignoreMerges: true }), 'abcde'],
  ];
  for (const [name, json, letters] of cases) {
    const tokenizer = BpeTokenizer.fromJSON(json, name);
    const mismatches: string[] = [];
    for (const word of wordsOver(letters, random)) {
      const got = tokenizer.encode(word), want = bpeByRescanning(json, word);
      if (JSON.stringify(got) !== JSON.stringify(want) && mismatches.length < 3) {
        mismatches.push(`${JSON.stringify(word.length > 40 ? word.slice(0, 40) + '...' : word)}: got [${got.slice(0, 12)}...], want [${want.slice(0, 12)}...]`);
      }
    }
    assert.is(mismatches.length, 0, `${name}: ${mismatches.join('; ')}`);
  }
});

// ---------------------------------------------------------------------------------------------
// encode(text, { maxTokens })

const prefixedJSON = tinyJSON();
prefixedJSON.pre_tokenizer.add_prefix_space = true;
const prefixed = BpeTokenizer.fromJSON(prefixedJSON, 'the fixture with add_prefix_space');

/** The fixture with <mask> (lstrip) and <sep> (rstrip) added. */
const maskedJSON = tinyJSON();
maskedJSON.added_tokens.push(
  { id: 270, content: '<mask>', lstrip: true, special: true },
  { id: 271, content: '<sep>', rstrip: true, special: true },
);
const masked = BpeTokenizer.fromJSON(maskedJSON, 'the fixture with lstrip and rstrip tokens');

const wholeJSON = tinyJSON();
wholeJSON.pre_tokenizer.use_regex = false;
const whole = BpeTokenizer.fromJSON(wholeJSON, 'the fixture with use_regex false');

/** Texts cut at every place: added tokens at and around the cut, code points of 2 code units, windows of add_prefix_space. */
const cutTexts = [
  ...roundTripTexts,
  '<|endoftext|>', 'a<|endoftext|>', '<|endoftext|>a', 'the<|endoftext|><|endoftext|> the', '<|endoftext|> <|endoftext|>  ',
  'x <mask> y', 'a  <mask><sep>   b<sep>c <w> d<w>e', ' <mask>  <|endoftext|><sep>\n<w>',
  'a😀', '😀b', '😀😀😀', 'é😀é😀é', '\ud83d', 'a\ud83d\ude00\ud83d', '\udc00\ud800', 'x\ud800\ud800\udc00',
  'a'.repeat(100) + ' b', '\n'.repeat(70) + 'x', '\n' + ' '.repeat(62) + 'x', '\t' + ' '.repeat(63) + '😀', "'" + 's'.repeat(70), '😀'.repeat(40) + 'a',
  fs.readFileSync(path.join(fixtures, 'corpus.txt'), 'utf8').slice(0, 800),
];

const cutTokenizers: [string, Tokenizer][] = [
  ['byte', new ByteTokenizer()], ['bpe', tiny], ['bpe add_prefix_space', prefixed], ['bpe lstrip/rstrip', masked],
  ['bpe use_regex false', whole], ['bpe 400 random merges', BpeTokenizer.fromJSON(generatedJSON(1, 400))],
];

/** The first few maxTokens where encode(text, { maxTokens }) is not encode(text).slice(0, maxTokens). */
function cutMismatches(tokenizer: Tokenizer, text: string, limits: Iterable<number>): string[] {
  const full = tokenizer.encode(text);
  const found: string[] = [];
  for (const maxTokens of limits) {
    const got = tokenizer.encode(text, { maxTokens }), want = full.slice(0, maxTokens);
    if (JSON.stringify(got) !== JSON.stringify(want) && found.length < 3) {
      found.push(`maxTokens ${maxTokens} of ${JSON.stringify(text.slice(0, 30))}...: got ${got.length} ids ending [${got.slice(-4)}], want ${want.length} ending [${want.slice(-4)}]`);
    }
  }
  return found;
}

test('encode with maxTokens: encode(text).slice(0, maxTokens), for every maxTokens from 0 to the length + 2', () => {
  for (const [name, tokenizer] of cutTokenizers) {
    for (const text of cutTexts) {
      const length = tokenizer.encode(text).length;
      const found = cutMismatches(tokenizer, text, Array.from({ length: length + 3 }, (_, k) => k));
      assert.is(found.length, 0, `${name}: ${found.join('; ')}`);
    }
  }
});

test('encode with maxTokens: a long text, cut at a sample of places', () => {
  const long = 'the thing, then <|endoftext|>the other 😀 thing...\n\n  '.repeat(3000);
  for (const [name, tokenizer] of cutTokenizers) {
    const length = tokenizer.encode(long).length;
    const limits = [0, 1, 2, 3, 1023, 1024, 1025, 4096, 20_000, length - 2, length - 1, length, length + 1, length + 2];
    const found = cutMismatches(tokenizer, long, limits);
    assert.is(found.length, 0, `${name}: ${found.join('; ')}`);
  }
});

test('bpe add_prefix_space: a piece encodes as a space and the piece would (the first pre-token is found in windows)', () => {
  // Runs of each kind of character, long enough to cross the windows of 64, 128, 256 code units.
  const kinds = ['a', 'é', '1', "'", 's', '.', '\n', '\t', '\u3000', '\u0085', ' ', '😀', '\ud800', 'x '];
  const random = mulberry32(11);
  const mismatches: string[] = [];
  for (let k = 0; k < 3000; k++) {
    let text = '';
    const runs = 1 + Math.floor(random() * 4);
    for (let r = 0; r < runs; r++) text += kinds[Math.floor(random() * kinds.length)].repeat(1 + Math.floor(random() * (random() < 0.3 ? 300 : 5)));
    const want = tiny.encode(text.startsWith(' ') ? text : ' ' + text);
    const got = prefixed.encode(text);
    if (JSON.stringify(got) !== JSON.stringify(want) && mismatches.length < 3) mismatches.push(JSON.stringify(text.slice(0, 40)));
  }
  assert.is(mismatches.length, 0, `first texts whose ids differ: ${mismatches.join(', ')}`);
});

test('encode with maxTokens: 0 gives [], no limit gives all; options and maxTokens are checked', () => {
  for (const tokenizer of [new ByteTokenizer(), tiny] as Tokenizer[]) {
    assert.equal(tokenizer.encode('the thing', { maxTokens: 0 }), []);
    assert.equal(tokenizer.encode('the thing', {}), tokenizer.encode('the thing'));
    assert.equal(tokenizer.encode('the thing', { maxTokens: undefined }), tokenizer.encode('the thing'));
    assert.equal(tokenizer.encode('the thing', { maxTokens: Number.MAX_SAFE_INTEGER }), tokenizer.encode('the thing'));
    for (const bad of [-1, 1.5, NaN, Infinity, 2 ** 53]) {
      throwsMatching(() => tokenizer.encode('a', { maxTokens: bad }), RangeError, /^Expected a non-negative safe integer for maxTokens but received /);
    }
    throwsMatching(() => tokenizer.encode('a', { maxTokens: -1 }), RangeError, /^Expected a non-negative safe integer for maxTokens but received -1 of type number$/);
    throwsMatching(() => tokenizer.encode('a', { maxTokens: '3' as unknown as number }), TypeError, /^Expected a non-negative safe integer for maxTokens but received '3' of type string$/);
    throwsMatching(() => tokenizer.encode('a', 5 as never), TypeError, /^Expected an object such as \{ maxTokens: 1024 \} for options but received 5 of type number$/);
    throwsMatching(() => tokenizer.encode('a', null as never), TypeError, /for options but received null$/);
    throwsMatching(() => tokenizer.encode('a', { maxToken: 3 } as never), TypeError, /^Expected only maxTokens in options but received 'maxToken', which encode does not take$/);
    throwsMatching(() => tokenizer.encode(7 as never, { maxTokens: 1 }), TypeError, /^Expected a string for text but received 7 of type number$/);
  }
});

// ---------------------------------------------------------------------------------------------
// byteTokenizerJSON

test('byteTokenizerJSON: a byte-level BPE with the byte tokenizer\'s ids; only the literal <|endoftext|> differs', () => {
  const byte = new ByteTokenizer();
  const asBpe = BpeTokenizer.fromJSON(JSON.parse(JSON.stringify(byteTokenizerJSON())), 'byteTokenizerJSON()');
  assert.is(asBpe.vocabSize, byte.vocabSize);
  assert.is(asBpe.eosId, byte.eosId);
  const ordinary = [...roundTripTexts, ...cutTexts].filter((text) => !text.includes('<|endoftext|>'));
  for (const text of ordinary) {
    assert.equal(asBpe.encode(text), byte.encode(text), JSON.stringify(text.slice(0, 40)));
    assert.is(asBpe.decode(asBpe.encode(text)), byte.decode(byte.encode(text)), JSON.stringify(text.slice(0, 40)));
  }
  // Any ids decode the same, bytes that are not UTF-8 and end-of-text ids among them.
  const random = mulberry32(3);
  for (let k = 0; k < 500; k++) {
    const ids = Array.from({ length: Math.floor(random() * 20) }, () => (random() < 0.1 ? 256 : Math.floor(random() * 256)));
    assert.is(asBpe.decode(ids), byte.decode(ids), `[${ids}]`);
  }
  // The difference: the literal text is the end-of-text id, as in Hugging Face's GPT-2 tokenizer.
  assert.equal(asBpe.encode('a<|endoftext|>'), [97, 256]);
  assert.equal(byte.encode('a<|endoftext|>'), [97, ...Buffer.from('<|endoftext|>')]);
});

// ---------------------------------------------------------------------------------------------
// tokenizer_config.json: the special tokens and the chat template

/** A template that shows every variable it is given: BOS, each message, EOS, the generation prompt. */
const showingTemplate = '{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}';

/** The fixture with <s> (270) and <pad> (271) added, and a config naming them with a chat template. */
function chatFixture(): { json: any; config: any } {
  const json = tinyJSON();
  json.added_tokens.push({ id: 270, content: '<s>', special: true }, { id: 271, content: '<pad>', special: true });
  const config = { bos_token: '<s>', eos_token: '<|endoftext|>', pad_token: { content: '<pad>', __type: 'AddedToken' }, add_bos_token: true, chat_template: showingTemplate };
  return { json, config };
}

const conversation = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'the thing?' }];

/** A fresh temporary folder, removed after `body`. */
function inFolder(body: (directory: string) => void): void {
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'fusedpo-tokenizer-config-'));
  try {
    body(directory);
  } finally {
    fs.rmSync(directory, { recursive: true, force: true });
  }
}

test('config: bos, eos and pad ids from tokenizer_config.json (a token given as a string or as an AddedToken object)', () => {
  const { json, config } = chatFixture();
  const tokenizer = BpeTokenizer.fromJSON(json, 'chat', config);
  assert.is(tokenizer.bosId, 270);
  assert.is(tokenizer.eosId, 269);
  assert.is(tokenizer.padId, 271);
  assert.is(tokenizer.addsBos, true);
  assert.is(tokenizer.vocabSize, 272);
  // encode never adds a special token: the trainer decides
  assert.equal(tokenizer.encode('the'), [258]);
  // no pad_token: padding is end-of-text (TRL's rule); no bos_token and no BOS-adding post-processor: none
  const plain = BpeTokenizer.fromJSON(json, 'plain', { eos_token: '<s>' });
  assert.is(plain.eosId, 270);
  assert.is(plain.padId, 270);
  assert.is(plain.bosId, null);
  assert.is(plain.addsBos, false);
  // a post-processor that puts <s> first: that is BOS, and encoding with special tokens adds it
  json.post_processor = {
    type: 'TemplateProcessing', single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }], special_tokens: { '<s>': { id: '<s>', ids: [270], tokens: ['<s>'] } },
  };
  const prepending = BpeTokenizer.fromJSON(json, 'prepending');
  assert.is(prepending.bosId, 270);
  assert.is(prepending.addsBos, true);
  assert.equal(prepending.encode('the'), [258]);
  // add_bos_token false wins over the post-processor, as transformers' rebuilt post-processor does
  assert.is(BpeTokenizer.fromJSON(json, 'not prepending', { add_bos_token: false }).addsBos, false);
  // the byte tokenizer: end-of-text pads, no BOS
  const byte = new ByteTokenizer();
  assert.equal([byte.bosId, byte.padId, byte.addsBos, byte.chatTemplate], [null, 256, false, null]);
});

test('config: the chat template renders messages with the special tokens, and encode reads them back as their ids', () => {
  const { json, config } = chatFixture();
  const tokenizer = BpeTokenizer.fromJSON(json, 'chat', config);
  assert.is(tokenizer.chatTemplate, showingTemplate);
  const prompt = tokenizer.applyChatTemplate(conversation, { addGenerationPrompt: true });
  assert.is(prompt, '<s><system>Be brief.<|endoftext|><user>the thing?<|endoftext|><assistant>');
  assert.is(tokenizer.applyChatTemplate(conversation), prompt.slice(0, -'<assistant>'.length));
  assert.is(tokenizer.applyChatTemplate(conversation, { addGenerationPrompt: false }), prompt.slice(0, -'<assistant>'.length));
  const ids = tokenizer.encode(prompt);
  assert.is(ids[0], 270);
  assert.is(ids.filter((id) => id === 269).length, 2);
  // extra fields of a message reach the template; the caller's messages are not changed
  const shown = BpeTokenizer.fromJSON(json, 'fields', { ...config, chat_template: '{{ messages[0].name }}' });
  assert.is(shown.applyChatTemplate([{ role: 'user', content: 'x', name: 'ann' } as never]), 'ann');
  // every special token of the config is a variable, as transformers gives them
  const variables = BpeTokenizer.fromJSON(json, 'variables', {
    ...config, unk_token: null, boi_token: '<start_of_image>', additional_special_tokens: ['<a>', { content: '<b>' }],
    extra_special_tokens: { image_token: '<image>' }, add_eos_token: false,
    chat_template: '{{ pad_token }}|{{ unk_token }}|{{ boi_token }}|{{ additional_special_tokens | join(",") }}|{{ image_token }}',
  });
  assert.is(variables.applyChatTemplate([]), '<pad>||<start_of_image>|<a>,<b>|<image>');
});

test('config: without a template of its own a tokenizer renders with the package\'s (renderChat)', () => {
  const own = '<|system|>\nBe brief.<|end|>\n<|user|>\nthe thing?<|end|>\n<|assistant|>\n';
  assert.is(tiny.chatTemplate, null);
  assert.is(tiny.applyChatTemplate(conversation, { addGenerationPrompt: true }), own);
  assert.is(new ByteTokenizer().applyChatTemplate(conversation, { addGenerationPrompt: true }), own);
  assert.is(new ByteTokenizer().applyChatTemplate(conversation), own.slice(0, -'<|assistant|>\n'.length));
});

test('config: chat_template as a list of named templates takes "default"; chat_template.jinja beside tokenizer.json wins', () => {
  const { json, config } = chatFixture();
  const listed = BpeTokenizer.fromJSON(json, 'listed', { ...config, chat_template: [{ name: 'tool_use', template: 'tools' }, { name: 'default', template: 'plain' }] });
  assert.is(listed.chatTemplate, 'plain');
  throwsMatching(() => BpeTokenizer.fromJSON(json, 'listed', { ...config, chat_template: [{ name: 'tool_use', template: 'tools' }] }), Error,
    /^listed \(its config\): chat_template is a list of named templates without one named "default" \(it has "tool_use"\)$/);
  inFolder((directory) => {
    fs.writeFileSync(path.join(directory, 'tokenizer.json'), JSON.stringify(json));
    fs.writeFileSync(path.join(directory, 'tokenizer_config.json'), JSON.stringify(config));
    fs.writeFileSync(path.join(directory, 'chat_template.jinja'), '{% for m in messages %}[{{ m.content }}]{% endfor %}');
    const loaded = loadTokenizer(directory) as BpeTokenizer;
    assert.is(loaded.applyChatTemplate(conversation), '[Be brief.][the thing?]');
    // a file named otherwise stands alone: no config, no template
    fs.copyFileSync(path.join(directory, 'tokenizer.json'), path.join(directory, 'other.json'));
    assert.is((loadTokenizer(path.join(directory, 'other.json')) as BpeTokenizer).chatTemplate, null);
    // files(): the template goes into tokenizer_config.json, and a folder of the files reloads the same
    const files = loaded.files();
    assert.is(JSON.parse(files['tokenizer_config.json']).chat_template, '{% for m in messages %}[{{ m.content }}]{% endfor %}');
    const copy = fs.mkdtempSync(path.join(directory, 'copy-'));
    for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(copy, name), text);
    const reloaded = loadTokenizer(copy) as BpeTokenizer;
    assert.is(reloaded.applyChatTemplate(conversation), loaded.applyChatTemplate(conversation));
    assert.equal([reloaded.bosId, reloaded.eosId, reloaded.padId, reloaded.addsBos], [270, 269, 271, true]);
    assert.equal(reloaded.files(), files);
  });
});

test('config: added_tokens_decoder adds the tokens tokenizer.json lacks', () => {
  const extra = BpeTokenizer.fromJSON(tinyJSON(), 'extra', { added_tokens_decoder: { 270: { content: '<extra>', special: true }, 269: { content: '<|endoftext|>', special: true } } });
  assert.is(extra.vocabSize, 271);
  assert.equal(extra.encode('a<extra>'), [97, 270]);
  throwsMatching(() => BpeTokenizer.fromJSON(tinyJSON(), 'extra', { added_tokens_decoder: { 97: { content: '<extra>' } } }), Error,
    /^extra \(its config\): the id 97 is "a" in the tokenizer\.json but "<extra>" in added_tokens_decoder$/);
});

test('config: a bad tokenizer_config.json or template is a TokenizerError naming the file and the fault', () => {
  const { json, config } = chatFixture();
  inFolder((directory) => {
    const configFile = path.join(directory, 'tokenizer_config.json');
    const templateFile = path.join(directory, 'chat_template.jinja');
    fs.writeFileSync(path.join(directory, 'tokenizer.json'), JSON.stringify(json));
    const refused = (change: () => void, pattern: RegExp, file: string): void => {
      change();
      try {
        loadTokenizer(directory);
      } catch (error) {
        assert.instance(error, TokenizerError);
        assert.is((error as TokenizerError).file, file);
        assert.match((error as Error).message, pattern);
        return;
      } finally {
        fs.rmSync(templateFile, { force: true });
      }
      assert.unreachable(`expected a TokenizerError matching ${pattern}`);
    };
    const escaped = configFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    refused(() => fs.writeFileSync(configFile, '{ not json'), new RegExp(`^${escaped}: not valid JSON \\(`), configFile);
    refused(() => fs.writeFileSync(configFile, '[]'), /: Expected an object \(the contents of a tokenizer_config\.json\) for the config but received an array/, configFile);
    refused(() => fs.writeFileSync(configFile, JSON.stringify({ ...config, eos_token: '<nope>' })), /tokenizer_config\.json: eos_token "<nope>" is not a token of .*tokenizer\.json$/, configFile);
    refused(() => fs.writeFileSync(configFile, JSON.stringify({ ...config, pad_token: 5 })), /tokenizer_config\.json: Expected a token \(a string, or an object with a string content\) for pad_token but received 5 of type number$/, configFile);
    refused(() => fs.writeFileSync(configFile, JSON.stringify({ ...config, bos_token: null })), /tokenizer_config\.json: add_bos_token is true but there is no bos_token$/, configFile);
    refused(() => fs.writeFileSync(configFile, JSON.stringify({ ...config, add_bos_token: 'yes' })), /tokenizer_config\.json: Expected a boolean for add_bos_token but received 'yes'/, configFile);
    refused(() => fs.writeFileSync(configFile, JSON.stringify({ ...config, chat_template: 7 })), /tokenizer_config\.json: Expected a template \(a string\) or a list of \{ name, template \} for chat_template but received 7/, configFile);
    refused(() => fs.writeFileSync(configFile, JSON.stringify({ ...config, chat_template: '{% if %}' })), /tokenizer_config\.json: the chat template does not compile: /, configFile);
    refused(() => {
      fs.writeFileSync(configFile, JSON.stringify(config));
      fs.writeFileSync(templateFile, '{% for m in messages %}');
    }, /chat_template\.jinja: the chat template does not compile: /, templateFile);
    // a template that fails on some messages fails when it renders them, naming its file
    fs.writeFileSync(configFile, JSON.stringify({ ...config, chat_template: "{% if messages[0].role != 'user' %}{{ raise_exception('roles must alternate') }}{% endif %}ok" }));
    const strict = loadTokenizer(directory);
    assert.is(strict.applyChatTemplate([{ role: 'user', content: 'a' }]), 'ok');
    try {
      strict.applyChatTemplate(conversation);
      assert.unreachable('the template raised');
    } catch (error) {
      assert.instance(error, TokenizerError);
      assert.is((error as TokenizerError).file, configFile);
      assert.match((error as Error).message, /tokenizer_config\.json: the chat template failed: roles must alternate$/);
    }
  });
});

test('applyChatTemplate: refuses what is not a list of messages, naming the argument', () => {
  const { json, config } = chatFixture();
  for (const tokenizer of [BpeTokenizer.fromJSON(json, 'chat', config), tiny, new ByteTokenizer()] as Tokenizer[]) {
    throwsMatching(() => tokenizer.applyChatTemplate('hi' as never), TypeError, /^Expected an array of messages \{ role, content \} for messages but received 'hi' of type string$/);
    throwsMatching(() => tokenizer.applyChatTemplate([null] as never), TypeError, /^Expected a message \{ role, content \} for messages\[0\] but received null$/);
    throwsMatching(() => tokenizer.applyChatTemplate([{ role: 'user' }] as never), TypeError, /^Expected a string for messages\[0\]\.content but received undefined$/);
    throwsMatching(() => tokenizer.applyChatTemplate([{ role: 3, content: 'a' }] as never), TypeError, /^Expected a string for messages\[0\]\.role but received 3 of type number$/);
    throwsMatching(() => tokenizer.applyChatTemplate([], { addGenerationPrompt: 1 } as never), TypeError, /^Expected a boolean for addGenerationPrompt but received 1 of type number$/);
    throwsMatching(() => tokenizer.applyChatTemplate([], { generationPrompt: true } as never), TypeError, /^Expected only addGenerationPrompt in options but received 'generationPrompt'/);
  }
});

test.run();
