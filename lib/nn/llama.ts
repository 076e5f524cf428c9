/**
 * The Llama family as one model with switches (Hugging Face's LlamaForCausalLM, Qwen2ForCausalLM,
 * Qwen3ForCausalLM, Gemma3ForCausalLM), forward and backward on the CPU:
 *
 *   tokens [B, T]
 *   x = embed_tokens[tokens] (* sqrt(C) for Gemma)                          [B, T, C]
 *   per layer:
 *     h = rmsNorm(x)                                                         input_layernorm
 *     q = h Wq^T (+ bq), k = h Wk^T (+ bk), v = h Wv^T (+ bv)                [B, T, NH D], [B, T, NKV D] x 2
 *     q, k = rmsNorm per head over D (Qwen 3, Gemma 3: q_norm, k_norm)
 *     q, k = rope(q), rope(k)                                                the layer's angle tables
 *     a = groupedQueryAttention(q, k, v; scale, window)                      [B, T, NH D]
 *     x = x + a Wo^T (+ bo)              (Gemma: x + rmsNorm(a Wo^T), post_attention_layernorm)
 *     h = rmsNorm(x)                     (Gemma: pre_feedforward_layernorm)
 *     x = x + (act(h Wg^T) * h Wu^T) Wd^T (Gemma: x + rmsNorm(mlp), post_feedforward_layernorm)
 *   logits = rmsNorm(x) Wlm^T           (norm; lm_head, or embed_tokens when tied)
 *
 * The parameters carry Hugging Face's names (`model.layers.0.self_attn.q_proj.weight`,
 * `lm_head.weight`), in Hugging Face's layouts ([out, in] for every projection): a checkpoint maps
 * onto them name for name (lib/nn/pretrained.ts). GQA never repeats keys and values in memory;
 * RMSNorm is Gemma's (1 + w) with offset 1. Initialization (a new model, or the shell `like()`
 * makes): normal(0, 0.02) weights, zero biases, norms 1 (0 with Gemma's offset).
 */
import { noGrad } from '../autograd';
import { add, embedding, glu, groupedQueryAttention, linear, reshape, rmsNorm, rope, scale } from '../functional';
import { Tensor, disposeOnThrow, withScope } from '../tensor';
import { describe, readArray, typedArrayFacts } from '../validate';
import { CausalLM, type CausalLMConfig, type Decoder } from './causal_lm';
import { Embedding, Linear, ModuleList, checkSeed, normalRandom, type NormalRandom } from './layers';
import { Module } from './module';
import { inverseFrequencies, ropeTables, type RopeScaling } from './rope_tables';

export type LlamaArchitecture = 'llama' | 'qwen2' | 'qwen3' | 'gemma3_text';

export interface LlamaConfig extends CausalLMConfig {
  architecture: LlamaArchitecture;
  /** Vocabulary size V. */
  vocab: number;
  /** max_position_embeddings: the longest sequence (the angle tables' rows). */
  context: number;
  /** hidden_size C. */
  hidden: number;
  layers: number;
  /** num_attention_heads NH. */
  heads: number;
  /** num_key_value_heads NKV, dividing NH. */
  kvHeads: number;
  /** head_dim D (even; Qwen 3's is not hidden / heads). */
  headDim: number;
  /** intermediate_size I of the gated MLP. */
  intermediate: number;
  /** rms_norm_eps. */
  rmsEps: number;
  /** rope_theta (the global layers' for Gemma 3). */
  ropeTheta: number;
  ropeScaling: RopeScaling;
  /** The head is the token embedding (no lm_head.weight of its own). */
  tiedHead: boolean;
  /** q, k and v projections have biases (Qwen 2; Llama's attention_bias). */
  qkvBias: boolean;
  /** o_proj has a bias (Llama's attention_bias). */
  outputBias: boolean;
  /** gate, up and down projections have biases (Llama's mlp_bias). */
  mlpBias: boolean;
  /** RMSNorm of q and k per head before the rotation (Qwen 3, Gemma 3). */
  qkNorm: boolean;
  /** Gemma 3: norms as (1 + w), norms after attention and MLP too, GeGLU, embeddings times sqrt(C). */
  gemma: boolean;
  /** The scores' factor (1 / sqrt(D); Gemma: query_pre_attn_scalar^-1/2). */
  attentionScale: number;
  /** Per layer: its sliding window (0: full attention). */
  windows: number[];
  /** Gemma 3's local layers' rope_local_base_freq (their angle tables; no scaling). */
  localRopeTheta: number;
}

export interface LlamaOptions {
  /** The seed of a new model's weights (default 0). */
  seed?: number;
}

