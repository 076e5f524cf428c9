/**
 * The baseline a user would write without fusedpo: plain TypeScript over Float32Arrays,
 * unfused: materialize the log-softmax [N, V], gather the labels, sum per sequence, the DPO
 * (or MinorDPO) loss, then the gradient [N, V] from the saved log-softmax.
 *
 * Shapes: logits [2P, T, V] f32, labels [2P, T], refLogps [2P]. Allocates two N*V arrays
 * (log-softmax and dlogits), as an autograd framework would.
 */
export function unfusedDpo(
  logits: Float32Array,
  shape: readonly [number, number, number],
  labels: Int32Array,
  refLogps: Float32Array,
  beta: number,
  minor: boolean,
): { loss: number; dlogits: Float32Array } {
  const [R, T, V] = shape;
  const P = R / 2;
  const logSoftmax = new Float32Array(R * T * V);
  for (let k = 0; k < R * T; k++) {
    const base = k * V;
    let max = -Infinity;
    for (let v = 0; v < V; v++) max = Math.max(max, logits[base + v]);
    let sum = 0;
    for (let v = 0; v < V; v++) sum += Math.exp(logits[base + v] - max);
    const lse = max + Math.log(sum);
    for (let v = 0; v < V; v++) logSoftmax[base + v] = logits[base + v] - lse;
  }
  const pi = new Float64Array(R);
  for (let s = 0; s < R; s++) {
    for (let t = 0; t < T; t++) {
      const k = s * T + t;
      if (labels[k] !== -100) pi[s] += logSoftmax[k * V + labels[k]];
    }
  }
  let loss = 0;
  const coef = new Float64Array(R);
  for (let i = 0; i < P; i++) {
    const uw = pi[i] - refLogps[i];
    const ul = pi[P + i] - refLogps[P + i];
    const z = beta * (uw - (minor ? Math.max(0, ul) : ul));
    loss += (Math.min(z, 0) - Math.log1p(Math.exp(-Math.abs(z)))) * -1;
    const slope = -beta / (1 + Math.exp(z)); // d(-logsigmoid(z))/dz * beta
    coef[i] = slope / P;
    coef[P + i] = minor && ul < 0 ? 0 : -slope / P;
  }
  const dlogits = new Float32Array(R * T * V);
  for (let s = 0; s < R; s++) {
    for (let t = 0; t < T; t++) {
      const k = s * T + t;
      if (labels[k] === -100) continue;
      const base = k * V;
      for (let v = 0; v < V; v++) dlogits[base + v] = -coef[s] * Math.exp(logSoftmax[base + v]);
      dlogits[base + labels[k]] += coef[s];
    }
  }
  return { loss: loss / P, dlogits };
}
