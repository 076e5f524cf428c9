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
