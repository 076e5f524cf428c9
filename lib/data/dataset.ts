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
 * Fields other than these are allowed and ignored (TRL datasets carry ids and scores).
 *
 * Conversations become strings through one simple chat template, exported as `renderChat` and
 * the constants below so that a user can see exactly what the model is trained on:
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
 * and lines are counted from 1. It is read as a stream (node:readline), line by line, so memory
 * holds the records kept, never the whole file (a FIFO is read as it is written). `.json` holds
 * one JSON array of objects and is read and parsed whole (JSON.parse has no streaming form): the
 * `line` of a record there is its array index + 1. A UTF-8 byte order mark at the start and CRLF line endings
 * are accepted.
 *
 * Every problem is a `DatasetError` whose message starts with `file:line: ` (or `file: ` when it
 * concerns the whole file). With `skipBadLines`, a bad record is skipped instead and listed with
 * its line and reason in `skipped`: nothing is dropped without being listed. A dataset with no
 * records, whether empty or with every record skipped, is an error.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';

import { describe, expected } from '../validate';

/** One preference pair, as strings. */
export interface PreferenceRecord {
  prompt: string;
  chosen: string;
  rejected: string;
  /** 1-based line (jsonl) or array index + 1 (json) */
  line: number;
}

/** One SFT example, as strings (`prompt` is `''` for plain text). */
export interface SftRecord {
  prompt: string;
  completion: string;
  line: number;
}

export interface ReadOptions {
  /** Skip (and count) bad records instead of throwing on the first (default false). */
  skipBadLines?: boolean;
  /** Stop after this many records (default: all). */
  limit?: number;
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
export class DatasetError extends Error {
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

/** A completion's messages must open with the assistant's reply, which the generation prompt began. */
function checkCompletion(messages: ChatMessage[], name: string, what: string): void {
  if (messages.length === 0) throw new Error(`"${name}" is empty${what}`);
  if (messages[0].role !== 'assistant') {
    throw new Error(`"${name}" must start with an assistant message${what} (the prompt ends with the assistant's turn) but starts with a ${messages[0].role} message`);
  }
}

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
      const prompt = fields.prompt;
      return { record: { prompt, chosen: stringField(fields, 'chosen'), rejected: stringField(fields, 'rejected'), line }, form: 'explicit' };
    }
    if (!Array.isArray(fields.prompt)) {
      throw new Error(`expected a string or a list of messages for "prompt" but received ${describe(fields.prompt)}`);
    }
    const prompt = messagesField(fields, 'prompt');
    const chosen = messagesField(fields, 'chosen');
    const rejected = messagesField(fields, 'rejected');
    checkCompletion(chosen, 'chosen', '');
    checkCompletion(rejected, 'rejected', '');
    return {
      record: {
        prompt: renderChat(prompt, { generationPrompt: true }),
        chosen: renderChatCompletion(chosen),
        rejected: renderChatCompletion(rejected),
        line,
      },
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
  checkCompletion(chosen.slice(shared), 'chosen', what);
  checkCompletion(rejected.slice(shared), 'rejected', what);
  return {
    record: {
      prompt: renderChat(chosen.slice(0, shared), { generationPrompt: true }),
      chosen: renderChatCompletion(chosen.slice(shared)),
      rejected: renderChatCompletion(rejected.slice(shared)),
      line,
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
    return {
      record: {
        prompt: renderChat(messages.slice(0, last), { generationPrompt: true }),
        completion: renderChatCompletion(messages.slice(last)),
        line,
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
        record: { prompt: renderChat(prompt, { generationPrompt: true }), completion: renderChatCompletion(completion), line },
        form: 'conversational-prompt-completion',
      };
    }
    return { record: { prompt: stringField(fields, 'prompt'), completion: stringField(fields, 'completion'), line }, form: 'prompt-completion' };
  }
  if (has(fields, 'text')) return { record: { prompt: '', completion: stringField(fields, 'text'), line }, form: 'text' };
  const names = Object.keys(fields);
  throw new Error(
    `expected "prompt" and "completion", "text", or "messages" but found ${names.length === 0 ? 'no fields' : `only ${names.map((name) => `"${name}"`).join(', ')}`}`,
  );
}

// ---------------------------------------------------------------------------------------------
// Files

const EXTENSIONS = ['.jsonl', '.json'] as const;
const BYTE_ORDER_MARK = '\uFEFF';

interface Settings {
  skipBadLines: boolean;
  limit: number;
}

function readSettings(options: ReadOptions | undefined): Settings {
  if (options === undefined) return { skipBadLines: false, limit: Infinity };
  if (typeof options !== 'object' || options === null) throw new TypeError(expected('an options object', 'options', options));
  const { skipBadLines, limit } = options;
  if (skipBadLines !== undefined && typeof skipBadLines !== 'boolean') {
    throw new TypeError(expected('a boolean', 'skipBadLines', skipBadLines));
  }
  if (limit !== undefined && !(Number.isSafeInteger(limit) && limit > 0)) {
    throw new RangeError(expected('a positive integer', 'limit', limit));
  }
  return { skipBadLines: skipBadLines ?? false, limit: limit ?? Infinity };
}

/** Why a file cannot be read, in words, from a Node error. */
function cannotRead(file: string, error: unknown): DatasetError {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  if (code === 'ENOENT') return new DatasetError(file, null, 'no such file');
  if (code === 'EISDIR') return new DatasetError(file, null, 'is a directory, not a dataset file');
  return new DatasetError(file, null, `cannot be read: ${error instanceof Error ? error.message : String(error)}`);
}

/** The file's format from its extension, after checking that it is there and is not a directory. */
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
  return extension as '.jsonl' | '.json';
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
      const why = skipped === 0 ? '' : ` (all ${skipped} ${skipped === 1 ? 'was' : 'were'} skipped as bad; the first, line ${this.skipped[0].line}: ${this.skipped[0].reason})`;
      throw new DatasetError(this.file, null, `no records${why}`);
    }
    return { file: this.file, records: this.records, skipped: this.skipped, forms: this.forms };
  }
}

