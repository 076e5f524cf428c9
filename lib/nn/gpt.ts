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
import { noGrad } from '../autograd';
import { add, embedding, gelu, linear } from '../functional';
import { Tensor, disposeOnThrow, withScope } from '../tensor';
import { describe, readArgs, readArray, typedArrayFacts } from '../validate';
import { CausalLM, type Decoder } from './causal_lm';
import { Block, Embedding, LayerNorm, ModuleList, checkSeed, normalRandom } from './layers';
import { loadPretrained, savePretrained } from './pretrained';  // used in methods only: the cycle with pretrained.ts is safe

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

export class GPT extends CausalLM {
  readonly architecture = 'gpt2';
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
    const model: CausalLM = loadPretrained(directory).model;
    if (!(model instanceof GPT)) {
      model.dispose();
      throw new TypeError(`GPT.fromPretrained: ${directory} holds a ${model.architecture} model, not GPT-2: use loadPretrained`);
    }
    return model;
  }

  /** Writes this model as a Hugging Face GPT-2 folder (and the tokenizer's tokenizer.json). */
  savePretrained(directory: string, tokenizer?: import('../data/tokenizer').Tokenizer | null): void {
    savePretrained(directory, this, tokenizer);
  }

  like(): GPT {
    return new GPT(this.config);
  }

  override parameterCount(): number {
    return GPT.parameterCount(this.config);
  }

  /**
   * Per token and layer about 17 x width floats (layer norms, qkv, the attention's output, the
   * MLP's 4 x width twice) and the attention's `heads x tokens` weights; then the logits and
   * their gradient (2 x vocab).
   */
  activationFloatsPerToken(tokens: number): number {
    const { layers, width, heads, vocab } = this.config;
    return layers * (17 * width + heads * tokens) + 2 * vocab;
  }

  headWeight(): Tensor {
    return this.wte.weight;
  }

  decoder(): Decoder {
    return new GptDecoder(this);
  }

  /** The final layer norm's output [batch, T, C] for `tokens` (see forward). */
  hiddenStates(tokens: Int32Array, shape: readonly [number, number]): Tensor {
    return this.finalNormed('GPT.hiddenStates', tokens, shape);
  }

  /** The tokens checked (errors name `op`), embedded, through the blocks and the final norm. */
  private finalNormed(op: string, tokens: Int32Array, shape: readonly [number, number]): Tensor {
    const { context, vocab } = this.config;
    const facts = typedArrayFacts(tokens);
    if (!facts || facts.kind !== 'Int32Array') {
      throw new TypeError(`${op}: expected an Int32Array of tokens but received ${describe(tokens)}`);
    }
    const dims = readArray(shape, 2, 'GPT.forward shape');
    if (!dims || dims.length !== 2 || !dims.every((d) => typeof d === 'number' && Number.isInteger(d) && d >= 1)) {
      throw new TypeError(`${op}: expected a shape [batch, T] of two positive integers but received ${describe(shape)}`);
    }
    const [batch, tokenCount] = dims as [number, number];
    if (facts.length !== batch * tokenCount) {
      throw new RangeError(`${op}: expected ${batch * tokenCount} tokens for shape [${dims}] but received ${facts.length}`);
    }
    if (tokenCount > context) throw new RangeError(`${op}: expected at most context = ${context} tokens per row but received shape [${dims}]`);
    this.wte.weight.assertAlive(op);
    // Whatever fails part way (a disposed parameter, out of memory), what was made is disposed.
    return disposeOnThrow(() => {
      const ids = Tensor.from(tokens, [batch, tokenCount], 'i32');  // a copy: checked here, then used
      const copied = ids.toArray() as Int32Array;
      const bad = copied.findIndex((id) => id < 0 || id >= vocab);
      if (bad >= 0) throw new RangeError(`${op}: expected token ids in [0, ${vocab}) but received ${copied[bad]} at position ${bad}`);
      const positions = Int32Array.from({ length: tokenCount }, (_, t) => t);
      let x = add(this.wte.forward(ids), this.wpe.forward(positions)); // [B, T, C] + [T, C]
      for (const block of this.blocks.items) x = block.forward(x);
      return this.lnF.forward(x);
    });
  }

  /**
   * tokens: an Int32Array of batch * T ids in [0, vocab), row-major [batch, T], T <= context.
   * Returns the logits [batch, T, vocab]: position t predicts token t + 1.
   */
  forward(tokens: Int32Array, shape: readonly [number, number]): Tensor {
    return disposeOnThrow(() => linear(this.finalNormed('GPT.forward', tokens, shape), this.wte.weight)); // tied head: [B, T, C] @ wte^T
  }
}

/**
 * GPT-2 one position at a time, with per layer the keys and values of the positions seen so far
 * ([context, C] each):
 *
 *   per layer, per position t:  qkv = W_qkv ln1(x_t) + b;  K[t], V[t] <- k, v
 *                               y = softmax(q . K[0..t] / sqrt(hs)) V[0..t]   (per head)
 *                               x_t += W_proj y + b;  x_t += MLP(ln2(x_t))
 */
class GptDecoder implements Decoder {
  private readonly keys: Float32Array[];
  private readonly values: Float32Array[];
  length = 0;

  constructor(private readonly model: GPT) {
    const { layers, context, width } = model.config;
    this.keys = Array.from({ length: layers }, () => new Float32Array(context * width));
    this.values = Array.from({ length: layers }, () => new Float32Array(context * width));
  }

  step(token: number): Float32Array {
    const { model } = this;
    const { width: C, heads } = model.config;
    const hs = C / heads, t = this.length;
    return noGrad(() => withScope(() => {
      let x = add(embedding(model.wte.weight, Int32Array.of(token)), embedding(model.wpe.weight, Int32Array.of(t)));  // [1, C]
      model.blocks.items.forEach((block, layer) => {
        const qkv = block.attn.qkv.forward(block.ln1.forward(x)).toArray() as Float32Array;  // [3C]
        const K = this.keys[layer], Vc = this.values[layer];
        K.set(qkv.subarray(C, 2 * C), t * C);
        Vc.set(qkv.subarray(2 * C, 3 * C), t * C);
        const y = new Float32Array(C);
        const scores = new Float64Array(t + 1);
        for (let h = 0; h < heads; h++) {
          let max = -Infinity;
          for (let s = 0; s <= t; s++) {
            let dot = 0;
            for (let d = 0; d < hs; d++) dot += qkv[h * hs + d] * K[s * C + h * hs + d];
            scores[s] = dot / Math.sqrt(hs);
            max = Math.max(max, scores[s]);
          }
          let sum = 0;
          for (let s = 0; s <= t; s++) sum += (scores[s] = Math.exp(scores[s] - max));
          for (let s = 0; s <= t; s++) {
            const w = scores[s] / sum;
            for (let d = 0; d < hs; d++) y[h * hs + d] += w * Vc[s * C + h * hs + d];
          }
        }
        x = add(x, block.attn.proj.forward(Tensor.from(y, [1, C])));
        x = add(x, block.mlp.proj.forward(gelu(block.mlp.fc.forward(block.ln2.forward(x)))));
      });
      this.length += 1;
      return linear(model.lnF.forward(x), model.wte.weight).toArray() as Float32Array;  // [1, V]: a copy already
    }));
  }
}
