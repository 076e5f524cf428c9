/**
 * Tokenizers: text to token ids and back, with no runtime dependency.
 *
 * Two kinds:
 * - `ByteTokenizer`: the UTF-8 bytes of the text are the ids, plus one end-of-text id. It needs no
 *   file, so a model can be trained from nothing but a corpus; `byteTokenizerJSON()` is the same
 *   tokenizer as a Hugging Face tokenizer.json, for the folder such a model is saved to.
 * - `BpeTokenizer`: the byte-level BPE of GPT-2's family, read from a Hugging Face `tokenizer.json`.
 *   It gives the ids that Hugging Face `tokenizers` gives for the same file (encoding without
 *   special tokens added; decoding with special tokens kept), so a model trained here reads the
 *   same ids as one trained there.
 *
 * A model folder records which tokenizer it was trained with (`describe()`, in config.json), and
 * `tokenizerFrom` rebuilds it from that record.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { FusedpoError } from '../errors';
import { describe as describeValue, expected } from '../validate';

/** A tokenizer file that cannot be used (read, parsed or understood): the message names the file and what is wrong. */
export class TokenizerError extends FusedpoError {
  override name = 'TokenizerError';
}

/** Text to ids and back. */
export interface Tokenizer {
  /** 'byte' or 'bpe'. */
  readonly kind: 'byte' | 'bpe';
  /** Number of ids: every id is in [0, vocabSize). */
  readonly vocabSize: number;
  /** The end-of-text id, appended to completions by the trainer. */
  readonly eosId: number;
  /**
   * Text to ids (no special token added). With `maxTokens`, exactly
   * `encode(text).slice(0, maxTokens)`, found without encoding the rest of the text.
   */
  encode(text: string, options?: EncodeOptions): number[];
  /** Ids to text (an unknown id is a RangeError naming it and its position). */
  decode(ids: ArrayLike<number>): string;
  /** What config.json records so that loadTokenizer can rebuild it: { kind: 'byte' } or { kind: 'bpe', file: 'tokenizer.json' }. */
  describe(): TokenizerDescription;
}

/** Options of `Tokenizer.encode`. */
export interface EncodeOptions {
  /**
   * At most this many ids, a non-negative safe integer: the first `maxTokens` ids of the whole
   * text, no more and no others. What is beyond them is not encoded, so a record far longer than
   * the model's context costs what the context holds, not what the record holds.
   */
  maxTokens?: number;
}

/** The record of a tokenizer in config.json. */
export type TokenizerDescription = { kind: 'byte' } | { kind: 'bpe'; file: string };

/** The text that stands for the end-of-text id when it is decoded (GPT-2's name for it). */
const END_OF_TEXT = '<|endoftext|>';

// ignoreBOM keeps a leading U+FEFF, which is text like any other here (the default drops it).
const utf8Decoder = new TextDecoder('utf-8', { ignoreBOM: true });

function checkText(text: unknown): string {
  if (typeof text !== 'string') throw new TypeError(expected('a string', 'text', text));
  return text;
}

/**
 * The `maxTokens` of an encode call's options, read once; Infinity when there are no options or
 * no `maxTokens`. A key other than `maxTokens` is refused, so that a misspelling is not ignored.
 */
function readMaxTokens(options: unknown): number {
  if (options === undefined) return Infinity;
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new TypeError(expected('an object such as { maxTokens: 1024 }', 'options', options));
  }
  for (const key of Object.keys(options)) {
    if (key !== 'maxTokens') throw new TypeError(`Expected only maxTokens in options but received '${key}', which encode does not take`);
  }
  const maxTokens = (options as { maxTokens?: unknown }).maxTokens;
  if (maxTokens === undefined) return Infinity;
  if (typeof maxTokens !== 'number') throw new TypeError(expected('a non-negative safe integer', 'maxTokens', maxTokens));
  if (!Number.isSafeInteger(maxTokens) || maxTokens < 0) {
    throw new RangeError(expected('a non-negative safe integer', 'maxTokens', maxTokens));
  }
  return maxTokens;
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

function isLowSurrogate(code: number): boolean {
  return code >= 0xdc00 && code <= 0xdfff;
}

/**
 * `end`, or `end + 1` where `end` would cut a surrogate pair: the end of a prefix of whole code
 * points. A cut pair would change the bytes, not only drop some: the lone high surrogate left
 * encodes to U+FFFD's EF BF BD, while the pair encodes to the 4 bytes of its code point.
 */
function codePointEnd(text: string, end: number): number {
  if (end > 0 && end < text.length && isHighSurrogate(text.charCodeAt(end - 1)) && isLowSurrogate(text.charCodeAt(end))) return end + 1;
  return end;
}

/**
 * The ids of a decode call, read once each. A non-number is a TypeError; a number that is not an
 * integer in [0, vocabSize) is a RangeError naming it and its position.
 */
function readIds(ids: unknown, vocabSize: number): number[] {
  if (typeof ids !== 'object' || ids === null || typeof (ids as { length?: unknown }).length !== 'number') {
    throw new TypeError(expected('an array of token ids', 'ids', ids));
  }
  const list = ids as ArrayLike<unknown>;
  const length = list.length;
  const copy: number[] = new Array(length);
  for (let i = 0; i < length; i++) {
    const id = list[i];
    if (typeof id !== 'number') throw new TypeError(expected('a token id (a number)', `ids[${i}]`, id));
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new RangeError(expected(`a token id, an integer in [0, ${vocabSize})`, `ids[${i}]`, id));
    }
    copy[i] = id;
  }
  return copy;
}

