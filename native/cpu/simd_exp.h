// exp for fp32, one algorithm at three widths: a scalar one the generic path's loops use, and
// 8 and 16 lanes for AVX2 and AVX-512. Every function here is internal to the file including it.
//
// exp(x) = 2^n * e^r with n = round(x / ln2) and r = x - n ln2 in [-ln2/2, ln2/2]; ln2 is split
// in two constants (Cody-Waite) so that r is exact to fp32; e^r = 1 + r (1 + r P(r)), P of
// degree 4, a minimax fit of the relative error (3.1e-9, 0.05 ulp, before rounding; fitted by
// linear programming over [-0.347, 0.347] with the first two coefficients fixed to 1), evaluated
// by Horner's rule: 6 multiply-adds. Measured against exp in double over every 5th fp32 in
// [-200, 89]: at most 0.90 ulp (fused multiply-add) and 1.17 ulp (the generic path without it).
//
// Range: x is clamped to [-104, 89]. e^-104 is below half the smallest fp32 subnormal, so every
// x < -104 gives +0; past 88.72 the result is +inf. 2^n is applied so that results in the
// subnormal range are rounded once (vscalefps on AVX-512; elsewhere 2^(n - n/2) * 2^(n/2), two
// normal powers of two). No finite input gives NaN. exp8 and exp16 return NaN for NaN (each
// clamp returns x when x is NaN); expApprox does not (see there).
#pragma once

#include <cstdint>
#include <cstring>

#include "cpu_features.h"

#if FUSEDPO_X86_KERNELS
// The one include of the intrinsics for every SIMD file (they all include this header first).
// GCC 12 warns "__Y may be used uninitialized" inside its own intrinsics (the *_undefined_*
// idiom, GCC bug 105593); the diagnostic points into immintrin.h, so it is silenced for the
// header's lines only. (A diagnostic pragma, not a target one.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif
#endif

namespace fusedpo::cpu {
namespace {

constexpr float kExpMin = -104.0f;
constexpr float kExpMax = 89.0f;
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f;  // 355/512: n * kLn2Hi is exact for |n| < 2^15
constexpr float kLn2Lo = -2.12194440e-4f;
constexpr float kExpC6 = 0x1.6a2352p-10f;  // 1.3814467e-3
constexpr float kExpC5 = 0x1.123a6cp-7f;   // 8.3687808e-3
constexpr float kExpC4 = 0x1.5558f4p-5f;   // 4.1668393e-2
constexpr float kExpC3 = 0x1.555490p-3f;   // 1.6666520e-1
constexpr float kExpC2 = 0x1.fffffcp-2f;   // 4.9999994e-1
// expNonPositive8/16: the clamp, and the rounding shift 1.5 * 2^23 with the exponent bias 127.
constexpr float kExpNonPositiveMin = -88.0f;
constexpr float kExpNonPositiveMax = 88.0f;
constexpr float kRoundingShiftBiased = 12583039.0f;

inline uint32_t bitsOf(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

inline float floatOf(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// Plain C++, branch-free so that compilers vectorize the loops around it (checked: GCC 12 at -O3,
// SSE2). No float-to-int conversion and no floating-point comparison (either may raise
// FE_INVALID, which keeps GCC from vectorizing unless -fno-trapping-math is given): the clamp is
// an integer min/max on the bit patterns mapped to ordered integers, and n is rounded by adding
// 1.5 * 2^23 (exact in round-to-nearest for |x / ln2| < 2^22), which also leaves n, as an
// integer, in the low mantissa bits of the sum.
// Unlike exp8/exp16, NaN is not propagated (it is clamped like a huge number, to 0 or inf): the
// generic kernels never pass NaN, or discard the result.
inline float expApprox(float x) {
  // ordered(b) = b for x >= 0, b ^ 0x7fffffff for x < 0: a monotonic map of the floats to int32.
  const auto ordered = [](uint32_t bits) {
    const int32_t value = int32_t(bits);
    return value ^ ((value >> 31) & 0x7fffffff);
  };
  int32_t o = ordered(bitsOf(x));
  const int32_t lowest = ordered(bitsOf(kExpMin)), highest = ordered(bitsOf(kExpMax));
  o = o < lowest ? lowest : o;
  o = o > highest ? highest : o;
  x = floatOf(uint32_t(ordered(uint32_t(o))));  // the map is its own inverse
  const float roundingShift = 12582912.0f;
  const float shifted = x * kLog2e + roundingShift;
  const float n = shifted - roundingShift;
  float r = x - n * kLn2Hi;
  r = r - n * kLn2Lo;
  float y = kExpC6;
  y = y * r + kExpC5;
  y = y * r + kExpC4;
  y = y * r + kExpC3;
  y = y * r + kExpC2;
  y = y * r + 1.0f;
  y = y * r + 1.0f;
  // 2^n = 2^(n - n/2) * 2^(n/2), each factor a normal number for n in [-150, 128]. In unsigned
  // arithmetic: for NaN x the bits are meaningless but y is NaN and so is the result.
  const uint32_t nBits = bitsOf(shifted) - bitsOf(roundingShift);          // n mod 2^32
  const uint32_t half = (nBits >> 1) | (nBits & 0x80000000u);             // n >> 1, arithmetic
  return y * floatOf((nBits - half + 127u) << 23) * floatOf((half + 127u) << 23);
}

#if FUSEDPO_X86_KERNELS

#define FUSEDPO_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define FUSEDPO_TARGET_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define FUSEDPO_INLINE_AVX2 FUSEDPO_TARGET_AVX2 inline __attribute__((always_inline))
#define FUSEDPO_INLINE_AVX512 FUSEDPO_TARGET_AVX512 inline __attribute__((always_inline))

// e^r for r = x - n ln2 (Cody-Waite, ln2 in two parts), by the polynomial of the top of the
// file: the part every exp below shares; they differ in how they round n and apply 2^n.
FUSEDPO_INLINE_AVX2 __m256 expReduced8(__m256 x, __m256 n) {
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
  __m256 y = _mm256_set1_ps(kExpC6);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kExpC5));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kExpC4));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kExpC3));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kExpC2));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.0f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.0f));
  return y;
}

