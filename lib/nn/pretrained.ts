/**
 * Hugging Face GPT-2 folders (`GPT2LMHeadModel`): read into a GPT and written back in the same
 * layout, so that a published GPT-2 checkpoint can be tuned here and the tuned model read by the
 * Hugging Face tools.
 *
 * A folder holds `config.json` (GPT2Config: n_layer, n_embd, n_head, n_positions, vocab_size,
 * layer_norm_epsilon, activation_function), `model.safetensors` and the tokenizer
 * (`tokenizer.json`, or `vocab.json` + `merges.txt`). The weights' layout:
 *
 *   [transformer.]wte.weight [V, C]        -> wte.weight
 *   [transformer.]wpe.weight [P, C]        -> wpe.weight
 *   [transformer.]h.i.ln_1.{weight,bias}   -> blocks.i.ln1
 *   [transformer.]h.i.attn.c_attn.weight [C, 3C] (Conv1D: [in, out])  -> blocks.i.attn.qkv.weight [3C, C]
 *   [transformer.]h.i.attn.c_proj.weight [C, C]                        -> blocks.i.attn.proj.weight, transposed
 *   [transformer.]h.i.mlp.c_fc.weight [C, 4C], c_proj [4C, C]          -> blocks.i.mlp.fc / proj, transposed
 *   [transformer.]ln_f.{weight,bias}       -> lnF
 *   lm_head.weight                         tied: must equal wte.weight (the head of GPT is tied)
 *   h.i.attn.bias, h.i.attn.masked_bias    buffers of older conversions: ignored
 *
 * q, k and v lie in c_attn's output in that order, each head's channels together: the layout of
 * the attention kernel's qkv, so the transpose is the whole conversion. GPT-2's gelu_new is the
 * tanh GELU the GPT uses, and its LayerNorm eps 1e-5 is the GPT's; other values are refused.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { TokenizerError, loadTokenizerFolder, type Tokenizer } from '../data/tokenizer';
import { writeFileAtomic } from '../atomic_write';
import { FusedpoError } from '../errors';
import { readSafetensors, readSafetensorsHeader, saveSafetensors } from '../safetensors';
import { hostStorage } from '../tensor';
import { GPT, type GPTConfig } from './gpt';

/** A Hugging Face folder that cannot be read as a model of this package: the message names the file and the key. */
export class PretrainedError extends FusedpoError {
  override name = 'PretrainedError';
  constructor(readonly file: string, message: string) {
    super(`${file}: ${message}`);
  }
}

/** Whether `directory` holds a Hugging Face GPT-2 config (a `model_type` in config.json). */
export function isHuggingFaceFolder(directory: string): boolean {
  try {
    const config = JSON.parse(fs.readFileSync(path.join(directory, 'config.json'), 'utf8')) as Record<string, unknown>;
    return typeof config.model_type === 'string';
  } catch {
    return false;
  }
}

const ACTIVATIONS = ['gelu_new', 'gelu_pytorch_tanh'];

/** The GPT config of a GPT2Config, every unsupported field an error naming its key. */
function gptConfigOf(file: string, c: Record<string, unknown>): GPTConfig {
  if (c.model_type !== 'gpt2') throw new PretrainedError(file, `model_type: expected "gpt2" but found ${JSON.stringify(c.model_type)}`);
  const activation = c.activation_function ?? 'gelu_new';
  if (!ACTIVATIONS.includes(activation as string)) {
    throw new PretrainedError(file, `activation_function: expected one of ${ACTIVATIONS.join(', ')} (the tanh GELU) but found ${JSON.stringify(activation)}`);
  }
  const eps = c.layer_norm_epsilon ?? 1e-5;
  if (eps !== 1e-5) throw new PretrainedError(file, `layer_norm_epsilon: expected 1e-5 (the GPT's LayerNorm) but found ${JSON.stringify(eps)}`);
  const width = c.n_embd as number;
  if (c.n_inner !== undefined && c.n_inner !== null && c.n_inner !== 4 * width) {
    throw new PretrainedError(file, `n_inner: expected null or 4 * n_embd = ${4 * width} but found ${JSON.stringify(c.n_inner)}`);
  }
  if (c.tie_word_embeddings === false) throw new PretrainedError(file, 'tie_word_embeddings: expected true (the GPT\'s head is its token embedding)');
  for (const key of ['n_layer', 'n_embd', 'n_head', 'n_positions', 'vocab_size']) {
    const value = c[key];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) throw new PretrainedError(file, `${key}: expected a positive integer but found ${JSON.stringify(value)}`);
  }
  if (width % (c.n_head as number) !== 0) throw new PretrainedError(file, `n_head: ${c.n_head} does not divide n_embd ${width}`);
  return { layers: c.n_layer as number, width, heads: c.n_head as number, context: c.n_positions as number, vocab: c.vocab_size as number };
}

