/**
 * Ops on Tensors, with their gradients: each checks its inputs' shapes here (the kernels trust
 * them), runs one native forward kernel into a new tensor, and records a node whose backward
 * closure runs the native backward kernel (lib/autograd.ts). The kernels: native/core and
 * native/cpu, one file per concern; their typed-array forms: lib/ops/nn.ts.
 *
 * f32 tensors, contiguous. Backward kernels accumulate (+=) into the gradients they are given,
 * so each backward closure hands them fresh zeroed tensors.
 */
import { record, registerGradientSum } from './autograd';
import { native, type NativeStorage } from './native';
import { Tensor, sizeOf } from './tensor';
import { expected } from './validate';

const FAST = 1;

/** The storage of a live f32 (or given dtype) tensor, for a kernel. */
function data(t: Tensor, op: string, dtype: Tensor['dtype'] = 'f32'): NativeStorage {
  if (!(t instanceof Tensor)) throw new TypeError(expected('a Tensor', op, t));
  const { storage, byteOffset } = t.nativeStorage(op);
  if (t.dtype !== dtype) throw new TypeError(`${op}: expected a ${dtype} tensor but received ${t}`);
  if (byteOffset !== 0) throw new Error(`${op}: tensors at an offset in their storage are not supported`);
  return storage;
}

function shapeError(op: string, what: string, t: Tensor): TypeError {
  return new TypeError(`${op}: expected ${what} but received ${t}`);
}

/** Gradient tensors for the inputs that need one (null for the others). */
function gradsFor(inputs: Tensor[]): (Tensor | null)[] {
  return inputs.map((t) => (t.requiresGrad || t.node !== null ? Tensor.zeros(t.shape) : null));
}

function storageOrNull(t: Tensor | null, op: string): NativeStorage | null {
  return t ? data(t, op) : null;
}

/** `b`'s shape must be the trailing dims of `a`'s: b broadcasts over a's leading dims. */
function broadcastRows(op: string, a: Tensor, b: Tensor): { rows: number; cols: number } {
  const offset = a.shape.length - b.shape.length;
  if (offset < 0 || b.shape.some((d, i) => d !== a.shape[offset + i]) || b.size === 0) {
    throw new TypeError(`${op}: expected the second shape to be the trailing dims of the first (broadcast over leading dims) but received [${a.shape}] and [${b.shape}]`);
  }
  return { rows: a.size / b.size, cols: b.size };
}

/** a + b, b broadcast over a's leading dims ([..., C] + [C], [B, T, C] + [T, C], equal shapes). */
export function add(a: Tensor, b: Tensor): Tensor {
  const { rows, cols } = broadcastRows('add', a, b);
  const out = Tensor.zeros(a.shape);
  native().addForward(FAST, data(a, 'add'), data(b, 'add'), data(out, 'add'), rows, cols);
  return record(out, {
    op: 'add',
    inputs: [a, b],
    backward: (g) => {
      const [da, db] = gradsFor([a, b]);
      native().addBackward(FAST, data(g, 'add backward'), storageOrNull(da, 'add backward'), storageOrNull(db, 'add backward'), rows, cols);
      return [da, db];
    },
  });
}

/** a * b elementwise, b broadcast as in add. */
export function mul(a: Tensor, b: Tensor): Tensor {
  const { rows, cols } = broadcastRows('mul', a, b);
  const out = Tensor.zeros(a.shape);
  native().mulForward(FAST, data(a, 'mul'), data(b, 'mul'), data(out, 'mul'), rows, cols);
  return record(out, {
    op: 'mul',
    inputs: [a, b],
    backward: (g) => {
      const [da, db] = gradsFor([a, b]);
      native().mulBackward(FAST, data(a, 'mul backward'), data(b, 'mul backward'), data(g, 'mul backward'),
        storageOrNull(da, 'mul backward'), storageOrNull(db, 'mul backward'), rows, cols);
      return [da, db];
    },
  });
}

/** a * s for a number s. */
export function scale(a: Tensor, s: number): Tensor {
  if (typeof s !== 'number' || !Number.isFinite(s)) throw new TypeError(expected('a finite number', 'scale', s));
  const out = Tensor.zeros(a.shape);
  native().scaleForward(FAST, data(a, 'scale'), s, data(out, 'scale'), a.size);
  return record(out, {
    op: 'scale',
    inputs: [a],
    backward: (g) => {
      const [da] = gradsFor([a]);
      if (da) native().scaleBackward(FAST, data(g, 'scale backward'), s, data(da, 'scale backward'), a.size);
      return [da];
    },
  });
}

