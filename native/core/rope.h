// Rotary position embeddings (Su et al. 2021, https://arxiv.org/abs/2104.09864) in the
// `rotate_half` form of Hugging Face's Llama, Qwen and Gemma: each head's D dims are two halves,
// dim i < D/2 rotated with dim i + D/2 by the angle of its frequency at the token's position.
// Forward and backward, f32, elementwise by pairs.
//
//   inp, out, dout, dinp  [B, T, H, D]     cos, sin  [T, D/2]: cos(t theta_i), sin(t theta_i)
//
//   out[.., i]       = x[i] cos_i - x[i + D/2] sin_i
//   out[.., i + D/2] = x[i + D/2] cos_i + x[i] sin_i          (i < D/2; cos, sin at the token's t)
// Backward (the transposed rotation), ACCUMULATING:
//   dinp[i] += dout[i] cos_i + dout[i + D/2] sin_i;  dinp[i + D/2] += dout[i + D/2] cos_i - dout[i] sin_i
// The angles (the frequencies, their scaling) are the caller's: lib/nn/rope.ts makes the tables.
#pragma once

#include <cstdint>

#include "preference_loss.h"  // Impl

namespace fusedpo {

struct RopeShape {
  int64_t batch;    // B
  int64_t tokens;   // T
  int64_t heads;    // H
  int64_t headDim;  // D, even
};

void ropeForward(Impl impl, const float* inp, const float* cos, const float* sin, float* out, RopeShape shape);
void ropeBackward(Impl impl, const float* dout, const float* cos, const float* sin, float* dinp, RopeShape shape);

// The plain reference, rope.cpp, for the rows (b, t) in [begin, end) of the B T rows.
void referenceRopeForward(const float* inp, const float* cos, const float* sin, float* out, RopeShape shape,
                          int64_t begin, int64_t end);
void referenceRopeBackward(const float* dout, const float* cos, const float* sin, float* dinp, RopeShape shape,
                           int64_t begin, int64_t end);

}  // namespace fusedpo
