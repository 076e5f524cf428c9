// The plain reference of rope.h (formulas there). A row is one token (b, t) of every head.
#include "rope.h"

namespace fusedpo {

void referenceRopeForward(const float* inp, const float* cos, const float* sin, float* out, RopeShape s,
                          int64_t begin, int64_t end) {
  const int64_t half = s.headDim / 2, width = s.heads * s.headDim;
  for (int64_t row = begin; row < end; ++row) {
    const int64_t t = row % s.tokens;
    const float* c = cos + t * half;
    const float* n = sin + t * half;
    for (int64_t h = 0; h < s.heads; ++h) {
      const float* x = inp + row * width + h * s.headDim;
      float* y = out + row * width + h * s.headDim;
      for (int64_t i = 0; i < half; ++i) {
        const float a = x[i], b = x[i + half];
        y[i] = a * c[i] - b * n[i];
        y[i + half] = b * c[i] + a * n[i];
      }
    }
  }
}

void referenceRopeBackward(const float* dout, const float* cos, const float* sin, float* dinp, RopeShape s,
                           int64_t begin, int64_t end) {
  const int64_t half = s.headDim / 2, width = s.heads * s.headDim;
  for (int64_t row = begin; row < end; ++row) {
    const int64_t t = row % s.tokens;
    const float* c = cos + t * half;
    const float* n = sin + t * half;
    for (int64_t h = 0; h < s.heads; ++h) {
      const float* g = dout + row * width + h * s.headDim;
      float* dx = dinp + row * width + h * s.headDim;
      for (int64_t i = 0; i < half; ++i) {
        const float a = g[i], b = g[i + half];
        dx[i] += a * c[i] + b * n[i];
        dx[i + half] += b * c[i] - a * n[i];
      }
    }
  }
}

}  // namespace fusedpo