FUSEDPO_INLINE_AVX512 __m512 expReduced16(__m512 x, __m512 n) {
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
  __m512 y = _mm512_set1_ps(kExpC6);
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kExpC5));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kExpC4));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kExpC3));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kExpC2));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f));
  return y;
}

FUSEDPO_INLINE_AVX2 __m256 exp8(__m256 x) {
  // _mm256_max_ps(a, b) returns b when either is NaN: x second keeps NaN.
  x = _mm256_max_ps(_mm256_set1_ps(kExpMin), x);
  x = _mm256_min_ps(_mm256_set1_ps(kExpMax), x);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 y = expReduced8(x, n);
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i half = _mm256_srai_epi32(ni, 1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256i scale1 = _mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, half), bias), 23);
  const __m256i scale2 = _mm256_slli_epi32(_mm256_add_epi32(half, bias), 23);
  y = _mm256_mul_ps(y, _mm256_castsi256_ps(scale1));
  return _mm256_mul_ps(y, _mm256_castsi256_ps(scale2));
}

// exp for the exponents of a softmax, x - max or z - lse, which are <= 0 up to rounding: exp8's
// polynomial with one normal power of two and n rounded by adding 1.5 * 2^23 + 127 (as expApprox
// does, with the exponent bias folded in: the sum's low 9 bits are n + 127, so a shift makes 2^n),
// 6 instructions (7 unclamped) and 3 constants fewer than exp8, which matters with AVX2's 16
// registers (a spilled accumulator halved the forward's speed). Results below 2^-126.5 (x < -87.68)
// are +0, not subnormal, the one difference from exp8 on x <= 0: such a term moves a sum >= 1 by
// nothing, a gradient by less than 1e-38 of its coefficient. Clamped is for x that may exceed 0 by
// more than rounding (the gradient's z - lse when lse is stale): x is clamped to 88 and the result
// stays finite, e^88; unclamped, x must be <= 88 (x - max of its own row is <= 0 exactly). NaN
// gives NaN (y is NaN; the scale's bits do not matter). Measured over every fp32 in [-87.6, 0]
// against exp in double: at most 0.88 ulp, as exp8.
template <bool Clamped>
FUSEDPO_INLINE_AVX2 __m256 expNonPositive8(__m256 x) {
  x = _mm256_max_ps(_mm256_set1_ps(kExpNonPositiveMin), x);
  if (Clamped) x = _mm256_min_ps(_mm256_set1_ps(kExpNonPositiveMax), x);
  // x / ln2 in [-126.96, 126.96]: the sum is in [2^23, 2^24), where fp32 steps by 1.
  const __m256 roundingShift = _mm256_set1_ps(kRoundingShiftBiased);
  const __m256 shifted = _mm256_fmadd_ps(x, _mm256_set1_ps(kLog2e), roundingShift);
  const __m256 n = _mm256_sub_ps(shifted, roundingShift);
  __m256 y = expReduced8(x, n);
  // n + 127 in [0, 254] (the sign bit and the bits above stay clear): 2^n, or +0 for n = -127.
  const __m256i scale = _mm256_slli_epi32(_mm256_castps_si256(shifted), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(scale));
}

// AVX-512 applies 2^n with vscalefps, which scales and rounds once over the whole range
// (subnormal results included): 8 fewer instructions than the integer exponent arithmetic.
FUSEDPO_INLINE_AVX512 __m512 exp16(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(kExpMin), x);
  x = _mm512_min_ps(_mm512_set1_ps(kExpMax), x);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 y = expReduced16(x, n);
  return _mm512_scalef_ps(y, n);
}

// expNonPositive8 at 16 lanes, unclamped form (x <= 88; the forward's x - max): against exp16's
// vroundscaleps and vscalefps, 6.2 against 7.0 cycles per 16 exponentials in L1 on the Zen 5
// development VM. The same results as expNonPositive8 lane for lane.
FUSEDPO_INLINE_AVX512 __m512 expNonPositive16(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(kExpNonPositiveMin), x);
  const __m512 roundingShift = _mm512_set1_ps(kRoundingShiftBiased);
  const __m512 shifted = _mm512_fmadd_ps(x, _mm512_set1_ps(kLog2e), roundingShift);
  const __m512 n = _mm512_sub_ps(shifted, roundingShift);
  __m512 y = expReduced16(x, n);
  return _mm512_mul_ps(y, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_castps_si512(shifted), 23)));
}

#endif  // FUSEDPO_X86_KERNELS

}  // namespace
}  // namespace fusedpo::cpu
