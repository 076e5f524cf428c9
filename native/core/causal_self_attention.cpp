// The plain reference of causal_self_attention.h (formulas and shapes there): one query row at a time,
// std::exp, softmax sums in fp64.
#include "causal_self_attention.h"

#include <cmath>
#include <vector>

namespace fusedpo {

void referenceCausalSelfAttentionForward(const float* qkv, float* att, float* out, CausalSelfAttentionShape shape) {
  const int64_t B = shape.batch, T = shape.tokens, C = shape.channels, NH = shape.heads;
  const int64_t hs = C / NH, C3 = 3 * C;
  const float scale = 1.0f / std::sqrt(float(hs));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < NH; ++h) {
      for (int64_t t = 0; t < T; ++t) {
        const float* q = qkv + (b * T + t) * C3 + h * hs;
        float* weights = att + ((b * NH + h) * T + t) * T;
        float max = -INFINITY;
        for (int64_t t2 = 0; t2 <= t; ++t2) {
          const float* k = qkv + (b * T + t2) * C3 + C + h * hs;
          float dot = 0.0f;
          for (int64_t i = 0; i < hs; ++i) dot += q[i] * k[i];
          weights[t2] = dot * scale;
          max = std::fmax(max, weights[t2]);
        }
        double sum = 0.0;
        for (int64_t t2 = 0; t2 <= t; ++t2) {
          weights[t2] = std::exp(weights[t2] - max);
          sum += weights[t2];
        }
        const float inverse = float(1.0 / sum);
        for (int64_t t2 = 0; t2 < T; ++t2) weights[t2] = t2 <= t ? weights[t2] * inverse : 0.0f;

        float* o = out + (b * T + t) * C + h * hs;
        for (int64_t i = 0; i < hs; ++i) o[i] = 0.0f;
        for (int64_t t2 = 0; t2 <= t; ++t2) {
          const float* v = qkv + (b * T + t2) * C3 + 2 * C + h * hs;
          for (int64_t i = 0; i < hs; ++i) o[i] += weights[t2] * v[i];
        }
      }
    }
  }
}

void referenceCausalSelfAttentionBackward(const float* qkv, const float* att, const float* dout, float* dqkv,
                                CausalSelfAttentionShape shape) {
  const int64_t B = shape.batch, T = shape.tokens, C = shape.channels, NH = shape.heads;
  const int64_t hs = C / NH, C3 = 3 * C;
  const float scale = 1.0f / std::sqrt(float(hs));
  std::vector<float> datt(T), dscore(T);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < NH; ++h) {
      for (int64_t t = 0; t < T; ++t) {
        const float* weights = att + ((b * NH + h) * T + t) * T;
        const float* dout_t = dout + (b * T + t) * C + h * hs;
        const float* q = qkv + (b * T + t) * C3 + h * hs;
        float* dq = dqkv + (b * T + t) * C3 + h * hs;
        // out_t = sum att v: into datt and dv
        double dot = 0.0;
        for (int64_t t2 = 0; t2 <= t; ++t2) {
          const float* v = qkv + (b * T + t2) * C3 + 2 * C + h * hs;
          float* dv = dqkv + (b * T + t2) * C3 + 2 * C + h * hs;
          float d = 0.0f;
          for (int64_t i = 0; i < hs; ++i) {
            d += dout_t[i] * v[i];
            dv[i] += weights[t2] * dout_t[i];
          }
          datt[t2] = d;
          dot += double(weights[t2]) * double(d);
        }
        // softmax, then the scaled dot products: into dq and dk
        for (int64_t t2 = 0; t2 <= t; ++t2) {
          dscore[t2] = weights[t2] * (datt[t2] - float(dot)) * scale;
        }
        for (int64_t t2 = 0; t2 <= t; ++t2) {
          const float* k = qkv + (b * T + t2) * C3 + C + h * hs;
          float* dk = dqkv + (b * T + t2) * C3 + C + h * hs;
          for (int64_t i = 0; i < hs; ++i) {
            dq[i] += dscore[t2] * k[i];
            dk[i] += dscore[t2] * q[i];
          }
        }
      }
    }
  }
}

}  // namespace fusedpo
