// The gated unit of the Llama family's MLP (down(act(gate(x)) * up(x))), the part between the
// projections, forward and backward, f32, elementwise: SwiGLU (act = SiLU: Llama, Qwen) and
// GeGLU (act = GELU with the tanh approximation: Gemma). Shazeer 2020,
// https://arxiv.org/abs/2002.05202.
//
//   gate, up, out, dout, dgate, dup  [count]
//
//   out = act(gate) * up
//   dgate += dout * up * act'(gate);  dup += dout * act(gate)           (ACCUMULATING)
//   silu(x) = x sigmoid(x), silu'(x) = sigmoid(x) (1 + x (1 - sigmoid(x)))
//   gelu(x) = x/2 (1 + tanh u), u = sqrt(2/pi) (x + 0.044715 x^3) (gelu.h has its derivative)
// The fast path forms sigmoid and tanh with simd_exp.h's expApprox (a few ulp off std::exp).
#pragma once

#include <cstdint>

#include "preference_loss.h"  // Impl

namespace fusedpo {

enum class GluActivation : int { Silu = 0, GeluTanh = 1 };

void gluForward(Impl impl, const float* gate, const float* up, float* out, int64_t count, GluActivation activation);
void gluBackward(Impl impl, const float* gate, const float* up, const float* dout, float* dgate, float* dup,
                 int64_t count, GluActivation activation);

// The plain reference, glu.cpp (std::exp, std::tanh).
void referenceGluForward(const float* gate, const float* up, float* out, int64_t count, GluActivation activation);
void referenceGluBackward(const float* gate, const float* up, const float* dout, float* dgate, float* dup,
                          int64_t count, GluActivation activation);

}  // namespace fusedpo
