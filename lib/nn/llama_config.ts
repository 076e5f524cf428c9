/**
 * The Llama family's Hugging Face config.json read into a LlamaConfig (`llama`: SmolLM2, Llama 3.x;
 * `qwen2`: Qwen2, Qwen2.5; `qwen3`; `gemma3_text`: Gemma 3 270M, 1B), and the parameters it makes.
 *
 * Keys that do not change the math are accepted and ignored (torch_dtype, bos_token_id, dropout
 * probabilities, use_cache, ...). A key whose value changes the math and is not supported (another
 * activation, another rope type, a mixture of experts, tensor-parallel slicing, sliding windows on
 * a model that uses them) is an error naming the key and the value. Both config generations are
 * read: `rope_theta` + `rope_scaling`, and transformers 5's `rope_parameters`.
 */
import { FusedpoError } from '../errors';
import type { LlamaArchitecture, LlamaConfig } from './llama';
import type { RopeScaling } from './rope_tables';

/** A config that cannot be read: the message names the key. */
export class ConfigKeyError extends FusedpoError {
  override name = 'ConfigKeyError';
  constructor(readonly key: string, message: string) {
    super(`${key}: ${message}`);
  }
}

const json = (v: unknown) => JSON.stringify(v) ?? 'undefined';

function integer(c: Record<string, unknown>, key: string, fallback?: number): number {
  const value = c[key] ?? fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 2 ** 31 - 1) {
    throw new ConfigKeyError(key, `expected a positive integer but found ${json(c[key])}`);
  }
  return value;
}

function number(c: Record<string, unknown>, key: string, fallback?: number): number {
  const value = c[key] ?? fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw new ConfigKeyError(key, `expected a positive number but found ${json(c[key])}`);
  return value;
}

function flag(c: Record<string, unknown>, key: string, fallback: boolean): boolean {
  const value = c[key] ?? fallback;
  if (typeof value !== 'boolean') throw new ConfigKeyError(key, `expected true or false but found ${json(c[key])}`);
  return value;
}

/** The rope's base and scaling from rope_theta + rope_scaling, or transformers 5's rope_parameters. */
function ropeOf(c: Record<string, unknown>, baseKey: string, baseDefault: number): { theta: number; scaling: RopeScaling } {
  const parameters = c.rope_parameters as Record<string, unknown> | undefined | null;
  const source = parameters && typeof parameters === 'object' ? parameters : (c.rope_scaling as Record<string, unknown> | undefined | null);
  const where = parameters && typeof parameters === 'object' ? 'rope_parameters' : 'rope_scaling';
  const theta = parameters && typeof parameters === 'object' && parameters.rope_theta !== undefined
    ? number(parameters, 'rope_theta') : number(c, baseKey, baseDefault);
  if (source === undefined || source === null) return { theta, scaling: { type: 'default' } };
  if (typeof source !== 'object') throw new ConfigKeyError(where, `expected an object or null but found ${json(source)}`);
  const type = source.rope_type ?? source.type ?? 'default';
  if (type === 'default') return { theta, scaling: { type: 'default' } };
  const field = (key: string) => {
    try {
      return number(source, key);
    } catch {
      throw new ConfigKeyError(`${where}.${key}`, `expected a positive number but found ${json(source[key])}`);
    }
  };
  if (type === 'linear') return { theta, scaling: { type: 'linear', factor: field('factor') } };
  if (type === 'llama3') {
    const originalContext = source.original_max_position_embeddings;
    if (typeof originalContext !== 'number' || !Number.isInteger(originalContext) || originalContext < 1) {
      throw new ConfigKeyError(`${where}.original_max_position_embeddings`, `expected a positive integer but found ${json(originalContext)}`);
    }
    const scaling: RopeScaling = { type: 'llama3', factor: field('factor'), lowFreqFactor: field('low_freq_factor'), highFreqFactor: field('high_freq_factor'), originalContext };
    if (!(scaling.highFreqFactor > scaling.lowFreqFactor)) throw new ConfigKeyError(`${where}.high_freq_factor`, `expected more than low_freq_factor ${scaling.lowFreqFactor} but found ${scaling.highFreqFactor}`);
    return { theta, scaling };
  }
  throw new ConfigKeyError(`${where}.rope_type`, `expected default, linear or llama3 (the rope types supported) but found ${json(type)}`);
}

const MAX_LAYERS = 65536;

/** Keys whose presence means a model this package does not run. */
const UNSUPPORTED_KEYS: [string, (v: unknown) => boolean, string][] = [
  ['num_experts', (v) => typeof v === 'number' && v > 0, 'a mixture of experts'],
  ['num_local_experts', (v) => typeof v === 'number' && v > 0, 'a mixture of experts'],
  ['pretraining_tp', (v) => v !== 1, 'tensor-parallel slices of the projections (only 1 is the unsliced math)'],
  ['attn_logit_softcapping', (v) => v !== null && v !== undefined, 'soft-capped attention logits'],
  ['final_logit_softcapping', (v) => v !== null && v !== undefined, 'soft-capped final logits'],
];

