// GELU with GPT-2's tanh approximation (Hendrycks and Gimpel 2016,
// https://arxiv.org/abs/1606.08415), forward and backward, f32, elementwise.
//
//   inp, out, dout, dinp  [count]
//
//   u = sqrt(2/pi) (x + 0.044715 x^3);  out = x/2 (1 + tanh u)
//   dinp += dout (1/2 (1 + tanh u) + x/2 (1 - tanh^2 u) sqrt(2/pi) (1 + 3 0.044715 x^2))
// The fast path computes tanh u = 1 - 2 / (exp(2u) + 1) with simd_exp.h's exp (a few ulp of
// tanh's scale off std::tanh).
#pragma once

#include <cstdint>

#include "preference_loss.h"  // Impl

namespace fusedpo {

void geluForward(Impl impl, const float* inp, float* out, int64_t count);
void geluBackward(Impl impl, const float* inp, const float* dout, float* dinp, int64_t count);

// The plain reference, gelu.cpp (std::tanh).
void referenceGeluForward(const float* inp, float* out, int64_t count);
void referenceGeluBackward(const float* inp, const float* dout, float* dinp, int64_t count);

}  // namespace fusedpo
