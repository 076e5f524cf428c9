/**
 * Dataset readers for preference (DPO) and supervised fine-tuning (SFT) records, in the standard
 * formats of Hugging Face TRL (https://huggingface.co/docs/trl/dataset_formats).
 *
 * Preference records, one of:
 * - standard, explicit prompt: `{"prompt": string, "chosen": string, "rejected": string}`;
 * - standard, implicit prompt: `{"chosen": string, "rejected": string}`. The prompt is the longest
 *   common prefix of the two (compared by UTF-16 code unit, but never ending between the halves of
 *   a surrogate pair), and chosen and rejected become what follows it;
 * - conversational, explicit prompt: `prompt`, `chosen` and `rejected` are lists of messages
 *   `{"role": "system" | "user" | "assistant", "content": string}`; chosen and rejected start
 *   with the assistant's reply (usually they are that one message);
 * - conversational, implicit prompt: `chosen` and `rejected` are whole conversations, and the
 *   messages they share at the start are the prompt.
 *
 * SFT records, one of:
 * - `{"prompt": string, "completion": string}`;
 * - `{"text": string}`: the prompt is `''` and the text is the completion;
 * - conversational `{"messages": [...]}`: the prompt is every message before the last assistant
 *   message (rendered with the generation prompt) and the completion is that assistant message;
 * - conversational `{"prompt": [...], "completion": [...]}`, as for preference records.
 *
 * Fields other than these are allowed and ignored (TRL datasets carry ids and scores). A record
 * that would train on nothing is refused: an empty `chosen`, `rejected`, `completion` or `text`,
 * or a conversational completion that is one assistant message with content `''`; and `chosen`
 * equal to `rejected` (for messages, as rendered), which leaves nothing to prefer. A prompt may be
 * empty.
 *
 * A conversational record keeps its messages (`conversation`): they become text when the record
 * is tokenized (lib/data/batch.ts), with the model's chat template when its tokenizer has one (as
 * TRL does), else with the package's own simple template. The record's strings are that own
 * template's rendering, exported as `renderChat` and the constants below so that a user can see
 * exactly what a model without a template is trained on:
 *
 *     each message                 <|{role}|>\n{content}<|end|>\n
 *     a prompt                     its messages, then the generation prompt <|assistant|>\n
 *     a completion                 {content}<|end|>\n   (the assistant message the prompt opened;
 *                                  any later message is rendered whole)
 *
 * so `prompt + completion` is the whole conversation rendered. The template does not escape:
 * content holding `<|end|>` is rendered as it is.
 *
 * Files are chosen by extension. `.jsonl` holds one JSON object per line; blank lines are skipped
 * and lines are counted from 1. It is read as a stream, 64 KiB at a time through one reused
 * buffer and split at each newline byte, so memory holds the records kept and one line, never the
 * whole file (a FIFO is read as it is written). A line longer than `maxLineBytes` (64 MiB unless
 * told) is a bad record, read past without being held. `.json` holds one JSON array of objects
 * and is read and parsed whole (JSON.parse has no streaming form), so it may be at most 256 MiB:
 * the `line` of a record there is its array index + 1. A UTF-8 byte order mark at the start and
 * CRLF line endings are accepted (a lone CR is not a line end).
 *
 * Text is UTF-8, strictly: an ill-formed byte is an error naming where it is (bytes counted from
 * 1, as lines are), never a silent U+FFFD. A key given twice in one object, at any depth, is an
 * error too: JSON.parse would keep the last value and drop the others without a word.
 *
 * Every problem is a `DatasetError` whose message starts with `file:line: ` (or `file: ` when it
 * concerns the whole file). With `skipBadLines`, a bad record is skipped instead and listed with
 * its line and reason in `skipped`: nothing is dropped without being listed. A dataset with no
 * records, whether empty or with every record skipped, is an error.
 */
import { constants as bufferConstants } from 'node:buffer';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { FusedpoError } from '../errors';
import { describe, expected } from '../validate';

/**
 * One preference pair, as strings. A conversational record has its messages too, which the
 * tokenizer's chat template renders when the record is tokenized; the strings are then the
 * package's own template's rendering (`renderChat`).
 */
export interface PreferenceRecord {
  prompt: string;
  chosen: string;
  rejected: string;
  /** 1-based line (jsonl) or array index + 1 (json) */
  line: number;
  /** The messages of a conversational record: the prompt's, and the completions that follow it. */
  conversation?: { prompt: ChatMessage[]; chosen: ChatMessage[]; rejected: ChatMessage[] };
}

/** One SFT example, as strings (`prompt` is `''` for plain text); a conversational one has its messages too. */
export interface SftRecord {
  prompt: string;
  completion: string;
  line: number;
  /** The messages of a conversational record: the prompt's, and the completion's (the assistant's reply first). */
  conversation?: { prompt: ChatMessage[]; completion: ChatMessage[] };
}

export interface ReadOptions {
  /** Skip (and count) bad records instead of throwing on the first (default false). */
  skipBadLines?: boolean;
  /** Stop after this many records (default: all). */
  limit?: number;
  /**
   * The longest line of a `.jsonl` file, in bytes without its line end (default
   * DEFAULT_MAX_LINE_BYTES, 64 MiB; at most V8's longest string). A longer line is a bad record,
   * and is never held whole in memory.
   */
  maxLineBytes?: number;
}

