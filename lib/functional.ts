/**
 * `F`: the ops on Tensors, each with its gradient (lib/ops, one file per op: the typed-array
 * forms of the same kernels sit beside each one).
 *
 * f32 tensors, contiguous, on the CPU (cuda tensors feed preferenceLoss only, so far).
 */
export { add, mul, scale } from './ops/elementwise';
export { sum, mean } from './ops/reduce';
export { matmul, linear } from './ops/matmul';
export { embedding } from './ops/embedding';
export { layerNorm } from './ops/layer_norm';
export { rmsNorm } from './ops/rms_norm';
export { rope } from './ops/rope';
export { glu } from './ops/glu';
export { gelu } from './ops/gelu';
export { softmax } from './ops/softmax';
export { causalSelfAttention, groupedQueryAttention } from './ops/causal_self_attention';
export { crossEntropy } from './ops/cross_entropy';
export { reshape } from './ops/reshape';
