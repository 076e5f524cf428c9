/**
 * An independent float64 implementation of docs/losses.md in TypeScript, written from the formulas
 * (not from the C++), for the tests: per-token log-softmax, the masked sums, every loss, and
 * gradients by central finite differences of this loss (never by its derivative formulas).
 */
import type { LossName, LogitsDType } from '../lib/losses';

export function bf16ToNumber(bits: number): number {
  return new Float32Array(new Uint32Array([bits << 16]).buffer)[0];
}

export function f16ToNumber(bits: number): number {
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  const sign = bits & 0x8000 ? -1 : 1;
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Round to bf16, to nearest even (finite inputs). */
export function numberToBf16(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  if (Number.isNaN(x)) return 0x7fc0;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Round to f16, to nearest even, overflow to infinity. */
export function numberToF16(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(Math.fround(x));
  if (a >= 65520) return sign | 0x7c00;
  if (a < 2 ** -14) {
    // subnormal: units of 2^-24, ties to even
    const units = a / 2 ** -24;
    let r = Math.round(units);
    if (Math.abs(units - Math.trunc(units) - 0.5) === 0 && r % 2 === 1) r -= 1;
    return sign | r;
  }
  let exponent = Math.floor(Math.log2(a));
  if (2 ** exponent > a) exponent -= 1;
  if (2 ** (exponent + 1) <= a) exponent += 1;
  const mantissa = a / 2 ** exponent - 1; // [0, 1)
  const units = mantissa * 1024;
  let r = Math.floor(units);
  const rest = units - r;
  if (rest > 0.5 || (rest === 0.5 && r % 2 === 1)) r += 1;
  if (r === 1024) {
    r = 0;
    exponent += 1;
  }
  if (exponent + 15 >= 0x1f) return sign | 0x7c00;
  return sign | ((exponent + 15) << 10) | r;
}

export function decodeLogits(logits: Float32Array | Uint16Array, dtype: LogitsDType): Float64Array {
  const out = new Float64Array(logits.length);
  for (let i = 0; i < logits.length; i++) {
    out[i] = dtype === 'f32' ? logits[i] : dtype === 'bf16' ? bf16ToNumber(logits[i]) : f16ToNumber(logits[i]);
  }
  return out;
}

export interface TokenLogps {
  lse: Float64Array; // [R*T]
  lp: Float64Array; // [R*T], 0 where uncounted
  pi: Float64Array; // [R]
  n: Float64Array; // [R]
}

export function tokenLogps(z: Float64Array, shape: readonly number[], labels: Int32Array, ignoreIndex = -100): TokenLogps {
  const [R, T, V] = shape;
  const lse = new Float64Array(R * T);
  const lp = new Float64Array(R * T);
  const pi = new Float64Array(R);
  const n = new Float64Array(R);
  for (let s = 0; s < R; s++) {
    for (let t = 0; t < T; t++) {
      const k = s * T + t;
      const y = labels[k];
      if (y === ignoreIndex) continue;
      const base = k * V;
      let max = -Infinity;
      for (let v = 0; v < V; v++) max = Math.max(max, z[base + v]);
      let sum = 0;
      for (let v = 0; v < V; v++) sum += Math.exp(z[base + v] - max);
      lse[k] = max + Math.log(sum);
      lp[k] = z[base + y] - lse[k];
      pi[s] += lp[k];
      n[s] += 1;
    }
  }
  return { lse, lp, pi, n };
}

export interface LossOptions {
  beta: number;
  labelSmoothing: number;
  averageLogProb: boolean;
  nllWeight: number;
  dpopLambda: number;
  simpoGamma: number;
  orpoLambda: number;
  discopopTau: number;
  bcoDelta: number;
  chipoClip: number;
  groupSize: number;
  exoRewardBeta: number;
  nllReduction: 'tokenMean' | 'sum';
  /** exo's rewards, one per row (absent: none). */
  rewards?: Float32Array;
}

export function defaultOptions(loss: LossName, overrides: Partial<LossOptions> = {}): LossOptions {
  return {
    beta: loss === 'simpo' ? 2.0 : 0.1,
    labelSmoothing: loss === 'exo_pair' || loss === 'exo' ? 1e-3 : 0,
    averageLogProb: false,
    nllWeight: 0,
    dpopLambda: 50,
    simpoGamma: 0.5,
    orpoLambda: 0.1,
    discopopTau: 0.05,
    bcoDelta: 0,
    chipoClip: Infinity,
    groupSize: 2,
    exoRewardBeta: 0.5,
    nllReduction: 'tokenMean',
    ...overrides,
  };
}

const ls = (x: number) => Math.min(x, 0) - Math.log1p(Math.exp(-Math.abs(x)));
const sig = (x: number) => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x)));
/** x / n with x / 0 = 0 (an empty row counts as pi = 0). */
const per = (x: number, n: number) => (n > 0 ? x / n : 0);
/** ORPO's mean log-prob is clamped below 0 (see native/core/pair_loss.h). */
const ORPO_MAX_MEAN = -1e-6;
const odds = (a: number) => {
  const c = Math.min(a, ORPO_MAX_MEAN);
  return c - Math.log1p(-Math.exp(c));
};

