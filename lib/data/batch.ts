/**
 * From records to the rows the model and the fused loss take: rendering conversations and adding
 * the special tokens as TRL does, tokenizing, truncating to `maxLength` (counted, never silent),
 * and collating in TRL's layout.
 *
 * The texts of a record, and their ends (TRL's DPOTrainer and SFTTrainer, trl/trainer/*_trainer.py
 * `_prepare_dataset`, and trl/data_utils.py `apply_chat_template`):
 * - a conversation, with a tokenizer that has a chat template: the prompt is the template applied
 *   to the prompt's messages with `add_generation_prompt=true`, and each completion is the
 *   template applied to prompt + completion messages, less the prompt's rendering (a rendering
 *   that does not start with the prompt's is an error naming the record's line). The template
 *   writes the special tokens (BOS, each turn's end): nothing is added, as TRL tokenizes a
 *   rendering with `add_special_tokens=False`.
 * - anything else (plain text, or a conversation in the package's own template `renderChat` for
 *   a tokenizer without one): BOS before the prompt when the tokenizer adds one (`addsBos`: TRL
 *   tokenizes text with the tokenizer's special tokens) and the prompt does not start with it;
 *   end-of-text after each completion unless it already ends with it (TRL's `add_eos`). Never twice.
 * Padding is the tokenizer's `padId`: its pad token, else end-of-text (TRL's).
 *
 * A sequence is `prompt + completion`, of length L <= maxLength. The model reads its first L - 1
 * tokens and position t predicts token t + 1, so the labels are the sequence shifted by one, with
 * every position whose target is a prompt token or padding set to `ignoreIndex`: the loss counts
 * completion tokens only, and the sequence log-prob is their sum (TRL's).
 *
 * Preference batches: rows `[chosen_0 .. chosen_{B-1}, rejected_0 .. rejected_{B-1}]` (pair i is
 * rows i and B + i), right-padded to the longest row: tokens and labels of shape `[2B, T]`.
 */
import { DatasetError, type ChatMessage, type PreferenceRecord, type SftRecord } from './dataset';
import type { Tokenizer } from './tokenizer';

/** A record as token ids; `chosen`, `rejected` and `completion` end with end-of-text or the template's end of turn. */
export interface TokenizedPair {
  prompt: number[];
  chosen: number[];
  rejected: number[];
  /** The record's line in its file. */
  line: number;
}

export interface TokenizedSft {
  prompt: number[];
  completion: number[];
  line: number;
}

/** What tokenizing a dataset did to it: the trainer prints it before the first step. */
export interface TruncationReport {
  /** Records read. */
  records: number;
  /** Records kept (all but the dropped ones). */
  kept: number;
  /** Kept records whose prompt + completion was cut to maxLength (keeping the start). */
  truncated: number;
  /** Records dropped because their prompt alone leaves no room for a completion token. */
  promptFilled: number;
  /** The lines of the dropped records (the first 20). */
  droppedLines: number[];
}

/** Options of `tokenizePreferences` and `tokenizeSft`. */
export interface TokenizeOptions {
  /** Where the records came from, named in errors: `file:line: ...` (default 'the records'). */
  file?: string;
  /**
   * Called with the line and the reason of a record that cannot be rendered (its chat template
   * fails, or renders the prompt otherwise alone than before a completion), which is then left
   * out; without it such a record is a DatasetError naming the file and line.
   */
  skip?: (line: number, reason: string) => void;
}

function checkMaxLength(maxLength: number): void {
  if (!Number.isInteger(maxLength) || maxLength < 2) {
    throw new RangeError(`Expected an integer >= 2 for maxLength (tokens of prompt + completion) but received ${maxLength}`);
  }
}

/** A record's prompt and completions as the tokenizer reads them (see the module comment). */
interface RenderedTexts {
  prompt: string;
  completions: string[];
  /** Rendered by the model's chat template, which wrote the special tokens: none is added. */
  templated: boolean;
}

