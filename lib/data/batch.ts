/**
 * From records to the rows the model and the fused loss take: tokenizing with the completion's
 * end-of-text, truncating to `maxLength` (counted, never silent), and collating in TRL's layout.
 *
 * A sequence is `prompt + completion` (completion ending with the tokenizer's end-of-text), of
 * length L <= maxLength. The model reads its first L - 1 tokens and position t predicts token
 * t + 1, so the labels are the sequence shifted by one, with every position whose target is a
 * prompt token or padding set to `ignoreIndex`: the loss counts completion tokens only, and the
 * sequence log-prob is their sum (TRL's).
 *
 * Preference batches: rows `[chosen_0 .. chosen_{B-1}, rejected_0 .. rejected_{B-1}]` (pair i is
 * rows i and B + i), right-padded to the longest row: tokens and labels of shape `[2B, T]`.
 */
import type { PreferenceRecord, SftRecord } from './dataset';
import type { Tokenizer } from './tokenizer';

/** A record as token ids; `chosen`, `rejected` and `completion` end with end-of-text. */
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

function checkMaxLength(maxLength: number): void {
  if (!Number.isInteger(maxLength) || maxLength < 2) {
    throw new RangeError(`Expected an integer >= 2 for maxLength (tokens of prompt + completion) but received ${maxLength}`);
  }
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
 * something was cut), with the report of what was kept, truncated and dropped.
 */
function tokenizeAll<R extends { line: number }, E>(records: readonly R[], maxLength: number,
  tokenize: (record: R) => { example: E; cut: boolean } | null): { examples: E[]; report: TruncationReport } {
  checkMaxLength(maxLength);
  const examples: E[] = [];
  const report: TruncationReport = { records: records.length, kept: 0, truncated: 0, promptFilled: 0, droppedLines: [] };
  for (const record of records) {
    const done = tokenize(record);
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
 * A completion's ids with end-of-text, fitted after `prompt` to maxLength. Only what can be kept
 * is tokenized (`maxTokens`: the room left; the same ids as tokenizing whole and cutting), so a
 * 60 MB completion costs what its first maxLength tokens cost; its having had more than the room
 * is what marks it cut.
 */
function fitCompletion(tokenizer: Tokenizer, prompt: number[], text: string, maxLength: number): { prompt: number[]; completion: number[]; cut: boolean } | null {
  if (prompt.length >= maxLength) return null;
  const room = maxLength - prompt.length;
  return fit(prompt, [...tokenizer.encode(text, { maxTokens: room }), tokenizer.eosId], maxLength);
}

/** Tokenizes preference records: chosen and rejected get end-of-text, then are fitted to maxLength. */
export function tokenizePreferences(records: readonly PreferenceRecord[], tokenizer: Tokenizer, maxLength: number): { pairs: TokenizedPair[]; report: TruncationReport } {
  const { examples, report } = tokenizeAll(records, maxLength, (record) => {
    // a prompt of maxLength tokens leaves no room: more of it need not be tokenized
    const prompt = tokenizer.encode(record.prompt, { maxTokens: maxLength });
    const chosen = fitCompletion(tokenizer, prompt, record.chosen, maxLength);
    const rejected = fitCompletion(tokenizer, prompt, record.rejected, maxLength);
    if (!chosen || !rejected) return null;
    return { example: { prompt, chosen: chosen.completion, rejected: rejected.completion, line: record.line }, cut: chosen.cut || rejected.cut };
  });
  return { pairs: examples, report };
}

/** Tokenizes SFT records: the completion gets end-of-text, then is fitted to maxLength. */
export function tokenizeSft(records: readonly SftRecord[], tokenizer: Tokenizer, maxLength: number): { examples: TokenizedSft[]; report: TruncationReport } {
  return tokenizeAll(records, maxLength, (record) => {
    const prompt = tokenizer.encode(record.prompt, { maxTokens: maxLength });
    const fitted = fitCompletion(tokenizer, prompt, record.completion, maxLength);
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
