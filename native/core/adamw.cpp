// The plain reference of adamw.h (formulas there).
#include "adamw.h"

#include <cmath>

namespace fusedpo {

// Elements [begin, end) of one tensor: the fast path runs this same loop on each thread's range.
void referenceAdamwUpdate(float* param, const float* grad, float* m, float* v, int64_t begin,
                          int64_t end, const AdamWParams& p) {
  const float correction1 = float(1.0 - std::pow(double(p.beta1), double(p.step)));
  const float correction2 = float(1.0 - std::pow(double(p.beta2), double(p.step)));
  for (int64_t i = begin; i < end; ++i) {
    const float g = grad[i];
    m[i] = p.beta1 * m[i] + (1.0f - p.beta1) * g;
    v[i] = p.beta2 * v[i] + (1.0f - p.beta2) * g * g;
    const float mhat = m[i] / correction1;
    const float vhat = v[i] / correction2;
    param[i] -= p.lr * (mhat / (std::sqrt(vhat) + p.eps) + p.weightDecay * param[i]);
  }
}

double referenceGlobalGradNorm(const float* const* grads, const int64_t* counts, int64_t tensors) {
  double sum = 0.0;
  for (int64_t k = 0; k < tensors; ++k) {
    for (int64_t i = 0; i < counts[k]; ++i) sum += double(grads[k][i]) * double(grads[k][i]);
  }
  return std::sqrt(sum);
}

}  // namespace fusedpo