/** A record that was skipped under `skipBadLines`, and why. */
export interface BadRecord {
  line: number;
  reason: string;
}

/** What reading a dataset file gave. */
export interface DatasetRead<T> {
  file: string;
  records: T[];
  skipped: BadRecord[];
  /** which forms were seen and how often, e.g. { explicit: 40, implicit: 10 } */
  forms: Record<string, number>;
}

/** A dataset file that cannot be read, or a record in it that is not one of the formats. */
export class DatasetError extends FusedpoError {
  override name = 'DatasetError';
  /** The file, as it was given. */
  readonly file: string;
  /** The record's line (or array index + 1); null when the problem is the whole file. */
  readonly line: number | null;
  /** The message without its `file:line: ` head. */
  readonly reason: string;
  constructor(file: string, line: number | null, reason: string) {
    super(`${line === null ? file : `${file}:${line}`}: ${reason}`);
    this.file = file;
    this.line = line;
    this.reason = reason;
  }
}

/** A message of a conversation. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** The roles a message may have. */
export const CHAT_ROLES: readonly ChatMessage['role'][] = ['system', 'user', 'assistant'];
/** What ends every rendered message. */
export const CHAT_END_MARKER = '<|end|>';
/** What follows a rendered prompt: the opening of the assistant's reply. */
export const CHAT_GENERATION_PROMPT = '<|assistant|>\n';

/** The header a message of `role` starts with: `<|user|>\n`. */
export function chatRoleHeader(role: ChatMessage['role']): string {
  return `<|${role}|>\n`;
}

/**
 * Messages rendered with the chat template: each as `<|{role}|>\n{content}<|end|>\n`, followed
 * by the generation prompt `<|assistant|>\n` when `generationPrompt` is true (a prompt).
 */
export function renderChat(messages: readonly ChatMessage[], options: { generationPrompt: boolean }): string {
  let text = '';
  for (const message of messages) text += `${chatRoleHeader(message.role)}${message.content}${CHAT_END_MARKER}\n`;
  return options.generationPrompt ? text + CHAT_GENERATION_PROMPT : text;
}

/**
 * A completion rendered with the chat template: the first message, the assistant's reply that the
 * generation prompt opened, as `{content}<|end|>\n`, and any later ones rendered whole. The first
 * message must be the assistant's (the readers check it).
 */
export function renderChatCompletion(messages: readonly ChatMessage[]): string {
  if (messages.length === 0) return '';
  return `${messages[0].content}${CHAT_END_MARKER}\n` + renderChat(messages.slice(1), { generationPrompt: false });
}

// ---------------------------------------------------------------------------------------------
// Records from parsed values

type Fields = Record<string, unknown>;

function asObject(value: unknown): Fields {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error(`expected a JSON object but received ${describe(value)}`);
  }
  return value as Fields;
}

function has(fields: Fields, name: string): boolean {
  return Object.prototype.hasOwnProperty.call(fields, name) && fields[name] !== undefined;
}

function stringField(fields: Fields, name: string): string {
  const value = fields[name];
  if (typeof value === 'string') return value;
  if (!has(fields, name)) throw new Error(`missing "${name}": expected a string`);
  throw new Error(`expected a string for "${name}" but received ${describe(value)}`);
}

/** `"chosen"[2].role`, the name of a message's field in a message. */
function messageName(list: string, index: number, field?: string): string {
  return `"${list}"[${index}]${field === undefined ? '' : `.${field}`}`;
}

/** A list of messages, checked; `name` is the field that holds it. Extra message fields are ignored. */
function messagesField(fields: Fields, name: string): ChatMessage[] {
  const value = fields[name];
  if (!Array.isArray(value)) {
    if (!has(fields, name)) throw new Error(`missing "${name}": expected a list of messages`);
    throw new Error(`expected a list of messages for "${name}" but received ${describe(value)}`);
  }
  return value.map((item: unknown, index): ChatMessage => {
    if (typeof item !== 'object' || item === null || Array.isArray(item)) {
      throw new Error(`expected a message {role, content} for ${messageName(name, index)} but received ${describe(item)}`);
    }
    const message = item as Fields;
    if (!has(message, 'role')) throw new Error(`${messageName(name, index)} has no "role"`);
    const role = message.role;
    if (typeof role !== 'string' || !(CHAT_ROLES as readonly string[]).includes(role)) {
      throw new Error(`expected 'system', 'user' or 'assistant' for ${messageName(name, index, 'role')} but received ${describe(role)}`);
    }
    if (!has(message, 'content')) throw new Error(`${messageName(name, index)} has no "content"`);
    if (typeof message.content !== 'string') {
      throw new Error(`expected a string for ${messageName(name, index, 'content')} but received ${describe(message.content)}`);
    }
    return { role: role as ChatMessage['role'], content: message.content };
  });
}

