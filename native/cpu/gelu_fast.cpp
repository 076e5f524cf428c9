// Impl dispatch of gelu.h. Elementwise, split over the thread pool in contiguous ranges. The
// AVX-512 and AVX2 paths form tanh u = 1 - 2 / (exp(2u) + 1) with exp16 / exp8 (simd_exp.h):
// std::tanh costs far more than the memory traffic here. For large |u| the exp saturates (0 or
// +inf) and tanh comes out as exactly -1 or 1. Each element's arithmetic is the same in a full
// vector and in a masked tail, so the bits do not depend on the split. Other CPUs run the same
// formula in plain loops with expApprox (geluForwardPortable).
#include "../core/gelu.h"
#include "cpu_features.h"
#include "nn_parallel.h"
#include "simd_exp.h"  // expApprox: every architecture
#include "vector_ops_avx2.h"
#include "vector_ops_avx512.h"

namespace fusedpo {
namespace {

constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluCubic = 0.044715f;

#if FUSEDPO_X86_KERNELS
// tanh(sqrt(2/pi) (x + 0.044715 x^3)) for 16 lanes.
FUSEDPO_INLINE_AVX512 __m512 geluTanh16(__m512 x) {
  const __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
  const __m512 u = _mm512_mul_ps(_mm512_set1_ps(kGeluScale), _mm512_fmadd_ps(_mm512_set1_ps(kGeluCubic), x3, x));
  const __m512 e = cpu::exp16(_mm512_add_ps(u, u));
  const __m512 one = _mm512_set1_ps(1.0f);
  return _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, one)));
}

FUSEDPO_TARGET_AVX512 void geluForwardAvx512(const float* inp, float* out, int64_t begin, int64_t end) {
  const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
  for (int64_t i = begin; i < end; i += 16) {
    const __mmask16 m = cpu::tailMask(end - i);
    const __m512 x = _mm512_maskz_loadu_ps(m, inp + i);
    const __m512 y = _mm512_mul_ps(_mm512_mul_ps(half, x), _mm512_add_ps(one, geluTanh16(x)));
    _mm512_mask_storeu_ps(out + i, m, y);
  }
}

FUSEDPO_TARGET_AVX512 void geluBackwardAvx512(const float* inp, const float* dout, float* dinp, int64_t begin,
                                              int64_t end) {
  const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
  const __m512 slope = _mm512_set1_ps(3.0f * kGeluCubic), scale = _mm512_set1_ps(kGeluScale);
  for (int64_t i = begin; i < end; i += 16) {
    const __mmask16 m = cpu::tailMask(end - i);
    const __m512 x = _mm512_maskz_loadu_ps(m, inp + i);
    const __m512 th = geluTanh16(x);
    const __m512 sech2 = _mm512_fnmadd_ps(th, th, one);
    // 1/2 (1 + th) + x/2 sech2 sqrt(2/pi) (1 + 3 0.044715 x^2)
    const __m512 inner = _mm512_mul_ps(scale, _mm512_fmadd_ps(slope, _mm512_mul_ps(x, x), one));
    const __m512 local = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_mul_ps(half, x), sech2), inner,
                                         _mm512_mul_ps(half, _mm512_add_ps(one, th)));
    const __m512 d = _mm512_fmadd_ps(local, _mm512_maskz_loadu_ps(m, dout + i), _mm512_maskz_loadu_ps(m, dinp + i));
    _mm512_mask_storeu_ps(dinp + i, m, d);
  }
}

// The same at 8 lanes (AVX2 + FMA); the last < 8 elements through masked loads and stores.
FUSEDPO_INLINE_AVX2 __m256 geluTanh8(__m256 x) {
  const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
  const __m256 u = _mm256_mul_ps(_mm256_set1_ps(kGeluScale), _mm256_fmadd_ps(_mm256_set1_ps(kGeluCubic), x3, x));
  const __m256 e = cpu::exp8(_mm256_add_ps(u, u));
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
}

