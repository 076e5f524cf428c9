// The plain reference of rms_norm.h (formulas there).
#include "rms_norm.h"

#include <cmath>

namespace fusedpo {

void referenceRmsNormForward(const float* inp, const float* weight, float* out, float* rstd, int64_t rows,
                             int64_t channels, float eps, float offset) {
  const int64_t C = channels;
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = inp + r * C;
    double squares = 0.0;
    for (int64_t c = 0; c < C; ++c) squares += double(x[c]) * double(x[c]);
    const float s = float(1.0 / std::sqrt(squares / double(C) + double(eps)));
    rstd[r] = s;
    for (int64_t c = 0; c < C; ++c) out[r * C + c] = x[c] * s * (weight[c] + offset);
  }
}

void referenceRmsNormWeightGradColumns(const float* dout, const float* inp, const float* rstd, float* dweight,
                                       int64_t rows, int64_t channels, int64_t c0, int64_t c1) {
  for (int64_t r = 0; r < rows; ++r) {
    const float s = rstd[r];
    for (int64_t c = c0; c < c1; ++c) dweight[c] += dout[r * channels + c] * (inp[r * channels + c] * s);
  }
}

void referenceRmsNormBackward(const float* dout, const float* inp, const float* weight, const float* rstd,
                              float* dinp, float* dweight, int64_t rows, int64_t channels, float offset) {
  const int64_t C = channels;
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = inp + r * C;
    const float* dy = dout + r * C;
    const float s = rstd[r];
    double gn = 0.0;  // sum g n
    for (int64_t c = 0; c < C; ++c) gn += double(dy[c] * (weight[c] + offset)) * double(x[c] * s);
    const float gnMean = float(gn / double(C));
    for (int64_t c = 0; c < C; ++c) {
      const float g = dy[c] * (weight[c] + offset);
      dinp[r * C + c] += s * (g - x[c] * s * gnMean);
    }
  }
  referenceRmsNormWeightGradColumns(dout, inp, rstd, dweight, rows, C, 0, C);
}

}  // namespace fusedpo
