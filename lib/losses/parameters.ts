/**
 * The loss arguments of a call, checked against the registry (registry.ts): the loss, the number
 * parameters it takes (each in its range, its default where absent; one it does not take is an
 * error naming it), the options every loss has, and the per-row inputs of stage 3: the
 * reference log-probs (one array, or several combined as MRPO, docs/losses.md) and exo's rewards.
 */
import type { NativeLossParameters } from '../native';
import { checkBoolean, checkNumber, checkOneOf, checkTypedArray, describe, expected, readArray } from '../validate';
import {
  ACCEPTED_LOSS_NAMES,
  PARAMETERS,
  lossEntry,
  lossKindOf,
  parameterFor,
  parametersOf,
  type CanonicalLossName,
  type LossEntry,
  type LossName,
  type ParameterName,
} from './registry';

const PARAMETER_NAMES = Object.keys(PARAMETERS) as ParameterName[];

/** The number parameters of the losses, by name: their docs are the registry's. */
export type LossNumberParameters = { -readonly [K in keyof typeof PARAMETERS]?: number };

export type NllReduction = 'tokenMean' | 'sum';
const NLL_REDUCTIONS: readonly NllReduction[] = ['tokenMean', 'sum'];

/** Every argument that chooses or tunes the loss (the registry's parameters and the options every loss has). */
export interface LossParameterArgs extends LossNumberParameters {
  /** The loss (default `dpo`): see docs/losses.md. */
  loss?: LossName;
  /** Divide each row's sums (policy and reference) by its token count (TRL's `average_log_prob`; default false). */
  averageLogProb?: boolean;
  /** Weight `a` of the NLL of the chosen rows added to the loss (RPO, TRL's `sft`; default 0). */
  nllWeight?: number;
  /** How that NLL is reduced: `'tokenMean'` (default, `-(sum pw)/(sum nw)`) or `'sum'` (`mean(-pw)`). */
  nllReduction?: NllReduction;
}

/** The names of every argument of LossParameterArgs. */
export const LOSS_PARAMETER_KEYS = ['loss', 'averageLogProb', 'nllWeight', 'nllReduction', ...PARAMETER_NAMES] as const;

/** The arguments of the per-row inputs of stage 3. */
export const LOSS_INPUT_KEYS = ['refLogps', 'referenceWeights', 'referenceClip', 'rewards'] as const;

/** The checked loss: its entry and the fields of the native request it fills. */
export interface CheckedLoss {
  name: CanonicalLossName;
  entry: LossEntry;
  /** Rows per prompt: groupSize for exo, 2 for the pair losses. */
  rowsPerPrompt: number;
  fields: Required<NativeLossParameters>;
}

function checkParameter(entry: LossEntry, name: ParameterName, value: unknown): number {
  const use = parameterFor(entry, name);
  if (value === undefined) return use.default;
  if (use.allowInfinity && value === Infinity) return value;
  const checked = checkNumber(name, value, use);
  if (use.integer && !Number.isInteger(checked)) throw new RangeError(expected('an integer', name, value));
  return checked;
}

/** The loss and its parameters, from a snapshot of the call's arguments (each read once already). */
export function checkLoss(args: { readonly [K in (typeof LOSS_PARAMETER_KEYS)[number]]?: unknown }): CheckedLoss {
  const loss = checkOneOf('loss', args.loss ?? 'dpo', ACCEPTED_LOSS_NAMES);
  const entry = lossEntry(loss)!;
  const taken = parametersOf(entry);
  const numbers = {} as Record<ParameterName, number>;
  for (const name of PARAMETER_NAMES) {
    if (taken.includes(name)) {
      numbers[name] = checkParameter(entry, name, args[name]);
      continue;
    }
    if (args[name] !== undefined) {
      throw new TypeError(`Expected no ${name} with loss '${entry.name}', which does not take it (it takes ${taken.join(', ') || 'no parameter'}` +
        `; see docs/losses.md) but received ${describe(args[name])}`);
    }
    numbers[name] = PARAMETERS[name].default;
  }
  const nllReduction = checkOneOf('nllReduction', args.nllReduction ?? 'tokenMean', NLL_REDUCTIONS);
  return {
    name: entry.name as CanonicalLossName,
    entry,
    rowsPerPrompt: entry.name === 'exo' ? numbers.groupSize : 2,
    fields: {
      lossKind: lossKindOf(entry),
      averageLogProb: checkBoolean('averageLogProb', args.averageLogProb ?? false),
      nllWeight: checkNumber('nllWeight', args.nllWeight ?? 0, { min: 0 }),
      nllReduction: nllReduction === 'sum' ? 1 : 0,
      ...numbers,
    },
  };
}

/** A per-row array argument, as a Float32Array (a tensor's data is copied by `fromTensor`). */
export type RowArrayReader = (name: string, value: unknown, rows: number) => Float32Array | undefined;