/** [rows, cols] -> [cols, rows]. */
function transposed(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c];
  return out;
}

/** GPT parameter name -> its Hugging Face key (without prefix) and whether the weight is a Conv1D (transposed). */
function huggingFaceKey(name: string): { key: string; conv1d: boolean } {
  const block = /^blocks\.(\d+)\.(.+)$/.exec(name);
  if (!block) return { key: name.replace(/^lnF\./, 'ln_f.'), conv1d: false };
  const [, i, rest] = block;
  const map: Record<string, string> = {
    'ln1.weight': 'ln_1.weight', 'ln1.bias': 'ln_1.bias', 'ln2.weight': 'ln_2.weight', 'ln2.bias': 'ln_2.bias',
    'attn.qkv.weight': 'attn.c_attn.weight', 'attn.qkv.bias': 'attn.c_attn.bias', 'attn.proj.weight': 'attn.c_proj.weight', 'attn.proj.bias': 'attn.c_proj.bias',
    'mlp.fc.weight': 'mlp.c_fc.weight', 'mlp.fc.bias': 'mlp.c_fc.bias', 'mlp.proj.weight': 'mlp.c_proj.weight', 'mlp.proj.bias': 'mlp.c_proj.bias',
  };
  return { key: `h.${i}.${map[rest]}`, conv1d: rest.endsWith('.weight') && !rest.startsWith('ln') };
}

/**
 * The tokenizer of a Hugging Face folder (lib/data/tokenizer.ts, `loadTokenizerFolder`):
 * tokenizer.json, else vocab.json + merges.txt (GPT-2's byte-level BPE), with tokenizer_config.json
 * and chat_template.jinja. Every failure is a PretrainedError naming the file at fault (not
 * readable, not JSON, a merge naming a token vocab.json lacks, ...), so that a broken folder is
 * refused when it is loaded, with the file to look at.
 */
export function huggingFaceTokenizer(directory: string): Tokenizer {
  try {
    return loadTokenizerFolder(directory);
  } catch (error) {
    // The tokenizer's errors begin with the file they name; PretrainedError adds it, so it is taken off.
    if (!(error instanceof TokenizerError) || error.file === null) throw error;
    const { file, message } = error;
    throw new PretrainedError(file, message.startsWith(`${file}: `) ? message.slice(file.length + 2) : message);
  }
}

/**
 * The weights' header compared with what config.json makes, before the GPT is built or any weight
 * read: a config asking for a billion layers is refused at the first block the file lacks, at once.
 */
function checkHeader(weightsFile: string, config: GPTConfig): void {
  const { tensors } = readSafetensorsHeader(weightsFile);
  const prefix = tensors.has('transformer.wte.weight') ? 'transformer.' : '';
  // lazily: a config of a billion layers stops at the first block the file lacks
  for (const [name, shape] of GPT.parameterShapes(config)) {
    const { key, conv1d } = huggingFaceKey(name);
    const tensor = tensors.get(prefix + key);
    if (!tensor) throw new PretrainedError(weightsFile, `missing tensor ${prefix + key} (for ${name})`);
    const want = conv1d ? [shape[1], shape[0]] : shape;
    if (tensor.shape.length !== want.length || tensor.shape.some((d, k) => d !== want[k])) {
      throw new PretrainedError(weightsFile, `tensor ${prefix + key} has shape [${tensor.shape}] but config.json makes it [${want}]`);
    }
  }
}