function parseJson(text: string): { value: unknown } | { error: string } {
  try {
    return { value: JSON.parse(text) as unknown };
  } catch (error) {
    return { error: `not valid JSON: ${error instanceof Error ? error.message : String(error)}` };
  }
}

/** A `.jsonl` file, streamed line by line: memory holds the records, never the whole file. */
async function readJsonLines<T>(file: string, collector: Collector<T>): Promise<void> {
  let handle: fs.promises.FileHandle;
  try {
    handle = await fs.promises.open(file, 'r');
  } catch (error) {
    throw cannotRead(file, error);
  }
  const input = handle.createReadStream({ encoding: 'utf8' });
  // crlfDelay: Infinity reads \r\n as one line end wherever a chunk boundary falls.
  const lines = readline.createInterface({ input, crlfDelay: Infinity });
  let line = 0;
  try {
    for await (const raw of lines) {
      line++;
      const text = line === 1 && raw.startsWith(BYTE_ORDER_MARK) ? raw.slice(1) : raw;
      if (text.trim() === '') continue;
      const parsed = parseJson(text);
      if ('error' in parsed) collector.bad(line, parsed.error);
      else collector.add(parsed.value, line);
      if (collector.full) break;
    }
  } catch (error) {
    if (error instanceof DatasetError) throw error;
    throw cannotRead(file, error);
  } finally {
    lines.close();
    input.destroy();  // closes the handle (autoClose), also when the limit stopped the reading early
  }
}

/** A `.json` file: one array of records, read and parsed whole. */
async function readJsonArray<T>(file: string, collector: Collector<T>): Promise<void> {
  let text: string;
  try {
    text = await fs.promises.readFile(file, 'utf8');
  } catch (error) {
    throw cannotRead(file, error);
  }
  if (text.startsWith(BYTE_ORDER_MARK)) text = text.slice(1);
  const parsed = parseJson(text);
  if ('error' in parsed) throw new DatasetError(file, null, parsed.error);
  if (!Array.isArray(parsed.value)) {
    throw new DatasetError(file, null, `expected a JSON array of records but received ${describe(parsed.value)}`);
  }
  for (let index = 0; index < parsed.value.length && !collector.full; index++) collector.add(parsed.value[index], index + 1);
}

async function readDataset<T>(
  file: string,
  options: ReadOptions | undefined,
  parse: (value: unknown, line: number) => { record: T; form: string },
): Promise<DatasetRead<T>> {
  const settings = readSettings(options);
  const format = await openCheck(file);
  const collector = new Collector(file, settings, parse);
  if (format === '.jsonl') await readJsonLines(file, collector);
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