/** A LlamaConfig from a Hugging Face config.json of model_type llama, qwen2, qwen3 or gemma3_text. */
export function llamaConfigOf(c: Record<string, unknown>): LlamaConfig {
  const architecture = c.model_type as LlamaArchitecture;
  for (const [key, unsupported, what] of UNSUPPORTED_KEYS) {
    if (key in c && unsupported(c[key])) throw new ConfigKeyError(key, `${json(c[key])} means ${what}, which is not supported`);
  }
  const gemma = architecture === 'gemma3_text';
  const activationKey = gemma ? 'hidden_activation' : 'hidden_act';
  const activation = c[activationKey] ?? (gemma ? 'gelu_pytorch_tanh' : 'silu');
  const wanted = gemma ? ['gelu_pytorch_tanh', 'gelu_tanh'] : ['silu', 'swish'];
  if (!wanted.includes(activation as string)) throw new ConfigKeyError(activationKey, `expected ${wanted.join(' or ')} but found ${json(activation)}`);
  const hidden = integer(c, 'hidden_size');
  const heads = integer(c, 'num_attention_heads');
  const kvHeads = integer(c, 'num_key_value_heads', heads);
  if (heads % kvHeads !== 0) throw new ConfigKeyError('num_key_value_heads', `${kvHeads} does not divide num_attention_heads ${heads}`);
  const headDim = c.head_dim === undefined || c.head_dim === null ? hidden / heads : integer(c, 'head_dim');
  if (!Number.isInteger(headDim)) throw new ConfigKeyError('num_attention_heads', `${heads} does not divide hidden_size ${hidden} and there is no head_dim`);
  if (headDim % 2 !== 0) throw new ConfigKeyError('head_dim', `expected an even head dim (rotary embeddings rotate pairs) but found ${headDim}`);
  const layers = integer(c, 'num_hidden_layers');
  // the config holds a window per layer: a count no model has is refused before that array is made
  if (layers > MAX_LAYERS) throw new ConfigKeyError('num_hidden_layers', `expected at most ${MAX_LAYERS} (the largest published models have about 128) but found ${layers}`);
  const context = integer(c, 'max_position_embeddings');
  const { theta, scaling } = ropeOf(c, 'rope_theta', gemma ? 1_000_000 : 10000);
  // sliding windows: Qwen's are off unless use_sliding_window; Gemma 3's local layers use them
  let windows = new Array<number>(layers).fill(0);
  if (!gemma) {
    if (c.use_sliding_window === true) {
      throw new ConfigKeyError('use_sliding_window', 'true: sliding-window attention on a Qwen model is not supported');
    }
  } else {
    const window = integer(c, 'sliding_window', 4096);
    const types = c.layer_types;
    if (Array.isArray(types)) {
      if (types.length !== layers || !types.every((t) => t === 'sliding_attention' || t === 'full_attention')) {
        throw new ConfigKeyError('layer_types', `expected ${layers} of sliding_attention or full_attention but found ${json(types)}`);
      }
      windows = types.map((t) => (t === 'sliding_attention' ? window : 0));
    } else {
      const pattern = integer(c, 'sliding_window_pattern', 6);
      windows = windows.map((_, i) => ((i + 1) % pattern === 0 ? 0 : window));
    }
  }
  const queryScalar = gemma ? number(c, 'query_pre_attn_scalar', headDim) : headDim;
  const attentionBias = flag(c, 'attention_bias', false);
  return {
    architecture,
    vocab: integer(c, 'vocab_size'),
    context,
    hidden,
    layers,
    heads,
    kvHeads,
    headDim,
    intermediate: integer(c, 'intermediate_size'),
    rmsEps: number(c, 'rms_norm_eps', 1e-6),
    ropeTheta: theta,
    ropeScaling: scaling,
    tiedHead: flag(c, 'tie_word_embeddings', architecture !== 'llama'),
    qkvBias: architecture === 'qwen2' ? true : attentionBias,
    // Qwen 2's o_proj has no bias whatever attention_bias says; Llama's, Qwen 3's and Gemma 3's follow it
    outputBias: architecture === 'qwen2' ? false : attentionBias,
    // only Llama's MLP reads mlp_bias
    mlpBias: architecture === 'llama' ? flag(c, 'mlp_bias', false) : false,
    qkNorm: architecture === 'qwen3' || gemma,
    gemma,
    attentionScale: 1 / Math.sqrt(queryScalar),
    windows,
    localRopeTheta: gemma ? number(c, 'rope_local_base_freq', 10000) : theta,
  };
}

