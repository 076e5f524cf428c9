/**
 * The architectures a Hugging Face folder may hold, keyed by config.json's `model_type`: each row
 * is the architecture's config (read from config.json and written back), its model, and its
 * Hugging Face names (which checkpoint tensor is which parameter). lib/nn/pretrained.ts reads and
 * writes folders through this table only; adding an architecture is adding a row.
 *
 *   gpt2                              GPT (lib/nn/gpt.ts): GPT2LMHeadModel's names, Conv1D weights [in, out]
 *   llama, qwen2, qwen3, gemma3_text  LlamaModel (lib/nn/llama.ts): the parameters carry Hugging Face's names
 */
import type { CausalLM, CausalLMConfig } from './causal_lm';
import { GPT, type GPTConfig } from './gpt';
import { LlamaModel, type LlamaConfig } from './llama';
import { ConfigKeyError, llamaConfigJson, llamaConfigOf, llamaParameterShapes } from './llama_config';

/** One parameter as a checkpoint stores it. */
export interface FileTensor {
  /** The parameter's name in the model (`parameters()`). */
  name: string;
  /** Its key in the checkpoint. */
  key: string;
  /** Its shape in the checkpoint. */
  shape: number[];
  /** Stored transposed, [in, out] (GPT-2's Conv1D): transposed on the way in and on the way out. */
  transposed: boolean;
}

export interface Architecture {
  /** The config.json `model_type`s of the row. */
  readonly modelTypes: readonly string[];
  /** The model's config from config.json; a key that cannot be read or is not supported is a ConfigKeyError naming it. */
  configOf(json: Record<string, unknown>): CausalLMConfig;
  /** config.json for a model made here (a loaded model keeps its own config.json, lib/nn/pretrained.ts). */
  configJson(config: CausalLMConfig, tokens: { bos: number | null; eos: number }): Record<string, unknown>;
  /** A model of `config`, freshly initialized. */
  create(config: CausalLMConfig): CausalLM;
  /**
   * The checkpoint's tensors of a model of `config`, in `parameters()` order, one at a time (a
   * config of a billion layers is refused at the first tensor a file lacks); `keys` are the
   * checkpoint's, for architectures whose names carry an optional prefix.
   */
  fileTensors(config: CausalLMConfig, keys: ReadonlySet<string>): Iterable<FileTensor>;
  /** The keys the checkpoint may carry that are not parameters (buffers of older conversions). */
  ignored(key: string): boolean;
  /** With a tied head: the key of a head the file may carry anyway, and the embedding's key it must equal. */
  tiedHead(config: CausalLMConfig, keys: ReadonlySet<string>): { key: string; embedding: string } | null;
}

export { ConfigKeyError };

// ---- gpt2 ---------------------------------------------------------------------------------------

const GPT2_ACTIVATIONS = ['gelu_new', 'gelu_pytorch_tanh'];

/** The GPT config of a GPT2Config, every unsupported field an error naming its key. */
function gptConfigOf(c: Record<string, unknown>): GPTConfig {
  const activation = c.activation_function ?? 'gelu_new';
  if (!GPT2_ACTIVATIONS.includes(activation as string)) {
    throw new ConfigKeyError('activation_function', `expected one of ${GPT2_ACTIVATIONS.join(', ')} (the tanh GELU) but found ${JSON.stringify(activation)}`);
  }
  const eps = c.layer_norm_epsilon ?? 1e-5;
  if (eps !== 1e-5) throw new ConfigKeyError('layer_norm_epsilon', `expected 1e-5 (the GPT's LayerNorm) but found ${JSON.stringify(eps)}`);
  for (const key of ['n_layer', 'n_embd', 'n_head', 'n_positions', 'vocab_size']) {
    const value = c[key];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 2 ** 31 - 1) {
      throw new ConfigKeyError(key, `expected a positive integer but found ${JSON.stringify(value)}`);
    }
  }
  const width = c.n_embd as number;
  if (c.n_inner !== undefined && c.n_inner !== null && c.n_inner !== 4 * width) {
    throw new ConfigKeyError('n_inner', `expected null or 4 * n_embd = ${4 * width} but found ${JSON.stringify(c.n_inner)}`);
  }
  if (c.tie_word_embeddings === false) throw new ConfigKeyError('tie_word_embeddings', 'expected true (the GPT\'s head is its token embedding)');
  if (width % (c.n_head as number) !== 0) throw new ConfigKeyError('n_head', `${c.n_head} does not divide n_embd ${width}`);
  return { layers: c.n_layer as number, width, heads: c.n_head as number, context: c.n_positions as number, vocab: c.vocab_size as number };
}

