/**
 * Evaluation of a model on held-out preference pairs (`evaluatePreferences`, `fusedpo eval`):
 *
 * - the policy's preference, with no reference: the share of pairs whose chosen answer has the
 *   higher sequence log-prob, and the mean log-probs of chosen and rejected;
 * - with a reference: DPO's implicit rewards `beta * (log pi(y) - log pi_ref(y))` of chosen and
 *   rejected, their margin, and the reward accuracy (chosen reward above rejected: TRL's
 *   `rewards/accuracies`), and the reference's own preference beside the model's;
 * - task accuracy by generation: each prompt continued greedily until end-of-text, the text
 *   checked by a checker (default: it equals the chosen answer, both trimmed), for the model and
 *   the reference.
 *
 * Log-probs are summed over the completion tokens with end-of-text, as the trainer's are.
 */
import { tokenizePreferences, type TokenizedPair, type TruncationReport } from '../data/batch';
import { readPreferenceDataset, type PreferenceRecord } from '../data/dataset';
import type { Tokenizer } from '../data/tokenizer';
import { CausalLM } from '../nn/causal_lm';
import { checkBoolean, checkInteger, checkNumber, describe, readArgs } from '../validate';
import { pairLogps, type PairLogps } from './reference';

/** Decides whether a generated completion answers a pair's prompt. */
export type Checker = (completion: string, record: PreferenceRecord) => boolean;

/** The default checker: the completion is the chosen answer, both trimmed of whitespace. */
export const exactMatch: Checker = (completion, record) => completion.trim() === record.chosen.trim();

export interface EvaluateOptions {
  model: CausalLM;
  tokenizer: Tokenizer;
  /** A JSONL/JSON file of preference pairs (TRL's formats) or the records. */
  data: string | readonly PreferenceRecord[];
  /** The reference model: rewards and reward accuracy against it, and its own figures beside the model's. */
  reference?: CausalLM;
  /** The reward's beta (default 0.1, TRL's). */
  beta?: number;
  /** Pairs per forward (default 8). */
  batchSize?: number;
  /** Task accuracy by greedy generation (default true). */
  generate?: boolean;
  /** With generate and a reference: the reference's task accuracy too (default true). */
  generateReference?: boolean;
  /** Tokens generated at most per prompt (default: the longest chosen answer's tokens + 8). */
  maxNewTokens?: number;
  /** Whether a completion answers its prompt (default exactMatch). */
  checker?: Checker;
}

/** One pair's figures. */
export interface EvaluatedPair {
  line: number;
  prompt: string;
  chosen: string;
  rejected: string;
  logpChosen: number;
  logpRejected: number;
  refLogpChosen?: number;
  refLogpRejected?: number;
  /** The model's greedy completion and the checker's verdict (with generate). */
  completion?: string;
  correct?: boolean;
  referenceCompletion?: string;
  referenceCorrect?: boolean;
}

export interface Evaluation {
  /** Pairs evaluated (records whose prompt fills the context are dropped, and counted in `data`). */
  pairs: number;
  /** What tokenizing the records did (kept, truncated, dropped). */
  truncation: TruncationReport;
  /**
   * The model's figures: `preference/accuracy`, `logps/chosen`, `logps/rejected`, with a reference
   * `rewards/chosen`, `rewards/rejected`, `rewards/margins`, `rewards/accuracies`, and with
   * generation `task/accuracy`.
   */
  metrics: Record<string, number>;
  /** The reference's own `preference/accuracy`, `logps/*` and `task/accuracy`; null without one. */
  referenceMetrics: Record<string, number> | null;
  examples: EvaluatedPair[];
}

const mean = (values: ArrayLike<number>) => (values.length === 0 ? NaN : Array.from(values).reduce((a, b) => a + b, 0) / values.length);
const share = (flags: readonly boolean[]) => (flags.length === 0 ? NaN : flags.filter(Boolean).length / flags.length);

/**
 * The model's greedy continuation of `prompt` (token ids) as text, up to end-of-text (not
 * included), `maxNewTokens`, or the model's context.
 */