/**
 * The texts of a record: a conversation rendered by the tokenizer's chat template (when it has
 * one; TRL's apply_chat_template), or the record's strings. Throws an Error whose message is the
 * reason (the caller adds the file and line).
 */
function renderedTexts(tokenizer: Tokenizer, strings: { prompt: string; completions: string[] },
  conversation: { prompt: ChatMessage[]; completions: ChatMessage[][] } | undefined): RenderedTexts {
  if (conversation === undefined || tokenizer.chatTemplate === null) return { ...strings, templated: false };
  const prompt = tokenizer.applyChatTemplate(conversation.prompt, { addGenerationPrompt: true });
  const completions = conversation.completions.map((messages) => {
    const whole = tokenizer.applyChatTemplate([...conversation.prompt, ...messages], { addGenerationPrompt: false });
    if (!whole.startsWith(prompt)) {
      const at = commonLength(prompt, whole);
      throw new Error(`the chat template renders the prompt alone otherwise than before its completion: from character ${at} the prompt has ` +
        `${JSON.stringify(prompt.slice(at, at + 40))} where prompt + completion has ${JSON.stringify(whole.slice(at, at + 40))}`);
    }
    const completion = whole.slice(prompt.length);
    if (completion === '') throw new Error('the chat template renders the completion to nothing: there is nothing to learn');
    return completion;
  });
  return { prompt, completions, templated: true };
}

function commonLength(a: string, b: string): number {
  let k = 0;
  while (k < a.length && k < b.length && a.charCodeAt(k) === b.charCodeAt(k)) k++;
  return k;
}

/**
 * A prompt's ids as the trainers make them (and `fusedpo generate`, so that a model is prompted
 * as it was trained): BOS put first when the tokenizer adds one with special tokens, the text
 * does not start with it, and no chat template wrote the text (`templated`: the template writes
 * its own). With `maxTokens`, the text's first `maxTokens` ids (and BOS: one more).
 */
export function encodePrompt(tokenizer: Tokenizer, text: string, options: { templated: boolean; maxTokens?: number }): number[] {
  const ids = tokenizer.encode(text, options.maxTokens === undefined ? undefined : { maxTokens: options.maxTokens });
  const bos = tokenizer.bosId;
  if (!options.templated && tokenizer.addsBos && bos !== null && ids[0] !== bos) ids.unshift(bos);
  return ids;
}

/** The prompt's ids (at most maxLength + 1: past maxLength it is dropped anyway). */
function promptIds(tokenizer: Tokenizer, texts: RenderedTexts, maxLength: number): number[] {
  return encodePrompt(tokenizer, texts.prompt, { templated: texts.templated, maxTokens: maxLength });
}

/**
 * prompt + completion cut to maxLength keeping the start; null when the prompt leaves no room for
 * one completion token. `cut` tells whether anything was cut.
 */
function fit(prompt: number[], completion: number[], maxLength: number): { prompt: number[]; completion: number[]; cut: boolean } | null {
  if (prompt.length >= maxLength) return null;
  const room = maxLength - prompt.length;
  return { prompt, completion: completion.slice(0, room), cut: completion.length > room };
}

/**
 * Each record tokenized by `tokenize` (null: its prompt fills maxLength, so it is dropped; `cut`:
 * something was cut), with the report of what was kept, truncated and dropped. A record that
 * `tokenize` throws on (its rendering failed) is a DatasetError naming its line, or with
 * `options.skip` is left out and passed to it.
 */