/**
 * A completion's messages must open with the assistant's reply, which the generation prompt
 * began, and must say something: a reply with content '' and nothing after it renders to the end
 * marker alone. `first` is the index of `messages[0]` in the record's list `name` (the implicit
 * form's completion starts after the shared messages).
 */
function checkCompletion(messages: ChatMessage[], name: string, what: string, first = 0): void {
  if (messages.length === 0) throw new Error(`"${name}" is empty${what}`);
  if (messages[0].role !== 'assistant') {
    throw new Error(`"${name}" must start with an assistant message${what} (the prompt ends with the assistant's turn) but starts with a ${messages[0].role} message`);
  }
  if (messages.length === 1 && messages[0].content === '') {
    throw new Error(`${messageName(name, first, 'content')} is empty and no message follows it: the assistant's reply says nothing`);
  }
}

/** A completion given as a string must hold something: an empty one has no token to score or learn. */
function checkNotEmpty(text: string, name: string, why: string): string {
  if (text === '') throw new Error(`"${name}" is empty (${why})`);
  return text;
}

const nothingToScore = 'a completion must hold something to score';
const nothingToLearn = 'an example must hold something to learn';
const nothingToPrefer = 'so there is nothing to prefer';

/** The length of the longest common prefix of two strings, never ending inside a surrogate pair. */
function commonPrefixLength(a: string, b: string): number {
  const end = Math.min(a.length, b.length);
  let length = 0;
  while (length < end && a.charCodeAt(length) === b.charCodeAt(length)) length++;
  // Ending right after a high surrogate would cut a pair whose low halves differ (or that only
  // one string completes): the pair goes whole to the completions.
  if (length > 0) {
    const last = a.charCodeAt(length - 1);
    if (last >= 0xd800 && last <= 0xdbff) length--;
  }
  return length;
}

function sameMessage(a: ChatMessage, b: ChatMessage): boolean {
  return a.role === b.role && a.content === b.content;
}

const afterPrompt = ' once the common prefix (the prompt) is taken off';

/**
 * One preference record from a parsed value, and the name of its form: `explicit`, `implicit`,
 * `conversational` or `conversational-implicit`. For users with data in memory; throws a plain
 * Error whose message is the reason (the readers add the file and line).
 */
export function preferenceRecord(value: unknown, line: number): { record: PreferenceRecord; form: string } {
  const fields = asObject(value);
  if (has(fields, 'prompt')) {
    if (typeof fields.prompt === 'string') {
      // The prompt may be empty (the completions are then scored from the start); they may not.
      const prompt = fields.prompt;
      const chosen = checkNotEmpty(stringField(fields, 'chosen'), 'chosen', nothingToScore);
      const rejected = checkNotEmpty(stringField(fields, 'rejected'), 'rejected', nothingToScore);
      if (chosen === rejected) throw new Error(`"chosen" equals "rejected", ${nothingToPrefer}`);
      return { record: { prompt, chosen, rejected, line }, form: 'explicit' };
    }
    if (!Array.isArray(fields.prompt)) {
      throw new Error(`expected a string or a list of messages for "prompt" but received ${describe(fields.prompt)}`);
    }
    const prompt = messagesField(fields, 'prompt');
    const chosen = messagesField(fields, 'chosen');
    const rejected = messagesField(fields, 'rejected');
    checkCompletion(chosen, 'chosen', '');
    checkCompletion(rejected, 'rejected', '');
    // Compared as rendered: the same messages, or messages that the template (which does not
    // escape) renders alike, give the model the same text twice.
    const chosenText = renderChatCompletion(chosen);
    const rejectedText = renderChatCompletion(rejected);
    if (chosenText === rejectedText) throw new Error(`"chosen" and "rejected" render to the same text, ${nothingToPrefer}`);
    return {
      record: { prompt: renderChat(prompt, { generationPrompt: true }), chosen: chosenText, rejected: rejectedText, line, conversation: { prompt, chosen, rejected } },
      form: 'conversational',
    };
  }

  if (typeof fields.chosen === 'string') {
    const chosen = fields.chosen;
    const rejected = stringField(fields, 'rejected');
    if (chosen === rejected) throw new Error('"chosen" equals "rejected", so there is no prompt to take off and nothing to prefer');
    const length = commonPrefixLength(chosen, rejected);
    if (length === chosen.length) throw new Error(`"chosen" is empty${afterPrompt}: "rejected" starts with all of "chosen"`);
    if (length === rejected.length) throw new Error(`"rejected" is empty${afterPrompt}: "chosen" starts with all of "rejected"`);
    return { record: { prompt: chosen.slice(0, length), chosen: chosen.slice(length), rejected: rejected.slice(length), line }, form: 'implicit' };
  }
  if (!Array.isArray(fields.chosen)) {
    if (!has(fields, 'chosen')) throw new Error('missing "chosen": expected a string or a list of messages');
    throw new Error(`expected a string or a list of messages for "chosen" but received ${describe(fields.chosen)}`);
  }
  const chosen = messagesField(fields, 'chosen');
  const rejected = messagesField(fields, 'rejected');
  let shared = 0;
  while (shared < chosen.length && shared < rejected.length && sameMessage(chosen[shared], rejected[shared])) shared++;
  if (shared === chosen.length && shared === rejected.length) {
    throw new Error('"chosen" equals "rejected", so there is no prompt to take off and nothing to prefer');
  }
  const what = ' once the common leading messages (the prompt) are taken off';
  checkCompletion(chosen.slice(shared), 'chosen', what, shared);
  checkCompletion(rejected.slice(shared), 'rejected', what, shared);
  return {
    record: {
      prompt: renderChat(chosen.slice(0, shared), { generationPrompt: true }),
      chosen: renderChatCompletion(chosen.slice(shared)),
      rejected: renderChatCompletion(rejected.slice(shared)),
      line,
      conversation: { prompt: chosen.slice(0, shared), chosen: chosen.slice(shared), rejected: rejected.slice(shared) },
    },
    form: 'conversational-implicit',
  };
}