export function greedyCompletion(model: CausalLM, tokenizer: Tokenizer, prompt: readonly number[], maxNewTokens: number): string {
  const room = model.config.context + 1 - prompt.length;
  if (room <= 0 || maxNewTokens === 0) return '';
  const ids = model.generate(prompt.length > 0 ? prompt : [tokenizer.eosId], { maxNewTokens: Math.min(maxNewTokens, room), temperature: 0, stop: [tokenizer.eosId] });
  return tokenizer.decode(ids.filter((id) => id !== tokenizer.eosId));
}

function preferenceFigures(logps: PairLogps): Record<string, number> {
  return {
    'preference/accuracy': share(Array.from(logps.chosen, (c, i) => c > logps.rejected[i])),
    'logps/chosen': mean(logps.chosen),
    'logps/rejected': mean(logps.rejected),
  };
}

/** Evaluates `model` (and `reference`) on held-out pairs: see the file's comment. */
export async function evaluatePreferences(options: EvaluateOptions): Promise<Evaluation> {
  const o = readArgs('evaluatePreferences', options, ['model', 'tokenizer', 'data', 'reference', 'beta', 'batchSize', 'generate', 'generateReference', 'maxNewTokens', 'checker'] as const) as unknown as EvaluateOptions;
  if (!(o.model instanceof CausalLM)) throw new TypeError(`Expected a model (GPT, LlamaModel: a CausalLM) for model but received ${describe(o.model)}`);
  if (o.reference !== undefined && !(o.reference instanceof CausalLM)) throw new TypeError(`Expected a model (a CausalLM) for reference but received ${describe(o.reference)}`);
  const tokenizer = o.tokenizer;
  if (!tokenizer || typeof tokenizer.encode !== 'function') throw new TypeError(`Expected a Tokenizer for tokenizer but received ${describe(tokenizer)}`);
  const beta = checkNumber('beta', o.beta ?? 0.1, { min: 0, minExclusive: true });
  const batchSize = checkInteger('batchSize', o.batchSize ?? 8, 1, Number.MAX_SAFE_INTEGER);
  const generate = checkBoolean('generate', o.generate ?? true);
  const generateReference = checkBoolean('generateReference', o.generateReference ?? true);
  const checker = o.checker ?? exactMatch;
  if (typeof checker !== 'function') throw new TypeError(`Expected a function (completion, record) => boolean for checker but received ${describe(checker)}`);
  const models = [o.model, ...(o.reference ? [o.reference] : [])];
  const context = Math.min(...models.map((m) => m.config.context));
  for (const m of models) {
    if (tokenizer.vocabSize > m.config.vocab) throw new RangeError(`Expected a model whose vocab (${m.config.vocab}) holds the tokenizer's ${tokenizer.vocabSize} ids`);
  }

  let records: readonly PreferenceRecord[];
  if (typeof o.data === 'string') records = (await readPreferenceDataset(o.data)).records;
  else if (Array.isArray(o.data)) records = o.data;
  else throw new TypeError(`Expected a file path or an array of records for data but received ${describe(o.data)}`);
  // Tokenized as the trainer does; a pair is kept when it fits the smaller context.
  const kept = tokenizePreferences(records, tokenizer, context + 1, { file: typeof o.data === 'string' ? o.data : 'the records' });
  const pairs: TokenizedPair[] = kept.pairs;
  const byLine = new Map(records.map((r) => [r.line, r]));
  const maxNewTokens = checkInteger('maxNewTokens', o.maxNewTokens ?? Math.max(1, ...pairs.map((p) => p.chosen.length)) + 8, 0, Number.MAX_SAFE_INTEGER);

  const policy = pairLogps(o.model, pairs, batchSize);
  const reference = o.reference ? pairLogps(o.reference, pairs, batchSize) : null;
  const examples: EvaluatedPair[] = pairs.map((p, i) => {
    const record = byLine.get(p.line)!;
    const e: EvaluatedPair = { line: p.line, prompt: record.prompt, chosen: record.chosen, rejected: record.rejected, logpChosen: policy.chosen[i], logpRejected: policy.rejected[i] };
    if (reference) Object.assign(e, { refLogpChosen: reference.chosen[i], refLogpRejected: reference.rejected[i] });
    if (generate) {
      e.completion = greedyCompletion(o.model, tokenizer, p.prompt, maxNewTokens);
      e.correct = checkVerdict(checker, e.completion, record);
      if (o.reference && generateReference) {
        e.referenceCompletion = greedyCompletion(o.reference, tokenizer, p.prompt, maxNewTokens);
        e.referenceCorrect = checkVerdict(checker, e.referenceCompletion, record);
      }
    }
    return e;
  });

  const metrics = preferenceFigures(policy);
  let referenceMetrics: Record<string, number> | null = null;
  if (reference) {
    const chosen = Array.from(policy.chosen, (c, i) => beta * (c - reference.chosen[i]));
    const rejected = Array.from(policy.rejected, (r, i) => beta * (r - reference.rejected[i]));
    Object.assign(metrics, {
      'rewards/chosen': mean(chosen),
      'rewards/rejected': mean(rejected),
      'rewards/margins': mean(chosen.map((c, i) => c - rejected[i])),
      'rewards/accuracies': share(chosen.map((c, i) => c > rejected[i])),
    });
    referenceMetrics = preferenceFigures(reference);
  }
  if (generate) {
    metrics['task/accuracy'] = share(examples.map((e) => e.correct!));
    if (referenceMetrics && generateReference) referenceMetrics['task/accuracy'] = share(examples.map((e) => e.referenceCorrect!));
  }
  return { pairs: pairs.length, truncation: kept.report, metrics, referenceMetrics, examples };
}

