/**
 * GPT-2 (Radford et al. 2019) at any size, as llm.c's train_gpt2.c and nanoGPT lay it out:
 *
 *   tokens [B, T] (int32)
 *   x = wte[tokens] + wpe[0..T)                        [B, T, C]
 *   x = blocks[layers-1](... blocks[0](x))             [B, T, C]   (lib/nn/layers.ts: Block)
 *   logits = lnF(x) @ wte^T                            [B, T, V]
 *
 * The language-model head is tied to the token embedding (no weight of its own), as in GPT-2:
 * the same matrix reads tokens in and writes logits out. That saves V x C parameters (65k for a
 * byte vocabulary at C = 256, 38M for GPT-2 small's 50257 x 768), matches GPT-2 checkpoints'
 * layout, and lets the PyTorch golden test (test/fixtures/make_gpt_golden.py) build the same
 * model. Its gradient is the sum of both uses: autograd adds the embedding's scatter and the
 * head's product at the one tensor.
 *
 * Parameter names (safetensors keys, optimizer order): wte.weight, wpe.weight,
 * blocks.<i>.{ln1,attn.qkv,attn.proj,ln2,mlp.fc,mlp.proj}.{weight,bias}, lnF.{weight,bias}.
 */
import { add, linear } from '../functional';
import { Tensor, disposeOnThrow } from '../tensor';
import { describe, readArgs, readArray, typedArrayFacts } from '../validate';
import { Block, Embedding, LayerNorm, ModuleList, checkSeed, normalRandom } from './layers';
import { Module } from './module';

export interface GPTConfig {
  /** Transformer blocks. */
  layers: number;
  /** Channels C of the residual stream. */
  width: number;
  /** Attention heads, dividing width. */
  heads: number;
  /** The longest sequence T (rows of the position embedding). */
  context: number;
  /** Vocabulary size V. */
  vocab: number;
}

export interface GPTOptions {
  /** The seed of the initial weights (default 0). */
  seed?: number;
}

function checkConfig(configValue: GPTConfig): GPTConfig {
  const config = readArgs('GPT', configValue, ['layers', 'width', 'heads', 'context', 'vocab'] as const) as unknown as GPTConfig;
  for (const key of ['layers', 'width', 'heads', 'context', 'vocab'] as const) {
    const value = config[key];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 2 ** 31 - 1) {
      throw new RangeError(`GPT: expected a positive integer for config.${key} but received ${describe(value)}`);
    }
  }
  if (config.width % config.heads !== 0) {
    throw new RangeError(`GPT: expected config.heads to divide config.width ${config.width} but received ${config.heads}`);
  }
  return { layers: config.layers, width: config.width, heads: config.heads, context: config.context, vocab: config.vocab };
}

export class GPT extends Module {
  readonly config: Readonly<GPTConfig>;
  readonly wte: Embedding;
  readonly wpe: Embedding;
  readonly blocks: ModuleList<Block>;
  readonly lnF: LayerNorm;

  constructor(config: GPTConfig, options: GPTOptions = {}) {
    super();
    this.config = Object.freeze(checkConfig(config));
    const { layers, width, heads, context, vocab } = this.config;
    const { seed } = readArgs('GPT options', options, ['seed'] as const);
    const random = normalRandom(checkSeed(seed ?? 0, 'options.seed'));
    const projStd = 0.02 / Math.sqrt(2 * layers);
    this.wte = this.module('wte', new Embedding(vocab, width, { random }));
    this.wpe = this.module('wpe', new Embedding(context, width, { random }));
    this.blocks = this.module('blocks', new ModuleList(Array.from({ length: layers }, () => new Block(width, heads, { random, projStd }))));
    this.lnF = this.module('lnF', new LayerNorm(width));
  }

  /** How many parameter tensors a GPT of `config` has (12 per block, 4 besides), without building it. */
  static tensorCount(config: GPTConfig): number {
    return 4 + 12 * checkConfig(config).layers;
  }

  /** How many parameters (floats) a GPT of `config` has, without building it: V*C + P*C + layers*(12C^2 + 13C) + 2C. */
  static parameterCount(config: GPTConfig): number {
    const { layers, width: C, context, vocab } = checkConfig(config);
    return vocab * C + context * C + layers * (12 * C * C + 13 * C) + 2 * C;
  }