/**
 * One SFT record from a parsed value, and the name of its form: `prompt-completion`, `text`,
 * `conversational` (`messages`) or `conversational-prompt-completion`. For users with data in
 * memory; throws a plain Error whose message is the reason.
 */
export function sftRecord(value: unknown, line: number): { record: SftRecord; form: string } {
  const fields = asObject(value);
  if (has(fields, 'messages')) {
    const messages = messagesField(fields, 'messages');
    let last = messages.length - 1;
    while (last >= 0 && messages[last].role !== 'assistant') last--;
    if (last < 0) throw new Error('"messages" has no assistant message to learn');
    // Messages after the last assistant message would be neither prompt nor completion: refuse
    // them rather than drop them.
    if (last !== messages.length - 1) {
      throw new Error(`"messages" must end with the assistant message to learn but ends with a ${messages[messages.length - 1].role} message`);
    }
    if (messages[last].content === '') throw new Error(`${messageName('messages', last, 'content')} is empty: the assistant message to learn says nothing`);
    return {
      record: {
        prompt: renderChat(messages.slice(0, last), { generationPrompt: true }),
        completion: renderChatCompletion(messages.slice(last)),
        line,
        conversation: { prompt: messages.slice(0, last), completion: messages.slice(last) },
      },
      form: 'conversational',
    };
  }
  if (has(fields, 'completion') || has(fields, 'prompt')) {
    if (Array.isArray(fields.prompt)) {
      const prompt = messagesField(fields, 'prompt');
      const completion = messagesField(fields, 'completion');
      checkCompletion(completion, 'completion', '');
      return {
        record: { prompt: renderChat(prompt, { generationPrompt: true }), completion: renderChatCompletion(completion), line, conversation: { prompt, completion } },
        form: 'conversational-prompt-completion',
      };
    }
    const prompt = stringField(fields, 'prompt');
    const completion = checkNotEmpty(stringField(fields, 'completion'), 'completion', nothingToLearn);
    return { record: { prompt, completion, line }, form: 'prompt-completion' };
  }
  if (has(fields, 'text')) {
    return { record: { prompt: '', completion: checkNotEmpty(stringField(fields, 'text'), 'text', nothingToLearn), line }, form: 'text' };
  }
  const names = Object.keys(fields);
  throw new Error(
    `expected "prompt" and "completion", "text", or "messages" but found ${names.length === 0 ? 'no fields' : `only ${names.map((name) => `"${name}"`).join(', ')}`}`,
  );
}

// ---------------------------------------------------------------------------------------------
// Files

const EXTENSIONS = ['.jsonl', '.json'] as const;
const BYTE_ORDER_MARK = '\uFEFF';

/** The longest line a `.jsonl` file may hold unless `maxLineBytes` says otherwise: 64 MiB. */
export const DEFAULT_MAX_LINE_BYTES = 64 * 1024 * 1024;
/**
 * The largest `.json` file read: 256 MiB. Such a file is read whole, bytes and then string and
 * then values all in memory at once (JSON.parse has no streaming form); JSON Lines streams.
 */
export const MAX_JSON_FILE_BYTES = 256 * 1024 * 1024;
/**
 * The longest string V8 can make, in UTF-16 code units (2^29 - 24 on 64-bit). A line of at most
 * this many bytes decodes to at most this many code units, so `maxLineBytes` stops here.
 */
const LONGEST_STRING = bufferConstants.MAX_STRING_LENGTH;
/** How much of a file one read asks for; the one buffer a `.jsonl` reader reuses for every read. */
const CHUNK_BYTES = 64 * 1024;

interface Settings {
  skipBadLines: boolean;
  limit: number;
  maxLineBytes: number;
}

function readSettings(options: ReadOptions | undefined): Settings {
  if (options === undefined) return { skipBadLines: false, limit: Infinity, maxLineBytes: DEFAULT_MAX_LINE_BYTES };
  if (typeof options !== 'object' || options === null) throw new TypeError(expected('an options object', 'options', options));
  const { skipBadLines, limit, maxLineBytes } = options;
  if (skipBadLines !== undefined && typeof skipBadLines !== 'boolean') {
    throw new TypeError(expected('a boolean', 'skipBadLines', skipBadLines));
  }
  if (limit !== undefined && !(Number.isSafeInteger(limit) && limit > 0)) {
    throw new RangeError(expected('a positive integer', 'limit', limit));
  }
  if (maxLineBytes !== undefined && !(Number.isSafeInteger(maxLineBytes) && maxLineBytes > 0 && maxLineBytes <= LONGEST_STRING)) {
    throw new RangeError(expected(`a positive integer no larger than ${LONGEST_STRING} (V8's longest string)`, 'maxLineBytes', maxLineBytes));
  }
  return { skipBadLines: skipBadLines ?? false, limit: limit ?? Infinity, maxLineBytes: maxLineBytes ?? DEFAULT_MAX_LINE_BYTES };
}

