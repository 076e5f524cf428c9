/**
 * The angle tables of rotary embeddings, as Hugging Face's transformers computes them (in
 * float32, so that a model tuned here rotates as it does there at any position):
 *
 *   inv_freq_i = 1 / base^(2i / D)                          i < D/2   (the "default" rope)
 *   llama3 scaling (Llama 3.1, 3.2; factor f, low and high frequency factors l, h, original
 *   context L): wavelength w_i = 2 pi / inv_freq_i; w_i > L / l: inv_freq_i / f; w_i < L / h:
 *   unchanged; between: (1 - s) inv_freq_i / f + s inv_freq_i, s = (L / w_i - l) / (h - l)
 *   linear scaling (factor f): inv_freq_i / f
 *   angle(t, i) = t inv_freq_i;  cos, sin [positions, D/2]
 *
 * Every product and quotient is rounded to float32 where transformers' is (Math.fround).
 */
export type RopeScaling =
  | { type: 'default' }
  | { type: 'linear'; factor: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalContext: number };

/** The inverse frequencies [D/2] of a head dim, a base (rope_theta) and a scaling. */
export function inverseFrequencies(headDim: number, base: number, scaling: RopeScaling): Float32Array {
  const half = headDim / 2;
  const f = Math.fround;
  const inv = Float32Array.from({ length: half }, (_, i) => f(1 / f(base ** f((2 * i) / headDim))));
  if (scaling.type === 'linear') return inv.map((x) => f(x / scaling.factor));
  if (scaling.type === 'llama3') {
    const { factor, lowFreqFactor: low, highFreqFactor: high, originalContext: L } = scaling;
    const lowWavelength = L / low, highWavelength = L / high;
    return inv.map((x) => {
      const wavelength = f((2 * Math.PI) / x);
      if (wavelength > lowWavelength) return f(x / factor);
      if (wavelength < highWavelength) return x;
      const smooth = f((L / wavelength - low) / (high - low));
      return f(f((1 - smooth) * f(x / factor)) + f(smooth * x));
    });
  }
  return inv;
}

/** cos and sin [positions, D/2] of the angles t inv_freq_i, t < positions. */
export function ropeTables(positions: number, inverse: Float32Array): { cos: Float32Array; sin: Float32Array } {
  const half = inverse.length;
  const cos = new Float32Array(positions * half), sin = new Float32Array(positions * half);
  for (let t = 0; t < positions; t++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(t * inverse[i]);
      cos[t * half + i] = Math.cos(angle);
      sin[t * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}
