/**
 * Tokenizers: text to token ids and back, and a conversation to the text a model reads.
 *
 * Two kinds:
 * - `ByteTokenizer`: the UTF-8 bytes of the text are the ids, plus one end-of-text id. It needs no
 *   file, so a model can be trained from nothing but a corpus; `byteTokenizerJSON()` is the same
 *   tokenizer as a Hugging Face tokenizer.json, for the folder such a model is saved to.
 * - `BpeTokenizer`: a Hugging Face tokenizer.json of a BPE model (GPT-2, Llama 3, Qwen, Gemma,
 *   Mistral, ...) with the tokenizer_config.json beside it (special tokens, chat template). Its ids
 *   are those of Hugging Face's own JavaScript tokenizer, @huggingface/tokenizers (what
 *   transformers.js and node-llama-cpp use), and its chat template is rendered by Hugging Face's
 *   @huggingface/jinja (lib/data/chat_template.ts): a model trained here reads, at inference
 *   there, the ids it was trained on. This file checks the files before they are handed over, so
 *   that a bad file is a TokenizerError naming it and what is wrong, never wrong ids, and adds what
 *   the trainer needs: ids with no special token added, an encode bounded by `maxTokens`, and the
 *   BOS, EOS and padding ids.
 *
 * A model folder records which tokenizer it was trained with (`describe()`, in config.json), and
 * `tokenizerFrom` rebuilds it from that record; `files()` is what a folder holds of it.
 */
import type * as HfTokenizers from '@huggingface/tokenizers' with { 'resolution-mode': 'import' };
import * as fs from 'node:fs';
import * as path from 'node:path';

import { TokenizerError } from '../errors';
import { describe as describeValue, expected } from '../validate';
import {
  ChatTemplate, configChatTemplate, readTemplateMessages, readTemplateOptions, specialTokenText, specialTokenVariables,
  type ChatTemplateOptions, type TemplateMessage,
} from './chat_template';
import { renderChat, type ChatMessage } from './dataset';

// The package ships a CommonJS build (its "require" export) but declares its types as an ES
// module, which TypeScript's node16 resolution will not `import` from CommonJS: the types are
// imported as such and the module is required.
const { Tokenizer: HfTokenizer } = require('@huggingface/tokenizers') as typeof HfTokenizers;

export { TokenizerError };
export type { ChatTemplateOptions, TemplateMessage };

/** Text to ids and back. */
export interface Tokenizer {
  /** 'byte' or 'bpe'. */
  readonly kind: 'byte' | 'bpe';
  /** Number of ids: every id is in [0, vocabSize). */
  readonly vocabSize: number;
  /** The end-of-text id, appended to completions by the trainer. */
  readonly eosId: number;
  /** The beginning-of-sequence id, or null when the tokenizer has none. */
  readonly bosId: number | null;
  /** The id that pads a batch's rows: the pad token's, else the end-of-text id (TRL's rule). */
  readonly padId: number;
  /**
   * Whether encoding with special tokens puts `bosId` first (tokenizer_config.json's
   * `add_bos_token`, else what the tokenizer.json's post-processor does). `encode` never adds it:
   * the trainer puts it before a prompt that no chat template rendered.
   */
  readonly addsBos: boolean;
  /** The model's chat template (Jinja text), or null: conversations then use the package's own (`renderChat`). */
  readonly chatTemplate: string | null;
  /**
   * Text to ids (no special token added). With `maxTokens`, exactly
   * `encode(text).slice(0, maxTokens)`, found without encoding the rest of the text.
   */
  encode(text: string, options?: EncodeOptions): number[];
  /** Ids to text, special tokens kept (an unknown id is a RangeError naming it and its position). */
  decode(ids: ArrayLike<number>): string;
  /**
   * Messages rendered to the text the model reads: with the model's chat template, else the
   * package's own (`renderChat`). A template's failure is a TokenizerError naming its file.
   */
  applyChatTemplate(messages: readonly TemplateMessage[], options?: ChatTemplateOptions): string;
  /** What config.json records so that tokenizerFrom can rebuild it: { kind: 'byte' } or { kind: 'bpe', file: 'tokenizer.json' }. */
  describe(): TokenizerDescription;
  /**
   * The files of a Hugging Face folder that rebuild it, name to contents: tokenizer.json and
   * tokenizer_config.json (its special tokens and chat template).
   */
  files(): Record<string, string>;
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

/** Messages rendered with the package's own template (`renderChat`), for a tokenizer without one. */
function ownTemplate(messages: unknown, options: unknown): string {
  const read = readTemplateMessages(messages);
  return renderChat(read as unknown as ChatMessage[], { generationPrompt: readTemplateOptions(options) });
}

/** tokenizer_config.json's text for a config object: what files() writes and a folder reloads. */
function configText(config: Record<string, unknown>): string {
  return `${JSON.stringify(config, null, 2)}\n`;
}

/** Bytes of the UTF-8 text are ids 0..255; id 256 is end-of-text. vocabSize 257. */
export class ByteTokenizer implements Tokenizer {
  readonly kind = 'byte' as const;
  readonly vocabSize = 257;
  readonly eosId = 256;
  readonly bosId = null;
  readonly padId = 256;
  readonly addsBos = false;
  readonly chatTemplate = null;

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

