/**
 * Float64 forward references of lib/ops/nn.ts, written from the formulas (llm.c's train_gpt2.c
 * for the math), for the tests. Gradients are never derived here: the tests take them by
 * central finite differences of these functions.
 */
import { mulberry32 } from '../lib/example';

export type Vec = Float64Array;

/** Uniform in [-scale, scale), rounded to f32. */
export function randomFloats(length: number, seed: number, scale = 1): Float32Array {
  const random = mulberry32(seed);
  return Float32Array.from({ length }, () => (random() * 2 - 1) * scale);
}

const GELU_SCALE = Math.sqrt(2 / Math.PI);

export function add64(a: Vec, b: Vec): Vec {
  return a.map((x, i) => x + b[i % b.length]);
}

export function mul64(a: Vec, b: Vec): Vec {
  return a.map((x, i) => x * b[i % b.length]);
}

/** Sums of consecutive groups of `cols` (the last dim), divided by cols for the mean. */
export function reduce64(a: Vec, cols: number, mean: boolean): Vec {
  const out = new Float64Array(a.length / cols);
  for (let r = 0; r < out.length; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += a[r * cols + c];
    out[r] = mean ? s / cols : s;
  }
  return out;
}

export function embedding64(idx: Int32Array, table: Vec, channels: number): Vec {
  const out = new Float64Array(idx.length * channels);
  idx.forEach((k, i) => out.set(table.subarray(k * channels, (k + 1) * channels), i * channels));
  return out;
}

export function layernorm64(inp: Vec, weight: Vec, bias: Vec, C: number): Vec {
  const out = new Float64Array(inp.length);
  for (let r = 0; r < inp.length / C; r++) {
    const x = inp.subarray(r * C, (r + 1) * C);
    const mean = x.reduce((s, v) => s + v, 0) / C;
    const variance = x.reduce((s, v) => s + (v - mean) ** 2, 0) / C;
    const rstd = 1 / Math.sqrt(variance + 1e-5);
    for (let c = 0; c < C; c++) out[r * C + c] = (x[c] - mean) * rstd * weight[c] + bias[c];
  }
  return out;
}

export function gelu64(inp: Vec): Vec {
  return inp.map((x) => 0.5 * x * (1 + Math.tanh(GELU_SCALE * (x + 0.044715 * x ** 3))));
}

export function softmax64(inp: Vec, cols: number): Vec {
  const out = new Float64Array(inp.length);
  for (let r = 0; r < inp.length / cols; r++) {
    const x = inp.subarray(r * cols, (r + 1) * cols);
    const max = Math.max(...x);
    const e = x.map((v) => Math.exp(v - max));
    const sum = e.reduce((s, v) => s + v, 0);
    for (let c = 0; c < cols; c++) out[r * cols + c] = e[c] / sum;
  }
  return out;
}

/** Causal self-attention: out [B, T, C] and att [B, NH, T, T] from qkv [B, T, 3C]. */
export function attention64(qkv: Vec, B: number, T: number, C: number, NH: number): { out: Vec; att: Vec } {
  const hs = C / NH;
  const out = new Float64Array(B * T * C);
  const att = new Float64Array(B * NH * T * T);
  const at = (b: number, t: number, part: number, h: number, i: number) => qkv[(b * T + t) * 3 * C + part * C + h * hs + i];
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      for (let t = 0; t < T; t++) {
        const scores: number[] = [];
        for (let t2 = 0; t2 <= t; t2++) {
          let dot = 0;
          for (let i = 0; i < hs; i++) dot += at(b, t, 0, h, i) * at(b, t2, 1, h, i);
          scores.push(dot / Math.sqrt(hs));
        }
        const weights = softmax64(Float64Array.from(scores), scores.length);
        weights.forEach((w, t2) => (att[((b * NH + h) * T + t) * T + t2] = w));
        for (let i = 0; i < hs; i++) {
          let o = 0;
          for (let t2 = 0; t2 <= t; t2++) o += weights[t2] * at(b, t2, 2, h, i);
          out[(b * T + t) * C + h * hs + i] = o;
        }
      }
    }
  }
  return { out, att };
}

