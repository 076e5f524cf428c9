// Row primitives for the AVX2 paths of the GPT's ops (layernorm, softmax, gelu, attention): the
// AVX-512 ones of vector_ops_avx512.h at 8 fp32 lanes (AVX2 + FMA), any length n >= 0. Included
// only by files compiled for baseline x86-64: every function carries FUSEDPO_INLINE_AVX2 and is
// reached only after cpu::avx2Active() said so.
//
// Tails: AVX2 has no mask registers; the last < 8 elements of a row go through
// _mm256_maskload_ps / _mm256_maskstore_ps with a lane mask (masked-out lanes are not accessed, so
// memory past the end is never touched, and load as +0). Full vectors use plain loads and stores:
// a masked store costs many more cycles on some CPUs (AMD Zen 1/2).
//
// Sums keep two 8-lane accumulators over 16-float steps (lanes i and i + 8 of each step), merged
// at the end by reduceAdd8 in the order of _mm512_reduce_add_ps: the same 16 partial sums as the
// AVX-512 path (and two independent add chains, which one 8-lane chain would wait on). A fixed
// order for a given length, whatever thread runs it.
#pragma once

#include "cpu_features.h"

#if FUSEDPO_X86_KERNELS

#include <cstdint>

#include "simd_exp.h"

namespace fusedpo::cpu {
namespace {

// All ones in lanes [0, count), count clamped to [0, 8]: the mask of the last count elements.
FUSEDPO_INLINE_AVX2 __m256i tailMask8(int64_t count) {
  const int lanes = count <= 0 ? 0 : count >= 8 ? 8 : int(count);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(lanes), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// p[0..min(left, 8)), zeros in the other lanes: a plain load when left >= 8. left may be <= 0
// (all lanes zero, nothing read).
FUSEDPO_INLINE_AVX2 __m256 loadUpTo8(const float* p, int64_t left) {
  return left >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, tailMask8(left));
}

// p[0..min(left, 8)) = v's first lanes.
FUSEDPO_INLINE_AVX2 void storeUpTo8(float* p, int64_t left, __m256 v) {
  if (left >= 8) return _mm256_storeu_ps(p, v);
  _mm256_maskstore_ps(p, tailMask8(left), v);
}

// v with the lanes from min(left, 8) on set to +0 (for sums whose tail lanes would not be 0).
FUSEDPO_INLINE_AVX2 __m256 keepUpTo8(int64_t left, __m256 v) {
  return left >= 8 ? v : _mm256_and_ps(v, _mm256_castsi256_ps(tailMask8(left)));
}

// The 8 lanes' sum: halves, then pairs, then the last two, the order of _mm512_reduce_add_ps
// once its two 256-bit halves are added.
FUSEDPO_INLINE_AVX2 float reduceAdd8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
  s = _mm_add_ps(s, _mm_shuffle_ps(s, s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_ps(s, _mm_shuffle_ps(s, s, _MM_SHUFFLE(0, 1, 0, 1)));
  return _mm_cvtss_f32(s);
}

FUSEDPO_INLINE_AVX2 float reduceMax8(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
  s = _mm_max_ps(s, _mm_shuffle_ps(s, s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_max_ps(s, _mm_shuffle_ps(s, s, _MM_SHUFFLE(0, 1, 0, 1)));
  return _mm_cvtss_f32(s);
}

// y[i] += a x[i]
FUSEDPO_INLINE_AVX2 void axpy8(int64_t n, float a, const float* x, float* y) {
  const __m256 alpha = _mm256_set1_ps(a);
  int64_t i = 0;
  for (const int64_t full = n & ~int64_t(7); i < full; i += 8) {
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(alpha, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  }
  if (i < n) {
    const __m256i m = tailMask8(n - i);
    const __m256 sum = _mm256_fmadd_ps(alpha, _mm256_maskload_ps(x + i, m), _mm256_maskload_ps(y + i, m));
    _mm256_maskstore_ps(y + i, m, sum);
  }
}

// sum_i x[i]
FUSEDPO_INLINE_AVX2 float sum8(int64_t n, const float* x) {
  __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
  int64_t i = 0;
  for (const int64_t full = n & ~int64_t(15); i < full; i += 16) {
    lo = _mm256_add_ps(lo, _mm256_loadu_ps(x + i));
    hi = _mm256_add_ps(hi, _mm256_loadu_ps(x + i + 8));
  }
  if (i < n) {
    lo = _mm256_add_ps(lo, loadUpTo8(x + i, n - i));
    hi = _mm256_add_ps(hi, loadUpTo8(x + i + 8, n - i - 8));
  }
  return reduceAdd8(_mm256_add_ps(lo, hi));
}

// sum_i x[i] y[i]
FUSEDPO_INLINE_AVX2 float dot8(int64_t n, const float* x, const float* y) {
  __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
  int64_t i = 0;
  for (const int64_t full = n & ~int64_t(15); i < full; i += 16) {
    lo = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), lo);
    hi = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), hi);
  }
  if (i < n) {
    lo = _mm256_fmadd_ps(loadUpTo8(x + i, n - i), loadUpTo8(y + i, n - i), lo);
    hi = _mm256_fmadd_ps(loadUpTo8(x + i + 8, n - i - 8), loadUpTo8(y + i + 8, n - i - 8), hi);
  }
  return reduceAdd8(_mm256_add_ps(lo, hi));
}

// max_i x[i] (n >= 1)
FUSEDPO_INLINE_AVX2 float max8(int64_t n, const float* x) {
  __m256 acc = _mm256_set1_ps(-__builtin_inff());
  int64_t i = 0;
  for (const int64_t full = n & ~int64_t(7); i < full; i += 8) acc = _mm256_max_ps(acc, _mm256_loadu_ps(x + i));
  if (i < n) {
    // The tail's masked-out lanes load as 0, which must not take part: they keep acc instead.
    const __m256i m = tailMask8(n - i);
    acc = _mm256_blendv_ps(acc, _mm256_max_ps(acc, _mm256_maskload_ps(x + i, m)), _mm256_castsi256_ps(m));
  }
  return reduceMax8(acc);
}

// y[i] = exp(x[i] - shift); returns sum_i y[i]. y may equal x.
FUSEDPO_INLINE_AVX2 float expShifted8(int64_t n, const float* x, float shift, float* y) {
  const __m256 s = _mm256_set1_ps(shift);
  __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
  int64_t i = 0;
  for (const int64_t full = n & ~int64_t(15); i < full; i += 16) {
    const __m256 e0 = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
    const __m256 e1 = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), s));
    _mm256_storeu_ps(y + i, e0);
    _mm256_storeu_ps(y + i + 8, e1);
    lo = _mm256_add_ps(lo, e0);
    hi = _mm256_add_ps(hi, e1);
  }
  // The tail, up to two vectors: exp of the masked-out lanes (exp(-shift), even inf or NaN) is
  // zeroed before the sum.
  if (i < n) {
    const __m256 e0 = keepUpTo8(n - i, exp8(_mm256_sub_ps(loadUpTo8(x + i, n - i), s)));
    storeUpTo8(y + i, n - i, e0);
    lo = _mm256_add_ps(lo, e0);
    i += 8;
  }
  if (i < n) {
    const __m256 e1 = keepUpTo8(n - i, exp8(_mm256_sub_ps(loadUpTo8(x + i, n - i), s)));
    storeUpTo8(y + i, n - i, e1);
    hi = _mm256_add_ps(hi, e1);
  }
  return reduceAdd8(_mm256_add_ps(lo, hi));
}

// x[i] *= a
FUSEDPO_INLINE_AVX2 void scale8(int64_t n, float a, float* x) {
  const __m256 alpha = _mm256_set1_ps(a);
  int64_t i = 0;
  for (const int64_t full = n & ~int64_t(7); i < full; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(alpha, _mm256_loadu_ps(x + i)));
  if (i < n) {
    const __m256i m = tailMask8(n - i);
    _mm256_maskstore_ps(x + i, m, _mm256_mul_ps(alpha, _mm256_maskload_ps(x + i, m)));
  }
}

}  // namespace
}  // namespace fusedpo::cpu

#endif  // FUSEDPO_X86_KERNELS