const KEYS: (keyof LlamaConfig)[] = ['architecture', 'vocab', 'context', 'hidden', 'layers', 'heads', 'kvHeads', 'headDim', 'intermediate', 'rmsEps',
  'ropeTheta', 'ropeScaling', 'tiedHead', 'qkvBias', 'outputBias', 'mlpBias', 'qkNorm', 'gemma', 'attentionScale', 'windows', 'localRopeTheta'];

/** Every field checked; the config frozen. */
export function checkLlamaConfig(value: LlamaConfig): Readonly<LlamaConfig> {
  if (typeof value !== 'object' || value === null) throw new TypeError(`LlamaModel: expected a config object but received ${describe(value)}`);
  const c = Object.fromEntries(KEYS.map((k) => [k, (value as unknown as Record<string, unknown>)[k]])) as unknown as LlamaConfig;
  const positive = (key: keyof LlamaConfig) => {
    const v = c[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 2 ** 31 - 1) throw new RangeError(`LlamaModel: expected a positive integer for config.${key} but received ${describe(v)}`);
  };
  for (const key of ['vocab', 'context', 'hidden', 'layers', 'heads', 'kvHeads', 'headDim', 'intermediate'] as const) positive(key);
  if (!['llama', 'qwen2', 'qwen3', 'gemma3_text'].includes(c.architecture)) throw new TypeError(`LlamaModel: expected an architecture of the Llama family for config.architecture but received ${describe(c.architecture)}`);
  if (c.heads % c.kvHeads !== 0) throw new RangeError(`LlamaModel: expected config.kvHeads dividing config.heads ${c.heads} but received ${c.kvHeads}`);
  if (c.headDim % 2 !== 0) throw new RangeError(`LlamaModel: expected an even config.headDim (rotary embeddings rotate pairs) but received ${c.headDim}`);
  for (const key of ['rmsEps', 'ropeTheta', 'attentionScale', 'localRopeTheta'] as const) {
    if (typeof c[key] !== 'number' || !(c[key] > 0) || !Number.isFinite(c[key])) throw new RangeError(`LlamaModel: expected a positive number for config.${key} but received ${describe(c[key])}`);
  }
  for (const key of ['tiedHead', 'qkvBias', 'outputBias', 'mlpBias', 'qkNorm', 'gemma'] as const) {
    if (typeof c[key] !== 'boolean') throw new TypeError(`LlamaModel: expected a boolean for config.${key} but received ${describe(c[key])}`);
  }
  const windows = readArray(c.windows, c.layers, 'config.windows');
  if (!windows || windows.length !== c.layers || !windows.every((w) => typeof w === 'number' && Number.isInteger(w) && w >= 0)) {
    throw new RangeError(`LlamaModel: expected config.windows to give each of the ${c.layers} layers its window (0: full) but received ${describe(c.windows)}`);
  }
  const scaling = c.ropeScaling as RopeScaling;
  if (!scaling || !['default', 'linear', 'llama3'].includes(scaling.type)) throw new TypeError(`LlamaModel: expected a rope scaling of type default, linear or llama3 but received ${describe(scaling)}`);
  return Object.freeze({ ...c, windows: windows as number[], ropeScaling: Object.freeze({ ...scaling }) });
}

/** RMS normalization over the last dim, with a learned weight (Gemma: offset 1, the weight stored as w - 1). */
export class RMSNorm extends Module {
  readonly weight: Tensor;

  constructor(readonly size: number, readonly eps: number, readonly offset: number) {
    super();
    this.weight = this.parameter('weight', Tensor.from(new Float32Array(size).fill(offset === 0 ? 1 : 0), [size]));
  }

  forward(x: Tensor): Tensor {
    return rmsNorm(x, this.weight, { eps: this.eps, offset: this.offset });
  }
}

/** The model's angle tables: the global layers' and (Gemma 3) the local layers'. */
interface Tables {
  global: { cos: Float32Array; sin: Float32Array };
  local: { cos: Float32Array; sin: Float32Array } | null;
}

function makeTables(c: Readonly<LlamaConfig>): Tables {
  const global = ropeTables(c.context, inverseFrequencies(c.headDim, c.ropeTheta, c.ropeScaling));
  const local = c.windows.some((w) => w > 0) && c.gemma ? ropeTables(c.context, inverseFrequencies(c.headDim, c.localRopeTheta, { type: 'default' })) : null;
  return { global, local };
}

export class LlamaAttention extends Module {
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly o_proj: Linear;
  readonly q_norm: RMSNorm | null;
  readonly k_norm: RMSNorm | null;