/** Bytes of the UTF-8 text are ids 0..255; id 256 is end-of-text. vocabSize 257. */
export class ByteTokenizer implements Tokenizer {
  readonly kind = 'byte' as const;
  readonly vocabSize = 257;
  readonly eosId = 256;

  /**
   * The UTF-8 bytes of `text` (a lone surrogate becomes the bytes of U+FFFD, as UTF-8 requires).
   * With `maxTokens`, the first `maxTokens` of them, from a prefix of the text: every UTF-16 code
   * unit gives at least one byte, so `maxTokens` code units (whole code points) give enough.
   */
  encode(text: string, options?: EncodeOptions): number[] {
    checkText(text);
    const maxTokens = readMaxTokens(options);
    const end = codePointEnd(text, Math.min(maxTokens, text.length));
    const bytes = Buffer.from(end === text.length ? text : text.slice(0, end), 'utf8');
    return Array.from(maxTokens < bytes.length ? bytes.subarray(0, maxTokens) : bytes);
  }

  /**
   * The UTF-8 text of the bytes; the end-of-text id reads as `<|endoftext|>` so that a decoded
   * sample shows where it ended. Bytes that are not valid UTF-8 read as U+FFFD.
   */
  decode(ids: ArrayLike<number>): string {
    const list = readIds(ids, this.vocabSize);
    let text = '';
    let bytes: number[] = [];
    for (const id of list) {
      if (id === this.eosId) {
        text += utf8Decoder.decode(Uint8Array.from(bytes)) + END_OF_TEXT;
        bytes = [];
      } else {
        bytes.push(id);
      }
    }
    return text + utf8Decoder.decode(Uint8Array.from(bytes));
  }

  describe(): TokenizerDescription {
    return { kind: 'byte' };
  }
}

/**
 * GPT-2's mapping of the 256 bytes to printable characters, so that BPE works on strings with no
 * whitespace or control characters in them: the printable bytes (33..126, 161..172, 174..255) map
 * to themselves, the others, in increasing order, to U+0100, U+0101, ... (space becomes 'Ġ',
 * newline 'Ċ').
 */
function gpt2ByteToChar(): string[] {
  const chars: string[] = new Array(256);
  let shifted = 0;
  for (let byte = 0; byte < 256; byte++) {
    const printable = (byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || (byte >= 174 && byte <= 255);
    chars[byte] = String.fromCharCode(printable ? byte : 256 + shifted++);
  }
  return chars;
}

const BYTE_TO_CHAR = gpt2ByteToChar();
const CHAR_TO_BYTE = new Map(BYTE_TO_CHAR.map((char, byte) => [char, byte]));
/** One past the largest UTF-16 code of GPT-2's byte characters (U+0143): the size of a table indexed by them. */
const BYTE_CHAR_CODE_LIMIT = Math.max(...BYTE_TO_CHAR.map((char) => char.charCodeAt(0))) + 1;

/**
 * The Hugging Face tokenizer.json that expresses the `ByteTokenizer`: a byte-level BPE whose ids
 * 0..255 are GPT-2's characters of the bytes 0..255 (id = the byte's value), with no merges, and
 * `<|endoftext|>` as the added special token 256; GPT-2's ByteLevel pre-tokenizer (no prefix
 * space) and decoder. A model trained with the byte tokenizer is saved with it, so that the
 * Hugging Face tools, and `loadPretrained` here, read the folder with the ids it was trained on.
 *
 * It gives the byte tokenizer's ids for every text but one kind: the literal text `<|endoftext|>`
 * becomes the end-of-text id 256, as in Hugging Face's GPT-2 tokenizer, where the byte tokenizer
 * gives its 13 bytes. Decoding is the same (256 reads as `<|endoftext|>` in both).
 */
export function byteTokenizerJSON(): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  BYTE_TO_CHAR.forEach((char, byte) => { vocab[char] = byte; });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [{ id: 256, content: END_OF_TEXT, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '',
      fuse_unk: false, byte_fallback: false, vocab, merges: [],
    },
  };
}

/**
 * GPT-2's pre-tokenizer: contractions, words, numbers, punctuation runs, whitespace (a single
 * space sticks to the word after it). It is GPT-2's pattern
 * `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+` with `\s` spelt
 * `\p{White_Space}`: that is what `\s` means to the regex engine of Hugging Face (Oniguruma),
 * while JavaScript's `\s` differs on two characters, taking U+FEFF and leaving U+0085.
 */
const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{White_Space}\p{L}\p{N}]+|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+/gu;

/**
 * What Hugging Face takes for a word character next to a `single_word` added token (Unicode `\w`:
 * letters, marks, decimal digits, connectors such as `_`) and for the whitespace that `lstrip` and
 * `rstrip` take in (Rust's `char::is_whitespace`).
 */
const WORD_CHARACTER = /[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]/u;
const WHITESPACE = /\p{White_Space}/u;

/**
 * The largest id the merge table can key exactly: a pair (a, b) is keyed `a * vocabSize + b`,
 * which must stay a safe integer.
 */
const LARGEST_VOCAB_SIZE = Math.floor(Math.sqrt(Number.MAX_SAFE_INTEGER));

/** Past this many distinct pre-tokens the cache is emptied, so a long corpus cannot grow it without bound. */
const CACHE_LIMIT = 100_000;

/**
 * Pre-tokens longer than this (in bytes) are not cached: they are rare (one run of letters, digits,
 * punctuation or whitespace), seldom repeat, and would hold their memory, megabytes for a
 * megabyte-long run, until the cache is emptied.
 */