/**
 * d(sum(f(x) * w))/dx by central differences, in float64: the gradient any backward given
 * dout = w must accumulate.
 */
export function numericGrad(f: (x: Vec) => Vec, x: Vec, w: Vec, h = 1e-5): Vec {
  const grad = new Float64Array(x.length);
  const probe = Float64Array.from(x);
  const dotW = (y: Vec) => y.reduce((s, v, i) => s + v * w[i], 0);
  for (let i = 0; i < x.length; i++) {
    probe[i] = x[i] + h;
    const up = dotW(f(probe));
    probe[i] = x[i] - h;
    const down = dotW(f(probe));
    probe[i] = x[i];
    grad[i] = (up - down) / (2 * h);
  }
  return grad;
}

/** RMS norm over the last dim C: x / sqrt(mean(x^2) + eps) * (weight + offset). */
export function rmsnorm64(inp: Vec, weight: Vec, C: number, eps: number, offset = 0): Vec {
  const out = new Float64Array(inp.length);
  for (let r = 0; r < inp.length / C; r++) {
    const x = inp.subarray(r * C, (r + 1) * C);
    const rstd = 1 / Math.sqrt(x.reduce((s, v) => s + v * v, 0) / C + eps);
    for (let c = 0; c < C; c++) out[r * C + c] = x[c] * rstd * (weight[c] + offset);
  }
  return out;
}

/** Rotary embeddings, rotate_half form: x [B, T, H, D] by the angles theta_i t (cos, sin of them in f64). */
export function rope64(inp: Vec, B: number, T: number, H: number, D: number, angle: (t: number, i: number) => number): Vec {
  const out = new Float64Array(inp.length);
  const half = D / 2;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < H; h++) {
        const base = ((b * T + t) * H + h) * D;
        for (let i = 0; i < half; i++) {
          const c = Math.cos(angle(t, i)), s = Math.sin(angle(t, i));
          const x1 = inp[base + i], x2 = inp[base + i + half];
          out[base + i] = x1 * c - x2 * s;
          out[base + i + half] = x2 * c + x1 * s;
        }
      }
    }
  }
  return out;
}

/** act(gate) * up, act SiLU or tanh GELU. */
export function glu64(gate: Vec, up: Vec, activation: 'silu' | 'gelu_tanh'): Vec {
  return gate.map((x, i) => (activation === 'silu' ? x / (1 + Math.exp(-x)) : 0.5 * x * (1 + Math.tanh(GELU_SCALE * (x + 0.044715 * x ** 3)))) * up[i]);
}

/**
 * Grouped-query causal attention: q [B, T, NH D], k, v [B, T, NKV D] (query head h reads key/value
 * head h / (NH / NKV)), scores scaled by `scale`, keys within `window` positions (0: all earlier).
 */
export function groupedAttention64(q: Vec, k: Vec, v: Vec, B: number, T: number, NH: number, NKV: number, D: number, scale: number, window: number):
  { out: Vec; att: Vec } {
  const out = new Float64Array(B * T * NH * D);
  const att = new Float64Array(B * NH * T * T);
  const group = NH / NKV;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      const g = Math.floor(h / group);
      for (let t = 0; t < T; t++) {
        const start = window > 0 ? Math.max(0, t - window + 1) : 0;
        const scores: number[] = [];
        for (let t2 = start; t2 <= t; t2++) {
          let dot = 0;
          for (let i = 0; i < D; i++) dot += q[(b * T + t) * NH * D + h * D + i] * k[(b * T + t2) * NKV * D + g * D + i];
          scores.push(dot * scale);
        }
        const weights = softmax64(Float64Array.from(scores), scores.length);
        weights.forEach((w, j) => (att[((b * NH + h) * T + t) * T + start + j] = w));
        for (let i = 0; i < D; i++) {
          let o = 0;
          weights.forEach((w, j) => (o += w * v[(b * T + start + j) * NKV * D + g * D + i]));
          out[(b * T + t) * NH * D + h * D + i] = o;
        }
      }
    }
  }
  return { out, att };
}