  constructor(readonly c: Readonly<LlamaConfig>, readonly window: number, random: NormalRandom) {
    super();
    const { hidden: C, heads, kvHeads, headDim: D } = c;
    this.q_proj = this.module('q_proj', new Linear(C, heads * D, { bias: c.qkvBias, random }));
    this.k_proj = this.module('k_proj', new Linear(C, kvHeads * D, { bias: c.qkvBias, random }));
    this.v_proj = this.module('v_proj', new Linear(C, kvHeads * D, { bias: c.qkvBias, random }));
    this.o_proj = this.module('o_proj', new Linear(heads * D, C, { bias: c.outputBias, random }));
    this.q_norm = c.qkNorm ? this.module('q_norm', new RMSNorm(D, c.rmsEps, c.gemma ? 1 : 0)) : null;
    this.k_norm = c.qkNorm ? this.module('k_norm', new RMSNorm(D, c.rmsEps, c.gemma ? 1 : 0)) : null;
  }

  /** q or k [B, T, heads D]: normed per head (Qwen 3, Gemma 3), then rotated. */
  private positioned(x: Tensor, norm: RMSNorm | null, tables: { cos: Float32Array; sin: Float32Array }): Tensor {
    const D = this.c.headDim;
    const [B, T, width] = x.shape;
    const normed = norm ? reshape(norm.forward(reshape(x, [B, T, width / D, D])), [B, T, width]) : x;
    return rope(normed, tables.cos, tables.sin, D);
  }

  forward(x: Tensor, tables: { cos: Float32Array; sin: Float32Array }): Tensor {
    const { heads, kvHeads, headDim, attentionScale } = this.c;
    const q = this.positioned(this.q_proj.forward(x), this.q_norm, tables);
    const k = this.positioned(this.k_proj.forward(x), this.k_norm, tables);
    const v = this.v_proj.forward(x);
    return this.o_proj.forward(groupedQueryAttention(q, k, v, { heads, kvHeads, headDim, scale: attentionScale, window: this.window }));
  }
}

export class LlamaMLP extends Module {
  readonly gate_proj: Linear;
  readonly up_proj: Linear;
  readonly down_proj: Linear;

  constructor(readonly c: Readonly<LlamaConfig>, random: NormalRandom) {
    super();
    this.gate_proj = this.module('gate_proj', new Linear(c.hidden, c.intermediate, { bias: c.mlpBias, random }));
    this.up_proj = this.module('up_proj', new Linear(c.hidden, c.intermediate, { bias: c.mlpBias, random }));
    this.down_proj = this.module('down_proj', new Linear(c.intermediate, c.hidden, { bias: c.mlpBias, random }));
  }

  forward(x: Tensor): Tensor {
    return this.down_proj.forward(glu(this.gate_proj.forward(x), this.up_proj.forward(x), this.c.gemma ? 'gelu_tanh' : 'silu'));
  }
}

export class LlamaDecoderLayer extends Module {
  readonly input_layernorm: RMSNorm;
  readonly self_attn: LlamaAttention;
  readonly post_attention_layernorm: RMSNorm;
  readonly pre_feedforward_layernorm: RMSNorm | null;
  readonly post_feedforward_layernorm: RMSNorm | null;
  readonly mlp: LlamaMLP;

  constructor(readonly c: Readonly<LlamaConfig>, readonly index: number, random: NormalRandom) {
    super();
    const offset = c.gemma ? 1 : 0;
    // registered in Hugging Face's order (the checkpoints' names; the optimizer's order)
    this.input_layernorm = this.module('input_layernorm', new RMSNorm(c.hidden, c.rmsEps, offset));
    this.self_attn = this.module('self_attn', new LlamaAttention(c, c.windows[index], random));
    this.post_attention_layernorm = this.module('post_attention_layernorm', new RMSNorm(c.hidden, c.rmsEps, offset));
    this.pre_feedforward_layernorm = c.gemma ? this.module('pre_feedforward_layernorm', new RMSNorm(c.hidden, c.rmsEps, offset)) : null;
    this.post_feedforward_layernorm = c.gemma ? this.module('post_feedforward_layernorm', new RMSNorm(c.hidden, c.rmsEps, offset)) : null;
    this.mlp = this.module('mlp', new LlamaMLP(c, random));
  }

  forward(x: Tensor, tables: Tables): Tensor {
    const t = this.self_attn.window > 0 && tables.local ? tables.local : tables.global;
    const attended = this.self_attn.forward(this.input_layernorm.forward(x), t);
    if (!this.c.gemma) {
      const y = add(x, attended);
      return add(y, this.mlp.forward(this.post_attention_layernorm.forward(y)));
    }
    const y = add(x, this.post_attention_layernorm.forward(attended));
    return add(y, this.post_feedforward_layernorm!.forward(this.mlp.forward(this.pre_feedforward_layernorm!.forward(y))));
  }
}