/** Why a file cannot be read, in words, from a Node error. */
function cannotRead(file: string, error: unknown): DatasetError {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  if (code === 'ENOENT') return new DatasetError(file, null, 'no such file');
  if (code === 'EISDIR') return new DatasetError(file, null, 'is a directory, not a dataset file');
  return new DatasetError(file, null, `cannot be read: ${error instanceof Error ? error.message : String(error)}`);
}

/**
 * The file's format from its extension, after checking that it is there and is not a directory,
 * and that a `.json` file is small enough to read whole.
 */
async function openCheck(file: string): Promise<'.jsonl' | '.json'> {
  if (typeof file !== 'string' || file === '') throw new TypeError(expected('a file path', 'file', file));
  const extension = path.extname(file).toLowerCase();
  if (!(EXTENSIONS as readonly string[]).includes(extension)) {
    throw new DatasetError(file, null, `unknown dataset extension ${extension === '' ? '(none)' : `'${extension}'`}; accepted: ${EXTENSIONS.join(', ')}`);
  }
  let stat: fs.Stats;
  try {
    stat = await fs.promises.stat(file);
  } catch (error) {
    throw cannotRead(file, error);
  }
  if (stat.isDirectory()) throw new DatasetError(file, null, 'is a directory, not a dataset file');
  // A FIFO is welcome (a stream being written), a device or a socket is not a dataset.
  if (!stat.isFile() && !stat.isFIFO()) throw new DatasetError(file, null, 'is not a regular file');
  // Refused before a byte is read; a FIFO (size 0 here) is bounded while it is read.
  if (extension === '.json' && stat.size > MAX_JSON_FILE_BYTES) throw jsonTooLarge(file, `is ${stat.size} bytes`);
  return extension as '.jsonl' | '.json';
}

function jsonTooLarge(file: string, size: string): DatasetError {
  return new DatasetError(
    file,
    null,
    `${size}, and a .json file is read whole, so it may be at most ${MAX_JSON_FILE_BYTES} bytes (256 MiB): write it as JSON Lines (.jsonl, one record a line), which is read as a stream`,
  );
}

/** Collects records, skipping or throwing on bad ones, until the limit. */
class Collector<T> {
  readonly records: T[] = [];
  readonly skipped: BadRecord[] = [];
  readonly forms: Record<string, number> = {};
  constructor(
    private readonly file: string,
    private readonly settings: Settings,
    private readonly parse: (value: unknown, line: number) => { record: T; form: string },
  ) {}

  get full(): boolean {
    return this.records.length >= this.settings.limit;
  }

  /** A record is bad: skip it (listed) or throw. */
  bad(line: number, reason: string): void {
    if (!this.settings.skipBadLines) throw new DatasetError(this.file, line, reason);
    this.skipped.push({ line, reason });
  }

  add(value: unknown, line: number): void {
    let parsed: { record: T; form: string };
    try {
      parsed = this.parse(value, line);
    } catch (error) {
      this.bad(line, error instanceof Error ? error.message : String(error));
      return;
    }
    this.records.push(parsed.record);
    this.forms[parsed.form] = (this.forms[parsed.form] ?? 0) + 1;
  }

  /** The result; an error when there is no record. */
  finish(): DatasetRead<T> {
    if (this.records.length === 0) {
      const skipped = this.skipped.length;
      const first = `line ${this.skipped[0]?.line}: ${this.skipped[0]?.reason}`;
      const why = skipped === 0 ? '' : skipped === 1 ? ` (the one record was skipped as bad: ${first})` : ` (all ${skipped} were skipped as bad; the first, ${first})`;
      throw new DatasetError(this.file, null, `no records${why}`);
    }
    return { file: this.file, records: this.records, skipped: this.skipped, forms: this.forms };
  }
}

// --- Bytes to text: UTF-8, strictly ---------------------------------------------------------------

/** Throws on the first ill-formed byte instead of writing U+FFFD; keeps a BOM (the readers take it off). */
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Where the first ill-formed UTF-8 sequence of `bytes` starts (an index into `bytes`), or -1.
 * The well-formed sequences of the Unicode Standard's table 3-7: no overlong forms, no
 * surrogates, nothing above U+10FFFF. Only run once the decoder has refused, to say where.
 */
