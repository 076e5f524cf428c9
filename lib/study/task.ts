/**
 * The study's embedded task: addition of two numbers, where correctness is exact. Every problem
 * `a+b=` with `0 <= a, b <= maxOperand` is dealt, in an order drawn from the seed, into three
 * disjoint sets: SFT examples (`{prompt, completion}`), preference pairs for training and
 * held-out pairs for evaluation. A pair's rejected answer is a near miss of the right one: one
 * digit moved by one (42 -> 43, 41, 52 or 32), so that chosen and rejected share most of their
 * tokens, the case MinorDPO is about.
 */
import type { PreferenceRecord, SftRecord } from '../data/dataset';
import { mulberry32 } from '../example';
import { checkInteger, readArgs } from '../validate';

export interface TaskOptions {
  /** The seed of the deal and of the near misses (default 0). */
  seed?: number;
  /** The largest operand (default 99: answers of 1 to 3 digits). */
  maxOperand?: number;
  /** SFT examples (default 6000). */
  sft?: number;
  /** Preference pairs to train on (default 2000). */
  preferences?: number;
  /** Held-out pairs (default 300). */
  heldOut?: number;
}

export interface ArithmeticTask {
  sft: SftRecord[];
  preferences: PreferenceRecord[];
  heldOut: PreferenceRecord[];
}

/** A near miss of `answer`: one digit moved up or down by one (a leading digit never to 0). */
export function nearMiss(answer: number, random: () => number): string {
  const digits = String(answer).split('').map(Number);
  for (;;) {
    const at = Math.floor(random() * digits.length);
    const moved = [...digits];
    moved[at] = (moved[at] + (random() < 0.5 ? 9 : 1)) % 10;
    if (at === 0 && moved[0] === 0 && moved.length > 1) continue;
    return moved.join('');
  }
}

export function arithmeticTask(options: TaskOptions = {}): ArithmeticTask {
  const o = readArgs('arithmeticTask', options, ['seed', 'maxOperand', 'sft', 'preferences', 'heldOut'] as const) as TaskOptions;
  const seed = checkInteger('seed', o.seed ?? 0, 0, 2 ** 32 - 1);
  const maxOperand = checkInteger('maxOperand', o.maxOperand ?? 99, 1, 9999);
  const counts = { sft: o.sft ?? 6000, preferences: o.preferences ?? 2000, heldOut: o.heldOut ?? 300 };
  for (const [name, n] of Object.entries(counts)) checkInteger(name, n, 0, Number.MAX_SAFE_INTEGER);
  const total = (maxOperand + 1) ** 2;
  if (counts.sft + counts.preferences + counts.heldOut > total) {
    throw new RangeError(`Expected sft + preferences + heldOut <= the ${total} problems of operands up to ${maxOperand} but received ${counts.sft + counts.preferences + counts.heldOut}`);
  }
  const random = mulberry32(seed);
  const order = Array.from({ length: total }, (_, i) => i);
  for (let i = total - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const problem = (k: number) => ({ a: Math.floor(order[k] / (maxOperand + 1)), b: order[k] % (maxOperand + 1) });
  const sft: SftRecord[] = [];
  const pairs: PreferenceRecord[] = [];
  for (let k = 0; k < counts.sft + counts.preferences + counts.heldOut; k++) {
    const { a, b } = problem(k);
    const prompt = `${a}+${b}=`;
    if (k < counts.sft) {
      sft.push({ prompt, completion: String(a + b), line: k + 1 });
    } else {
      pairs.push({ prompt, chosen: String(a + b), rejected: nearMiss(a + b, random), line: k - counts.sft + 1 });
    }
  }
  const heldOut = pairs.splice(counts.preferences).map((p, i) => ({ ...p, line: i + 1 }));
  return { sft, preferences: pairs, heldOut };
}