function reduceAll(kind: 'sum' | 'mean', a: Tensor): Tensor {
  if (a.size === 0) throw shapeError(kind, 'a tensor with elements', a);
  const out = Tensor.zeros([]);
  const forward = kind === 'sum' ? native().sumForward : native().meanForward;
  const backward = kind === 'sum' ? native().sumBackward : native().meanBackward;
  forward(FAST, data(a, kind), data(out, kind), 1, a.size);
  return record(out, {
    op: kind,
    inputs: [a],
    backward: (g) => {
      const [da] = gradsFor([a]);
      if (da) backward(FAST, data(g, `${kind} backward`), data(da, `${kind} backward`), 1, a.size);
      return [da];
    },
  });
}

/** The sum of all elements (a one-element tensor). */
export function sum(a: Tensor): Tensor {
  return reduceAll('sum', a);
}

/** The mean of all elements (a one-element tensor). */
export function mean(a: Tensor): Tensor {
  return reduceAll('mean', a);
}

interface Product {
  a: Tensor;
  b: Tensor;
  transA: boolean;
  transB: boolean;
  batch: number;
  m: number;
  n: number;
  k: number;
}

/** C = op(A) @ op(B) for each of `batch` matrices, into a new tensor of `shape`. */
function product(op: string, p: Product, shape: readonly number[]): Tensor {
  const out = Tensor.zeros(shape);
  const sizeA = p.m * p.k;
  const sizeB = p.k * p.n;
  native().matmul({
    impl: FAST, a: data(p.a, op), b: data(p.b, op), c: data(out, op),
    batch: p.batch, m: p.m, n: p.n, k: p.k, transA: p.transA, transB: p.transB,
    strideA: p.a.size === sizeA ? 0 : sizeA, strideB: p.b.size === sizeB ? 0 : sizeB, strideC: p.m * p.n,
    accumulate: false,
  });
  return out;
}

/**
 * a [..., M, K] @ b, where b is [K, N] (or, with transB, [N, K]: a linear layer's weight) shared
 * over a's leading dims, or a batch [..., K, N] (or [..., N, K]) with the same leading dims as a.
 * Returns [..., M, N]. Backward: dA = dC op(B)^T, dB = op(A)^T dC, by the same kernel.
 */
export function matmul(a: Tensor, b: Tensor, options: { transB?: boolean } = {}): Tensor {
  const transB = options.transB ?? false;
  if (a.shape.length < 2) throw shapeError('matmul', 'a of shape [..., M, K]', a);
  const k = a.shape[a.shape.length - 1];
  const shared = b.shape.length === 2;
  const leading = a.shape.slice(0, -2);
  if (!shared && (b.shape.length !== a.shape.length || leading.some((d, i) => d !== b.shape[i]))) {
    throw new TypeError(`matmul: expected b of shape [K, N] or [${leading}, K, N] but received [${b.shape}] with a of [${a.shape}]`);
  }
  const bk = b.shape[b.shape.length - (transB ? 1 : 2)];
  const n = b.shape[b.shape.length - (transB ? 2 : 1)];
  if (bk !== k) {
    throw new TypeError(`matmul: expected b's K (${transB ? 'last' : 'second to last'} dim) to be ${k} but received [${b.shape}] with a of [${a.shape}]${transB ? ', transB' : ''}`);
  }
  // A shared b lets every row of a's leading dims go through one product of M' = all rows.
  const batch = shared ? 1 : sizeOf(leading);
  const m = shared ? a.size / k : a.shape[a.shape.length - 2];
  const outShape = [...a.shape.slice(0, -1), n];
  const out = product('matmul', { a, b, transA: false, transB, batch, m, n, k }, outShape);
  return record(out, {
    op: 'matmul',
    inputs: [a, b],
    backward: (g) => {
      const needA = a.requiresGrad || a.node !== null;
      const needB = b.requiresGrad || b.node !== null;
      // dA [M, K] = dC [M, N] @ op(B)^T: B is [K, N] -> transB; B is [N, K] -> as stored.
      const da = needA ? product('matmul backward', { a: g, b, transA: false, transB: !transB, batch, m, n: k, k: n }, a.shape) : null;
      // dB = op(A)^T dC: [K, N] = A^T [K, M] @ dC [M, N]; with transB, [N, K] = dC^T @ A.
      const db = !needB ? null : transB
        ? product('matmul backward', { a: g, b: a, transA: true, transB: false, batch, m: n, n: k, k: m }, b.shape)
        : product('matmul backward', { a, b: g, transA: true, transB: false, batch, m: k, n, k: m }, b.shape);
      return [da, db];
    },
  });
}