  /** The package's own template (`renderChat`): the byte tokenizer has none of its own. */
  applyChatTemplate(messages: readonly TemplateMessage[], options?: ChatTemplateOptions): string {
    return ownTemplate(messages, options);
  }

  describe(): TokenizerDescription {
    return { kind: 'byte' };
  }

  /** `byteTokenizerJSON()`, and a tokenizer_config.json naming its end-of-text token. */
  files(): Record<string, string> {
    return {
      'tokenizer.json': JSON.stringify(byteTokenizerJSON()),
      'tokenizer_config.json': configText({ tokenizer_class: 'PreTrainedTokenizerFast', eos_token: END_OF_TEXT }),
    };
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

// ---------------------------------------------------------------------------------------------
// Checking a tokenizer.json before it is handed to @huggingface/tokenizers
//
// That package trusts its input: a merge naming a token the vocab lacks, or a character no token
// covers, is dropped from the ids without a word. So what would make it give wrong ids is
// refused here, naming the file and the entry.

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function quote(token: string): string {
  return JSON.stringify(token);
}

function optionalBoolean(owner: Record<string, unknown>, key: string, name: string, source: string): boolean | null {
  const value = owner[key];
  if (value === undefined || value === null) return null;
  if (typeof value !== 'boolean') throw new TokenizerError(`${source}: ${expected('a boolean', name, value)}`, { file: source });
  return value;
}

function checkId(value: unknown, name: string, source: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new TokenizerError(`${source}: ${expected('an id, a non-negative integer', name, value)}`, { file: source });
  }
  return value;
}

/** An entry of `added_tokens` (tokenizer.json) or of `added_tokens_decoder` (tokenizer_config.json). */
interface AddedToken {
  id: number;
  content: string;
  special: boolean;
}

/** What the checks take from a tokenizer.json. */
interface CheckedTokenizer {
  /** Token text to id: the vocab's, then the added tokens' (an added token's text is matched whole). */
  idOf: Map<string, number>;
  added: AddedToken[];
  /** One past the largest id of the vocab and the added tokens. */
  vocabSize: number;
}

/** Every component of a `pre_tokenizer` or `normalizer` entry, a Sequence's flattened. */
function components(value: unknown, list: string, source: string, found: Record<string, unknown>[] = []): Record<string, unknown>[] {
  if (value === undefined || value === null) return found;
  if (!isObject(value)) throw new TokenizerError(`${source}: ${expected('an object', `a component of ${list}`, value)}`, { file: source });
  if (value.type === 'Sequence') {
    const inner = value.pretokenizers ?? value.normalizers;
    if (!Array.isArray(inner)) throw new TokenizerError(`${source}: ${expected('an array', `the Sequence's list in ${list}`, inner)}`, { file: source });
    for (const item of inner) components(item, list, source, found);
  } else {
    found.push(value);
  }
  return found;
}

/** A Split pre-tokenizer's pattern when it is a plain string (`{ "String": " " }`), else null. */
function stringPattern(pattern: unknown): string | null {
  return isObject(pattern) && typeof pattern.String === 'string' ? pattern.String : null;
}

/**
 * The pre-tokenizers: @huggingface/tokenizers splits every Split pre-tokenizer as `Isolated` or
 * `Removed` does. A `MergedWithPrevious`, `MergedWithNext` or `Contiguous` split would give other
 * pieces than Hugging Face's Rust tokenizers, so it is refused, unless it can never match: a
 * string pattern that a Replace normalizer removes from every text first (Gemma's: the
 * normalizer makes each ' ' a '▁', and then splits on ' ').
 */
function checkPreTokenizers(json: Record<string, unknown>, source: string): Record<string, unknown>[] {
  const preTokenizers = components(json.pre_tokenizer, 'pre_tokenizer', source);
  const normalizers = components(json.normalizer, 'normalizer', source);
  for (const split of preTokenizers) {
    if (split.type !== 'Split') continue;
    // Without a pattern the package's Split keeps nothing of the text.
    const { pattern: given } = split;
    if (!isObject(given) || !(typeof given.String === 'string' || typeof given.Regex === 'string')) {
      throw new TokenizerError(`${source}: ${expected('{ "String": ... } or { "Regex": ... }', 'the pattern of a Split pre-tokenizer', given)}`, { file: source });
    }
    const behavior = typeof split.behavior === 'string' ? split.behavior : 'Isolated';
    if (['isolated', 'removed'].includes(behavior.toLowerCase())) continue;
    const pattern = stringPattern(split.pattern);
    const replaced = pattern !== null && pattern !== '' && normalizers.some((n) =>
      n.type === 'Replace' && stringPattern(n.pattern) === pattern && typeof n.content === 'string' && !n.content.includes(pattern));
    if (!replaced) {
      throw new TokenizerError(`${source}: a Split pre-tokenizer has the behavior ${behavior}, which Hugging Face's JavaScript tokenizer does not ` +
        'implement (it would split as Isolated does, giving other ids); only Isolated and Removed are supported', { file: source });
    }
  }
  return preTokenizers;
}

/** Checks a tokenizer.json and takes from it what the tokenizer uses; every error names `source`. */
function checkTokenizerJSON(json: unknown, source: string): CheckedTokenizer {
  const refuse = (message: string): never => {
    throw new TokenizerError(`${source}: ${message}`, { file: source });
  };
  if (!isObject(json)) refuse(expected('an object (the contents of a tokenizer.json)', 'the tokenizer', json));
  const file = json as Record<string, unknown>;
  const model = file.model;
  if (!isObject(model)) return refuse(expected('an object', 'model', model));
  if (model.type !== 'BPE') refuse(`the model is of type ${typeof model.type === 'string' ? model.type : describeValue(model.type)}; only BPE is supported`);

  // Options of Hugging Face's BPE model that the causal models' files leave unset, and that
  // @huggingface/tokenizers ignores or does not have: refused rather than ignored.
  if (model.dropout !== undefined && model.dropout !== null && model.dropout !== 0) {
    refuse(`model.dropout is ${describeValue(model.dropout)}; BPE dropout (random merges) is not supported`);
  }
  for (const key of ['continuing_subword_prefix', 'end_of_word_suffix']) {
    if (model[key] !== undefined && model[key] !== null && model[key] !== '') refuse(`model.${key} is ${describeValue(model[key])}; it is not supported`);
  }
  const byteFallback = optionalBoolean(model, 'byte_fallback', 'model.byte_fallback', source) ?? false;
  optionalBoolean(model, 'ignore_merges', 'model.ignore_merges', source);
  optionalBoolean(model, 'fuse_unk', 'model.fuse_unk', source);
  const preTokenizers = checkPreTokenizers(file, source);
  const decoder = file.decoder;
  if (decoder !== undefined && decoder !== null && !isObject(decoder)) refuse(expected('an object or null', 'decoder', decoder));

  if (!isObject(model.vocab)) return refuse(expected('an object of token to id', 'model.vocab', model.vocab));
  const idOf = new Map<string, number>();
  const tokenOfId = new Map<number, string>();
  let largest = -1;
  for (const [token, value] of Object.entries(model.vocab)) {
    const id = checkId(value, `the id of ${quote(token)} in model.vocab`, source);
    const other = tokenOfId.get(id);
    if (other !== undefined) refuse(`model.vocab gives the id ${id} to both ${quote(other)} and ${quote(token)}`);
    tokenOfId.set(id, token);
    idOf.set(token, id);
    if (id > largest) largest = id;
  }
  if (largest < 0) refuse('model.vocab is empty');

  const added = readAddedTokens(file.added_tokens ?? [], 'added_tokens', source, tokenOfId);
  for (const token of added) {
    idOf.set(token.content, token.id);
    if (token.id > largest) largest = token.id;
  }

  if (!Array.isArray(model.merges)) refuse(expected('an array', 'model.merges', model.merges));
  (model.merges as unknown[]).forEach((entry: unknown, rank: number) => {
    let pair: [string, string] | undefined;
    if (typeof entry === 'string') {
      const parts = entry.split(' ');
      if (parts.length === 2) pair = [parts[0], parts[1]];
    } else if (Array.isArray(entry) && entry.length === 2 && typeof entry[0] === 'string' && typeof entry[1] === 'string') {
      pair = [entry[0], entry[1]];
    }
    if (!pair) return refuse(expected(`a merge, "a b" or ["a", "b"]`, `model.merges[${rank}]`, entry));
    const [left, right] = pair;
    const shown = `model.merges[${rank}] (${quote(left)} + ${quote(right)})`;
    const vocab = model.vocab as Record<string, unknown>;
    if (!Object.hasOwn(vocab, left)) refuse(`${shown} names ${quote(left)}, which is not in model.vocab`);
    if (!Object.hasOwn(vocab, right)) refuse(`${shown} names ${quote(right)}, which is not in model.vocab`);
    if (!Object.hasOwn(vocab, left + right)) refuse(`${shown} makes ${quote(left + right)}, which is not in model.vocab`);
  });

  // A character no token covers becomes model.unk_token; with none set, @huggingface/tokenizers
  // drops it. So without unk_token every character must have a token: a byte-level model's 256
  // byte characters, or a byte_fallback model's 256 byte tokens <0x00>..<0xFF>.
  let unkToken: string | null = null;
  if (model.unk_token !== undefined && model.unk_token !== null) {
    if (typeof model.unk_token !== 'string') refuse(expected('a string', 'model.unk_token', model.unk_token));
    unkToken = model.unk_token as string;
    if (!idOf.has(unkToken)) refuse(`model.unk_token ${quote(unkToken)} is not in model.vocab`);
  }
  if (unkToken === null) {
    const normalizers = components(file.normalizer, 'normalizer', source);
    const byteLevel = [...preTokenizers, ...normalizers].some((c) => c.type === 'ByteLevel');
    const vocab = model.vocab as Record<string, unknown>;
    if (byteLevel) {
      BYTE_TO_CHAR.forEach((char, byte) => {
        if (!Object.hasOwn(vocab, char)) {
          refuse(`model.vocab has no token for the byte 0x${byte.toString(16).padStart(2, '0')} (GPT-2's character ${quote(char)}) and model.unk_token is not set`);
        }
      });
    } else if (byteFallback) {
      for (let byte = 0; byte < 256; byte++) {
        const token = `<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`;
        if (!Object.hasOwn(vocab, token)) refuse(`model.byte_fallback is true but model.vocab has no ${token} and model.unk_token is not set`);
      }
    } else {
      refuse('model.unk_token is not set and the model is neither byte-level nor byte_fallback: a character outside model.vocab would be dropped without a word');
    }
  }
  return { idOf, added, vocabSize: largest + 1 };
}

/**
 * `json` with the added tokens of tokenizer_config.json's `added_tokens_decoder` ({ "<id>": {
 * content, special, ... } }) that its `added_tokens` lacks, as transformers adds them; `checked`
 * takes them in too. An entry that gives a known id another text is refused, naming the config.
 */
function withConfigAddedTokens(json: Record<string, unknown>, checked: CheckedTokenizer, decoder: unknown, configSource: string): Record<string, unknown> {
  if (decoder === undefined || decoder === null) return json;
  if (!isObject(decoder)) throw new TokenizerError(`${configSource}: ${expected('an object of id to token', 'added_tokens_decoder', decoder)}`, { file: configSource });
  const entries = Object.entries(decoder).map(([id, entry]) => (isObject(entry) ? { ...entry, id: /^\d+$/.test(id) ? Number(id) : id } : entry));
  const textOfId = new Map<number, string>();
  for (const [token, id] of checked.idOf) textOfId.set(id, token);
  // (a token of the vocab that the config lists becomes an added token, matched whole, as in transformers)
  const added = new Set(checked.added.map((token) => token.id));
  const extra = readAddedTokens(entries, 'added_tokens_decoder', configSource, textOfId).filter((token) => !added.has(token.id));
  if (extra.length === 0) return json;
  for (const token of extra) {
    checked.idOf.set(token.content, token.id);
    checked.added.push(token);
    checked.vocabSize = Math.max(checked.vocabSize, token.id + 1);
  }
  const extraIds = new Set(extra.map((token) => token.id));
  return { ...json, added_tokens: [...(json.added_tokens as unknown[]), ...entries.filter((entry) => extraIds.has((entry as { id: number }).id))] };
}

/**
 * A list of added tokens, checked: tokenizer.json's `added_tokens` ([{ id, content, special, ... }])
 * or tokenizer_config.json's `added_tokens_decoder` ({ "<id>": { content, special, ... } }, given
 * here as [id, entry] pairs). An id the vocab gives another text is refused.
 */
function readAddedTokens(list: unknown, name: string, source: string, tokenOfId: Map<number, string>): AddedToken[] {
  const refuse = (message: string): never => {
    throw new TokenizerError(`${source}: ${message}`, { file: source });
  };
  if (!Array.isArray(list)) return refuse(expected('an array', name, list));
  const added: AddedToken[] = [];
  const byId = new Map<number, string>();
  list.forEach((entry: unknown, k: number) => {
    if (!isObject(entry)) return refuse(expected('an object', `${name}[${k}]`, entry));
    const id = checkId(entry.id, `${name}[${k}].id`, source);
    if (typeof entry.content !== 'string' || entry.content === '') refuse(expected('a non-empty string', `${name}[${k}].content`, entry.content));
    const content = entry.content as string;
    const other = byId.get(id);
    if (other !== undefined) refuse(`${name} gives the id ${id} to both ${quote(other)} and ${quote(content)}`);
    const inVocab = tokenOfId.get(id);
    if (inVocab !== undefined && inVocab !== content) refuse(`the id ${id} is ${quote(inVocab)} in ${name === 'added_tokens' ? 'model.vocab' : 'the tokenizer.json'} but ${quote(content)} in ${name}`);
    for (const flag of ['special', 'single_word', 'lstrip', 'rstrip', 'normalized']) optionalBoolean(entry, flag, `${name}[${k}].${flag}`, source);
    // Hugging Face's JavaScript tokenizer ignores single_word (it would find the token inside a
    // word, where the Rust tokenizers the model was trained with do not): refused, not ignored.
    if (entry.single_word === true) {
      refuse(`${name}[${k}] (${quote(content)}) has single_word: true, which Hugging Face's JavaScript tokenizer does not implement (it would match the token inside words too); not supported`);
    }
    byId.set(id, content);
    added.push({ id, content, special: entry.special === true });
  });
  return added;
}

// ---------------------------------------------------------------------------------------------
// BpeTokenizer

/** How a BpeTokenizer is made: the files' contents and where they came from. */
interface BpeSources {
  /** The parsed tokenizer.json, and its text (what files() writes back). */
  json: unknown;
  text: string;
  /** Where tokenizer.json came from, named in errors. */
  source: string;
  /** The file it was read from, for describe(); undefined when built from JSON. */
  file?: string;
  /** The parsed tokenizer_config.json, and where it came from; undefined when there is none. */
  config?: unknown;
  configSource?: string;
  /** The text of a chat_template.jinja, which replaces the config's chat_template, and its path. */
  chatTemplate?: string;
  chatTemplateSource?: string;
}

/**
 * Where a prefix of `text` ends near `target` (an index into it): at the start of the first run of
 * whitespace at or after `target` within 256 code units (between a word and the whitespace after
 * it, where pre-tokenizers cut), else at `target` itself, moved past a surrogate pair it would cut.
 */
function prefixEnd(text: string, target: number): number {
  if (target >= text.length) return text.length;
  const limit = Math.min(text.length, target + 256);
  for (let at = Math.max(target, 1); at < limit; at++) {
    if (WHITESPACE.test(text[at]) && !WHITESPACE.test(text[at - 1])) return at;
  }
  return codePointEnd(text, target);
}
const WHITESPACE = /\s/;

/**
 * A BPE tokenizer from a Hugging Face tokenizer.json and tokenizer_config.json, run by Hugging
 * Face's @huggingface/tokenizers (ids) and @huggingface/jinja (chat template).
 *
 * What tokenizer_config.json decides (each optional; the file itself too):
 * - `eos_token`: the end-of-text id; without one, `<|endoftext|>`, else the first special added token;
 * - `bos_token`: the beginning-of-sequence id; without one, the id the post-processor puts first, if any;
 * - `pad_token`: the padding id; without one, the end-of-text id;
 * - `add_bos_token`: whether encoding with special tokens puts BOS first (`addsBos`); without it,
 *   what the post-processor does;
 * - `chat_template` (or chat_template.jinja beside it): the chat template, with every special
 *   token as a variable;
 * - `added_tokens_decoder`: added tokens that tokenizer.json lacks are added, as transformers does.
 */
export class BpeTokenizer implements Tokenizer {
  readonly kind = 'bpe' as const;
  readonly vocabSize: number;
  readonly eosId: number;
  readonly bosId: number | null;
  readonly padId: number;
  readonly addsBos: boolean;
  /** Where tokenizer.json was read from (a file path, or what `fromJSON` was told), for error messages. */
  readonly source: string;

  private readonly file: string | undefined;
  private readonly tokenizerText: string;
  /** tokenizer_config.json as files() writes it (a chat_template.jinja's text put in it). */
  private readonly configForFiles: Record<string, unknown>;
  private readonly template: ChatTemplate | null;
  private readonly hf: HfTokenizers.Tokenizer;

  private constructor(sources: BpeSources) {
    const { json, source } = sources;
    const checked = checkTokenizerJSON(json, source);
    this.source = source;
    this.file = sources.file;
    this.tokenizerText = sources.text;

    const configSource = sources.configSource ?? 'tokenizer_config.json';
    const refuseConfig = (message: string): never => {
      throw new TokenizerError(`${configSource}: ${message}`, { file: configSource });
    };
    if (sources.config !== undefined && !isObject(sources.config)) refuseConfig(expected('an object (the contents of a tokenizer_config.json)', 'the config', sources.config));
    const config = (sources.config ?? {}) as Record<string, unknown>;

    // A component the file leaves out is one it does not have (Hugging Face's package wants each
    // key there, null or not).
    const hfJson = withConfigAddedTokens({ normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, added_tokens: [], ...(json as Record<string, unknown>) },
      checked, config.added_tokens_decoder, configSource);
    this.vocabSize = checked.vocabSize;

    try {
      this.hf = new HfTokenizer(hfJson, config);
    } catch (error) {
      throw new TokenizerError(`${source}: Hugging Face's tokenizer cannot read it: ${(error as Error).message}`, { cause: error, file: source });
    }

    // The special tokens: the config's, looked up among the tokens.
    const tokenId = (key: string): number | null => {
      const text = specialTokenText(config[key], key, configSource);
      if (text === null) return null;
      const id = checked.idOf.get(text);
      if (id === undefined) refuseConfig(`${key} ${quote(text)} is not a token of ${source}`);
      return id!;
    };
    const eos = tokenId('eos_token')
      ?? checked.idOf.get(END_OF_TEXT)
      ?? checked.added.find((token) => token.special)?.id;
    if (eos === undefined) {
      throw new TokenizerError(`${source}: the tokenizer has no end-of-text token (no eos_token in a tokenizer_config.json, no ${END_OF_TEXT}, and no added token with special: true)`, { file: source });
    }
    this.eosId = eos;
    this.padId = tokenId('pad_token') ?? eos;
    const prepended = this.prependedId();
    this.bosId = tokenId('bos_token') ?? prepended;
    const addBos = optionalBoolean(config, 'add_bos_token', 'add_bos_token', configSource);
    optionalBoolean(config, 'add_eos_token', 'add_eos_token', configSource);
    this.addsBos = addBos ?? (prepended !== null && prepended === this.bosId);
    if (this.addsBos && this.bosId === null) refuseConfig('add_bos_token is true but there is no bos_token');

    // The chat template, rendered with every special token (and BOS and EOS even where the config
    // does not name them) as variables.
    const templateText = sources.chatTemplate ?? configChatTemplate(config.chat_template, configSource);
    const templateSource = sources.chatTemplate !== undefined ? sources.chatTemplateSource ?? 'chat_template.jinja' : configSource;
    const variables: Record<string, unknown> = { bos_token: this.bosId === null ? null : this.tokenText(this.bosId), eos_token: this.tokenText(eos) };
    Object.assign(variables, specialTokenVariables(config, configSource));
    this.template = templateText === null ? null : new ChatTemplate(templateText, templateSource, variables);

    this.configForFiles = sources.config !== undefined
      ? { ...config, ...(sources.chatTemplate !== undefined ? { chat_template: sources.chatTemplate } : {}) }
      : {
        tokenizer_class: 'PreTrainedTokenizerFast',
        ...(this.bosId === null ? {} : { bos_token: this.tokenText(this.bosId) }),
        eos_token: this.tokenText(eos),
        ...(this.padId === eos ? {} : { pad_token: this.tokenText(this.padId) }),
        ...(templateText === null ? {} : { chat_template: templateText }),
      };
  }

  /**
   * Reads a tokenizer.json (and, when the file is named tokenizer.json, the tokenizer_config.json
   * and chat_template.jinja beside it, if they are there); every error begins with the file at fault.
   */
  static fromFile(file: string): BpeTokenizer {
    if (typeof file !== 'string' || file === '') throw new TypeError(expected('a path to a tokenizer.json', 'file', file));
    const text = readText(file);
    const json = parseJson(text, file);
    const sources: BpeSources = { json, text, source: file, file: path.resolve(file) };
    if (path.basename(file) === 'tokenizer.json') Object.assign(sources, besideFiles(path.dirname(file)));
    return new BpeTokenizer(sources);
  }

  /**
   * A tokenizer from the parsed contents of a tokenizer.json and, optionally, of its
   * tokenizer_config.json (special tokens, chat template); `source` names it in error messages.
   */
  static fromJSON(json: unknown, source = 'the tokenizer JSON', config?: unknown): BpeTokenizer {
    if (typeof source !== 'string') throw new TypeError(expected('a string', 'source', source));
    let text: string;
    try {
      text = JSON.stringify(json);
    } catch (error) {
      throw new TokenizerError(`${source}: cannot be written as JSON (${(error as Error).message})`, { cause: error, file: source });
    }
    const sources: BpeSources = { json: JSON.parse(text) as unknown, text, source };
    if (config !== undefined) Object.assign(sources, { config: JSON.parse(JSON.stringify(config)) as unknown, configSource: `${source} (its config)` });
    return new BpeTokenizer(sources);
  }

  /**
   * The tokenizer of a Hugging Face model folder: tokenizer.json, else GPT-2's vocab.json and
   * merges.txt (built into the tokenizer.json they stand for), with the folder's
   * tokenizer_config.json and chat_template.jinja when they are there. Every failure is a
   * TokenizerError whose `file` is the file at fault (the folder, when it has no tokenizer).
   */
  static fromFolder(directory: string): BpeTokenizer {
    if (typeof directory !== 'string' || directory === '') throw new TypeError(expected('a directory path', 'directory', directory));
    const json = path.join(directory, 'tokenizer.json');
    if (fs.existsSync(json)) return BpeTokenizer.fromFile(json);
    const vocabFile = path.join(directory, 'vocab.json'), mergesFile = path.join(directory, 'merges.txt');
    if (!fs.existsSync(vocabFile) || !fs.existsSync(mergesFile)) {
      throw new TokenizerError(`${directory}: expected tokenizer.json, or vocab.json and merges.txt, beside the model`, { file: directory });
    }
    const built = gpt2FilesJSON(vocabFile, mergesFile);
    // What is left to refuse is vocab.json's: an id that is not one, an id given twice, no end-of-text token.
    return new BpeTokenizer({ json: built, text: JSON.stringify(built), source: vocabFile, ...besideFiles(directory) });
  }

  get chatTemplate(): string | null {
    return this.template?.text ?? null;
  }

  /**
   * The ids Hugging Face gives for `text` with `add_special_tokens=False` (added tokens in the
   * text, `<|im_end|>` say, are still their ids).
   *
   * With `maxTokens`, exactly `encode(text).slice(0, maxTokens)`, from prefixes of the text: the
   * pieces a tokenizer encodes are found left to right, each from the text up to a character or so
   * past its end, so the ids of a prefix differ from those of the whole text only near the cut.
   * A prefix cut at the start of a run of whitespace (where pieces end) is encoded, longer ones
   * until one gives `maxTokens` ids and a margin past them, and the first `maxTokens` ids are
   * taken once two prefixes cut at different places agree on them. A text not much longer than
   * `maxTokens` tokens could be is encoded whole.
   */
  encode(text: string, options?: EncodeOptions): number[] {
    checkText(text);
    const maxTokens = readMaxTokens(options);
    if (maxTokens === 0) return [];
    if (maxTokens === Infinity || text.length <= 8 * maxTokens + 256) return this.encodeWhole(text).slice(0, maxTokens);
    let end = prefixEnd(text, 4 * maxTokens + 64);
    let agreed: number[] | null = null;
    for (;;) {
      const ids = this.encodeWhole(end === text.length ? text : text.slice(0, end));
      if (end === text.length) return ids.slice(0, maxTokens);
      if (ids.length >= maxTokens + PREFIX_MARGIN) {
        const head = ids.slice(0, maxTokens);
        if (agreed !== null && head.every((id, k) => id === agreed![k])) return head;
        agreed = head;
        end = prefixEnd(text, end + Math.ceil(end / 4) + 64);
      } else {
        end = prefixEnd(text, 2 * end);
      }
    }
  }

  /**
   * The text of the ids as Hugging Face's decoder gives it with special tokens kept and no
   * clean-up of spaces (decode(encode(text)) is the text). An id inside [0, vocabSize) that no
   * token has is a RangeError too.
   */
  decode(ids: ArrayLike<number>): string {
    const list = readIds(ids, this.vocabSize);
    list.forEach((id, position) => {
      if (this.hf.id_to_token(id) === undefined) {
        throw new RangeError(`${expected('a token id', `ids[${position}]`, id)}, which no token of ${this.source} has`);
      }
    });
    // @huggingface/tokenizers refuses an empty list
    if (list.length === 0) return '';
    return this.hf.decode(list, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  }

  /**
   * The messages rendered with the model's chat template (`add_generation_prompt` as
   * `addGenerationPrompt`, default false), or with the package's own (`renderChat`) when the
   * tokenizer has none. The text is what `encode` then reads: the template writes the special
   * tokens (BOS, the turns' markers) itself.
   */
  applyChatTemplate(messages: readonly TemplateMessage[], options?: ChatTemplateOptions): string {
    if (this.template === null) return ownTemplate(messages, options);
    return this.template.render(readTemplateMessages(messages), readTemplateOptions(options));
  }

  /**
   * `{ kind: 'bpe', file }`, where `file` is the tokenizer.json it was read from (so that whoever
   * saves a model folder can copy it there), or 'tokenizer.json' for one built by `fromJSON`
   * (whose files() give its contents, to be written there).
   */
  describe(): TokenizerDescription {
    return { kind: 'bpe', file: this.file ?? 'tokenizer.json' };
  }

  /**
   * tokenizer.json as it was read (or as `fromJSON` was given it) and tokenizer_config.json: the
   * one read, with a chat_template.jinja's template put in it, or, when there was none, one that
   * names the special tokens. A folder of the two rebuilds this tokenizer with the same template.
   */
  files(): Record<string, string> {
    return { 'tokenizer.json': this.tokenizerText, 'tokenizer_config.json': configText(this.configForFiles) };
  }

  /** The ids of the whole text, no special token added; an id the package could not find is an error, never dropped. */
  private encodeWhole(text: string): number[] {
    // (the package's Encoding type does not resolve from CommonJS: its `ids` is typed here)
    const ids: unknown[] = this.hf.encode(text, { add_special_tokens: false }).ids;
    for (let k = 0; k < ids.length; k++) {
      if (typeof ids[k] !== 'number') throw new TokenizerError(`${this.source}: the tokenizer made a token with no id from ${quote(text.slice(0, 80))}`, { file: this.source });
    }
    return ids as number[];
  }

  /** The text of a token id (an added token's content, or the vocab's token). */
  private tokenText(id: number): string {
    return this.hf.id_to_token(id)!;
  }

  /**
   * The id the post-processor puts before a text when special tokens are added (Gemma's and the
   * Llama family's TemplateProcessing `<bos> $A`), or null when it puts none.
   */
  private prependedId(): number | null {
    const plain: number[] = this.hf.encode('a', { add_special_tokens: false }).ids;
    const special: number[] = this.hf.encode('a', { add_special_tokens: true }).ids;
    if (special.length <= plain.length) return null;
    const rest = special.slice(1, 1 + plain.length);
    return rest.every((id, k) => id === plain[k]) ? special[0] : null;
  }
}

/**
 * How many ids past `maxTokens` a prefix must give before its first `maxTokens` are trusted: the
 * ids near a cut may differ from the whole text's (the piece the cut ends, a run of whitespace).
 */
const PREFIX_MARGIN = 32;

function readText(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new TokenizerError(`${file}: not readable (${(error as Error).message})`, { cause: error, file });
  }
}

function parseJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new TokenizerError(`${file}: not valid JSON (${(error as Error).message})`, { cause: error, file });
  }
}

/** The tokenizer_config.json and chat_template.jinja of a folder, read when they are there. */
function besideFiles(directory: string): Partial<BpeSources> {
  const found: Partial<BpeSources> = {};
  const configFile = path.join(directory, 'tokenizer_config.json');
  if (fs.existsSync(configFile)) Object.assign(found, { config: parseJson(readText(configFile), configFile), configSource: configFile });
  const templateFile = path.join(directory, 'chat_template.jinja');
  if (fs.existsSync(templateFile)) Object.assign(found, { chatTemplate: readText(templateFile), chatTemplateSource: templateFile });
  return found;
}

/**
 * GPT-2's vocab.json and merges.txt as the tokenizer.json they stand for: the vocab, the merges,
 * GPT-2's ByteLevel pre-tokenizer and decoder, and `<|endoftext|>` as a special added token when
 * the vocab has it. Every fault names the file and, for merges.txt, the line.
 */
function gpt2FilesJSON(vocabFile: string, mergesFile: string): Record<string, unknown> {
  const refuse = (file: string, message: string): never => {
    throw new TokenizerError(`${file}: ${message}`, { file });
  };
  const vocab = parseJson(readText(vocabFile), vocabFile);
  if (!isObject(vocab)) {
    refuse(vocabFile, `expected an object of token to id but found ${Array.isArray(vocab) ? 'an array' : vocab === null ? 'null' : `a ${typeof vocab}`}`);
  }
  const tokens = vocab as Record<string, unknown>;
  // Each line "left right", checked here so that a bad merge names its line of merges.txt. Rust's
  // lines(), which Hugging Face reads the file with, takes "\r\n" as a line end too.
  const merges: string[] = [];
  readText(mergesFile).split(/\r?\n/).forEach((line, index) => {
    if (line === '' || line.startsWith('#version')) return;
    const parts = line.split(' ');
    if (parts.length !== 2) refuse(mergesFile, `line ${index + 1}: expected two tokens apart by one space but found ${JSON.stringify(line)}`);
    for (const token of parts) {
      if (!Object.hasOwn(tokens, token)) refuse(mergesFile, `line ${index + 1}: ${JSON.stringify(line)} names ${JSON.stringify(token)}, which vocab.json lacks`);
    }
    if (!Object.hasOwn(tokens, parts[0] + parts[1])) {
      refuse(mergesFile, `line ${index + 1}: ${JSON.stringify(line)} makes ${JSON.stringify(parts[0] + parts[1])}, which vocab.json lacks`);
    }
    merges.push(line);
  });
  const end = tokens[END_OF_TEXT];
  return {
    model: { type: 'BPE', vocab, merges },
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    added_tokens: end === undefined ? [] : [{ id: end, content: END_OF_TEXT, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }],
  };
}

/** The tokenizer of a Hugging Face model folder: `BpeTokenizer.fromFolder`. */
export function loadTokenizerFolder(directory: string): BpeTokenizer {
  return BpeTokenizer.fromFolder(directory);
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

/**
 * 'byte', or a path to a tokenizer.json (with the tokenizer_config.json beside it), or to a
 * folder holding one (or GPT-2's vocab.json and merges.txt).
 */
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
  if (stats.isDirectory()) return loadTokenizerFolder(spec);
  return BpeTokenizer.fromFile(spec);
}