function tokenizeAll<R extends { line: number }, E>(records: readonly R[], maxLength: number, options: TokenizeOptions | undefined,
  tokenize: (record: R) => { example: E; cut: boolean } | null): { examples: E[]; report: TruncationReport } {
  checkMaxLength(maxLength);
  const file = options?.file ?? 'the records';
  const skip = options?.skip;
  if (typeof file !== 'string') throw new TypeError(`Expected a string for file but received ${typeof file}`);
  if (skip !== undefined && typeof skip !== 'function') throw new TypeError(`Expected a function (line, reason) for skip but received ${typeof skip}`);
  const examples: E[] = [];
  const report: TruncationReport = { records: records.length, kept: 0, truncated: 0, promptFilled: 0, droppedLines: [] };
  for (const record of records) {
    let done: { example: E; cut: boolean } | null;
    try {
      done = tokenize(record);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      if (skip === undefined) throw new DatasetError(file, record.line, reason);
      skip(record.line, reason);
      continue;
    }
    if (!done) {
      report.promptFilled += 1;
      if (report.droppedLines.length < 20) report.droppedLines.push(record.line);
      continue;
    }
    if (done.cut) report.truncated += 1;
    examples.push(done.example);
  }
  report.kept = examples.length;
  return { examples, report };
}

/**
 * A completion's ids, fitted after `prompt` to maxLength, with end-of-text appended unless the
 * chat template wrote its end (`templated`) or the text already ends with it. Only what can be
 * kept is tokenized (`maxTokens`: the room left and one more, to tell a text that fits from one
 * that does not; the same ids as tokenizing whole and cutting), so a 60 MB completion costs what
 * its first maxLength tokens cost; its having had more than the room is what marks it cut.
 */
function fitCompletion(tokenizer: Tokenizer, prompt: number[], text: string, templated: boolean, maxLength: number): { prompt: number[]; completion: number[]; cut: boolean } | null {
  if (prompt.length >= maxLength) return null;
  const room = maxLength - prompt.length;
  const ids = tokenizer.encode(text, { maxTokens: room + 1 });
  const endsWithEos = ids.length <= room && ids.length > 0 && ids[ids.length - 1] === tokenizer.eosId;
  if (!templated && !endsWithEos) ids.push(tokenizer.eosId);
  return fit(prompt, ids, maxLength);
}

/**
 * Tokenizes preference records: conversations rendered, BOS and end-of-text added as TRL adds
 * them (see the module comment), then fitted to maxLength.
 */
export function tokenizePreferences(records: readonly PreferenceRecord[], tokenizer: Tokenizer, maxLength: number,
  options?: TokenizeOptions): { pairs: TokenizedPair[]; report: TruncationReport } {
  const { examples, report } = tokenizeAll(records, maxLength, options, (record) => {
    const { conversation } = record;
    const texts = renderedTexts(tokenizer, { prompt: record.prompt, completions: [record.chosen, record.rejected] },
      conversation && { prompt: conversation.prompt, completions: [conversation.chosen, conversation.rejected] });
    const [chosenText, rejectedText] = texts.completions;
    if (texts.templated && chosenText === rejectedText) throw new Error('"chosen" and "rejected" render to the same text with the chat template, so there is nothing to prefer');
    // a prompt of maxLength tokens leaves no room: more of it need not be tokenized
    const prompt = promptIds(tokenizer, texts, maxLength);
    const chosen = fitCompletion(tokenizer, prompt, chosenText, texts.templated, maxLength);
    const rejected = fitCompletion(tokenizer, prompt, rejectedText, texts.templated, maxLength);
    if (!chosen || !rejected) return null;
    return { example: { prompt, chosen: chosen.completion, rejected: rejected.completion, line: record.line }, cut: chosen.cut || rejected.cut };
  });
  return { pairs: examples, report };
}

/**
 * Tokenizes SFT records: conversations rendered, BOS and end-of-text added as TRL adds them (see
 * the module comment), then fitted to maxLength.
 */
export function tokenizeSft(records: readonly SftRecord[], tokenizer: Tokenizer, maxLength: number,
  options?: TokenizeOptions): { examples: TokenizedSft[]; report: TruncationReport } {
  return tokenizeAll(records, maxLength, options, (record) => {
    const { conversation } = record;
    const texts = renderedTexts(tokenizer, { prompt: record.prompt, completions: [record.completion] },
      conversation && { prompt: conversation.prompt, completions: [conversation.completion] });
    const prompt = promptIds(tokenizer, texts, maxLength);
    const fitted = fitCompletion(tokenizer, prompt, texts.completions[0], texts.templated, maxLength);
    return fitted && { example: { prompt, completion: fitted.completion, line: record.line }, cut: fitted.cut };
  });
}