/**
 * GPT parameter name -> its GPT2LMHeadModel key (without the optional `transformer.` prefix):
 *
 *   wte, wpe, lnF                       -> wte, wpe, ln_f
 *   blocks.i.ln1, ln2                   -> h.i.ln_1, ln_2
 *   blocks.i.attn.qkv [3C, C]           -> h.i.attn.c_attn [C, 3C] (Conv1D: [in, out])
 *   blocks.i.attn.proj, mlp.fc, mlp.proj -> h.i.attn.c_proj, mlp.c_fc, mlp.c_proj, Conv1D too
 *
 * q, k and v lie in c_attn's output in that order, each head's channels together: the layout of
 * the attention kernel's qkv, so the transpose is the whole conversion.
 */
function gpt2Key(name: string): { key: string; transposed: boolean } {
  const block = /^blocks\.(\d+)\.(.+)$/.exec(name);
  if (!block) return { key: name.replace(/^lnF\./, 'ln_f.'), transposed: false };
  const [, i, rest] = block;
  const names: Record<string, string> = {
    'ln1.weight': 'ln_1.weight', 'ln1.bias': 'ln_1.bias', 'ln2.weight': 'ln_2.weight', 'ln2.bias': 'ln_2.bias',
    'attn.qkv.weight': 'attn.c_attn.weight', 'attn.qkv.bias': 'attn.c_attn.bias', 'attn.proj.weight': 'attn.c_proj.weight', 'attn.proj.bias': 'attn.c_proj.bias',
    'mlp.fc.weight': 'mlp.c_fc.weight', 'mlp.fc.bias': 'mlp.c_fc.bias', 'mlp.proj.weight': 'mlp.c_proj.weight', 'mlp.proj.bias': 'mlp.c_proj.bias',
  };
  return { key: `h.${i}.${names[rest]}`, transposed: rest.endsWith('.weight') && !rest.startsWith('ln') };
}

/** GPT2LMHeadModel's keys carry `transformer.`; GPT2Model's (and some conversions') do not. */
const gpt2Prefix = (keys: ReadonlySet<string>): string => (keys.has('wte.weight') && !keys.has('transformer.wte.weight') ? '' : 'transformer.');

const gpt2: Architecture = {
  modelTypes: ['gpt2'],
  configOf: gptConfigOf,
  configJson(config, tokens) {
    const { layers, width, heads, context, vocab } = config as GPTConfig;
    return {
      architectures: ['GPT2LMHeadModel'], model_type: 'gpt2', activation_function: 'gelu_new',
      n_layer: layers, n_embd: width, n_head: heads, n_positions: context, n_ctx: context, vocab_size: vocab,
      layer_norm_epsilon: 1e-5, n_inner: null, bos_token_id: tokens.bos ?? tokens.eos, eos_token_id: tokens.eos, tie_word_embeddings: true,
    };
  },
  create: (config) => new GPT(config as GPTConfig),
  *fileTensors(config, keys) {
    const prefix = gpt2Prefix(keys);
    for (const [name, shape] of GPT.parameterShapes(config as GPTConfig)) {
      const { key, transposed } = gpt2Key(name);
      yield { name, key: prefix + key, shape: transposed ? [shape[1], shape[0]] : shape, transposed };
    }
  },
  ignored: (key) => /(^|\.)attn\.(masked_)?bias$/.test(key),
  tiedHead: (_config, keys) => ({ key: 'lm_head.weight', embedding: `${gpt2Prefix(keys)}wte.weight` }),
};

// ---- the Llama family ---------------------------------------------------------------------------

const llama: Architecture = {
  modelTypes: ['llama', 'qwen2', 'qwen3', 'gemma3_text'],
  configOf: llamaConfigOf,
  configJson: (config, tokens) => llamaConfigJson(config as LlamaConfig, tokens),
  create: (config) => new LlamaModel(config as LlamaConfig),
  *fileTensors(config) {
    for (const [name, shape] of llamaParameterShapes(config as LlamaConfig)) yield { name, key: name, shape, transposed: false };
  },
  // the rotary tables some conversions stored as buffers: recomputed from config.json here
  ignored: (key) => /^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/.test(key) || key === 'model.rotary_emb.inv_freq',
  tiedHead: (config) => ((config as LlamaConfig).tiedHead ? { key: 'lm_head.weight', embedding: 'model.embed_tokens.weight' } : null),
};

const ROWS: readonly Architecture[] = [gpt2, llama];

/** The model_types a folder may have. */
export const MODEL_TYPES: readonly string[] = ROWS.flatMap((row) => row.modelTypes);

/** The row of a model_type, or null. */
export function architectureOf(modelType: unknown): Architecture | null {
  return ROWS.find((row) => row.modelTypes.includes(modelType as string)) ?? null;
}