/** x [..., in] @ weight^T + bias: weight [out, in] (PyTorch's layout), bias [out] or none. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  if (weight.shape.length !== 2) throw shapeError('linear', 'a weight of shape [out, in]', weight);
  const y = matmul(x, weight, { transB: true });
  return bias ? add(y, bias) : y;
}

/** Rows of `table` [V, C] picked by `indices` (i32 tensor or Int32Array, values in [0, V)): [...indices.shape, C]. */
export function embedding(table: Tensor, indices: Tensor | Int32Array): Tensor {
  if (table.shape.length !== 2) throw shapeError('embedding', 'a table of shape [V, C]', table);
  const [vocab, channels] = table.shape;
  const idx = indices instanceof Tensor ? indices : Tensor.from(indices, [indices.length], 'i32');
  const bad = (idx.toArray() as Int32Array).findIndex((i) => i < 0 || i >= vocab);
  if (bad >= 0) {
    throw new RangeError(`embedding: expected indices in [0, ${vocab}) but received ${idx.toArray()[bad]} at position ${bad}`);
  }
  const out = Tensor.zeros([...idx.shape, channels]);
  native().embeddingForward(FAST, data(idx, 'embedding', 'i32'), data(table, 'embedding'), data(out, 'embedding'), idx.size, channels);
  return record(out, {
    op: 'embedding',
    inputs: [table],
    backward: (g) => {
      const [dtable] = gradsFor([table]);
      if (dtable) native().embeddingBackward(FAST, data(idx, 'embedding backward', 'i32'), data(g, 'embedding backward'), data(dtable, 'embedding backward'), idx.size, channels);
      return [dtable];
    },
  });
}

/** Layer normalization over the last dim C (eps 1e-5), with weight and bias [C]. */
export function layerNorm(x: Tensor, weight: Tensor, bias: Tensor): Tensor {
  const channels = x.shape[x.shape.length - 1];
  if (x.shape.length < 1 || weight.shape.length !== 1 || weight.shape[0] !== channels) throw shapeError('layerNorm', `a weight of shape [${channels}]`, weight);
  if (bias.shape.length !== 1 || bias.shape[0] !== channels) throw shapeError('layerNorm', `a bias of shape [${channels}]`, bias);
  const rows = x.size / channels;
  const out = Tensor.zeros(x.shape);
  const meanT = Tensor.zeros([rows]);
  const rstd = Tensor.zeros([rows]);
  native().layernormForward(FAST, data(x, 'layerNorm'), data(weight, 'layerNorm'), data(bias, 'layerNorm'), data(out, 'layerNorm'),
    data(meanT, 'layerNorm'), data(rstd, 'layerNorm'), rows, channels);
  return record(out, {
    op: 'layerNorm',
    inputs: [x, weight, bias],
    backward: (g) => {
      // The kernel writes all three: give it scratch for the ones nobody needs.
      const grads = [x, weight, bias].map((t) => Tensor.zeros(t.shape));
      native().layernormBackward(FAST, data(g, 'layerNorm backward'), data(x, 'layerNorm backward'), data(weight, 'layerNorm backward'),
        data(meanT, 'layerNorm backward'), data(rstd, 'layerNorm backward'), data(grads[0], 'layerNorm backward'),
        data(grads[1], 'layerNorm backward'), data(grads[2], 'layerNorm backward'), rows, channels);
      return grads;
    },
  });
}

/** GELU, tanh approximation (GPT-2's). */
export function gelu(x: Tensor): Tensor {
  const out = Tensor.zeros(x.shape);
  native().geluForward(FAST, data(x, 'gelu'), data(out, 'gelu'), x.size);
  return record(out, {
    op: 'gelu',
    inputs: [x],
    backward: (g) => {
      const [dx] = gradsFor([x]);
      if (dx) native().geluBackward(FAST, data(x, 'gelu backward'), data(g, 'gelu backward'), data(dx, 'gelu backward'), x.size);
      return [dx];
    },
  });
}

/** Softmax over the last dim. */
export function softmax(x: Tensor): Tensor {
  const cols = x.shape[x.shape.length - 1];
  if (x.shape.length < 1 || cols === 0) throw shapeError('softmax', 'a tensor with a non-empty last dim', x);
  const rows = x.size / cols;
  const out = Tensor.zeros(x.shape);
  native().softmaxForward(FAST, data(x, 'softmax'), data(out, 'softmax'), rows, cols);
  return record(out, {
    op: 'softmax',
    inputs: [x],
    backward: (g) => {
      const [dx] = gradsFor([x]);
      if (dx) native().softmaxBackward(FAST, data(out, 'softmax backward'), data(g, 'softmax backward'), data(dx, 'softmax backward'), rows, cols);
      return [dx];
    },
  });
}

/**
 * Causal self-attention: qkv [B, T, 3C] (queries, keys, values side by side) with `heads`
 * heads dividing C, to [B, T, C]. Saves the attention weights [B, heads, T, T] for backward.
 */
