// RMS normalization over the last dim (the Llama family's input_layernorm, post_attention_layernorm,
// norm, and Qwen 3's per-head q_norm and k_norm), forward and backward, f32. Zhang and Sennrich
// 2019, https://arxiv.org/abs/1910.07467; the math of Hugging Face's LlamaRMSNorm (in float32).
//
//   inp, out, dout, dinp  [rows, C]       weight, dweight  [C]       rstd  [rows]: saved by forward
//
// Forward, per row x:  rstd = 1 / sqrt(sum(x^2) / C + eps);  n = x rstd;  out = n * (weight + offset)
// (offset 0 for Llama, Qwen; 1 for Gemma, whose weights are stored as w - 1).
// Backward, per row, with g = dout * (weight + offset):
//   dinp += rstd (g - n mean(g n));  dweight += sum_rows dout n
// Every gradient ACCUMULATES (+=). dweight is a sum over rows in row order, column by column: the
// fast path gives the reference's bits there for any thread count.
#pragma once

#include <cstdint>

#include "preference_loss.h"  // Impl

namespace fusedpo {

void rmsNormForward(Impl impl, const float* inp, const float* weight, float* out, float* rstd, int64_t rows,
                    int64_t channels, float eps, float offset);
void rmsNormBackward(Impl impl, const float* dout, const float* inp, const float* weight, const float* rstd,
                     float* dinp, float* dweight, int64_t rows, int64_t channels, float offset);

// The plain reference, rms_norm.cpp: the row sums in fp64.
void referenceRmsNormForward(const float* inp, const float* weight, float* out, float* rstd, int64_t rows,
                             int64_t channels, float eps, float offset);
void referenceRmsNormBackward(const float* dout, const float* inp, const float* weight, const float* rstd,
                              float* dinp, float* dweight, int64_t rows, int64_t channels, float offset);
// dweight += sum over rows [0, rows) of dout n, for the columns [c0, c1), in row order.
void referenceRmsNormWeightGradColumns(const float* dout, const float* inp, const float* rstd, float* dweight,
                                       int64_t rows, int64_t channels, int64_t c0, int64_t c1);

}  // namespace fusedpo