function firstInvalidUtf8(bytes: Uint8Array): number {
  let at = 0;
  while (at < bytes.length) {
    const lead = bytes[at];
    if (lead < 0x80) {
      at++;
      continue;
    }
    // how many continuation bytes follow the lead, and the range of the first (the others are 80..BF)
    let following: number;
    let low = 0x80;
    let high = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) following = 1;
    else if (lead === 0xe0) [following, low] = [2, 0xa0];
    else if (lead === 0xed) [following, high] = [2, 0x9f];
    else if (lead >= 0xe1 && lead <= 0xef) following = 2;
    else if (lead === 0xf0) [following, low] = [3, 0x90];
    else if (lead === 0xf4) [following, high] = [3, 0x8f];
    else if (lead >= 0xf1 && lead <= 0xf3) following = 3;
    else return at;
    for (let k = 1; k <= following; k++) {
      const next = at + k < bytes.length ? bytes[at + k] : -1;
      if (next < (k === 1 ? low : 0x80) || next > (k === 1 ? high : 0xbf)) return at;
    }
    at += following + 1;
  }
  return -1;
}

/** `bytes` as text, or where (index into `bytes`, -1 if unknown) and why it is not UTF-8. */
function decodeUtf8(bytes: Uint8Array): { text: string } | { invalidAt: number; why: string } {
  try {
    return { text: utf8.decode(bytes) };
  } catch (error) {
    const invalidAt = firstInvalidUtf8(bytes);
    return { invalidAt, why: invalidAt >= 0 ? 'invalid UTF-8' : `cannot be decoded: ${error instanceof Error ? error.message : String(error)}` };
  }
}

/** ` (0xFF)`: the byte the decoder stopped at, as it is in the file. */
function byteShown(bytes: Uint8Array, at: number): string {
  return ` (0x${bytes[at].toString(16).toUpperCase().padStart(2, '0')})`;
}

// --- Duplicated keys ----------------------------------------------------------------------------

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;

/** The index of the quote that closes the string opened at `open` (a quote), or text.length. */
function stringEnd(text: string, open: number): number {
  let close = text.indexOf('"', open + 1);
  while (close !== -1) {
    // escaped when an odd run of backslashes stands before it
    let backslashes = 0;
    while (text.charCodeAt(close - 1 - backslashes) === BACKSLASH) backslashes++;
    if (backslashes % 2 === 0) return close;
    close = text.indexOf('"', close + 1);
  }
  return text.length;
}

/** How many keys an object's list holds before it becomes a Set (a list is faster when short). */
const FEW_KEYS = 8;

/**
 * The first key that appears twice in one object of `text`, valid JSON (JSON.parse has accepted
 * it, keeping only the last value of each key and dropping the others without a word), or
 * undefined. With `byElement`, reads on to the end and sets there the first such key of each
 * element of a top-level array, by the element's index.
 *
 * One linear pass: a stack of the open containers (the keys met so far for an object, a list and
 * then a Set; null for an array) and whether the next string is a key. Strings are jumped over
 * with indexOf, and a key holding an escape is decoded before it is compared (`"\u0070rompt"` is
 * `"prompt"`).
 */
function firstDuplicatedKey(text: string, byElement?: Map<number, string>): string | undefined {
  const open: (string[] | Set<string> | null)[] = [];
  let keyNext = false;
  let element = 0;
  let first: string | undefined;
  let at = 0;
  while (at < text.length) {
    const code = text.charCodeAt(at);
    if (code === QUOTE) {
      const close = stringEnd(text, at);
      if (keyNext) {
        let key = text.slice(at + 1, close);
        if (key.includes('\\')) key = JSON.parse(text.slice(at, close + 1)) as string;
        const depth = open.length - 1;
        const keys = open[depth]!;
        let seen: boolean;
        if (Array.isArray(keys)) {
          seen = keys.includes(key);
          if (!seen && keys.length < FEW_KEYS) keys.push(key);
          else if (!seen) open[depth] = new Set(keys).add(key);
        } else {
          seen = keys.has(key);
          if (!seen) keys.add(key);
        }
        if (seen) {
          first ??= key;
          if (byElement === undefined) return first;
          if (!byElement.has(element)) byElement.set(element, key);
        }
        keyNext = false;
      }
      at = close + 1;
      continue;
    }
    if (code === OPEN_OBJECT) {
      open.push([]);
      keyNext = true;
    } else if (code === OPEN_ARRAY) {
      open.push(null);
    } else if (code === CLOSE_OBJECT || code === CLOSE_ARRAY) {
      open.pop();
      keyNext = false;  // `{}` closes with a key still awaited
    } else if (code === COMMA) {
      keyNext = open.length > 0 && open[open.length - 1] !== null;
      if (open.length === 1 && open[0] === null) element++;
    }
    at++;
  }
  return first;
}

function duplicatedKeyReason(key: string): string {
  const shown = key.length > 80 ? `${JSON.stringify(key.slice(0, 80))}...` : JSON.stringify(key);
  return `duplicated key ${shown} (JSON keeps only the last; fix the record)`;
}

/** The deepest nesting a record may have: far beyond any record's, far below what makes JSON.parse slow. */
const MAX_NESTING = 1000;
/** Lines shorter than this are parsed without the depth check: however nested, they parse in a moment. */
const DEPTH_CHECK_CHARS = 1 << 20;

