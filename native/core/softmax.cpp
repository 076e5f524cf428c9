// The plain reference of softmax.h (formulas and shapes there).
#include "softmax.h"

#include <cmath>

namespace fusedpo {

void referenceSoftmaxForward(const float* inp, float* out, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = inp + r * cols;
    float* y = out + r * cols;
    float max = -INFINITY;
    for (int64_t c = 0; c < cols; ++c) max = std::fmax(max, x[c]);
    double sum = 0.0;
    for (int64_t c = 0; c < cols; ++c) {
      y[c] = std::exp(x[c] - max);
      sum += y[c];
    }
    const float inverse = float(1.0 / sum);
    for (int64_t c = 0; c < cols; ++c) y[c] *= inverse;
  }
}

void referenceSoftmaxBackward(const float* out, const float* dout, float* dinp, int64_t rows,
                              int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* y = out + r * cols;
    const float* dy = dout + r * cols;
    double dot = 0.0;
    for (int64_t c = 0; c < cols; ++c) dot += double(dy[c]) * double(y[c]);
    for (int64_t c = 0; c < cols; ++c) dinp[r * cols + c] += y[c] * (dy[c] - float(dot));
  }
}

}  // namespace fusedpo