const LENGTH_NORMALIZED: readonly LossName[] = ['ipo', 'sigmoid_norm', 'simpo', 'orpo'];

/** The loss of one pair, in float64, straight from the table of docs/losses.md. */
export function pairLoss64(loss: LossName, o: LossOptions, pw: number, pl: number, rw: number, rl: number, nw: number, nl: number): number {
  const b = o.beta;
  const e = o.labelSmoothing;
  if (loss === 'simpo' || loss === 'orpo') rw = rl = 0;
  const divide = LENGTH_NORMALIZED.includes(loss) || o.averageLogProb;
  const uw = divide ? per(pw - rw, nw) : pw - rw;
  const ul = divide ? per(pl - rl, nl) : pl - rl;
  const D = uw - ul;
  switch (loss) {
    case 'dpo':
    case 'sigmoid':
      return -(1 - e) * ls(b * D) - e * ls(-b * D);
    case 'minordpo': {
      const z = b * (uw - Math.max(0, ul));
      return -(1 - e) * ls(z) - e * ls(-z);
    }
    case 'ipo':
      return (D - 1 / (2 * b)) ** 2;
    case 'hinge':
      return Math.max(0, 1 - b * D);
    case 'robust':
      return (-(1 - e) * ls(b * D) + e * ls(-b * D)) / (1 - 2 * e);
    case 'exo_pair':
      return sig(b * D) * (ls(b * D) - Math.log(1 - e)) + sig(-b * D) * (ls(-b * D) - Math.log(e));
    case 'nca_pair':
      return -ls(b * uw) - 0.5 * ls(-b * uw) - 0.5 * ls(-b * ul);
    case 'bco_pair':
      return -ls(b * uw - o.bcoDelta) - ls(-(b * ul - o.bcoDelta));
    case 'sppo_hard':
      return (uw - 1 / (2 * b)) ** 2 + (ul + 1 / (2 * b)) ** 2;
    case 'apo_zero':
      return 1 - sig(b * uw) + sig(b * ul);
    case 'apo_down':
      return sig(b * uw) + (1 - sig(b * D));
    case 'discopop': {
      const k = sig((b * D) / o.discopopTau);
      return (1 - k) * -ls(b * D) + k * Math.exp(-b * D);
    }
    case 'sigmoid_norm':
      return -ls(b * D);
    case 'dpop':
      return -ls(b * (D - o.dpopLambda * Math.max(0, -uw)));
    case 'simpo':
      return -ls(b * D - o.simpoGamma);
    case 'orpo':
      return -o.orpoLambda * ls(odds(uw) - odds(ul));
    case 'chipo': {
      const h = o.beta * (Math.exp(uw) + uw - Math.exp(ul) - ul);
      return -ls(Math.min(Math.max(h, -o.chipoClip), o.chipoClip));
    }
    case 'exo':
      throw new Error('exo is a loss of a group: groupLoss64');
  }
}