FUSEDPO_TARGET_AVX2 void geluForwardAvx2(const float* inp, float* out, int64_t begin, int64_t end) {
  const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
  for (int64_t i = begin; i < end; i += 8) {
    const __m256 x = cpu::loadUpTo8(inp + i, end - i);
    const __m256 y = _mm256_mul_ps(_mm256_mul_ps(half, x), _mm256_add_ps(one, geluTanh8(x)));
    cpu::storeUpTo8(out + i, end - i, y);
  }
}

FUSEDPO_TARGET_AVX2 void geluBackwardAvx2(const float* inp, const float* dout, float* dinp, int64_t begin,
                                          int64_t end) {
  const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
  const __m256 slope = _mm256_set1_ps(3.0f * kGeluCubic), scale = _mm256_set1_ps(kGeluScale);
  for (int64_t i = begin; i < end; i += 8) {
    const int64_t left = end - i;
    const __m256 x = cpu::loadUpTo8(inp + i, left);
    const __m256 th = geluTanh8(x);
    const __m256 sech2 = _mm256_fnmadd_ps(th, th, one);
    // 1/2 (1 + th) + x/2 sech2 sqrt(2/pi) (1 + 3 0.044715 x^2)
    const __m256 inner = _mm256_mul_ps(scale, _mm256_fmadd_ps(slope, _mm256_mul_ps(x, x), one));
    const __m256 local = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_mul_ps(half, x), sech2), inner,
                                         _mm256_mul_ps(half, _mm256_add_ps(one, th)));
    const __m256 d = _mm256_fmadd_ps(local, cpu::loadUpTo8(dout + i, left), cpu::loadUpTo8(dinp + i, left));
    cpu::storeUpTo8(dinp + i, left, d);
  }
}
#endif

// The portable path (the generic level, and arm64): the same tanh through simd_exp.h's
// branch-free expApprox, in plain loops the compiler vectorizes (SSE2 here, NEON on arm64), where
// std::tanh is a scalar call per element. expApprox clamps NaN instead of propagating it, but a
// NaN x still gives NaN: the result multiplies by x.
inline float geluTanhPortable(float x) {
  const float u = kGeluScale * (x + kGeluCubic * x * x * x);
  return 1.0f - 2.0f / (cpu::expApprox(u + u) + 1.0f);
}

void geluForwardPortable(const float* inp, float* out, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const float x = inp[i];
    out[i] = 0.5f * x * (1.0f + geluTanhPortable(x));
  }
}

void geluBackwardPortable(const float* inp, const float* dout, float* dinp, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const float x = inp[i];
    const float th = geluTanhPortable(x);
    const float sech2 = 1.0f - th * th;
    const float local = 0.5f * (1.0f + th) + 0.5f * x * sech2 * kGeluScale * (1.0f + 3.0f * kGeluCubic * x * x);
    dinp[i] += local * dout[i];
  }
}

}  // namespace

void geluForward(Impl impl, const float* inp, float* out, int64_t count) {
  if (impl == Impl::Reference) return referenceGeluForward(inp, out, count);
  [[maybe_unused]] const bool avx512 = cpu::avx512Active(), avx2 = cpu::avx2Active();
  auto body = [&](int64_t begin, int64_t end) {
#if FUSEDPO_X86_KERNELS
    if (avx512) return geluForwardAvx512(inp, out, begin, end);
    if (avx2) return geluForwardAvx2(inp, out, begin, end);
#endif
    geluForwardPortable(inp, out, begin, end);
  };
  cpu::parallelForWork(count, 4, body);
}

void geluBackward(Impl impl, const float* inp, const float* dout, float* dinp, int64_t count) {
  if (impl == Impl::Reference) return referenceGeluBackward(inp, dout, dinp, count);
  [[maybe_unused]] const bool avx512 = cpu::avx512Active(), avx2 = cpu::avx2Active();
  auto body = [&](int64_t begin, int64_t end) {
#if FUSEDPO_X86_KERNELS
    if (avx512) return geluBackwardAvx512(inp, dout, dinp, begin, end);
    if (avx2) return geluBackwardAvx2(inp, dout, dinp, begin, end);
#endif
    geluBackwardPortable(inp, dout, dinp, begin, end);
  };
  cpu::parallelForWork(count, 4, body);
}

}  // namespace fusedpo
