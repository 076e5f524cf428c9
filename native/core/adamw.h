// The optimizer step: AdamW, fused per parameter tensor, and clipping by the global gradient
// norm. Loshchilov and Hutter 2019, https://arxiv.org/abs/1711.05101 (decoupled weight decay);
// the update of llm.c's train_gpt2.c.
//
//   param, grad, m, v  [count]   param, m and v are updated in place; grad is only read
//
// With step t >= 1 (the first update is t = 1):
//   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
//   mhat = m / (1 - beta1^t);     vhat = v / (1 - beta2^t)
//   param -= lr (mhat / (sqrt(vhat) + eps) + weightDecay param)
// The bias corrections are formed once per call in fp64. Elementwise: any thread count gives
// the same bits.
//
// Global norm: sqrt(sum over tensors, in list order, of sum_i g_i^2), accumulated in fp64. The
// fast path sums fixed blocks of 4096 elements in parallel and adds the block sums in order, so
// its result depends on neither the thread count nor the split (it may differ from the plain
// serial sum in the last bits of the fp64 result).
#pragma once

#include <cstdint>

#include "preference_loss.h"  // Impl

namespace fusedpo {

struct AdamWParams {
  float lr;
  float beta1;
  float beta2;
  float eps;
  float weightDecay;
  int64_t step;  // t >= 1
};

void adamwUpdate(Impl impl, float* param, const float* grad, float* m, float* v, int64_t count,
                 const AdamWParams& params);
// grads[k] holds counts[k] floats, k < tensors.
double globalGradNorm(Impl impl, const float* const* grads, const int64_t* counts, int64_t tensors);

// The plain reference, adamw.cpp.
void referenceAdamwUpdate(float* param, const float* grad, float* m, float* v, int64_t begin,
                          int64_t end, const AdamWParams& params);
double referenceGlobalGradNorm(const float* const* grads, const int64_t* counts, int64_t tensors);

}  // namespace fusedpo
