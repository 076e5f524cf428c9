// Layer normalization over the last dim (GPT-2's ln_1, ln_2, ln_f), forward and backward, f32.
// Ba et al. 2016, https://arxiv.org/abs/1607.06450; the math of llm.c's train_gpt2.c.
//
//   inp, out, dout, dinp  [rows, C]       weight, bias, dweight, dbias  [C]
//   mean, rstd            [rows]          saved by forward for backward
//
// Forward, per row x:  mean = sum(x) / C;  var = sum((x - mean)^2) / C (biased);
//   rstd = 1 / sqrt(var + 1e-5);  n = (x - mean) rstd;  out = n * weight + bias
// Backward, per row, with g = dout * weight:
//   dinp += rstd (g - mean(g) - n mean(g n));  dweight += sum_rows dout n;  dbias += sum_rows dout
// Every gradient ACCUMULATES (+=). dweight and dbias are sums over rows in row order, column by
// column: the fast path gives the reference's bits there for any thread count.
#pragma once

#include <cstdint>

#include "preference_loss.h"  // Impl

namespace fusedpo {

constexpr float kLayerNormEps = 1e-5f;

void layerNormForward(Impl impl, const float* inp, const float* weight, const float* bias,
                      float* out, float* mean, float* rstd, int64_t rows, int64_t channels);
void layerNormBackward(Impl impl, const float* dout, const float* inp, const float* weight,
                       const float* mean, const float* rstd, float* dinp, float* dweight,
                       float* dbias, int64_t rows, int64_t channels);

// The plain reference, layer_norm.cpp.
void referenceLayerNormForward(const float* inp, const float* weight, const float* bias,
                               float* out, float* mean, float* rstd, int64_t rows,
                               int64_t channels);
void referenceLayerNormBackward(const float* dout, const float* inp, const float* weight,
                                const float* mean, const float* rstd, float* dinp, float* dweight,
                                float* dbias, int64_t rows, int64_t channels);
// The dinp part of referenceLayerNormBackward, for rows [begin, end).
void referenceLayerNormDinpRows(const float* dout, const float* inp, const float* weight,
                                const float* mean, const float* rstd, float* dinp, int64_t begin,
                                int64_t end, int64_t channels);

}  // namespace fusedpo