const CACHED_PRE_TOKEN_LIMIT = 1024;

/**
 * `bpe`'s buffers for a pre-token of up to `capacity` symbols: `ids`, `previous` and `next`
 * [capacity], the symbols as a linked list, and the heap of candidate merges [3 * capacity].
 */
interface BpeBuffers {
  ids: Int32Array;
  previous: Int32Array;
  next: Int32Array;
  heap: MergeHeap;
}

function bpeBuffers(capacity: number): BpeBuffers {
  return {
    ids: new Int32Array(capacity),
    previous: new Int32Array(capacity),
    next: new Int32Array(capacity),
    heap: new MergeHeap(3 * capacity),
  };
}

/**
 * The largest buffers a tokenizer keeps between pre-tokens, in symbols (24 bytes each): larger
 * ones are made for one long pre-token and left to the garbage collector after it.
 */
const KEPT_BUFFERS_LIMIT = 1 << 16;

/**
 * The candidate merges of one pre-token, a binary min-heap keyed by (rank, position of the left
 * symbol): the lowest rank first, the leftmost of equal ranks. Two typed arrays of a fixed
 * capacity, `ranks` and `positions` [capacity]; the top is at index 0.
 */
class MergeHeap {
  readonly ranks: Uint32Array;
  readonly positions: Int32Array;
  size = 0;

  constructor(capacity: number) {
    this.ranks = new Uint32Array(capacity);
    this.positions = new Int32Array(capacity);
  }

  clear(): void {
    this.size = 0;
  }

  push(rank: number, position: number): void {
    const { ranks, positions } = this;
    let hole = this.size++;
    while (hole > 0) {
      const parent = (hole - 1) >> 1;
      if (ranks[parent] < rank || (ranks[parent] === rank && positions[parent] < position)) break;
      ranks[hole] = ranks[parent];
      positions[hole] = positions[parent];
      hole = parent;
    }
    ranks[hole] = rank;
    positions[hole] = position;
  }

  /** Removes the top (read it first from `ranks[0]`, `positions[0]`). */
  pop(): void {
    const { ranks, positions } = this;
    const size = --this.size;
    if (size === 0) return;
    const rank = ranks[size], position = positions[size];  // the last entry, sifted down from the top
    let hole = 0;
    for (;;) {
      let child = 2 * hole + 1;
      if (child >= size) break;
      const right = child + 1;
      if (right < size && (ranks[right] < ranks[child] || (ranks[right] === ranks[child] && positions[right] < positions[child]))) child = right;
      if (rank < ranks[child] || (rank === ranks[child] && position < positions[child])) break;
      ranks[hole] = ranks[child];
      positions[hole] = positions[child];
      hole = child;
    }
    ranks[hole] = rank;
    positions[hole] = position;
  }
}

interface Merge {
  /** Its line in `model.merges`: the lower merges first. */
  rank: number;
  /** The id of the token it makes. */
  id: number;
}