/** Reads a Hugging Face GPT-2 folder into a GPT (and its tokenizer, when the folder has one). */
export function loadPretrained(directory: string): { model: GPT; tokenizer: Tokenizer | null } {
  const configFile = path.join(directory, 'config.json');
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(fs.readFileSync(configFile, 'utf8')) as Record<string, unknown>;
  } catch (error) {
    throw new PretrainedError(configFile, (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : `not readable JSON: ${(error as Error).message}`);
  }
  const weightsFile = path.join(directory, 'model.safetensors');
  const gptConfig = gptConfigOf(configFile, config);
  checkHeader(weightsFile, gptConfig);
  const { tensors } = readSafetensors(weightsFile);
  const prefix = tensors.has('transformer.wte.weight') ? 'transformer.' : '';
  const model = new GPT(gptConfig);
  try {
    const used = new Set<string>();
    for (const [name, param] of model.parameters()) {
      const { key, conv1d } = huggingFaceKey(name);
      const tensor = tensors.get(prefix + key);
      if (!tensor) throw new PretrainedError(weightsFile, `missing tensor ${prefix + key} (for ${name})`);
      used.add(prefix + key);
      const want = conv1d ? [param.shape[1], param.shape[0]] : [...param.shape];
      if (tensor.shape.length !== want.length || tensor.shape.some((d, k) => d !== want[k])) {
        throw new PretrainedError(weightsFile, `tensor ${prefix + key} has shape [${tensor.shape}] but config.json makes it [${want}]`);
      }
      const data = conv1d ? transposed(tensor.data, want[0], want[1]) : tensor.data;
      const { storage, byteOffset } = hostStorage(param, 'loadPretrained');
      storage.write(data, byteOffset);
    }
    const head = tensors.get('lm_head.weight');
    if (head) {
      used.add('lm_head.weight');
      const wte = tensors.get(prefix + 'wte.weight')!.data;
      if (head.data.length !== wte.length || head.data.some((x, k) => x !== wte[k])) {
        throw new PretrainedError(weightsFile, 'lm_head.weight differs from wte.weight: an untied head is not supported (the GPT\'s head is its token embedding)');
      }
    }
    const extra = [...tensors.keys()].filter((key) => !used.has(key) && !/\.attn\.(masked_)?bias$/.test(key));
    if (extra.length) throw new PretrainedError(weightsFile, `unexpected tensor${extra.length > 1 ? 's' : ''} ${extra.slice(0, 5).join(', ')}: not GPT-2's`);
  } catch (error) {
    model.dispose();
    throw error;
  }
  const hasTokenizer = ['tokenizer.json', 'vocab.json'].some((f) => fs.existsSync(path.join(directory, f)));
  return { model, tokenizer: hasTokenizer ? huggingFaceTokenizer(directory) : null };
}

/**
 * Writes a GPT as a Hugging Face GPT-2 folder: config.json, model.safetensors (the
 * `transformer.` keys, Conv1D weights [in, out], the tied head left out as Hugging Face does) and
 * the tokenizer's files (`files()`): tokenizer.json, a BPE tokenizer's own or for the byte
 * tokenizer `byteTokenizerJSON()`, the byte-level BPE that gives its ids, so that the folder is not
 * refused later for lacking a tokenizer; and tokenizer_config.json, its special tokens and chat
 * template, so that the folder reloads with the same template.
 */
export function savePretrained(directory: string, model: GPT, tokenizer?: Tokenizer | null): void {
  fs.mkdirSync(directory, { recursive: true });
  const tensors = model.parameters().map(([name, param]) => {
    const { key, conv1d } = huggingFaceKey(name);
    const data = param.toArray() as Float32Array;
    const [rows, cols] = param.shape;
    return [`transformer.${key}`, conv1d ? { shape: [cols, rows], data: transposed(data, rows, cols) } : { shape: [...param.shape], data }] as const;
  });
  saveSafetensors(path.join(directory, 'model.safetensors'), tensors, { format: 'pt' });
  const { layers, width, heads, context, vocab } = model.config;
  const eos = tokenizer?.eosId ?? vocab - 1;
  const config = {
    architectures: ['GPT2LMHeadModel'], model_type: 'gpt2', activation_function: 'gelu_new',
    n_layer: layers, n_embd: width, n_head: heads, n_positions: context, n_ctx: context, vocab_size: vocab,
    layer_norm_epsilon: 1e-5, n_inner: null, bos_token_id: eos, eos_token_id: eos, tie_word_embeddings: true,
    torch_dtype: 'float32',
  };
  writeFileAtomic(path.join(directory, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  // tokenizer.json and tokenizer_config.json (its special tokens and chat template), whichever files it came from
  for (const [name, text] of Object.entries(tokenizer?.files() ?? {})) writeFileAtomic(path.join(directory, name), text);
}
