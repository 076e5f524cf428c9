// The plain reference of glu.h (formulas there).
#include "glu.h"

#include <cmath>

namespace fusedpo {
namespace {

constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluCubic = 0.044715f;

// act(x) and act'(x).
void activation(float x, GluActivation kind, float* value, float* slope) {
  if (kind == GluActivation::Silu) {
    const float s = 1.0f / (1.0f + std::exp(-x));
    *value = x * s;
    *slope = s * (1.0f + x * (1.0f - s));
    return;
  }
  const float u = kGeluScale * (x + kGeluCubic * x * x * x);
  const float th = std::tanh(u);
  *value = 0.5f * x * (1.0f + th);
  *slope = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * kGeluScale * (1.0f + 3.0f * kGeluCubic * x * x);
}

}  // namespace

void referenceGluForward(const float* gate, const float* up, float* out, int64_t count, GluActivation kind) {
  for (int64_t i = 0; i < count; ++i) {
    float value, slope;
    activation(gate[i], kind, &value, &slope);
    out[i] = value * up[i];
  }
}

void referenceGluBackward(const float* gate, const float* up, const float* dout, float* dgate, float* dup,
                          int64_t count, GluActivation kind) {
  for (int64_t i = 0; i < count; ++i) {
    float value, slope;
    activation(gate[i], kind, &value, &slope);
    if (dgate) dgate[i] += dout[i] * up[i] * slope;
    if (dup) dup[i] += dout[i] * value;
  }
}

}  // namespace fusedpo