/** Whether `text` (JSON or not) opens more than `limit` objects or arrays inside one another, strings skipped. */
function nestedDeeperThan(text: string, limit: number): boolean {
  let depth = 0;
  for (let at = 0; at < text.length; at++) {
    const code = text.charCodeAt(at);
    if (code === QUOTE) at = stringEnd(text, at);
    else if (code === OPEN_OBJECT || code === OPEN_ARRAY) {
      if (++depth > limit) return true;
    } else if (code === CLOSE_OBJECT || code === CLOSE_ARRAY) depth--;
  }
  return false;
}

function parseJson(text: string): { value: unknown } | { error: string } {
  // a long line of [[[[... takes JSON.parse seconds and gigabytes: refused before it is parsed
  if (text.length > DEPTH_CHECK_CHARS && nestedDeeperThan(text, MAX_NESTING)) {
    return { error: `nested more than ${MAX_NESTING} levels deep: not a dataset record` };
  }
  try {
    return { value: JSON.parse(text) as unknown };
  } catch (error) {
    return { error: `not valid JSON: ${error instanceof Error ? error.message : String(error)}` };
  }
}

// --- .jsonl: lines from a FileHandle --------------------------------------------------------------

/**
 * Calls `visit(line, bytes)` for each line of an open file, in order, lines counted from 1,
 * until the end of the file or until `visit` returns false. A line is split at byte 0x0A and
 * loses one 0x0D before it (CRLF); a last line without a newline counts. `bytes` is the line
 * without its end, a view of buffers reused for the next line (decode it before returning),
 * or null when the line is longer than `maxLineBytes`.
 *
 * Memory: `chunk` (CHUNK_BYTES, read into again and again) and `held`, the start of a line that
 * runs past a chunk, at most maxLineBytes + 1 bytes (a line of maxLineBytes and its 0x0D). A
 * longer line is not held: what is held is dropped and the rest read past up to its newline.
 * Each read returns what is there, so a FIFO gives its lines as they are written.
 */
async function forEachLine(
  file: string,
  handle: fs.promises.FileHandle,
  maxLineBytes: number,
  visit: (line: number, bytes: Buffer | null) => boolean,
): Promise<void> {
  const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
  let held = Buffer.alloc(0);
  let heldLength = 0;
  let tooLong = false;  // the current line has run past maxLineBytes + 1: read to its end, hold nothing
  let line = 1;

  /** Appends `data[from, to)` to the current line's start, unless that makes it too long. */
  const hold = (data: Buffer, from: number, to: number): void => {
    if (tooLong) return;
    const needed = heldLength + (to - from);
    if (needed > maxLineBytes + 1) {
      tooLong = true;
      heldLength = 0;
      if (held.length > CHUNK_BYTES) held = Buffer.alloc(0);
      return;
    }
    if (needed > held.length) {
      const grown = Buffer.allocUnsafe(Math.min(Math.max(needed, 2 * held.length, CHUNK_BYTES), maxLineBytes + 1));
      held.copy(grown, 0, 0, heldLength);
      held = grown;
    }
    data.copy(held, heldLength, from, to);
    heldLength = needed;
  };

  /** The line that just ended, `rest` being its bytes in the chunk after what is held. */
  const ended = (rest: Buffer): boolean => {
    let bytes: Buffer | null = null;
    if (!tooLong) {
      if (heldLength === 0) bytes = rest;
      else {
        hold(rest, 0, rest.length);
        if (!tooLong) bytes = held.subarray(0, heldLength);
      }
    }
    if (bytes !== null && bytes.length > 0 && bytes[bytes.length - 1] === 0x0d) bytes = bytes.subarray(0, bytes.length - 1);
    if (bytes !== null && bytes.length > maxLineBytes) bytes = null;
    // One long line's buffer is not kept for the rest of the file.
    if (held.length > 4 * CHUNK_BYTES) held = Buffer.alloc(0);
    heldLength = 0;
    tooLong = false;
    return visit(line++, bytes);
  };

  for (;;) {
    let bytesRead: number;
    try {
      ({ bytesRead } = await handle.read(chunk, 0, CHUNK_BYTES, null));
    } catch (error) {
      throw cannotRead(file, error);
    }
    if (bytesRead === 0) break;
    const data = chunk.subarray(0, bytesRead);
    let start = 0;
    for (;;) {
      const newline = data.indexOf(0x0a, start);
      if (newline === -1) {
        hold(data, start, bytesRead);
        break;
      }
      if (!ended(data.subarray(start, newline))) return;
      start = newline + 1;
    }
  }
  if (heldLength > 0 || tooLong) ended(Buffer.alloc(0));
}