/**
 * The name and shape of every parameter a model of `c` has, in the order of `parameters()` (Hugging
 * Face's names), one at a time and without building it.
 */
export function* llamaParameterShapes(c: LlamaConfig): Generator<[string, number[]]> {
  const { hidden: C, heads, kvHeads, headDim: D, intermediate: I } = c;
  yield ['model.embed_tokens.weight', [c.vocab, C]];
  for (let i = 0; i < c.layers; i++) {
    const p = `model.layers.${i}.`;
    yield [`${p}input_layernorm.weight`, [C]];
    const projection = function* (name: string, out: number, inp: number, bias: boolean): Generator<[string, number[]]> {
      yield [`${p}${name}.weight`, [out, inp]];
      if (bias) yield [`${p}${name}.bias`, [out]];
    };
    yield* projection('self_attn.q_proj', heads * D, C, c.qkvBias);
    yield* projection('self_attn.k_proj', kvHeads * D, C, c.qkvBias);
    yield* projection('self_attn.v_proj', kvHeads * D, C, c.qkvBias);
    yield* projection('self_attn.o_proj', C, heads * D, c.outputBias);
    if (c.qkNorm) {
      yield [`${p}self_attn.q_norm.weight`, [D]];
      yield [`${p}self_attn.k_norm.weight`, [D]];
    }
    yield [`${p}post_attention_layernorm.weight`, [C]];
    if (c.gemma) {
      yield [`${p}pre_feedforward_layernorm.weight`, [C]];
      yield [`${p}post_feedforward_layernorm.weight`, [C]];
    }
    yield* projection('mlp.gate_proj', I, C, c.mlpBias);
    yield* projection('mlp.up_proj', I, C, c.mlpBias);
    yield* projection('mlp.down_proj', C, I, c.mlpBias);
  }
  yield ['model.norm.weight', [C]];
  if (!c.tiedHead) yield ['lm_head.weight', [c.vocab, C]];
}

/** The rope_scaling object of config.json (null for the default rope). */
function ropeScalingJson(s: RopeScaling): Record<string, unknown> | null {
  if (s.type === 'default') return null;
  if (s.type === 'linear') return { rope_type: 'linear', factor: s.factor };
  return { rope_type: 'llama3', factor: s.factor, low_freq_factor: s.lowFreqFactor, high_freq_factor: s.highFreqFactor, original_max_position_embeddings: s.originalContext };
}

const CLASS_NAMES: Record<LlamaArchitecture, string> = {
  llama: 'LlamaForCausalLM', qwen2: 'Qwen2ForCausalLM', qwen3: 'Qwen3ForCausalLM', gemma3_text: 'Gemma3ForCausalLM',
};

/**
 * config.json of a model made here, as transformers writes it for its model_type: what
 * llamaConfigOf reads back to the same config (test/nn/llama-pretrained.test.ts checks it). A
 * model loaded from a folder keeps that folder's own config.json instead (lib/nn/pretrained.ts).
 */
export function llamaConfigJson(c: LlamaConfig, tokens: { bos: number | null; eos: number }): Record<string, unknown> {
  const json: Record<string, unknown> = {
    architectures: [CLASS_NAMES[c.architecture]],
    model_type: c.architecture,
    vocab_size: c.vocab,
    max_position_embeddings: c.context,
    hidden_size: c.hidden,
    num_hidden_layers: c.layers,
    num_attention_heads: c.heads,
    num_key_value_heads: c.kvHeads,
    head_dim: c.headDim,
    intermediate_size: c.intermediate,
    rms_norm_eps: c.rmsEps,
    rope_theta: c.ropeTheta,
    rope_scaling: ropeScalingJson(c.ropeScaling),
    tie_word_embeddings: c.tiedHead,
    bos_token_id: tokens.bos,
    eos_token_id: tokens.eos,
  };
  if (c.architecture === 'gemma3_text') {
    const window = c.windows.find((w) => w > 0) ?? 4096;
    Object.assign(json, {
      hidden_activation: 'gelu_pytorch_tanh',
      query_pre_attn_scalar: 1 / (c.attentionScale * c.attentionScale),
      sliding_window: window,
      layer_types: c.windows.map((w) => (w > 0 ? 'sliding_attention' : 'full_attention')),
      rope_local_base_freq: c.localRopeTheta,
      attention_bias: c.qkvBias,
      attn_logit_softcapping: null,
      final_logit_softcapping: null,
    });
  } else {
    json.hidden_act = 'silu';
    if (c.architecture !== 'qwen2') json.attention_bias = c.qkvBias;
    if (c.architecture === 'llama') json.mlp_bias = c.mlpBias;
    if (c.architecture !== 'llama') json.use_sliding_window = false;
  }
  return json;
}