  /**
   * The name and shape of every parameter a GPT of `config` has, in the order of `parameters()`,
   * one at a time and without building it: what a checkpoint's header is compared with before any
   * memory is allocated. Lazy, so that a config asking for a billion layers is refused at the
   * first tensor its file lacks rather than listed.
   */
  static *parameterShapes(config: GPTConfig): Generator<[string, number[]]> {
    const { layers, width: C, context, vocab } = checkConfig(config);
    yield ['wte.weight', [vocab, C]];
    yield ['wpe.weight', [context, C]];
    const block: [string, number[]][] = [
      ['ln1.weight', [C]], ['ln1.bias', [C]], ['attn.qkv.weight', [3 * C, C]], ['attn.qkv.bias', [3 * C]],
      ['attn.proj.weight', [C, C]], ['attn.proj.bias', [C]], ['ln2.weight', [C]], ['ln2.bias', [C]],
      ['mlp.fc.weight', [4 * C, C]], ['mlp.fc.bias', [4 * C]], ['mlp.proj.weight', [C, 4 * C]], ['mlp.proj.bias', [C]],
    ];
    for (let i = 0; i < layers; i++) for (const [name, shape] of block) yield [`blocks.${i}.${name}`, shape];
    yield ['lnF.weight', [C]];
    yield ['lnF.bias', [C]];
  }

  /**
   * A Hugging Face GPT-2 folder (config.json, model.safetensors in GPT2LMHeadModel's layout): see
   * lib/nn/pretrained.ts. `loadPretrained` returns its tokenizer too.
   */
  static fromPretrained(directory: string): GPT {
    // required here, not imported: pretrained.ts imports this module
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require('./pretrained') as typeof import('./pretrained')).loadPretrained(directory).model;
  }

  /**
   * New tokens after `prompt` (token ids), with a key-value cache: one forward of one position per
   * token (lib/nn/generate.ts). Greedy at temperature 0; seeded draws otherwise.
   */
  generate(prompt: readonly number[] | Int32Array, options?: import('./generate').GenerateOptions): number[] {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require('./generate') as typeof import('./generate')).generate(this, prompt, options);
  }

  /** Writes this model as a Hugging Face GPT-2 folder (and `tokenizer`'s tokenizer.json when it is a BPE one). */
  savePretrained(directory: string, tokenizer?: import('../data/tokenizer').Tokenizer | null): void {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    (require('./pretrained') as typeof import('./pretrained')).savePretrained(directory, this, tokenizer);
  }

  /**
   * tokens: an Int32Array of batch * T ids in [0, vocab), row-major [batch, T], T <= context.
   * Returns the logits [batch, T, vocab]: position t predicts token t + 1.
   */
  forward(tokens: Int32Array, shape: readonly [number, number]): Tensor {
    const { context, vocab } = this.config;
    const facts = typedArrayFacts(tokens);
    if (!facts || facts.kind !== 'Int32Array') {
      throw new TypeError(`GPT.forward: expected an Int32Array of tokens but received ${describe(tokens)}`);
    }
    const dims = readArray(shape, 2, 'GPT.forward shape');
    if (!dims || dims.length !== 2 || !dims.every((d) => typeof d === 'number' && Number.isInteger(d) && d >= 1)) {
      throw new TypeError(`GPT.forward: expected a shape [batch, T] of two positive integers but received ${describe(shape)}`);
    }
    const [batch, tokenCount] = dims as [number, number];
    if (facts.length !== batch * tokenCount) {
      throw new RangeError(`GPT.forward: expected ${batch * tokenCount} tokens for shape [${dims}] but received ${facts.length}`);
    }
    if (tokenCount > context) throw new RangeError(`GPT.forward: expected at most context = ${context} tokens per row but received shape [${dims}]`);
    this.wte.weight.assertAlive('GPT.forward');
    // Whatever fails part way (a disposed parameter, out of memory), what was made is disposed.
    return disposeOnThrow(() => {
      const ids = Tensor.from(tokens, [batch, tokenCount], 'i32');  // a copy: checked here, then used
      const copied = ids.toArray() as Int32Array;
      const bad = copied.findIndex((id) => id < 0 || id >= vocab);
      if (bad >= 0) throw new RangeError(`GPT.forward: expected token ids in [0, ${vocab}) but received ${copied[bad]} at position ${bad}`);
      const positions = Int32Array.from({ length: tokenCount }, (_, t) => t);
      let x = add(this.wte.forward(ids), this.wpe.forward(positions)); // [B, T, C] + [T, C]
      for (const block of this.blocks.items) x = block.forward(x);
      return linear(this.lnF.forward(x), this.wte.weight); // tied head: [B, T, C] @ wte^T
    });
  }
}