interface AddedToken {
  id: number;
  content: string;
  special: boolean;
  singleWord: boolean;
  lstrip: boolean;
  rstrip: boolean;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function quote(token: string): string {
  return JSON.stringify(token);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** What a tokenizer.json holds that the tokenizer uses, checked. */
interface BpeParts {
  vocab: Map<string, number>;
  merges: Map<number, Merge>;
  added: AddedToken[];
  vocabSize: number;
  eosId: number;
  addPrefixSpace: boolean;
  useRegex: boolean;
  ignoreMerges: boolean;
  unkId: number | undefined;
  fuseUnk: boolean;
}

/** A byte-level BPE tokenizer from a Hugging Face tokenizer.json (GPT-2's family). */
export class BpeTokenizer implements Tokenizer {
  readonly kind = 'bpe' as const;
  readonly vocabSize: number;
  readonly eosId: number;
  /** Where it was read from (a file path, or what `fromJSON` was told), for error messages. */
  readonly source: string;

  private readonly file: string | undefined;
  private readonly json: unknown;
  private readonly vocab: Map<string, number>;
  private readonly merges: Map<number, Merge>;
  private readonly addPrefixSpace: boolean;
  private readonly useRegex: boolean;
  private readonly ignoreMerges: boolean;
  private readonly unkId: number | undefined;
  private readonly fuseUnk: boolean;
  /** Matches the added tokens, longest first, so that of two starting at one place the longer wins (as Hugging Face's matcher does). */
  private readonly addedPattern: RegExp | null;
  private readonly addedByContent: Map<string, AddedToken>;
  /** Id to token text; an added token's content replaces the vocab's token of its id. */
  private readonly tokenOf: (string | undefined)[];
  /** Id to the bytes it decodes to, filled in as ids are first decoded. */
  private readonly bytesOf: (Uint8Array | undefined)[];
  /** GPT-2's byte character (its UTF-16 code) to its id in the vocab, -1 where the vocab has none. */
  private readonly byteCharIds: Int32Array;
  /** Byte-level pre-token to its ids. */
  private readonly cache = new Map<string, number[]>();
  /**
   * `bpe`'s buffers, kept from one pre-token to the next: making typed arrays for every short
   * word would cost more than merging it. Grown as longer pre-tokens come, up to KEPT_BUFFERS_LIMIT.
   */
  private buffers = bpeBuffers(64);

  private constructor(parts: BpeParts, json: unknown, source: string, file: string | undefined) {
    this.vocabSize = parts.vocabSize;
    this.eosId = parts.eosId;
    this.source = source;
    this.file = file;
    this.json = json;
    this.vocab = parts.vocab;
    this.merges = parts.merges;
    this.addPrefixSpace = parts.addPrefixSpace;
    this.useRegex = parts.useRegex;
    this.ignoreMerges = parts.ignoreMerges;
    this.unkId = parts.unkId;
    this.fuseUnk = parts.fuseUnk;
    this.addedByContent = new Map(parts.added.map((token) => [token.content, token]));
    const contents = [...this.addedByContent.keys()].sort((a, b) => b.length - a.length);
    this.addedPattern = contents.length ? new RegExp(contents.map(escapeRegExp).join('|'), 'gu') : null;
    this.tokenOf = new Array(parts.vocabSize);
    for (const [token, id] of parts.vocab) this.tokenOf[id] = token;
    for (const token of parts.added) this.tokenOf[token.id] = token.content;
    this.bytesOf = new Array(parts.vocabSize);
    this.byteCharIds = new Int32Array(BYTE_CHAR_CODE_LIMIT).fill(-1);
    for (const char of BYTE_TO_CHAR) this.byteCharIds[char.charCodeAt(0)] = parts.vocab.get(char) ?? -1;
  }

  /** Reads and parses a tokenizer.json; every error begins with the file (`<file>: ...`). */
  static fromFile(file: string): BpeTokenizer {
    if (typeof file !== 'string' || file === '') throw new TypeError(expected('a path to a tokenizer.json', 'file', file));
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (error) {
      throw new TokenizerError(`${file}: not readable (${(error as Error).message})`, { cause: error });
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new TokenizerError(`${file}: not valid JSON (${(error as Error).message})`, { cause: error });
    }
    return new BpeTokenizer(readBpeParts(json, file), json, file, path.resolve(file));
  }

  /** A tokenizer from the parsed contents of a tokenizer.json; `source` names it in error messages. */
  static fromJSON(json: unknown, source = 'the tokenizer JSON'): BpeTokenizer {
    return new BpeTokenizer(readBpeParts(json, source), json, source, undefined);
  }

  /**
   * The ids Hugging Face gives for `text` with `add_special_tokens=False`: the added tokens are
   * found first and each becomes its id; the text between them is split by GPT-2's pattern, each
   * piece mapped byte by byte to GPT-2's characters and merged by rank.
   *
   * With `maxTokens`, exactly `encode(text).slice(0, maxTokens)`: the pre-tokens are merged
   * independently of one another, so the ids of the first ones do not depend on what follows, and
   * encoding stops once `maxTokens` ids exist. The added tokens and GPT-2's pattern are searched
   * one match at a time, so the text past the stop is not split, mapped or merged, and no array of
   * it is made. Two things are read whole all the same: the pre-token that reaches past the stop
   * (a run of letters, digits, punctuation or whitespace, merged as a whole; with `use_regex`
   * false, all the text between two added tokens is one), and, when the tokenizer has added
   * tokens, the text up to the next one (a scan without allocation, tens of milliseconds for
   * 60 MB).
   */
  encode(text: string, options?: EncodeOptions): number[] {
    checkText(text);
    const maxTokens = readMaxTokens(options);
    const ids: number[] = [];
    if (maxTokens === 0) return ids;
    let start = 0;
    for (const match of this.addedTokens(text)) {
      if (match.start > start) this.encodeOrdinary(text.slice(start, match.start), ids, maxTokens);
      ids.push(match.id);
      start = match.end;
      if (ids.length >= maxTokens) break;
    }
    if (ids.length < maxTokens && start < text.length) this.encodeOrdinary(text.slice(start), ids, maxTokens);
    // The last pre-token (or the added token after it) may have gone past maxTokens.
    if (ids.length > maxTokens) ids.length = maxTokens;
    return ids;
  }

  /**
   * The text of the ids, as Hugging Face's ByteLevel decoder gives it with special tokens kept:
   * each token's characters map back to bytes, and the bytes are read as UTF-8 (invalid sequences
   * read as U+FFFD). An id inside [0, vocabSize) that no token has is a RangeError too.
   */
  decode(ids: ArrayLike<number>): string {
    const list = readIds(ids, this.vocabSize);
    const parts: Uint8Array[] = [];
    let total = 0;
    for (let i = 0; i < list.length; i++) {
      const bytes = this.bytesOfId(list[i], i);
      parts.push(bytes);
      total += bytes.length;
    }
    const joined = new Uint8Array(total);
    let offset = 0;
    for (const bytes of parts) {
      joined.set(bytes, offset);
      offset += bytes.length;
    }
    return utf8Decoder.decode(joined);
  }

  /**
   * `{ kind: 'bpe', file }`, where `file` is the tokenizer.json it was read from (so that whoever
   * saves a model folder can copy it there), or 'tokenizer.json' for one built by `fromJSON`
   * (whose JSON `toJSON` gives, to be written there).
   */
  describe(): TokenizerDescription {
    return { kind: 'bpe', file: this.file ?? 'tokenizer.json' };
  }

  /** The tokenizer.json contents it was built from: `JSON.stringify(tokenizer)` writes a file that rebuilds it. */
  toJSON(): unknown {
    return this.json;
  }

  /**
   * The added tokens in `text`, leftmost first, longest first among those starting at one place,
   * with Hugging Face's rules: a `single_word` token counts only with no word character right
   * before or after it, `lstrip` and `rstrip` take in the whitespace before and after it. Found one
   * at a time as they are asked for (`matchAll` is lazy), so a caller that stops early has not
   * searched the rest of the text.
   */
  private *addedTokens(text: string): Generator<{ id: number; start: number; end: number }> {
    if (!this.addedPattern) return;
    let previousEnd = 0;
    for (const match of text.matchAll(this.addedPattern)) {
      const token = this.addedByContent.get(match[0])!;
      let start = match.index!;
      let end = start + match[0].length;
      if (start < previousEnd) continue;  // inside the whitespace the previous token's rstrip took
      if (token.singleWord) {
        const before = start > 0 && WORD_CHARACTER.test(lastChar(text, start));
        const after = end < text.length && WORD_CHARACTER.test(String.fromCodePoint(text.codePointAt(end)!));
        if (before || after) continue;
      }
      if (token.lstrip) {
        while (start > previousEnd && WHITESPACE.test(lastChar(text, start))) start -= lastChar(text, start).length;
      }
      if (token.rstrip) {
        while (end < text.length) {
          const next = String.fromCodePoint(text.codePointAt(end)!);
          if (!WHITESPACE.test(next)) break;
          end += next.length;
        }
      }
      yield { id: token.id, start, end };
      previousEnd = end;
    }
  }

  /**
   * Appends the ids of text that holds no added token, pre-token by pre-token, until `ids` holds
   * at least `maxTokens` (the caller cuts what is past it). GPT-2's pattern is run one match at a
   * time from where the last one ended, so the text past the stop is never read.
   */
  private encodeOrdinary(text: string, ids: number[], maxTokens: number): void {
    // Hugging Face's ByteLevel adds the space to each piece between added tokens, not once per text.
    const addSpace = this.addPrefixSpace && !text.startsWith(' ');
    if (!this.useRegex) {
      this.encodePreToken(addSpace ? ' ' + text : text, ids);
      return;
    }
    let start = 0;
    if (addSpace) {
      const first = firstPreTokenAfterSpace(text);
      this.encodePreToken(first, ids);
      start = first.length - 1;  // where it ends in `text`, which lacks the space
    }
    const split = new RegExp(GPT2_SPLIT);  // a lastIndex of its own
    split.lastIndex = start;
    while (start < text.length && ids.length < maxTokens) {
      const match = split.exec(text);
      if (match === null) break;
      // The pattern covers every character; a gap would be kept as a piece of its own, as Hugging Face's Isolated split keeps it.
      if (match.index > start) this.encodePreToken(text.slice(start, match.index), ids);
      this.encodePreToken(match[0], ids);
      start = match.index + match[0].length;
    }
    if (start < text.length && ids.length < maxTokens) this.encodePreToken(text.slice(start), ids);
  }

  private encodePreToken(preToken: string, ids: number[]): void {
    let symbols = '';
    for (const byte of Buffer.from(preToken, 'utf8')) symbols += BYTE_TO_CHAR[byte];
    let merged = this.cache.get(symbols);
    if (merged === undefined) {
      merged = this.bpe(symbols);
      if (symbols.length <= CACHED_PRE_TOKEN_LIMIT) {
        if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
        this.cache.set(symbols, merged);
      }
    }
    for (const id of merged) ids.push(id);
  }

  /**
   * Hugging Face's BPE on one pre-token: start from its characters and merge, again and again, the
   * adjacent pair of the lowest rank (the leftmost of equals), until no pair has a merge. Merging
   * one pair at a time, not every occurrence of a rank at once, is what Hugging Face does; the two
   * differ only for merges listed out of the order BPE training makes them.
   *
   * Rescanning the word for its lowest pair after every merge is quadratic in its length (a
   * megabyte of one letter is half a million merges, each after a scan of up to a megabyte). This
   * makes the same merges in the same order in O(n log n) for n symbols; the test file keeps the
   * rescanning loop as the spec it is checked against. Its buffers (`this.buffers`, or larger ones
   * for a long pre-token), for n symbols:
   *   ids, previous, next  Int32Array [>= n]: the symbols as a doubly linked list in text order (-1
   *                        past either end). A merge keeps the left symbol and kills the right one
   *                        (its id becomes -1), so position i names, for its whole life, the
   *                        symbol that starts at the i-th character, and positions keep text order.
   *   heap [>= 3n]         the candidate merges by (rank, position of the left symbol): n - 1 pairs
   *                        to start with, and each of at most n - 1 merges makes at most 2 new pairs.
   * A merge changes the pairs on both sides of it. Their old entries are left in the heap and
   * dropped when they come to the top (lazy invalidation): an entry is stale unless its left
   * symbol is alive, has a right neighbour, and the two make the merge of the entry's rank (a rank
   * is the line of one pair in the merges, so the pair is the one the entry was made for).
   */
  private bpe(symbols: string): number[] {
    if (this.ignoreMerges) {
      const whole = this.vocab.get(symbols);
      if (whole !== undefined) return [whole];
    }
    let buffers = this.buffers;
    if (buffers.ids.length < symbols.length) {
      buffers = bpeBuffers(Math.max(symbols.length, 2 * buffers.ids.length));
      if (buffers.ids.length <= KEPT_BUFFERS_LIMIT) this.buffers = buffers;
    }
    const { ids, previous, next, heap } = buffers;
    let count = 0;
    let previousUnknown = false;
    for (let k = 0; k < symbols.length; k++) {
      const id = this.byteCharIds[symbols.charCodeAt(k)];
      if (id >= 0) {
        ids[count++] = id;
        previousUnknown = false;
      } else if (this.unkId !== undefined) {
        if (!(this.fuseUnk && previousUnknown)) ids[count++] = this.unkId;
        previousUnknown = true;
      } else {
        const char = symbols[k];
        throw new TokenizerError(
          `${this.source}: model.vocab has no token for the byte 0x${CHAR_TO_BYTE.get(char)!.toString(16).padStart(2, '0')} ` +
          `(GPT-2's character ${quote(char)}) and model.unk_token is not set`,
        );
      }
    }
    if (count < 2) return Array.from(ids.subarray(0, count));

    const vocabSize = this.vocabSize;
    const merges = this.merges;
    for (let i = 0; i < count; i++) {
      previous[i] = i - 1;
      next[i] = i + 1 < count ? i + 1 : -1;
    }
    heap.clear();
    for (let i = 0; i + 1 < count; i++) {
      const merge = merges.get(ids[i] * vocabSize + ids[i + 1]);
      if (merge !== undefined) heap.push(merge.rank, i);
    }
    while (heap.size > 0) {
      const rank = heap.ranks[0];
      const left = heap.positions[0];
      heap.pop();
      const right = next[left];
      if (ids[left] < 0 || right < 0) continue;
      const merge = merges.get(ids[left] * vocabSize + ids[right]);
      if (merge === undefined || merge.rank !== rank) continue;
      ids[left] = merge.id;
      ids[right] = -1;
      const after = next[right];
      next[left] = after;
      if (after >= 0) previous[after] = left;
      const before = previous[left];
      if (before >= 0) {
        const merge = merges.get(ids[before] * vocabSize + ids[left]);
        if (merge !== undefined) heap.push(merge.rank, before);
      }
      if (after >= 0) {
        const merge = merges.get(ids[left] * vocabSize + ids[after]);
        if (merge !== undefined) heap.push(merge.rank, left);
      }
    }
    // The first symbol is never merged away: it has no left neighbour.
    const merged: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) merged.push(ids[i]);
    return merged;
  }

  /**
   * The bytes an id decodes to, as Hugging Face's ByteLevel decoder finds them: GPT-2's characters
   * mapped back to bytes, or, for a token with any other character (an added token such as
   * `<mask> x`), the UTF-8 bytes of its text as it is.
   */
  private bytesOfId(id: number, position: number): Uint8Array {
    const cached = this.bytesOf[id];
    if (cached) return cached;
    const token = this.tokenOf[id];
    if (token === undefined) {
      throw new RangeError(`${expected('a token id', `ids[${position}]`, id)}, which no token of ${this.source} has`);
    }
    const bytes: number[] = [];
    let mapped = true;
    for (const char of token) {
      const byte = CHAR_TO_BYTE.get(char);
      if (byte === undefined) {
        mapped = false;
        break;
      }
      bytes.push(byte);
    }
    const result = mapped ? Uint8Array.from(bytes) : new Uint8Array(Buffer.from(token, 'utf8'));
    this.bytesOf[id] = result;
    return result;
  }
}

/**
 * The first pre-token of `' ' + text` (for a `text` that does not start with a space), found
 * without building `' ' + text`: the pattern would read the joined string, and V8 copies all of
 * a joined string the first time a pattern reads it, megabytes for a long text.
 *
 * The pattern is run on a space and a prefix of whole code points of the text, twice as long
 * each time, until the match ends at least 4 code units (2 code points) before the prefix does,
 * or the prefix is all of the text. At the start of `' ' + text` the pattern reads at most 2 code
 * points past the match it returns: a greedy run reads the one that ends it, `\s+(?!\S)` reads
 * one past the run and may then give back the run's last character, and the alternatives that
 * fail there read the space and one code point at most. So such a match is the one the whole
 * string gives. The caller then goes on in `text` itself: the pattern never looks behind, so it
 * matches the same there, one code unit to the left.
 */
function firstPreTokenAfterSpace(text: string): string {
  const atStart = new RegExp(GPT2_SPLIT.source, 'uy');
  for (let size = 64; ; size *= 2) {
    const end = codePointEnd(text, Math.min(size, text.length));
    const head = ' ' + text.slice(0, end);
    atStart.lastIndex = 0;
    // The pattern matches at every character (its last alternative, \s+, takes the space).
    const match = atStart.exec(head)!;
    if (end === text.length || match[0].length + 4 <= head.length) return match[0];
  }
}

/** The last character (code point) of `text` before `end`. */
function lastChar(text: string, end: number): string {
  const low = text.charCodeAt(end - 1);
  if (end >= 2 && low >= 0xdc00 && low <= 0xdfff) {
    const high = text.charCodeAt(end - 2);
    if (high >= 0xd800 && high <= 0xdbff) return text.slice(end - 2, end);
  }
  return text.slice(end - 1, end);
}

/** The types of the pre-tokenizers a `pre_tokenizer` entry holds, a Sequence's flattened. */
function preTokenizerTypes(value: Record<string, unknown>, source: string, found: Record<string, unknown>[]): void {
  if (value.type === 'Sequence') {
    if (!Array.isArray(value.pretokenizers)) {
      throw new TokenizerError(`${source}: ${expected('an array', 'pre_tokenizer.pretokenizers of the Sequence', value.pretokenizers)}`);
    }
    for (const inner of value.pretokenizers) {
      if (!isObject(inner)) throw new TokenizerError(`${source}: ${expected('an object', 'a pre-tokenizer of the Sequence', inner)}`);
      preTokenizerTypes(inner, source, found);
    }
  } else {
    found.push(value);
  }
}

function optionalBoolean(owner: Record<string, unknown>, key: string, fallback: boolean, name: string, source: string): boolean {
  const value = owner[key];
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'boolean') throw new TokenizerError(`${source}: ${expected('a boolean', name, value)}`);
  return value;
}

