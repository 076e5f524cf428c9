// The plain reference of layer_norm.h (formulas and shapes there). Row statistics accumulate in
// fp32 like llm.c's; the fast path's lane sums are checked against these within tolerance.
#include "layer_norm.h"

#include <cmath>

namespace fusedpo {

void referenceLayerNormForward(const float* inp, const float* weight, const float* bias,
                               float* out, float* mean, float* rstd, int64_t rows,
                               int64_t channels) {
  const int64_t C = channels;
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = inp + r * C;
    float sum = 0.0f;
    for (int64_t c = 0; c < C; ++c) sum += x[c];
    const float m = sum / float(C);
    float squares = 0.0f;
    for (int64_t c = 0; c < C; ++c) squares += (x[c] - m) * (x[c] - m);
    const float s = 1.0f / std::sqrt(squares / float(C) + kLayerNormEps);
    float* y = out + r * C;
    for (int64_t c = 0; c < C; ++c) y[c] = (x[c] - m) * s * weight[c] + bias[c];
    mean[r] = m;
    rstd[r] = s;
  }
}

// dinp of rows [begin, end): the reference's loops, also the fast path's on CPUs without AVX-512.
void referenceLayerNormDinpRows(const float* dout, const float* inp, const float* weight,
                                const float* mean, const float* rstd, float* dinp, int64_t begin,
                                int64_t end, int64_t channels) {
  const int64_t C = channels;
  for (int64_t r = begin; r < end; ++r) {
    const float* x = inp + r * C;
    const float* dy = dout + r * C;
    float* dx = dinp + r * C;
    const float m = mean[r], s = rstd[r];
    // mean(g) and mean(g n), g = dout * weight
    float gMean = 0.0f, gnMean = 0.0f;
    for (int64_t c = 0; c < C; ++c) {
      const float n = (x[c] - m) * s;
      const float g = dy[c] * weight[c];
      gMean += g;
      gnMean += g * n;
    }
    gMean /= float(C);
    gnMean /= float(C);
    for (int64_t c = 0; c < C; ++c) {
      const float n = (x[c] - m) * s;
      const float g = dy[c] * weight[c];
      dx[c] += (g - gMean - n * gnMean) * s;
    }
  }
}

void referenceLayerNormBackward(const float* dout, const float* inp, const float* weight,
                                const float* mean, const float* rstd, float* dinp, float* dweight,
                                float* dbias, int64_t rows, int64_t channels) {
  referenceLayerNormDinpRows(dout, inp, weight, mean, rstd, dinp, 0, rows, channels);
  // dweight and dbias: sums over rows in row order, column by column.
  const int64_t C = channels;
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = inp + r * C;
    const float* dy = dout + r * C;
    const float m = mean[r], s = rstd[r];
    for (int64_t c = 0; c < C; ++c) {
      const float n = (x[c] - m) * s;
      dbias[c] += dy[c];
      dweight[c] += n * dy[c];
    }
  }
}

}  // namespace fusedpo
