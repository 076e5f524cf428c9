// Row primitives for the AVX-512 paths of the GPT's ops (layernorm, softmax, gelu, attention):
// 16 fp32 lanes, any length n >= 0 (a masked tail, memory past the end never touched). Included only by
// files compiled for baseline x86-64: every function carries FUSEDPO_INLINE_AVX512 and is
// reached only after cpu::activeSimdLevel() said Avx512. Sums are lane sums merged by
// _mm512_reduce_add_ps: a fixed order for a given length, whatever thread runs it.
#pragma once

#include "cpu_features.h"

#if FUSEDPO_X86_KERNELS

#include <cstdint>

#include "simd_exp.h"

namespace fusedpo::cpu {
namespace {

FUSEDPO_INLINE_AVX512 __mmask16 tailMask(int64_t n) {
  return n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1u);
}

// y[i] += a x[i]
FUSEDPO_INLINE_AVX512 void axpy16(int64_t n, float a, const float* x, float* y) {
  const __m512 alpha = _mm512_set1_ps(a);
  int64_t i = 0;
  for (const int64_t full = n & ~int64_t(15); i < full; i += 16) {
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(alpha, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  }
  if (i < n) {
    const __mmask16 m = tailMask(n - i);
    const __m512 sum = _mm512_fmadd_ps(alpha, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i));
    _mm512_mask_storeu_ps(y + i, m, sum);
  }
}

// sum_i x[i]
FUSEDPO_INLINE_AVX512 float sum16(int64_t n, const float* x) {
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (const int64_t full = n & ~int64_t(15); i < full; i += 16) acc = _mm512_add_ps(acc, _mm512_loadu_ps(x + i));
  if (i < n) acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(tailMask(n - i), x + i));
  return _mm512_reduce_add_ps(acc);
}

// sum_i x[i] y[i]
FUSEDPO_INLINE_AVX512 float dot16(int64_t n, const float* x, const float* y) {
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (const int64_t full = n & ~int64_t(15); i < full; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), acc);
  if (i < n) {
    const __mmask16 m = tailMask(n - i);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

// max_i x[i] (n >= 1)
FUSEDPO_INLINE_AVX512 float max16(int64_t n, const float* x) {
  __m512 acc = _mm512_set1_ps(-__builtin_inff());
  int64_t i = 0;
  for (const int64_t full = n & ~int64_t(15); i < full; i += 16) acc = _mm512_max_ps(acc, _mm512_loadu_ps(x + i));
  if (i < n) acc = _mm512_mask_max_ps(acc, tailMask(n - i), acc, _mm512_maskz_loadu_ps(tailMask(n - i), x + i));
  return _mm512_reduce_max_ps(acc);
}

// y[i] = exp(x[i] - shift); returns sum_i y[i]. y may equal x.
FUSEDPO_INLINE_AVX512 float expShifted16(int64_t n, const float* x, float shift, float* y) {
  const __m512 s = _mm512_set1_ps(shift);
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (const int64_t full = n & ~int64_t(15); i < full; i += 16) {
    const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), s));
    _mm512_storeu_ps(y + i, e);
    acc = _mm512_add_ps(acc, e);
  }
  if (i < n) {
    const __mmask16 m = tailMask(n - i);
    const __m512 e = _mm512_maskz_mov_ps(m, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), s)));
    _mm512_mask_storeu_ps(y + i, m, e);
    acc = _mm512_add_ps(acc, e);
  }
  return _mm512_reduce_add_ps(acc);
}

// x[i] *= a
FUSEDPO_INLINE_AVX512 void scale16(int64_t n, float a, float* x) {
  const __m512 alpha = _mm512_set1_ps(a);
  int64_t i = 0;
  for (const int64_t full = n & ~int64_t(15); i < full; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(alpha, _mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = tailMask(n - i);
    _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(alpha, _mm512_maskz_loadu_ps(m, x + i)));
  }
}

}  // namespace
}  // namespace fusedpo::cpu

#endif  // FUSEDPO_X86_KERNELS