/** The rows of one batch: model inputs and shifted, masked labels, both `[rows, T]`. */
export interface TokenBatch {
  /** Model inputs, row-major `[rows, T]`; padding is `padId`. */
  tokens: Int32Array;
  /** `labels[s, t]`: the token position t predicts, or ignoreIndex (prompt, padding). */
  labels: Int32Array;
  shape: [number, number];
  /** Counted label positions (completion tokens) over all rows. */
  completionTokens: number;
}

/** A preference batch: rows `[chosen..., rejected...]`, `pairs` = rows / 2. */
export interface PreferenceBatch extends TokenBatch {
  pairs: number;
}

export interface CollateOptions {
  /** The label of uncounted positions (default -100). */
  ignoreIndex?: number;
  /** The input id of padding (default 0; never counted, so any valid id works). */
  padId?: number;
}

/**
 * Inputs and labels from whole sequences and how many of each one's leading tokens are prompt:
 * the helper for users who align labels themselves. Row s is `sequences[s]` (length L_s >= 2);
 * its inputs are its first L_s - 1 tokens, right-padded to T = max(L_s) - 1, and
 * `labels[s, t] = sequences[s][t + 1]` where `t + 1 >= promptLengths[s]`, else ignoreIndex.
 */
export function shiftedLabels(sequences: readonly (readonly number[])[], promptLengths: readonly number[], options: CollateOptions = {}): TokenBatch {
  const ignoreIndex = options.ignoreIndex ?? -100;
  const padId = options.padId ?? 0;
  if (sequences.length === 0) throw new RangeError('Expected at least one sequence for shiftedLabels but received none');
  if (promptLengths.length !== sequences.length) {
    throw new RangeError(`Expected one prompt length per sequence (${sequences.length}) but received ${promptLengths.length}`);
  }
  let T = 1;
  sequences.forEach((sequence, s) => {
    if (sequence.length < 2) throw new RangeError(`Expected sequences of at least 2 tokens but sequence ${s} has ${sequence.length}`);
    const prompt = promptLengths[s];
    if (!Number.isInteger(prompt) || prompt < 0 || prompt >= sequence.length) {
      throw new RangeError(`Expected a prompt length in [0, ${sequence.length}) for sequence ${s} but received ${prompt}`);
    }
    T = Math.max(T, sequence.length - 1);
  });
  const rows = sequences.length;
  const tokens = new Int32Array(rows * T).fill(padId);
  const labels = new Int32Array(rows * T).fill(ignoreIndex);
  let completionTokens = 0;
  sequences.forEach((sequence, s) => {
    for (let t = 0; t + 1 < sequence.length; t++) {
      tokens[s * T + t] = sequence[t];
      if (t + 1 >= promptLengths[s]) {
        labels[s * T + t] = sequence[t + 1];
        completionTokens += 1;
      }
    }
  });
  return { tokens, labels, shape: [rows, T], completionTokens };
}

/** A batch of pairs in TRL's layout: every chosen row, then every rejected row. */
export function collatePreferences(pairs: readonly TokenizedPair[], options: CollateOptions = {}): PreferenceBatch {
  const sequences = [...pairs.map((p) => [...p.prompt, ...p.chosen]), ...pairs.map((p) => [...p.prompt, ...p.rejected])];
  const prompts = [...pairs.map((p) => p.prompt.length), ...pairs.map((p) => p.prompt.length)];
  return { ...shiftedLabels(sequences, prompts, options), pairs: pairs.length };
}

/** A batch of SFT examples: one row each, the loss on completion tokens only. */
export function collateSft(examples: readonly TokenizedSft[], options: CollateOptions = {}): TokenBatch {
  return shiftedLabels(examples.map((e) => [...e.prompt, ...e.completion]), examples.map((e) => e.prompt.length), options);
}
