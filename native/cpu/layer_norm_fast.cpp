// Impl dispatch of layer_norm.h.
// Forward: rows split over the thread pool; AVX-512 (AVX2) forms the row's mean and variance
// (two passes, fp32 lane sums) and its output in 16 (8) lanes; other CPUs run the reference's
// loops.
// Backward, two phases:
//   1. dinp, rows split over the pool (AVX-512 or AVX2 lane sums of g and g n);
//   2. dweight and dbias, columns split over the pool, each column accumulated over the rows in
//      row order with the reference's own arithmetic (plain code, no FMA): the same bits as the
//      reference whatever the thread count. It reads inp and dout a second time (from cache at
//      the model's sizes: 1024 x 256 floats).
#include <cmath>

#include "../core/layer_norm.h"
#include "cpu_features.h"
#include "nn_parallel.h"
#include "vector_ops_avx2.h"
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

// The same with AVX2 + FMA, 8 lanes. The sums over the row keep two accumulators, lanes c and
// c + 8 of each 16-float step (vector_ops_avx2.h): the AVX-512 path's 16 partial sums, two
// independent chains. Lanes past the row's end load as 0 and are zeroed where they would not
// add 0 (x - mean).
FUSEDPO_TARGET_AVX2 void layerNormRowsAvx2(const float* inp, const float* weight, const float* bias,
                                           float* out, float* mean, float* rstd, int64_t begin,
                                           int64_t end, int64_t C) {
  for (int64_t r = begin; r < end; ++r) {
    const float* x = inp + r * C;
    float* y = out + r * C;
    const float m = cpu::sum8(C, x) / float(C);
    const __m256 mv = _mm256_set1_ps(m);
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    for (int64_t c = 0; c < C; c += 16) {
      const __m256 d0 = cpu::keepUpTo8(C - c, _mm256_sub_ps(cpu::loadUpTo8(x + c, C - c), mv));
      const __m256 d1 = cpu::keepUpTo8(C - c - 8, _mm256_sub_ps(cpu::loadUpTo8(x + c + 8, C - c - 8), mv));
      lo = _mm256_fmadd_ps(d0, d0, lo);
      hi = _mm256_fmadd_ps(d1, d1, hi);
    }
    const float s = 1.0f / std::sqrt(cpu::reduceAdd8(_mm256_add_ps(lo, hi)) / float(C) + kLayerNormEps);
    const __m256 sv = _mm256_set1_ps(s);
    for (int64_t c = 0; c < C; c += 8) {
      const int64_t left = C - c;
      const __m256 n = _mm256_mul_ps(_mm256_sub_ps(cpu::loadUpTo8(x + c, left), mv), sv);
      const __m256 o = _mm256_fmadd_ps(n, cpu::loadUpTo8(weight + c, left), cpu::loadUpTo8(bias + c, left));
      cpu::storeUpTo8(y + c, left, o);
    }
    mean[r] = m;
    rstd[r] = s;
  }
}

FUSEDPO_TARGET_AVX2 void layerNormDinpRowsAvx2(const float* dout, const float* inp, const float* weight,
                                               const float* mean, const float* rstd, float* dinp,
                                               int64_t begin, int64_t end, int64_t C) {
  for (int64_t r = begin; r < end; ++r) {
    const float* x = inp + r * C;
    const float* dy = dout + r * C;
    float* dx = dinp + r * C;
    const __m256 mv = _mm256_set1_ps(mean[r]), sv = _mm256_set1_ps(rstd[r]);
    __m256 gLo = _mm256_setzero_ps(), gHi = _mm256_setzero_ps();
    __m256 gnLo = _mm256_setzero_ps(), gnHi = _mm256_setzero_ps();
    for (int64_t c = 0; c < C; c += 16) {
      // g is 0 past the end (dout loads as 0); n is zeroed there too, so that g n is 0, not -0 or NaN.
      const int64_t left0 = C - c, left1 = C - c - 8;
      const __m256 n0 = cpu::keepUpTo8(left0, _mm256_mul_ps(_mm256_sub_ps(cpu::loadUpTo8(x + c, left0), mv), sv));
      const __m256 n1 = cpu::keepUpTo8(left1, _mm256_mul_ps(_mm256_sub_ps(cpu::loadUpTo8(x + c + 8, left1), mv), sv));
      const __m256 g0 = _mm256_mul_ps(cpu::loadUpTo8(dy + c, left0), cpu::loadUpTo8(weight + c, left0));
      const __m256 g1 = _mm256_mul_ps(cpu::loadUpTo8(dy + c + 8, left1), cpu::loadUpTo8(weight + c + 8, left1));
      gLo = _mm256_add_ps(gLo, g0);
      gHi = _mm256_add_ps(gHi, g1);
      gnLo = _mm256_fmadd_ps(g0, n0, gnLo);
      gnHi = _mm256_fmadd_ps(g1, n1, gnHi);
    }
    const __m256 gMean = _mm256_set1_ps(cpu::reduceAdd8(_mm256_add_ps(gLo, gHi)) / float(C));
    const __m256 gnMean = _mm256_set1_ps(cpu::reduceAdd8(_mm256_add_ps(gnLo, gnHi)) / float(C));
    for (int64_t c = 0; c < C; c += 8) {
      const int64_t left = C - c;
      const __m256 n = _mm256_mul_ps(_mm256_sub_ps(cpu::loadUpTo8(x + c, left), mv), sv);
      const __m256 g = _mm256_mul_ps(cpu::loadUpTo8(dy + c, left), cpu::loadUpTo8(weight + c, left));
      const __m256 d = _mm256_mul_ps(_mm256_fnmadd_ps(n, gnMean, _mm256_sub_ps(g, gMean)), sv);
      cpu::storeUpTo8(dx + c, left, _mm256_add_ps(cpu::loadUpTo8(dx + c, left), d));
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
  [[maybe_unused]] const bool avx512 = cpu::avx512Active(), avx2 = cpu::avx2Active();
  auto body = [&](int64_t begin, int64_t end) {
#if FUSEDPO_X86_KERNELS
    if (avx512) return layerNormRowsAvx512(inp, weight, bias, out, mean, rstd, begin, end, C);
    if (avx2) return layerNormRowsAvx2(inp, weight, bias, out, mean, rstd, begin, end, C);
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
  [[maybe_unused]] const bool avx512 = cpu::avx512Active(), avx2 = cpu::avx2Active();
  auto dinpRows = [&](int64_t begin, int64_t end) {
#if FUSEDPO_X86_KERNELS
    if (avx512) return layerNormDinpRowsAvx512(dout, inp, weight, mean, rstd, dinp, begin, end, C);
    if (avx2) return layerNormDinpRowsAvx2(dout, inp, weight, mean, rstd, dinp, begin, end, C);
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