export function causalSelfAttention(qkv: Tensor, heads: number): Tensor {
  if (qkv.shape.length !== 3 || qkv.shape[2] % 3 !== 0) throw shapeError('causalSelfAttention', 'qkv of shape [B, T, 3C]', qkv);
  const [batch, tokens, threeC] = qkv.shape;
  const channels = threeC / 3;
  if (!Number.isInteger(heads) || heads < 1 || channels % heads !== 0) {
    throw new RangeError(`causalSelfAttention: expected a head count dividing C = ${channels} but received ${heads}`);
  }
  const att = Tensor.zeros([batch, heads, tokens, tokens]);
  const out = Tensor.zeros([batch, tokens, channels]);
  native().attentionForward(FAST, data(qkv, 'causalSelfAttention'), data(att, 'causalSelfAttention'), data(out, 'causalSelfAttention'),
    batch, tokens, channels, heads);
  return record(out, {
    op: 'causalSelfAttention',
    inputs: [qkv],
    backward: (g) => {
      const [dqkv] = gradsFor([qkv]);
      if (dqkv) native().attentionBackward(FAST, data(qkv, 'causalSelfAttention backward'), data(att, 'causalSelfAttention backward'),
        data(g, 'causalSelfAttention backward'), data(dqkv, 'causalSelfAttention backward'), batch, tokens, channels, heads);
      return [dqkv];
    },
  });
}

/**
 * Mean cross-entropy of `logits` [..., T, V] (or [N, V]) against `labels` (one per row of V,
 * `ignoreIndex` (-100) not counted), through the fused log-softmax-gather kernels: no
 * probability tensor is made. Backward: dlogits = -(onehot - softmax) / count.
 */
export function crossEntropy(logits: Tensor, labels: Int32Array, ignoreIndex = -100): Tensor {
  if (logits.shape.length < 2) throw shapeError('crossEntropy', 'logits of shape [..., V]', logits);
  const vocab = logits.shape[logits.shape.length - 1];
  const rows = logits.shape.length === 2 ? 1 : sizeOf(logits.shape.slice(0, -2));
  const tokens = logits.size / vocab / rows;
  if (!(labels instanceof Int32Array) || labels.length !== rows * tokens) {
    throw new TypeError(expected(`an Int32Array of ${rows * tokens} labels`, 'crossEntropy labels', labels));
  }
  const bad = labels.findIndex((y) => (y < 0 || y >= vocab) && y !== ignoreIndex);
  if (bad >= 0) throw new RangeError(`crossEntropy: expected labels in [0, ${vocab}) or ${ignoreIndex} but received ${labels[bad]} at position ${bad}`);
  const source = logits.nativeStorage('crossEntropy');
  if (logits.dtype !== 'f32' && logits.dtype !== 'bf16') throw shapeError('crossEntropy', 'f32 or bf16 logits', logits);
  const dtype = logits.dtype === 'f32' ? 0 : 1;
  const result = native().preferenceLoss({
    impl: FAST, dtype, rows, tokens, vocab, labels, ignoreIndex,
    logits: source.storage, logitsByteOffset: source.byteOffset,
    allowNonFinite: false, withLoss: false, returnLse: true,
  });
  if (result.nonFinite) {
    const { row, token, vocab: v } = result.nonFinite;
    throw new RangeError(`crossEntropy: expected finite logits but found a non-finite one at row ${row}, token ${token}, vocabulary index ${v}`);
  }
  let logpSum = 0;
  let count = 0;
  result.logps!.forEach((p, s) => {
    logpSum += p;
    count += result.tokenCounts![s];
  });
  const lse = result.lse!;
  const out = Tensor.from([count > 0 ? -logpSum / count : 0], []);
  return record(out, {
    op: 'crossEntropy',
    inputs: [logits],
    backward: (g) => {
      const dlogits = Tensor.zeros(logits.shape, logits.dtype);
      const input = logits.nativeStorage('crossEntropy backward');
      const output = dlogits.nativeStorage('crossEntropy backward');
      native().logsoftmaxGatherBackward({
        impl: FAST, dtype, rows, tokens, vocab, ignoreIndex, labels, lse,
        coef: new Float32Array(rows).fill(count > 0 ? -g.item() / count : 0),
        logits: input.storage, logitsByteOffset: input.byteOffset,
        dlogits: output.storage, dlogitsByteOffset: output.byteOffset,
      });
      return [dlogits];
    },
  });
}

// Gradients meeting at one tensor are summed by the native add kernel (same shapes, no graph).
registerGradientSum((a, b) => {
  const out = Tensor.zeros(a.shape);
  native().addForward(FAST, data(a, 'gradient sum'), data(b, 'gradient sum'), data(out, 'gradient sum'), 1, a.size);
  return out;
});
