/**
 * Hugging Face model folders, read into a model of this package and written back in the same
 * layout, so that a published checkpoint is tuned here and the tuned model read by the Hugging
 * Face tools (transformers, transformers.js, llama.cpp's converters).
 *
 * A folder holds:
 *   config.json                      its `model_type` picks the architecture (lib/nn/architectures.ts:
 *                                    gpt2, llama, qwen2, qwen3, gemma3_text); the rest its config
 *   model.safetensors                the weights, F32, BF16 or F16 (read into f32 master weights)
 *   or model-0000i-of-0000n.safetensors + model.safetensors.index.json   a sharded checkpoint
 *                                    ({ "metadata": { "total_size" }, "weight_map": { key: shard } })
 *   generation_config.json           kept as it is, and written back beside the tuned model
 *   the tokenizer                    tokenizer.json (+ tokenizer_config.json), or vocab.json + merges.txt
 *
 * Before any weight is read, every tensor the config makes is looked for in the headers with its
 * shape, one at a time: a config of a billion layers is refused at the first tensor the files
 * lack, at once. A key that is no parameter (besides the buffers older conversions carry, and a
 * tied head equal to the embedding) is an error, as is a shard the index names that is missing.
 *
 * `savePretrained` writes the layout read: the same dtype (unless asked otherwise), the same shards,
 * the folder's own config.json (its torch_dtype updated) and generation_config.json; a model made
 * here gets the config.json transformers would write for it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import { TokenizerError, loadTokenizerFolder, type Tokenizer } from '../data/tokenizer';
import { writeFileAtomic } from '../atomic_write';
import { FusedpoError } from '../errors';
import { readSafetensors, readSafetensorsHeader, saveSafetensors, type StoredDType } from '../safetensors';
import { Tensor, hostStorage } from '../tensor';
import { describe } from '../validate';
import { ConfigKeyError, MODEL_TYPES, architectureOf, type Architecture, type FileTensor } from './architectures';
import type { CausalLM } from './causal_lm';

/** A Hugging Face folder that cannot be read as a model of this package: the message names the file and the key. */
export class PretrainedError extends FusedpoError {
  override name = 'PretrainedError';
  constructor(readonly file: string, message: string) {
    super(`${file}: ${message}`);
  }
}

