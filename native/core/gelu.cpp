// The plain reference of gelu.h (formulas there).
#include "gelu.h"

#include <cmath>

namespace fusedpo {
namespace {

constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluCubic = 0.044715f;

}  // namespace

void referenceGeluForward(const float* inp, float* out, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    const float x = inp[i];
    const float u = kGeluScale * (x + kGeluCubic * x * x * x);
    out[i] = 0.5f * x * (1.0f + std::tanh(u));
  }
}

void referenceGeluBackward(const float* inp, const float* dout, float* dinp, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    const float x = inp[i];
    const float u = kGeluScale * (x + kGeluCubic * x * x * x);
    const float th = std::tanh(u);
    const float sech2 = 1.0f - th * th;
    const float local = 0.5f * (1.0f + th) + 0.5f * x * sech2 * kGeluScale * (1.0f + 3.0f * kGeluCubic * x * x);
    dinp[i] += local * dout[i];
  }
}

}  // namespace fusedpo
