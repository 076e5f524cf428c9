// The plain reference of causal_self_attention.h (formulas and shapes there): one query row at a
// time, std::exp, softmax sums in fp64; and GPT-2's packed form as a view of the general one.
#include "causal_self_attention.h"

#include <cmath>
#include <vector>

namespace fusedpo {

void referenceAttentionForward(const float* q, const float* k, const float* v, float* att, float* out,
                               const AttentionShape& shape) {
  const int64_t B = shape.batch, T = shape.tokens, NH = shape.heads, D = shape.headDim;
  const int64_t group = NH / shape.kvHeads;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < NH; ++h) {
      const int64_t g = h / group;
      for (int64_t t = 0; t < T; ++t) {
        const int64_t start = attentionStart(shape, t);
        const float* qt = q + (b * T + t) * shape.qStride + h * D;
        float* weights = att + ((b * NH + h) * T + t) * T;
        float max = -INFINITY;
        for (int64_t t2 = start; t2 <= t; ++t2) {
          const float* kt = k + (b * T + t2) * shape.kvStride + g * D;
          float dot = 0.0f;
          for (int64_t i = 0; i < D; ++i) dot += qt[i] * kt[i];
          weights[t2] = dot * shape.scale;
          max = std::fmax(max, weights[t2]);
        }
        double sum = 0.0;
        for (int64_t t2 = start; t2 <= t; ++t2) {
          weights[t2] = std::exp(weights[t2] - max);
          sum += weights[t2];
        }
        const float inverse = float(1.0 / sum);
        for (int64_t t2 = 0; t2 < T; ++t2) weights[t2] = t2 >= start && t2 <= t ? weights[t2] * inverse : 0.0f;

        float* o = out + (b * T + t) * shape.outStride + h * D;
        for (int64_t i = 0; i < D; ++i) o[i] = 0.0f;
        for (int64_t t2 = start; t2 <= t; ++t2) {
          const float* vt = v + (b * T + t2) * shape.kvStride + g * D;
          for (int64_t i = 0; i < D; ++i) o[i] += weights[t2] * vt[i];
        }
      }
    }
  }
}

void referenceAttentionBackward(const float* q, const float* k, const float* v, const float* att,
                                const float* dout, float* dq, float* dk, float* dv, const AttentionShape& shape) {
  const int64_t B = shape.batch, T = shape.tokens, NH = shape.heads, D = shape.headDim;
  const int64_t group = NH / shape.kvHeads;
  std::vector<float> datt(T), dscore(T);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < NH; ++h) {
      const int64_t g = h / group;
      for (int64_t t = 0; t < T; ++t) {
        const int64_t start = attentionStart(shape, t);
        const float* weights = att + ((b * NH + h) * T + t) * T;
        const float* dout_t = dout + (b * T + t) * shape.outStride + h * D;
        const float* qt = q + (b * T + t) * shape.qStride + h * D;
        float* dqt = dq + (b * T + t) * shape.qStride + h * D;
        // out_t = sum att v: into datt and dv
        double dot = 0.0;
        for (int64_t t2 = start; t2 <= t; ++t2) {
          const float* vt = v + (b * T + t2) * shape.kvStride + g * D;
          float* dvt = dv + (b * T + t2) * shape.kvStride + g * D;
          float d = 0.0f;
          for (int64_t i = 0; i < D; ++i) {
            d += dout_t[i] * vt[i];
            dvt[i] += weights[t2] * dout_t[i];
          }
          datt[t2] = d;
          dot += double(weights[t2]) * double(d);
        }
        // softmax, then the scaled dot products: into dq and dk
        for (int64_t t2 = start; t2 <= t; ++t2) dscore[t2] = weights[t2] * (datt[t2] - float(dot)) * shape.scale;
        for (int64_t t2 = start; t2 <= t; ++t2) {
          const float* kt = k + (b * T + t2) * shape.kvStride + g * D;
          float* dkt = dk + (b * T + t2) * shape.kvStride + g * D;
          for (int64_t i = 0; i < D; ++i) {
            dqt[i] += dscore[t2] * kt[i];
            dkt[i] += dscore[t2] * qt[i];
          }
        }
      }
    }
  }
}

AttentionShape packedAttentionShape(const CausalSelfAttentionShape& s) {
  const int64_t hs = s.channels / s.heads;
  return AttentionShape{s.batch, s.tokens, s.heads, s.heads, hs, 3 * s.channels, 3 * s.channels, s.channels,
                        1.0f / std::sqrt(float(hs)), 0};
}

void causalSelfAttentionForward(Impl impl, const float* qkv, float* att, float* out, CausalSelfAttentionShape shape) {
  const int64_t C = shape.channels;
  attentionForward(impl, qkv, qkv + C, qkv + 2 * C, att, out, packedAttentionShape(shape));
}

void causalSelfAttentionBackward(Impl impl, const float* qkv, const float* att, const float* dout, float* dqkv,
                                 CausalSelfAttentionShape shape) {
  const int64_t C = shape.channels;
  attentionBackward(impl, qkv, qkv + C, qkv + 2 * C, att, dout, dqkv, dqkv + C, dqkv + 2 * C, packedAttentionShape(shape));
}

}  // namespace fusedpo