/** Whether `directory` holds a Hugging Face config (a `model_type` in config.json). */
export function isHuggingFaceFolder(directory: string): boolean {
  try {
    const config = JSON.parse(fs.readFileSync(path.join(directory, 'config.json'), 'utf8')) as Record<string, unknown>;
    return typeof config.model_type === 'string';
  } catch {
    return false;
  }
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

/** What a loaded model's folder was: what savePretrained writes back. */
export interface PretrainedSource {
  /** The folder's config.json, as read. */
  config: Record<string, unknown>;
  /**
   * Its dtype: config.json's torch_dtype (transformers 5: dtype), else the one most of its weights
   * were stored in. savePretrained writes weights in it (unless asked otherwise) and records it in
   * config.json whatever the weights' dtype, so that a checkpoint of f32 master weights saves the
   * tuned model back in the source's dtype.
   */
  dtype: StoredDType;
  /** Key -> shard file name, for a sharded checkpoint; null for one model.safetensors. */
  shards: Record<string, string> | null;
  /** generation_config.json's text, or null. */
  generationConfig: string | null;
}

const sources = new WeakMap<CausalLM, PretrainedSource>();

/** What `model`'s folder was, when loadPretrained read it (null for a model made here or a copy). */
export function pretrainedSource(model: CausalLM): PretrainedSource | null {
  return sources.get(model) ?? null;
}

/**
 * The ids that end a generation by `model`'s generation_config.json (`eos_token_id`, one id or a
 * list: an instruct model's end of turn, such as Llama 3's <|eot_id|>, besides its end of text),
 * those in [0, vocab); empty for a model made here or a folder without one.
 */
export function generationStopIds(model: CausalLM): number[] {
  const text = sources.get(model)?.generationConfig;
  if (!text) return [];
  let eos: unknown;
  try {
    eos = (JSON.parse(text) as { eos_token_id?: unknown }).eos_token_id;
  } catch {
    return [];
  }
  const ids = Array.isArray(eos) ? eos : [eos];
  return ids.filter((id): id is number => typeof id === 'number' && Number.isInteger(id) && id >= 0 && id < model.config.vocab);
}

const INDEX_FILE = 'model.safetensors.index.json';
const SINGLE_FILE = 'model.safetensors';

function readJsonFile(file: string, what: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new PretrainedError(file, (error as NodeJS.ErrnoException).code === 'ENOENT' ? `no such file (${what})` : `not readable (${(error as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new PretrainedError(file, `not valid JSON (${(error as Error).message})`);
  }
}

/** Key -> shard file of model.safetensors.index.json, each shard a plain file name beside it. */
function readIndex(directory: string): Record<string, string> {
  const file = path.join(directory, INDEX_FILE);
  const index = readJsonFile(file, 'the index of a sharded checkpoint') as { weight_map?: unknown } | null;
  const map = index && typeof index === 'object' ? index.weight_map : undefined;
  if (!map || typeof map !== 'object' || Array.isArray(map)) throw new PretrainedError(file, `weight_map: expected an object of tensor name to shard file but found ${describe(map)}`);
  for (const [key, shard] of Object.entries(map as Record<string, unknown>)) {
    // a shard is a file beside the index: a path elsewhere is refused, not followed
    if (typeof shard !== 'string' || shard === '' || shard !== path.basename(shard) || shard === '.' || shard === '..') {
      throw new PretrainedError(file, `weight_map.${key}: expected a file name beside the index but found ${JSON.stringify(shard)}`);
    }
  }
  return map as Record<string, string>;
}

/** Every key of the checkpoint with its file, shape and dtype, from the headers alone. */
function readHeaders(directory: string): { entries: Map<string, { file: string; shape: number[]; dtype: StoredDType }>; shards: Record<string, string> | null } {
  const single = path.join(directory, SINGLE_FILE);
  const entries = new Map<string, { file: string; shape: number[]; dtype: StoredDType }>();
  const header = (file: string) => {
    try {
      return readSafetensorsHeader(file).tensors;
    } catch (error) {
      throw new PretrainedError(file, (error as Error).message.replace(/^safetensors \([^)]*\): /, ''));
    }
  };
  if (fs.existsSync(single)) {
    for (const [key, entry] of header(single)) entries.set(key, { file: single, shape: entry.shape, dtype: entry.dtype });
    return { entries, shards: null };
  }
  if (!fs.existsSync(path.join(directory, INDEX_FILE))) {
    const others = fs.existsSync(directory) ? fs.readdirSync(directory).filter((f) => /\.(bin|pt|pth|gguf)$/.test(f)) : [];
    throw new PretrainedError(directory, `expected ${SINGLE_FILE}, or ${INDEX_FILE} and its shards${others.length ? ` (found ${others.slice(0, 3).join(', ')}: only safetensors weights are read; convert them with transformers' save_pretrained)` : ''}`);
  }
  const shards = readIndex(directory);
  const indexFile = path.join(directory, INDEX_FILE);
  for (const shard of new Set(Object.values(shards))) {
    const file = path.join(directory, shard);
    if (!fs.existsSync(file)) throw new PretrainedError(indexFile, `names the shard ${shard}, which the folder lacks`);
    for (const [key, entry] of header(file)) {
      if (entries.has(key)) throw new PretrainedError(file, `tensor ${key} is in ${path.basename(entries.get(key)!.file)} too`);
      entries.set(key, { file, shape: entry.shape, dtype: entry.dtype });
    }
  }
  for (const [key, shard] of Object.entries(shards)) {
    const entry = entries.get(key);
    if (!entry || path.basename(entry.file) !== shard) throw new PretrainedError(indexFile, `weight_map says ${key} is in ${shard}, but ${shard} does not hold it`);
  }
  return { entries, shards };
}

const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, k) => d === b[k]);

/** [rows, cols] -> [cols, rows]. */
function transposed(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c];
  return out;
}

/** The architecture and its config from config.json, every problem a PretrainedError naming the key. */
function readConfig(directory: string): { json: Record<string, unknown>; architecture: Architecture; config: ReturnType<Architecture['configOf']> } {
  const configFile = path.join(directory, 'config.json');
  const json = readJsonFile(configFile, 'the model\'s config') as Record<string, unknown>;
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new PretrainedError(configFile, `expected a JSON object but found ${describe(json)}`);
  const architecture = architectureOf(json.model_type);
  if (!architecture) {
    throw new PretrainedError(configFile, `model_type: expected one of ${MODEL_TYPES.join(', ')} (the architectures fusedpo runs) but found ${JSON.stringify(json.model_type)}`);
  }
  try {
    return { json, architecture, config: architecture.configOf(json) };
  } catch (error) {
    if (error instanceof ConfigKeyError) throw new PretrainedError(configFile, error.message);
    throw error;
  }
}

/**
 * Reads a Hugging Face folder into a model of its architecture (and its tokenizer, when the folder
 * has one). The weights become f32 master weights whatever their stored dtype.
 */
export function loadPretrained(directory: string): { model: CausalLM; tokenizer: Tokenizer | null } {
  if (typeof directory !== 'string' || directory === '') throw new TypeError(`loadPretrained: expected a folder path but received ${describe(directory)}`);
  const { json, architecture, config } = readConfig(directory);
  const { entries, shards } = readHeaders(directory);
  const keys = new Set(entries.keys());
  const where = (key: string) => (shards ? path.join(directory, shards[key] ?? INDEX_FILE) : path.join(directory, SINGLE_FILE));

  // every tensor the config makes, by its header, before anything is allocated
  const plan: FileTensor[] = [];
  for (const tensor of architecture.fileTensors(config, keys)) {
    const entry = entries.get(tensor.key);
    if (!entry) throw new PretrainedError(shards ? path.join(directory, INDEX_FILE) : where(tensor.key), `missing tensor ${tensor.key} (config.json makes ${tensor.name})`);
    if (!sameShape(entry.shape, tensor.shape)) {
      throw new PretrainedError(entry.file, `tensor ${tensor.key} has shape [${entry.shape}] but config.json makes it [${tensor.shape}]`);
    }
    plan.push(tensor);
  }
  const used = new Set(plan.map((t) => t.key));
  const tied = architecture.tiedHead(config, keys);
  if (tied && keys.has(tied.key)) used.add(tied.key);
  const extra = [...keys].filter((key) => !used.has(key) && !architecture.ignored(key));
  if (extra.length) {
    const hint = extra.includes('lm_head.weight') ? ' (config.json says the head is tied to the embedding: tie_word_embeddings)' : '';
    throw new PretrainedError(entries.get(extra[0])!.file, `unexpected tensor${extra.length > 1 ? 's' : ''} ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ', ...' : ''}: not parameters of a ${json.model_type} model of this config${hint}`);
  }

  // the dtype config.json declares, else the one most parameters are stored in
  const declared = Object.entries(TORCH_DTYPES).find(([, name]) => name === (json.torch_dtype ?? json.dtype))?.[0] as StoredDType | undefined;
  const counts = new Map<StoredDType, number>();
  for (const t of plan) counts.set(entries.get(t.key)!.dtype, (counts.get(entries.get(t.key)!.dtype) ?? 0) + 1);
  const dtype = declared ?? [...counts].sort((a, b) => b[1] - a[1])[0]?.[0] ?? 'F32';

  const model = architecture.create(config);
  try {
    const params = new Map(model.parameters());
    const byFile = new Map<string, FileTensor[]>();
    for (const t of plan) {
      const file = entries.get(t.key)!.file;
      if (!byFile.has(file)) byFile.set(file, []);
      byFile.get(file)!.push(t);
    }
    const tiedFile = tied && keys.has(tied.key) ? entries.get(tied.key)!.file : null;
    let embedding: Float32Array | null = null, head: Float32Array | null = null;
    for (const file of new Set([...byFile.keys(), ...(tiedFile ? [tiedFile] : [])])) {
      // one file at a time: a shard's f32 values are dropped before the next is read
      const { tensors } = readSafetensors(file);
      for (const t of byFile.get(file) ?? []) {
        const param = params.get(t.name)!;
        const data = tensors.get(t.key)!.data;
        const { storage, byteOffset } = hostStorage(param, 'loadPretrained');
        storage.write(t.transposed ? transposed(data, t.shape[0], t.shape[1]) : data, byteOffset);
        if (tied && t.key === tied.embedding) embedding = data;
      }
      if (tied && tensors.has(tied.key)) head = tensors.get(tied.key)!.data;
    }
    if (tied && head) {
      embedding ??= readSafetensors(entries.get(tied.embedding)!.file).tensors.get(tied.embedding)!.data;
      if (head.length !== embedding.length || head.some((x, k) => x !== embedding![k])) {
        throw new PretrainedError(entries.get(tied.key)!.file, `${tied.key} differs from ${tied.embedding}, but config.json ties the head to the embedding (tie_word_embeddings)`);
      }
    }
  } catch (error) {
    model.dispose();
    throw error;
  }
  const generationFile = path.join(directory, 'generation_config.json');
  sources.set(model, { config: json, dtype, shards, generationConfig: fs.existsSync(generationFile) ? fs.readFileSync(generationFile, 'utf8') : null });
  const hasTokenizer = ['tokenizer.json', 'vocab.json'].some((f) => fs.existsSync(path.join(directory, f)));
  return { model, tokenizer: hasTokenizer ? huggingFaceTokenizer(directory) : null };
}

const TORCH_DTYPES: Record<StoredDType, string> = { F32: 'float32', BF16: 'bfloat16', F16: 'float16' };

export interface SavePretrainedOptions {
  /**
   * The dtype of the weights written: the loaded folder's by default (f32 for a model made here).
   * config.json keeps recording the loaded folder's.
   */
  dtype?: StoredDType;
}

/**
 * Writes `model` as a Hugging Face folder of its architecture: config.json, the weights (the
 * layout and dtype the model was loaded from: one file or the same shards, tied head left out as
 * Hugging Face does), generation_config.json when the source had one, and the tokenizer's files
 * (`files()`: tokenizer.json, for the byte tokenizer the byte-level BPE that gives its ids, and
 * tokenizer_config.json with its special tokens and chat template, so that the folder reloads with
 * the same template). Every file is written whole then renamed into place.
 */
export function savePretrained(directory: string, model: CausalLM, tokenizer?: Tokenizer | null, options: SavePretrainedOptions = {}): void {
  if (typeof directory !== 'string' || directory === '') throw new TypeError(`savePretrained: expected a folder path but received ${describe(directory)}`);
  const architecture = architectureOf(model?.architecture);
  if (!architecture) throw new TypeError(`savePretrained: expected a model of this package but received ${describe(model)}`);
  const dtypeOption = options.dtype;
  if (dtypeOption !== undefined && !(dtypeOption in TORCH_DTYPES)) throw new TypeError(`savePretrained: expected options.dtype F32, BF16 or F16 but received ${describe(dtypeOption)}`);
  const source = sources.get(model) ?? null;
  const dtype: StoredDType = dtypeOption ?? source?.dtype ?? 'F32';
  const params = new Map(model.parameters());
  const keys = new Set<string>();
  const tensors: [string, Tensor | { shape: number[]; data: Float32Array }][] = [];
  for (const t of architecture.fileTensors(model.config, keys)) {
    const param = params.get(t.name)!;
    tensors.push([t.key, t.transposed ? { shape: t.shape, data: transposed(param.toArray() as Float32Array, t.shape[1], t.shape[0]) } : param]);
  }

  fs.mkdirSync(directory, { recursive: true });
  const shards = source?.shards ?? null;
  // the other layout's weights would be read instead of these (or beside them): refused, never removed
  const stale = shards ? SINGLE_FILE : INDEX_FILE;
  if (fs.existsSync(path.join(directory, stale))) {
    throw new PretrainedError(path.join(directory, stale), `is there, and the model is written ${shards ? 'sharded' : `as ${SINGLE_FILE}`}: a reader would take one for the other; save into another folder`);
  }
  if (!shards) {
    saveSafetensors(path.join(directory, SINGLE_FILE), tensors, { format: 'pt' }, { dtype });
  } else {
    const files = new Map<string, typeof tensors>();
    const first = Object.values(shards)[0];
    for (const entry of tensors) {
      const file = shards[entry[0]] ?? first;
      if (!files.has(file)) files.set(file, []);
      files.get(file)!.push(entry);
    }
    for (const [file, list] of files) saveSafetensors(path.join(directory, file), list, { format: 'pt' }, { dtype });
    const width = dtype === 'F32' ? 4 : 2;
    const totalSize = tensors.reduce((sum, [, t]) => sum + t.shape.reduce((a, b) => a * b, 1) * width, 0);
    const weightMap = Object.fromEntries(tensors.map(([key]) => [key, shards[key] ?? first]));
    writeFileAtomic(path.join(directory, INDEX_FILE), `${JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2)}\n`);
  }

  const eos = tokenizer?.eosId ?? model.config.vocab - 1;
  const config = source ? { ...source.config } : architecture.configJson(model.config, { bos: null, eos });
  // the model's own dtype, which a checkpoint's f32 weights do not change; transformers 5 writes "dtype", earlier versions "torch_dtype"
  config['dtype' in config && !('torch_dtype' in config) ? 'dtype' : 'torch_dtype'] = TORCH_DTYPES[source?.dtype ?? dtype];
  writeFileAtomic(path.join(directory, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  if (source?.generationConfig) writeFileAtomic(path.join(directory, 'generation_config.json'), source.generationConfig);
  // tokenizer.json and tokenizer_config.json (its special tokens and chat template), whichever files it came from
  for (const [name, text] of Object.entries(tokenizer?.files() ?? {})) writeFileAtomic(path.join(directory, name), text);
}
