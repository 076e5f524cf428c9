// Softmax over the last dim, forward and backward, f32.
//
//   inp, out, dout, dinp  [rows, cols]
//
//   out = exp(x - max x) / sum exp(x - max x)
//   dinp += out (dout - sum_c dout[c] out[c])         (ACCUMULATES)
// Backward reads the saved out, not the input.
#pragma once

#include <cstdint>

#include "preference_loss.h"  // Impl

namespace fusedpo {

void softmaxForward(Impl impl, const float* inp, float* out, int64_t rows, int64_t cols);
void softmaxBackward(Impl impl, const float* out, const float* dout, float* dinp, int64_t rows,
                     int64_t cols);

// The plain reference, softmax.cpp: std::exp, row sums in fp64.
void referenceSoftmaxForward(const float* inp, float* out, int64_t rows, int64_t cols);
void referenceSoftmaxBackward(const float* out, const float* dout, float* dinp, int64_t rows,
                              int64_t cols);

}  // namespace fusedpo