/** exo's loss of prompt i: KL(q || p) over its K responses, rows k*G + i, straight from docs/losses.md. */
export function groupLoss64(o: LossOptions, G: number, i: number, pi: ArrayLike<number>, n: ArrayLike<number>, ref: ArrayLike<number>): number {
  const K = o.groupSize;
  const u: number[] = [];
  for (let k = 0; k < K; k++) {
    const row = k * G + i;
    u.push(o.averageLogProb ? per(pi[row] - ref[row], n[row]) : pi[row] - ref[row]);
  }
  const softmax = (x: number[]) => {
    const m = Math.max(...x);
    const e = x.map((v) => Math.exp(v - m));
    const total = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / total);
  };
  const q = softmax(u.map((v) => o.beta * v));
  const rewards = o.rewards;
  const p = rewards
    ? softmax(u.map((_, k) => rewards[k * G + i] / o.exoRewardBeta))
    : u.map((_, k) => (k === 0 ? 1 - o.labelSmoothing : o.labelSmoothing / (K - 1)));
  return q.reduce((sum, qk, k) => sum + qk * (Math.log(qk) - Math.log(p[k])), 0);
}

/**
 * The batch loss: mean over prompts (pairs, or exo's groups of K), plus orpo's chosen-token NLL
 * and nllWeight * NLL (token mean, or the mean of -pw with nllReduction 'sum') over the chosen rows.
 */
export function batchLoss64(loss: LossName, o: LossOptions, pi: ArrayLike<number>, n: ArrayLike<number>, ref: ArrayLike<number> | null): number {
  const K = loss === 'exo' ? o.groupSize : 2;
  const P = pi.length / K;
  let sum = 0;
  for (let i = 0; i < P; i++) {
    sum += loss === 'exo'
      ? groupLoss64(o, P, i, pi, n, ref!)
      : pairLoss64(loss, o, pi[i], pi[P + i], ref ? ref[i] : 0, ref ? ref[P + i] : 0, n[i], n[P + i]);
  }
  let total = sum / P;
  let logps = 0;
  let tokens = 0;
  for (let i = 0; i < P; i++) {
    logps += pi[i];
    tokens += n[i];
  }
  const tokenMean = tokens > 0 ? -logps / tokens : 0;
  if (loss === 'orpo') total += tokenMean;
  if (o.nllWeight > 0) total += o.nllWeight * (o.nllReduction === 'sum' ? -logps / P : tokenMean);
  return total;
}

/**
 * dLoss/dpi[s] by central differences of batchLoss64, with a fixed step: losses depend on
 * differences of logps, and some (discopop) bend sharply, so the step must not grow with |pi|.
 */
export function coefByFiniteDifference(loss: LossName, o: LossOptions, pi: ArrayLike<number>, n: ArrayLike<number>, ref: ArrayLike<number> | null,
  h = 1e-4): Float64Array {
  const coef = new Float64Array(pi.length);
  const x = Float64Array.from(pi);
  for (let s = 0; s < x.length; s++) {
    if (n[s] === 0) continue; // an empty row has no log-prob to move
    const keep = x[s];
    x[s] = keep + h;
    const up = batchLoss64(loss, o, x, n, ref);
    x[s] = keep - h;
    const down = batchLoss64(loss, o, x, n, ref);
    x[s] = keep;
    coef[s] = (up - down) / (2 * h);
  }
  return coef;
}

/** dlogits in float64 from per-row coefficients: c[s] * m * (onehot - softmax). */
export function dlogits64(z: Float64Array, shape: readonly number[], labels: Int32Array, lse: Float64Array, coef: ArrayLike<number>, ignoreIndex = -100): Float64Array {
  const [R, T, V] = shape;
  const out = new Float64Array(R * T * V);
  for (let s = 0; s < R; s++) {
    for (let t = 0; t < T; t++) {
      const k = s * T + t;
      if (labels[k] === ignoreIndex) continue;
      for (let v = 0; v < V; v++) {
        const p = Math.exp(z[k * V + v] - lse[k]);
        out[k * V + v] = coef[s] * ((v === labels[k] ? 1 : 0) - p);
      }
    }
  }
  return out;
}
