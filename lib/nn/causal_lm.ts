/**
 * A causal language model: what the trainers, generation, evaluation, the study and the command
 * line use, whatever the architecture (GPT-2, the Llama family). An architecture is a subclass
 * with its config, its blocks and its Hugging Face names (lib/nn/architectures.ts keys them by
 * `model_type`); nothing outside lib/nn needs to know which one it holds.
 *
 *   forward(tokens [B, T])       -> logits [B, T, V]          position t predicts token t + 1
 *   hiddenStates(tokens [B, T])  -> [B, T, C]                 the last block's output after the final norm
 *   headWeight()                 -> [V, C]                    logits = hiddenStates @ headWeight^T
 *   decoder()                    -> one position at a time with a key-value cache (generation)
 *   like()                       -> a model of the same architecture and config (a frozen copy's shell)
 *
 * Every model is a Module: its parameters by dotted name, in a fixed order (the optimizer's, the
 * checkpoints').
 */
import type { Tensor } from '../tensor';
import { generate, type GenerateOptions } from './generate';  // generate.ts imports this module's types only
import { Module } from './module';

/** What every architecture's config has. */
export interface CausalLMConfig {
  /** Vocabulary size V: token ids are in [0, V). */
  readonly vocab: number;
  /** The longest sequence the model reads. */
  readonly context: number;
}

/** One position at a time, with a key-value cache: each step costs one position's forward. */
export interface Decoder {
  /** Positions run so far. */
  readonly length: number;
  /** Runs position `length` (token `token`), filling the cache; returns its logits [V]. */
  step(token: number): Float32Array;
}

export abstract class CausalLM extends Module {
  /** The architecture's name: its row of lib/nn/architectures.ts (`gpt2`, `llama`, `qwen2`, `qwen3`). */
  abstract readonly architecture: string;
  abstract readonly config: Readonly<CausalLMConfig>;

  /** Logits [B, T, V] of `tokens` (an Int32Array of B * T ids, row-major [B, T]). */
  abstract forward(tokens: Int32Array, shape: readonly [number, number]): Tensor;

  /** The last hidden states [B, T, C] (after the final norm): what the head multiplies. */
  abstract hiddenStates(tokens: Int32Array, shape: readonly [number, number]): Tensor;

  /** The language-model head [V, C] (the token embedding when tied). */
  abstract headWeight(): Tensor;

  /** A decoder with an empty key-value cache. */
  abstract decoder(): Decoder;

  /** A new model of this architecture and config, its weights freshly initialized (copyFrom fills them). */
  abstract like(): CausalLM;

  /** A lower bound of the floats one token of one row keeps for the backward (the activations), given T tokens a row. */
  abstract activationFloatsPerToken(tokens: number): number;

  /**
   * New tokens after `prompt` (token ids), with a key-value cache: greedy at temperature 0, seeded
   * draws otherwise (lib/nn/generate.ts).
   */
  generate(prompt: readonly number[] | Int32Array, options?: GenerateOptions): number[] {
    return generate(this, prompt, options);
  }
}

/** Whether `value` is a causal language model of this package. */
export function isCausalLM(value: unknown): value is CausalLM {
  return value instanceof CausalLM;
}