/** A `.jsonl` file, read line by line: memory holds the records and one line, never the whole file. */
async function readJsonLines<T>(file: string, collector: Collector<T>, maxLineBytes: number): Promise<void> {
  let handle: fs.promises.FileHandle;
  try {
    handle = await fs.promises.open(file, 'r');
  } catch (error) {
    throw cannotRead(file, error);
  }
  try {
    await forEachLine(file, handle, maxLineBytes, (line, bytes) => {
      if (bytes === null) {
        collector.bad(line, `longer than ${maxLineBytes} bytes (maxLineBytes; fusedpo's --max-line-bytes raises it)`);
        return !collector.full;
      }
      const text = decodeUtf8(bytes);
      if ('invalidAt' in text) {
        // bytes counted from 1, as lines are
        collector.bad(line, text.invalidAt < 0 ? text.why : `${text.why} at byte ${text.invalidAt + 1} of the line${byteShown(bytes, text.invalidAt)}`);
        return true;
      }
      const record = line === 1 && text.text.startsWith(BYTE_ORDER_MARK) ? text.text.slice(1) : text.text;
      if (record.trim() === '') return true;
      const parsed = parseJson(record);
      if ('error' in parsed) {
        collector.bad(line, parsed.error);
        return true;
      }
      const duplicated = firstDuplicatedKey(record);
      if (duplicated !== undefined) {
        collector.bad(line, duplicatedKeyReason(duplicated));
        return true;
      }
      collector.add(parsed.value, line);
      return !collector.full;
    });
  } finally {
    // A failed close of a file opened only to read loses nothing; it must not hide why reading stopped.
    await handle.close().catch(() => {});
  }
}

// --- .json: one array, read whole -----------------------------------------------------------------

/** The whole file, refused once it passes MAX_JSON_FILE_BYTES (a FIFO, or a file that grew). */
async function readWhole(file: string): Promise<Buffer> {
  let handle: fs.promises.FileHandle;
  try {
    handle = await fs.promises.open(file, 'r');
  } catch (error) {
    throw cannotRead(file, error);
  }
  try {
    // Read into one buffer and copied out: a FIFO may give a few bytes a read, and a view of a
    // fresh 4 MiB buffer for each would keep all of every one of them.
    const chunk = Buffer.allocUnsafe(4 * 1024 * 1024);
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      let bytesRead: number;
      try {
        ({ bytesRead } = await handle.read(chunk, 0, chunk.length, null));
      } catch (error) {
        throw cannotRead(file, error);
      }
      if (bytesRead === 0) break;
      chunks.push(Buffer.from(chunk.subarray(0, bytesRead)));
      total += bytesRead;
      if (total > MAX_JSON_FILE_BYTES) throw jsonTooLarge(file, `holds more than ${MAX_JSON_FILE_BYTES} bytes`);
    }
    return Buffer.concat(chunks, total);
  } finally {
    await handle.close().catch(() => {});
  }
}

/** A `.json` file: one array of records, read and parsed whole (at most MAX_JSON_FILE_BYTES). */
async function readJsonArray<T>(file: string, collector: Collector<T>): Promise<void> {
  const bytes = await readWhole(file);
  const decoded = decodeUtf8(bytes);
  if ('invalidAt' in decoded) {
    if (decoded.invalidAt < 0) throw new DatasetError(file, null, decoded.why);
    // The line of the file, not of a record (a record's line in a .json file is its index + 1).
    let fileLine = 1;
    let lineStart = 0;
    for (let newline = bytes.indexOf(0x0a); newline !== -1 && newline < decoded.invalidAt; newline = bytes.indexOf(0x0a, newline + 1)) {
      fileLine++;
      lineStart = newline + 1;
    }
    throw new DatasetError(
      file,
      null,
      `${decoded.why} on line ${fileLine} of the file, at byte ${decoded.invalidAt - lineStart + 1} of that line${byteShown(bytes, decoded.invalidAt)}`,
    );
  }
  const text = decoded.text.startsWith(BYTE_ORDER_MARK) ? decoded.text.slice(1) : decoded.text;
  const parsed = parseJson(text);
  if ('error' in parsed) throw new DatasetError(file, null, parsed.error);
  if (!Array.isArray(parsed.value)) {
    throw new DatasetError(file, null, `expected a JSON array of records but received ${describe(parsed.value)}`);
  }
  const duplicated = new Map<number, string>();
  firstDuplicatedKey(text, duplicated);
  for (let index = 0; index < parsed.value.length && !collector.full; index++) {
    const key = duplicated.get(index);
    if (key !== undefined) collector.bad(index + 1, duplicatedKeyReason(key));
    else collector.add(parsed.value[index], index + 1);
  }
}

async function readDataset<T>(
  file: string,
  options: ReadOptions | undefined,
  parse: (value: unknown, line: number) => { record: T; form: string },
): Promise<DatasetRead<T>> {
  const settings = readSettings(options);
  const format = await openCheck(file);
  const collector = new Collector(file, settings, parse);
  if (format === '.jsonl') await readJsonLines(file, collector, settings.maxLineBytes);
  else await readJsonArray(file, collector);
  return collector.finish();
}

/** The preference pairs of a `.jsonl` or `.json` file (see the module comment for the formats). */
export async function readPreferenceDataset(file: string, options?: ReadOptions): Promise<DatasetRead<PreferenceRecord>> {
  return readDataset(file, options, preferenceRecord);
}

/** The SFT examples of a `.jsonl` or `.json` file (see the module comment for the formats). */
export async function readSftDataset(file: string, options?: ReadOptions): Promise<DatasetRead<SftRecord>> {
  return readDataset(file, options, sftRecord);
}
