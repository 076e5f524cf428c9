// Impl dispatch of layer_norm.h.
// Forward: rows split over the thread pool; AVX-512 forms the row's mean and variance (two
// passes, fp32 lane sums) and its output in 16 lanes; other CPUs run the reference's loops.
// Backward, two phases:
//   1. dinp, rows split over the pool (AVX-512 lane sums of g and g n);
//   2. dweight and dbias, columns split over the pool, each column accumulated over the rows in
//      row order with the reference's own arithmetic (plain code, no FMA): the same bits as the
//      reference whatever the thread count. It reads inp and dout a second time (from cache at
//      the model's sizes: 1024 x 256 floats).
#include <cmath>

#include "../core/layer_norm.h"
#include "cpu_features.h"
#include "nn_parallel.h"
#include "vector_ops_avx512.h"

namespace fusedpo {
namespace {

#if FUSEDPO_X86_KERNELS
FUSEDPO_TARGET_AVX512 void layerNormRowsAvx512(const float* inp, const float* weight, const float* bias,
                                               float* out, float* mean, float* rstd, int64_t begin,
                                               int64_t end, int64_t C) {
  for (int64_t r = begin; r < end; ++r) {
    const float* x = inp + r * C;
    float* y = out + r * C;
    const float m = cpu::sum16(C, x) / float(C);
    const __m512 mv = _mm512_set1_ps(m);
    __m512 squares = _mm512_setzero_ps();
    for (int64_t c = 0; c < C; c += 16) {
      const __mmask16 k = cpu::tailMask(C - c);
      const __m512 d = _mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, x + c), mv);
      squares = _mm512_fmadd_ps(d, d, squares);
    }
    const float s = 1.0f / std::sqrt(_mm512_reduce_add_ps(squares) / float(C) + kLayerNormEps);
    const __m512 sv = _mm512_set1_ps(s);
    for (int64_t c = 0; c < C; c += 16) {
      const __mmask16 k = cpu::tailMask(C - c);
      const __m512 n = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + c), mv), sv);
      const __m512 o = _mm512_fmadd_ps(n, _mm512_maskz_loadu_ps(k, weight + c), _mm512_maskz_loadu_ps(k, bias + c));
      _mm512_mask_storeu_ps(y + c, k, o);
    }
    mean[r] = m;
    rstd[r] = s;
  }
}

FUSEDPO_TARGET_AVX512 void layerNormDinpRowsAvx512(const float* dout, const float* inp, const float* weight,
                                                   const float* mean, const float* rstd, float* dinp,
                                                   int64_t begin, int64_t end, int64_t C) {
  for (int64_t r = begin; r < end; ++r) {
    const float* x = inp + r * C;
    const float* dy = dout + r * C;
    float* dx = dinp + r * C;
    const __m512 mv = _mm512_set1_ps(mean[r]), sv = _mm512_set1_ps(rstd[r]);
    __m512 gSum = _mm512_setzero_ps(), gnSum = _mm512_setzero_ps();
    for (int64_t c = 0; c < C; c += 16) {
      const __mmask16 k = cpu::tailMask(C - c);
      const __m512 n = _mm512_maskz_mul_ps(k, _mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + c), mv), sv);
      const __m512 g = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, dy + c), _mm512_maskz_loadu_ps(k, weight + c));
      gSum = _mm512_add_ps(gSum, g);
      gnSum = _mm512_fmadd_ps(g, n, gnSum);
    }
    const __m512 gMean = _mm512_set1_ps(_mm512_reduce_add_ps(gSum) / float(C));
    const __m512 gnMean = _mm512_set1_ps(_mm512_reduce_add_ps(gnSum) / float(C));
    for (int64_t c = 0; c < C; c += 16) {
      const __mmask16 k = cpu::tailMask(C - c);
      const __m512 n = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + c), mv), sv);
      const __m512 g = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, dy + c), _mm512_maskz_loadu_ps(k, weight + c));
      const __m512 d = _mm512_mul_ps(_mm512_fnmadd_ps(n, gnMean, _mm512_sub_ps(g, gMean)), sv);
      _mm512_mask_storeu_ps(dx + c, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, dx + c), d));
    }
  }
}
#endif


// Phase 2: columns [c0, c1), rows in order, the reference's arithmetic.
void layerNormParamGradColumns(const float* dout, const float* inp, const float* mean, const float* rstd,
                               float* dweight, float* dbias, int64_t rows, int64_t C, int64_t c0, int64_t c1) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = inp + r * C;
    const float* dy = dout + r * C;
    const float m = mean[r], s = rstd[r];
    for (int64_t c = c0; c < c1; ++c) {
      const float n = (x[c] - m) * s;
      dbias[c] += dy[c];
      dweight[c] += n * dy[c];
    }
  }
}

}  // namespace

void layerNormForward(Impl impl, const float* inp, const float* weight, const float* bias,
                      float* out, float* mean, float* rstd, int64_t rows, int64_t channels) {
  if (impl == Impl::Reference) {
    return referenceLayerNormForward(inp, weight, bias, out, mean, rstd, rows, channels);
  }
  const int64_t C = channels;
  [[maybe_unused]] const bool avx512 = cpu::avx512Active();
  auto body = [&](int64_t begin, int64_t end) {
#if FUSEDPO_X86_KERNELS
    if (avx512) return layerNormRowsAvx512(inp, weight, bias, out, mean, rstd, begin, end, C);
#endif
    referenceLayerNormForward(inp + begin * C, weight, bias, out + begin * C, mean + begin, rstd + begin,
                              end - begin, C);
  };
  cpu::parallelForWork(rows, C, body);
}

void layerNormBackward(Impl impl, const float* dout, const float* inp, const float* weight,
                       const float* mean, const float* rstd, float* dinp, float* dweight,
                       float* dbias, int64_t rows, int64_t channels) {
  if (impl == Impl::Reference) {
    return referenceLayerNormBackward(dout, inp, weight, mean, rstd, dinp, dweight, dbias, rows, channels);
  }
  const int64_t C = channels;
  [[maybe_unused]] const bool avx512 = cpu::avx512Active();
  auto dinpRows = [&](int64_t begin, int64_t end) {
#if FUSEDPO_X86_KERNELS
    if (avx512) return layerNormDinpRowsAvx512(dout, inp, weight, mean, rstd, dinp, begin, end, C);
#endif
    referenceLayerNormDinpRows(dout, inp, weight, mean, rstd, dinp, begin, end, C);
  };
  cpu::parallelForWork(rows, C, dinpRows);
  auto columns = [&](int64_t c0, int64_t c1) {
    layerNormParamGradColumns(dout, inp, mean, rstd, dweight, dbias, rows, C, c0, c1);
  };
  cpu::parallelForWork(C, rows, columns);
}

}  // namespace fusedpo