function checkId(value: unknown, name: string, source: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new TokenizerError(`${source}: ${expected('an id, a non-negative integer', name, value)}`);
  }
  return value;
}

/** Checks a tokenizer.json and takes from it what the tokenizer uses; every error names `source`. */
function readBpeParts(json: unknown, source: string): BpeParts {
  if (!isObject(json)) throw new TokenizerError(`${source}: ${expected('an object (the contents of a tokenizer.json)', 'the tokenizer', json)}`);
  const model = json.model;
  if (!isObject(model)) throw new TokenizerError(`${source}: ${expected('an object', 'model', model)}`);
  if (model.type !== 'BPE') {
    throw new TokenizerError(`${source}: the model is of type ${typeof model.type === 'string' ? model.type : describeValue(model.type)}; only BPE is supported`);
  }

  // The pre-tokenizer decides how text is cut before BPE: only GPT-2's byte-level one is written here.
  const preTokenizer = json.pre_tokenizer;
  if (!isObject(preTokenizer)) {
    throw new TokenizerError(`${source}: ${expected('a ByteLevel pre-tokenizer', 'pre_tokenizer', preTokenizer)}; only ByteLevel is supported`);
  }
  const preTokenizers: Record<string, unknown>[] = [];
  preTokenizerTypes(preTokenizer, source, preTokenizers);
  if (preTokenizers.length !== 1 || preTokenizers[0].type !== 'ByteLevel') {
    const found = preTokenizers.map((p) => (typeof p.type === 'string' ? p.type : describeValue(p.type))).join(', ') || 'none';
    throw new TokenizerError(`${source}: the pre-tokenizers are ${found}; only a single ByteLevel pre-tokenizer is supported yet`);
  }
  const byteLevel = preTokenizers[0];
  const addPrefixSpace = optionalBoolean(byteLevel, 'add_prefix_space', false, 'pre_tokenizer add_prefix_space', source);
  const useRegex = optionalBoolean(byteLevel, 'use_regex', true, 'pre_tokenizer use_regex', source);

  // A normalizer would change the text before the split; GPT-2's family has none.
  if (json.normalizer !== undefined && json.normalizer !== null) {
    const type = isObject(json.normalizer) && typeof json.normalizer.type === 'string' ? json.normalizer.type : describeValue(json.normalizer);
    throw new TokenizerError(`${source}: the normalizer is ${type}; only files without a normalizer are supported yet`);
  }
  const decoder = json.decoder;
  if (decoder !== undefined && decoder !== null && !(isObject(decoder) && decoder.type === 'ByteLevel')) {
    const type = isObject(decoder) && typeof decoder.type === 'string' ? decoder.type : describeValue(decoder);
    throw new TokenizerError(`${source}: the decoder is ${type}; only ByteLevel is supported`);
  }

  // Options of Hugging Face's BPE model that GPT-2's family leaves unset and this code does not write.
  if (model.dropout !== undefined && model.dropout !== null && model.dropout !== 0) {
    throw new TokenizerError(`${source}: model.dropout is ${describeValue(model.dropout)}; BPE dropout (random merges) is not supported`);
  }
  for (const key of ['continuing_subword_prefix', 'end_of_word_suffix']) {
    if (model[key] !== undefined && model[key] !== null && model[key] !== '') {
      throw new TokenizerError(`${source}: model.${key} is ${describeValue(model[key])}; it is not supported with a byte-level BPE`);
    }
  }
  if (model.byte_fallback === true) throw new TokenizerError(`${source}: model.byte_fallback is true; it is not supported with a byte-level BPE`);
  const ignoreMerges = optionalBoolean(model, 'ignore_merges', false, 'model.ignore_merges', source);
  const fuseUnk = optionalBoolean(model, 'fuse_unk', false, 'model.fuse_unk', source);

  if (!isObject(model.vocab)) throw new TokenizerError(`${source}: ${expected('an object of token to id', 'model.vocab', model.vocab)}`);
  const vocab = new Map<string, number>();
  const tokenOfId = new Map<number, string>();
  let largest = -1;
  for (const [token, value] of Object.entries(model.vocab)) {
    const id = checkId(value, `the id of ${quote(token)} in model.vocab`, source);
    const other = tokenOfId.get(id);
    if (other !== undefined) throw new TokenizerError(`${source}: model.vocab gives the id ${id} to both ${quote(other)} and ${quote(token)}`);
    tokenOfId.set(id, token);
    vocab.set(token, id);
    if (id > largest) largest = id;
  }

  const addedList = json.added_tokens ?? [];
  if (!Array.isArray(addedList)) throw new TokenizerError(`${source}: ${expected('an array', 'added_tokens', addedList)}`);
  const added: AddedToken[] = [];
  const addedIds = new Map<number, string>();
  addedList.forEach((entry: unknown, k: number) => {
    if (!isObject(entry)) throw new TokenizerError(`${source}: ${expected('an object', `added_tokens[${k}]`, entry)}`);
    const id = checkId(entry.id, `added_tokens[${k}].id`, source);
    if (typeof entry.content !== 'string' || entry.content === '') {
      throw new TokenizerError(`${source}: ${expected('a non-empty string', `added_tokens[${k}].content`, entry.content)}`);
    }
    const content = entry.content;
    const other = addedIds.get(id);
    if (other !== undefined) throw new TokenizerError(`${source}: added_tokens gives the id ${id} to both ${quote(other)} and ${quote(content)}`);
    const inVocab = tokenOfId.get(id);
    if (inVocab !== undefined && inVocab !== content) {
      throw new TokenizerError(`${source}: the id ${id} is ${quote(inVocab)} in model.vocab but ${quote(content)} in added_tokens`);
    }
    addedIds.set(id, content);
    added.push({
      id,
      content,
      special: optionalBoolean(entry, 'special', false, `added_tokens[${k}].special`, source),
      singleWord: optionalBoolean(entry, 'single_word', false, `added_tokens[${k}].single_word`, source),
      lstrip: optionalBoolean(entry, 'lstrip', false, `added_tokens[${k}].lstrip`, source),
      rstrip: optionalBoolean(entry, 'rstrip', false, `added_tokens[${k}].rstrip`, source),
    });
    if (id > largest) largest = id;
  });
  const vocabSize = largest + 1;
  if (vocabSize === 0) throw new TokenizerError(`${source}: model.vocab is empty`);
  if (vocabSize > LARGEST_VOCAB_SIZE) throw new TokenizerError(`${source}: the largest id, ${largest}, is too large (ids must be below ${LARGEST_VOCAB_SIZE})`);

  if (!Array.isArray(model.merges)) throw new TokenizerError(`${source}: ${expected('an array', 'model.merges', model.merges)}`);
  const merges = new Map<number, Merge>();
  model.merges.forEach((entry: unknown, rank: number) => {
    let pair: [string, string] | undefined;
    if (typeof entry === 'string') {
      const parts = entry.split(' ');
      if (parts.length === 2) pair = [parts[0], parts[1]];
    } else if (Array.isArray(entry) && entry.length === 2 && typeof entry[0] === 'string' && typeof entry[1] === 'string') {
      pair = [entry[0], entry[1]];
    }
    if (!pair) {
      throw new TokenizerError(`${source}: ${expected(`a merge, "a b" or ["a", "b"]`, `model.merges[${rank}]`, entry)}`);
    }
    const [left, right] = pair;
    const shown = `model.merges[${rank}] (${quote(left)} + ${quote(right)})`;
    const leftId = vocab.get(left);
    if (leftId === undefined) throw new TokenizerError(`${source}: ${shown} names ${quote(left)}, which is not in model.vocab`);
    const rightId = vocab.get(right);
    if (rightId === undefined) throw new TokenizerError(`${source}: ${shown} names ${quote(right)}, which is not in model.vocab`);
    const id = vocab.get(left + right);
    if (id === undefined) throw new TokenizerError(`${source}: ${shown} makes ${quote(left + right)}, which is not in model.vocab`);
    // A pair listed twice takes its later rank, as Hugging Face's table of merges does.
    merges.set(leftId * vocabSize + rightId, { rank, id });
  });

  let unkId: number | undefined;
  if (model.unk_token !== undefined && model.unk_token !== null) {
    if (typeof model.unk_token !== 'string') throw new TokenizerError(`${source}: ${expected('a string', 'model.unk_token', model.unk_token)}`);
    unkId = vocab.get(model.unk_token);
    if (unkId === undefined) throw new TokenizerError(`${source}: model.unk_token ${quote(model.unk_token)} is not in model.vocab`);
  }

  const eos = added.find((token) => token.content === END_OF_TEXT)?.id
    ?? vocab.get(END_OF_TEXT)
    ?? added.find((token) => token.special)?.id;
  if (eos === undefined) {
    throw new TokenizerError(`${source}: the tokenizer has no end-of-text token (no ${END_OF_TEXT} and no added token with special: true)`);
  }
  return { vocab, merges, added, vocabSize, eosId: eos, addPrefixSpace, useRegex, ignoreMerges, unkId, fuseUnk };
}