/** The body: embed_tokens, layers, norm (Hugging Face's `model.`). */
export class LlamaBody extends Module {
  readonly embed_tokens: Embedding;
  readonly layers: ModuleList<LlamaDecoderLayer>;
  readonly norm: RMSNorm;

  constructor(c: Readonly<LlamaConfig>, random: NormalRandom) {
    super();
    this.embed_tokens = this.module('embed_tokens', new Embedding(c.vocab, c.hidden, { random }));
    this.layers = this.module('layers', new ModuleList(Array.from({ length: c.layers }, (_, i) => new LlamaDecoderLayer(c, i, random))));
    this.norm = this.module('norm', new RMSNorm(c.hidden, c.rmsEps, c.gemma ? 1 : 0));
  }
}

export class LlamaModel extends CausalLM {
  readonly config: Readonly<LlamaConfig>;
  readonly model: LlamaBody;
  readonly lm_head: Linear | null;
  private readonly tables: Tables;

  constructor(config: LlamaConfig, options: LlamaOptions = {}) {
    super();
    this.config = checkLlamaConfig(config);
    const random = normalRandom(checkSeed(options.seed ?? 0, 'options.seed'));
    this.model = this.module('model', new LlamaBody(this.config, random));
    this.lm_head = this.config.tiedHead ? null : this.module('lm_head', new Linear(this.config.hidden, this.config.vocab, { bias: false, random }));
    this.tables = makeTables(this.config);
  }

  get architecture(): string {
    return this.config.architecture;
  }

  like(): LlamaModel {
    return new LlamaModel(this.config);
  }

  headWeight(): Tensor {
    return this.lm_head ? this.lm_head.weight : this.model.embed_tokens.weight;
  }

  /**
   * Per token and layer: the norms (3 x C, 5 with Gemma), q, k, v and their rotations (2 NH D +
   * 4 NKV D), the attention's output and weights (NH D + NH T), o_proj's output and the residual
   * (2 C), the MLP's gate, up and their product (3 I) and its output (C); then the logits and their
   * gradient (2 V).
   */
  activationFloatsPerToken(tokens: number): number {
    const { layers, hidden: C, heads: NH, kvHeads: NKV, headDim: D, intermediate: I, vocab, gemma } = this.config;
    return layers * ((gemma ? 8 : 6) * C + 3 * NH * D + 4 * NKV * D + NH * tokens + 3 * I) + 2 * vocab;
  }

  /** The tokens checked (errors name `op`) and embedded. */
  private embedded(op: string, tokens: Int32Array, shape: readonly [number, number]): Tensor {
    const { context, vocab, hidden, gemma } = this.config;
    const facts = typedArrayFacts(tokens);
    if (!facts || facts.kind !== 'Int32Array') throw new TypeError(`${op}: expected an Int32Array of tokens but received ${describe(tokens)}`);
    const dims = readArray(shape, 2, `${op} shape`);
    if (!dims || dims.length !== 2 || !dims.every((d) => typeof d === 'number' && Number.isInteger(d) && d >= 1)) {
      throw new TypeError(`${op}: expected a shape [batch, T] of two positive integers but received ${describe(shape)}`);
    }
    const [batch, T] = dims as [number, number];
    if (facts.length !== batch * T) throw new RangeError(`${op}: expected ${batch * T} tokens for shape [${dims}] but received ${facts.length}`);
    if (T > context) throw new RangeError(`${op}: expected at most context = ${context} tokens per row but received shape [${dims}]`);
    const ids = Int32Array.from(tokens);  // a copy: checked here, then used
    const bad = ids.findIndex((id) => id < 0 || id >= vocab);
    if (bad >= 0) throw new RangeError(`${op}: expected token ids in [0, ${vocab}) but received ${ids[bad]} at position ${bad}`);
    this.model.embed_tokens.weight.assertAlive(op);
    const x = reshape(embedding(this.model.embed_tokens.weight, ids), [batch, T, hidden]);
    // Gemma scales the embeddings by sqrt(C), rounded to the weights' dtype as transformers does (bf16 checkpoints: bf16)
    return gemma ? scale(x, Math.sqrt(hidden)) : x;
  }

  /** The final norm's output [batch, T, C] for `tokens` (see forward). */
  hiddenStates(tokens: Int32Array, shape: readonly [number, number]): Tensor {
    return this.finalNormed('LlamaModel.hiddenStates', tokens, shape);
  }

