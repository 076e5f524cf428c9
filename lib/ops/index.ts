/**
 * Every op of the CPU training path, one file per op, each with its typed-array forms
 * (`geluForward` / `geluBackward`, for tests and callers who manage their own arrays) beside its
 * Tensor form with autograd (`gelu`), on one checked path to one native kernel. The Tensor forms
 * are the public `F` (lib/functional.ts); this barrel is internal.
 */
export * from './common';
export * from './elementwise';
export * from './reduce';
export * from './matmul';
export * from './embedding';
export * from './layer_norm';
export * from './rms_norm';
export * from './rope';
export * from './glu';
export * from './gelu';
export * from './softmax';
export * from './causal_self_attention';
export * from './cross_entropy';
export * from './reshape';
export * from './adamw';
