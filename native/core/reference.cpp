// The plain scalar spec: readable loops, no intrinsics, no threads. Every fast path is tested
// against these functions.
//
//   logits  [R, T, V]  f32 / bf16 / f16        labels [R, T] int32
//   lse, lp [R*T]      float                   logps, tokenCounts [R]
//   coef    [R]        float                   dlogits [R, T, V], may alias logits
//
// Stage 1, per counted token (s, t), with z = logits[s, t, :]:
//   m = max_v z[v];  lse = m + log(sum_v exp(z[v] - m));  lp = z[y] - lse
// exp(z[v] - m) is fp32 (std::exp of a float) and the sum over v is fp64, so this is the most
// accurate of the paths and the fast paths' fp32 lane sums are measured against it.
// Stage 4: dlogits[v] = c * ([v == y] - exp(z[v] - lse)) in fp32, then rounded to the storage
// dtype (half.h). Rows whose coef is 0 and uncounted tokens are written as +0.
#include <cmath>
#include <limits>
#include <vector>

#include "half.h"
#include "pair_loss.h"
#include "preference_loss.h"
#include "reference.h"

namespace fusedpo {
namespace {

void storeGradient(void* dlogits, DType dtype, int64_t index, float value) {
  switch (dtype) {
    case DType::BF16: static_cast<uint16_t*>(dlogits)[index] = floatToBf16(value); return;
    case DType::F16: static_cast<uint16_t*>(dlogits)[index] = floatToF16(value); return;
    case DType::F32: break;
  }
  static_cast<float*>(dlogits)[index] = value;
}

}  // namespace

void referencePreferenceLossForward(const void* logits, DType dtype, LogitsShape shape,
                                      const int32_t* labels, int32_t ignoreIndex, float* lse,
                                      float* lp, int64_t* nonFiniteToken) {
  const int64_t T = shape.tokens, V = shape.vocab;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t s = 0; s < shape.rows; ++s) {
    nonFiniteToken[s] = -1;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t token = s * T + t;
      const int32_t label = labels[token];
      if (label == ignoreIndex) {
        lse[token] = 0.0f;
        lp[token] = 0.0f;
        continue;
      }
      const int64_t rowStart = token * V;
      bool finite = true;
      float maxLogit = -std::numeric_limits<float>::infinity();
      for (int64_t v = 0; v < V; ++v) {
        const float z = loadLogit(logits, dtype, rowStart + v);
        if (!std::isfinite(z)) finite = false;
        if (z > maxLogit) maxLogit = z;
      }
      if (!finite) {
        lse[token] = nan;
        lp[token] = nan;
        if (nonFiniteToken[s] < 0) nonFiniteToken[s] = t;
        continue;
      }
      double sumExp = 0.0;
      for (int64_t v = 0; v < V; ++v) {
        sumExp += std::exp(loadLogit(logits, dtype, rowStart + v) - maxLogit);
      }
      lse[token] = float(double(maxLogit) + std::log(sumExp));
      lp[token] = loadLogit(logits, dtype, rowStart + label) - lse[token];
    }
  }
}

void referencePreferenceLossBackward(const void* logits, DType dtype, LogitsShape shape,
                                       const int32_t* labels, int32_t ignoreIndex,
                                       const float* lse, const float* coef, void* dlogits) {
  const int64_t T = shape.tokens, V = shape.vocab;
  for (int64_t s = 0; s < shape.rows; ++s) {
    const float c = coef[s];
    for (int64_t t = 0; t < T; ++t) {
      const int64_t token = s * T + t;
      const int32_t label = labels[token];
      const int64_t rowStart = token * V;
      if (label == ignoreIndex || c == 0.0f) {
        for (int64_t v = 0; v < V; ++v) storeGradient(dlogits, dtype, rowStart + v, 0.0f);
        continue;
      }
      // In place, z[v] is read before dlogits[v] overwrites it.
      for (int64_t v = 0; v < V; ++v) {
        const float p = std::exp(loadLogit(logits, dtype, rowStart + v) - lse[token]);
        const float onehot = v == label ? 1.0f : 0.0f;
        storeGradient(dlogits, dtype, rowStart + v, c * (onehot - p));
      }
    }
  }
}

int64_t firstNonFiniteVocab(const void* logits, DType dtype, LogitsShape shape, int64_t row,
                            int64_t token) {
  const int64_t rowStart = (row * shape.tokens + token) * shape.vocab;
  for (int64_t v = 0; v < shape.vocab; ++v) {
    if (!std::isfinite(loadLogit(logits, dtype, rowStart + v))) return v;
  }
  return -1;
}

// pi[s] = sum_t m[s,t] (z[s,t,y] - lse[s,t]) in fp64, t ascending; n[s] = sum_t m[s,t].
// Each term is formed in fp64 from the stored logit and lse, not read from the fp32 lp: with
// bf16 logits near their largest finite value, z - lse can reach -6.8e38, past fp32's range.
void sequenceSums(const void* logits, DType dtype, LogitsShape shape, const int32_t* labels,
                  int32_t ignoreIndex, const float* lse, double* logps, int32_t* tokenCounts) {
  const int64_t T = shape.tokens, V = shape.vocab;
  for (int64_t s = 0; s < shape.rows; ++s) {
    double sum = 0.0;
    int32_t count = 0;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t token = s * T + t;
      const int32_t label = labels[token];
      if (label == ignoreIndex) continue;
      sum += double(loadLogit(logits, dtype, token * V + label)) - double(lse[token]);
      ++count;
    }
    logps[s] = sum;
    tokenCounts[s] = count;
  }
}

// GCC 12 for aarch64 stops with an internal compiler error (vect_transform_reduction) when it
// vectorizes the batch's sums inlined below; the loops run over rows, not tokens: no vectorizing.
#if defined(__aarch64__) && defined(__GNUC__) && !defined(__clang__)
#define FUSEDPO_NO_VECTORIZE __attribute__((optimize("no-tree-vectorize")))
#else
#define FUSEDPO_NO_VECTORIZE
#endif

// The policy's sums are compared with refLogps, which are fp32, and usually the fp32 logps this
// same API reported for the reference model: they are rounded to fp32 first (where fp32 holds
// them: bf16 logits near their largest value can push a sum past it), so that a reference equal
// to the policy gives ul = 0 exactly, and MinorDPO's first step is exactly DPO's (docs/losses.md).
FUSEDPO_NO_VECTORIZE LossResult preferenceLossCoefficients(const LossParams& params, int64_t rows, const double* logps,
                                                           const int32_t* tokenCounts, const float* refLogps,
                                                           const float* rewards, float* coef) {
  std::vector<double> asReported(logps, logps + rows);
  for (double& pi : asReported) {
    if (std::fabs(pi) <= double(std::numeric_limits<float>::max())) pi = double(float(pi));
  }
  return preferenceLossOfBatch(params, rows, asReported.data(), tokenCounts, refLogps, rewards, coef);
}

}  // namespace fusedpo