/** The tokenizer a description names; `directory` resolves a bpe description's file. */
export function tokenizerFrom(description: TokenizerDescription, directory: string): Tokenizer {
  const value = description as unknown;
  if (!isObject(value) || (value.kind !== 'byte' && value.kind !== 'bpe')) {
    throw new TypeError(expected(`{ kind: 'byte' } or { kind: 'bpe', file }`, 'the tokenizer description', value));
  }
  if (value.kind === 'byte') return new ByteTokenizer();
  if (typeof value.file !== 'string' || value.file === '') {
    throw new TypeError(expected('a file name', 'the file of a bpe tokenizer description', value.file));
  }
  if (typeof directory !== 'string') throw new TypeError(expected('a directory path', 'directory', directory));
  return BpeTokenizer.fromFile(path.resolve(directory, value.file));
}

/** 'byte', or a path to a tokenizer.json (or a directory holding one). */
export function loadTokenizer(spec: string): Tokenizer {
  if (typeof spec !== 'string' || spec === '') {
    throw new TypeError(expected(`'byte' or a path to a tokenizer.json`, 'the tokenizer', spec));
  }
  if (spec === 'byte') return new ByteTokenizer();
  let stats: fs.Stats;
  try {
    stats = fs.statSync(spec);
  } catch {
    throw new TokenizerError(`Expected 'byte' or a path to a tokenizer.json (or a directory holding one) for the tokenizer but found no file at ${spec}`);
  }
  if (stats.isDirectory()) {
    const file = path.join(spec, 'tokenizer.json');
    if (!fs.existsSync(file)) throw new TokenizerError(`The directory ${spec} holds no tokenizer.json`);
    return BpeTokenizer.fromFile(file);
  }
  return BpeTokenizer.fromFile(spec);
}