function finiteRows(name: string, array: Float32Array): Float32Array {
  const bad = array.findIndex((x) => !Number.isFinite(x));
  if (bad >= 0) throw new RangeError(`Expected finite ${name} but received ${array[bad]} at row ${bad}`);
  return array;
}

/**
 * The reference log-probs of every row: one array, or K arrays combined before any loss (MRPO,
 * arXiv 2405.16388): the k >= 1 clipped to within `referenceClip * |r_0|` of the first, then
 * `r = -log sum_k w_k exp(-r_k)` with the normalized `referenceWeights` (default 1/K each), in
 * float64, rounded to float32 like any reference. `read` turns a tensor into its data.
 */
function referenceLogps(args: { refLogps?: unknown; referenceWeights?: unknown; referenceClip?: unknown }, loss: CheckedLoss, rows: number,
  read: RowArrayReader): Float32Array | null {
  if (!loss.entry.reference) {
    for (const name of ['refLogps', 'referenceWeights', 'referenceClip'] as const) {
      if (args[name] !== undefined) {
        throw new TypeError(`Expected no ${name} with loss '${loss.name}', which uses no reference model, but received ${describe(args[name])}`);
      }
    }
    return null;
  }
  const what = `a Float32Array of length ${rows} (the reference model's sequence log-probs, in the rows' order), or an array of such arrays`;
  if (args.refLogps === undefined) {
    throw new TypeError(`Expected ${what} for refLogps, which loss '${loss.name}' needs, but received undefined`);
  }
  const listed = Array.isArray(args.refLogps) ? readArray(args.refLogps, 64, 'refLogps') : null;
  if (Array.isArray(args.refLogps) && (listed === null || listed.length === 0)) {
    throw new TypeError(expected('between 1 and 64 reference arrays', 'refLogps', args.refLogps));
  }
  const references = (listed ?? [args.refLogps]).map((value, k) => {
    const name = listed ? `refLogps[${k}]` : 'refLogps';
    return finiteRows(name, read(name, value, rows) ?? checkTypedArray(name, value, Float32Array, rows));
  });
  const K = references.length;
  let weights = new Array<number>(K).fill(1 / K);
  if (args.referenceWeights !== undefined) {
    const given = readArray(args.referenceWeights, 64, 'referenceWeights');
    if (given === null || given.length !== K || !given.every((w) => typeof w === 'number' && Number.isFinite(w) && w > 0)) {
      throw new RangeError(expected(`${K} positive finite numbers (one per reference array)`, 'referenceWeights', args.referenceWeights));
    }
    const total = (given as number[]).reduce((sum, w) => sum + w, 0);
    weights = (given as number[]).map((w) => w / total);
  }
  const clip = args.referenceClip === undefined ? undefined : checkNumber('referenceClip', args.referenceClip, { min: 0 });
  if (K === 1) return references[0];
  const combined = new Float32Array(rows);
  const terms = new Float64Array(K);
  for (let s = 0; s < rows; s++) {
    const main = references[0][s];
    let largest = -Infinity;
    for (let k = 0; k < K; k++) {
      let r = references[k][s];
      if (k > 0 && clip !== undefined) r = Math.min(Math.max(r, main - clip * Math.abs(main)), main + clip * Math.abs(main));
      terms[k] = Math.log(weights[k]) - r;  // log(w_k exp(-r_k))
      largest = Math.max(largest, terms[k]);
    }
    let sum = 0;
    for (let k = 0; k < K; k++) sum += Math.exp(terms[k] - largest);
    combined[s] = -(largest + Math.log(sum));
  }
  return combined;
}

/** The per-row inputs of stage 3 besides the logits: the (combined) reference and exo's rewards. */
export function lossInputs(args: { refLogps?: unknown; referenceWeights?: unknown; referenceClip?: unknown; rewards?: unknown; exoRewardBeta?: unknown },
  loss: CheckedLoss, rows: number, read: RowArrayReader): { refLogps: Float32Array | null; rewards: Float32Array | null } {
  const refLogps = referenceLogps(args, loss, rows, read);
  let rewards: Float32Array | null = null;
  if (args.rewards !== undefined) {
    if (!loss.entry.rewards) {
      throw new TypeError(`Expected no rewards with loss '${loss.name}' (only exo takes rewards) but received ${describe(args.rewards)}`);
    }
    rewards = finiteRows('rewards', read('rewards', args.rewards, rows) ?? checkTypedArray('rewards', args.rewards, Float32Array, rows));
  } else if (args.exoRewardBeta !== undefined) {
    throw new TypeError(`Expected rewards with exoRewardBeta (the temperature of the rewards' target) but received no rewards`);
  }
  return { refLogps, rewards };
}