function checkVerdict(checker: Checker, completion: string, record: PreferenceRecord): boolean {
  const verdict = checker(completion, record);
  if (typeof verdict !== 'boolean') throw new TypeError(`Expected the checker to return a boolean but it returned ${describe(verdict)} (line ${record.line})`);
  return verdict;
}

const ROWS: [string, string][] = [
  ['preference/accuracy', 'preference accuracy (chosen log-prob above rejected)'],
  ['logps/chosen', 'log-prob of chosen (mean)'],
  ['logps/rejected', 'log-prob of rejected (mean)'],
  ['rewards/accuracies', 'reward accuracy (chosen reward above rejected)'],
  ['rewards/margins', 'reward margin (mean)'],
  ['rewards/chosen', 'reward of chosen (mean)'],
  ['rewards/rejected', 'reward of rejected (mean)'],
  ['task/accuracy', 'task accuracy (greedy generation checked)'],
];

/** The evaluation as a text table (model and reference side by side), then up to `show` examples. */
export function formatEvaluation(e: Evaluation, show = 3): string {
  const hasRef = e.referenceMetrics !== null;
  const label = Math.max(...ROWS.map(([, l]) => l.length));
  const cell = (x: number | undefined) => (x === undefined ? '' : x.toFixed(4)).padStart(10);
  const lines = [`${'metric'.padEnd(label)}  ${'model'.padStart(10)}${hasRef ? 'reference'.padStart(11) : ''}`];
  for (const [key, text] of ROWS) {
    if (e.metrics[key] === undefined) continue;
    lines.push(`${text.padEnd(label)}  ${cell(e.metrics[key])}${hasRef ? ` ${cell(e.referenceMetrics![key])}` : ''}`);
  }
  const dropped = e.truncation.promptFilled > 0 ? ` (${e.truncation.promptFilled} dropped: the prompt fills the context)` : '';
  lines.unshift(`${e.pairs} pairs${dropped}`);
  const shown = e.examples.filter((x) => x.completion !== undefined).slice(0, show);
  if (shown.length > 0) {
    lines.push('', 'examples (prompt -> model completion; chosen):');
    for (const x of shown) {
      lines.push(`  ${JSON.stringify(x.prompt)} -> ${JSON.stringify(x.completion)} ${x.correct ? 'ok' : 'wrong'}; chosen ${JSON.stringify(x.chosen)}` +
        (x.referenceCompletion !== undefined ? `; reference ${JSON.stringify(x.referenceCompletion)}` : ''));
    }
  }
  return lines.join('\n');
}