  private finalNormed(op: string, tokens: Int32Array, shape: readonly [number, number]): Tensor {
    return disposeOnThrow(() => {
      let x = this.embedded(op, tokens, shape);
      for (const layer of this.model.layers.items) x = layer.forward(x, this.tables);
      return this.model.norm.forward(x);
    });
  }

  /** Logits [batch, T, vocab] of `tokens` (row-major [batch, T] ids in [0, vocab), T <= context): position t predicts token t + 1. */
  forward(tokens: Int32Array, shape: readonly [number, number]): Tensor {
    return disposeOnThrow(() => linear(this.finalNormed('LlamaModel.forward', tokens, shape), this.headWeight()));
  }

  decoder(): Decoder {
    return new LlamaDecoder(this, this.tables);
  }
}

/**
 * One position at a time, with per layer the keys and values of the positions seen so far
 * ([context, NKV D] each, rotated keys): each step runs one position through every layer, its
 * attention against the cache (in float64 sums, over the layer's window).
 */
class LlamaDecoder implements Decoder {
  private readonly keys: Float32Array[];
  private readonly values: Float32Array[];
  length = 0;

  constructor(private readonly model: LlamaModel, private readonly tables: Tables) {
    const { layers, context, kvHeads, headDim } = model.config;
    this.keys = Array.from({ length: layers }, () => new Float32Array(context * kvHeads * headDim));
    this.values = Array.from({ length: layers }, () => new Float32Array(context * kvHeads * headDim));
  }

  step(token: number): Float32Array {
    const m = this.model;
    const c = m.config;
    const { heads: NH, kvHeads: NKV, headDim: D } = c;
    const t = this.length;
    if (t >= c.context) throw new RangeError(`LlamaModel decoder: the context of ${c.context} positions is full`);
    const group = NH / NKV;
    return noGrad(() => withScope(() => {
      let x = reshape(embedding(m.model.embed_tokens.weight, Int32Array.of(token)), [1, 1, c.hidden]);
      if (c.gemma) x = scale(x, Math.sqrt(c.hidden));
      m.model.layers.items.forEach((layer, l) => {
        const attn = layer.self_attn;
        const tables = attn.window > 0 && this.tables.local ? this.tables.local : this.tables.global;
        // the tables from position t on: rope's row 0 is then position t
        const at = { cos: tables.cos.subarray(t * (D / 2)), sin: tables.sin.subarray(t * (D / 2)) };
        const h = layer.input_layernorm.forward(x);
        const project = (proj: Linear, norm: RMSNorm | null, rotate: boolean) => {
          let y = proj.forward(h);
          if (norm) y = reshape(norm.forward(reshape(y, [1, 1, y.shape[2] / D, D])), [1, 1, y.shape[2]]);
          return (rotate ? rope(y, at.cos, at.sin, D) : y).toArray() as Float32Array;
        };
        const q = project(attn.q_proj, attn.q_norm, true);
        this.keys[l].set(project(attn.k_proj, attn.k_norm, true), t * NKV * D);
        this.values[l].set(project(attn.v_proj, null, false), t * NKV * D);
        const start = attn.window > 0 ? Math.max(0, t - attn.window + 1) : 0;
        const y = new Float32Array(NH * D);
        const scores = new Float64Array(t + 1);
        for (let hd = 0; hd < NH; hd++) {
          const g = Math.floor(hd / group);
          let max = -Infinity;
          for (let s = start; s <= t; s++) {
            let dot = 0;
            for (let d = 0; d < D; d++) dot += q[hd * D + d] * this.keys[l][(s * NKV + g) * D + d];
            scores[s] = dot * c.attentionScale;
            max = Math.max(max, scores[s]);
          }
          let sum = 0;
          for (let s = start; s <= t; s++) sum += (scores[s] = Math.exp(scores[s] - max));
          for (let s = start; s <= t; s++) {
            const w = scores[s] / sum;
            for (let d = 0; d < D; d++) y[hd * D + d] += w * this.values[l][(s * NKV + g) * D + d];
          }
        }
        const attended = attn.o_proj.forward(Tensor.from(y, [1, 1, NH * D]));
        if (!c.gemma) {
          x = add(x, attended);
          x = add(x, layer.mlp.forward(layer.post_attention_layernorm.forward(x)));
        } else {
          x = add(x, layer.post_attention_layernorm.forward(attended));
          x = add(x, layer.post_feedforward_layernorm!.forward(layer.mlp.forward(layer.pre_feedforward_layernorm!.forward(x))));
        }
      });
      this.length += 1;
      return linear(m.model.norm.forward(x), m.headWeight()).toArray() as Float32Array;  // [1, 1, V]: a copy already
    }));
  }
}
