// Stages 1 and 4 with AVX2 + FMA + F16C, 8 fp32 lanes: the algorithm of
// preference_loss_avx512.cpp (read that file's comment first) at half the width. Compiled for
// baseline x86-64: every function here carries FUSEDPO_TARGET_AVX2 and runs only after the
// runtime dispatch. AVX2 has no masked 16-bit loads or stores, so a row's last < 8 elements go
// through an 8-element buffer on the stack.
#include "cpu_features.h"

#if FUSEDPO_X86_KERNELS

#include "preference_loss_kernels.h"
#include "simd_exp.h"

namespace fusedpo::cpu {
namespace {

template <DType D>
constexpr int64_t elementBytes() {
  return D == DType::F32 ? 4 : 2;
}

template <DType D>
FUSEDPO_INLINE_AVX2 __m256 load8(const void* base, int64_t i) {
  if constexpr (D == DType::F32) {
    return _mm256_loadu_ps(static_cast<const float*>(base) + i);
  } else {
    const __m128i bits = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + i));
    if constexpr (D == DType::BF16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16));
    return _mm256_cvtph_ps(bits);
  }
}

// Elements i..i+count-1 (count < 8) in the first lanes, zeros in the others.
template <DType D>
FUSEDPO_INLINE_AVX2 __m256 loadPartial8(const void* base, int64_t i, int64_t count) {
  alignas(32) uint32_t buffer[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  const int64_t bytes = elementBytes<D>();
  const unsigned char* source = static_cast<const unsigned char*>(base) + i * bytes;
  unsigned char* bufferBytes = reinterpret_cast<unsigned char*>(buffer);
  for (int64_t k = 0; k < count * bytes; ++k) bufferBytes[k] = source[k];
  return load8<D>(buffer, 0);
}

// All ones in lanes 0..count-1.
FUSEDPO_INLINE_AVX2 __m256 firstLanes(int64_t count) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(int(count)), lane));
}

// fp32 -> 16-bit storage, round to nearest even (bf16: the integer rounding of half.h). Without
// KeepNan the value must not be NaN.
template <DType D, bool KeepNan>
FUSEDPO_INLINE_AVX2 __m128i narrow8(__m256 value) {
  if constexpr (D == DType::F16) {
    return _mm256_cvtps_ph(value, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  } else {
    const __m256i bits = _mm256_castps_si256(value);
    const __m256i lowestKept = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
    __m256i rounded = _mm256_srli_epi32(
        _mm256_add_epi32(bits, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lowestKept)), 16);
    if (KeepNan) {
      const __m256i quietNan = _mm256_or_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(0x40));
      const __m256 isNan = _mm256_cmp_ps(value, value, _CMP_UNORD_Q);
      rounded = _mm256_castps_si256(
          _mm256_blendv_ps(_mm256_castsi256_ps(rounded), _mm256_castsi256_ps(quietNan), isNan));
    }
    // Each 32-bit lane holds 0..0xffff: the unsigned saturating pack keeps it as is.
    return _mm_packus_epi32(_mm256_castsi256_si128(rounded), _mm256_extracti128_si256(rounded, 1));
  }
}

template <DType D, bool KeepNan>
FUSEDPO_INLINE_AVX2 void store8(void* base, int64_t i, __m256 value) {
  if constexpr (D == DType::F32) {
    _mm256_storeu_ps(static_cast<float*>(base) + i, value);
  } else {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(static_cast<uint16_t*>(base) + i), narrow8<D, KeepNan>(value));
  }
}

template <DType D, bool KeepNan>
FUSEDPO_INLINE_AVX2 void storePartial8(void* base, int64_t i, int64_t count, __m256 value) {
  alignas(32) uint32_t buffer[8];
  store8<D, KeepNan>(buffer, 0, value);
  const int64_t bytes = elementBytes<D>();
  unsigned char* target = static_cast<unsigned char*>(base) + i * bytes;
  const unsigned char* bufferBytes = reinterpret_cast<const unsigned char*>(buffer);
  for (int64_t k = 0; k < count * bytes; ++k) target[k] = bufferBytes[k];
}

FUSEDPO_INLINE_AVX2 float horizontalMax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

FUSEDPO_INLINE_AVX2 float horizontalMin(__m256 v) {
  __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_min_ps(m, _mm_movehl_ps(m, m));
  m = _mm_min_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

FUSEDPO_INLINE_AVX2 float horizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// ---- forward ---------------------------------------------------------------------------------

// One step of the online log-sum-exp of 8 lanes: (max, sum) absorbs x in the lanes of mask
// (all ones or firstLanes). The sum is rescaled only where x exceeds the lane's max.
FUSEDPO_INLINE_AVX2 void absorb8(__m256 x, __m256 mask, __m256& max, __m256& sum) {
  const __m256 above = _mm256_and_ps(_mm256_cmp_ps(x, max, _CMP_GT_OQ), mask);
  if (_mm256_movemask_ps(above) != 0) {
    const __m256 newMax = _mm256_blendv_ps(max, x, above);
    // Only the lanes that grew: a lane still at -inf would give -inf - -inf = NaN.
    const __m256 rescale = _mm256_blendv_ps(_mm256_set1_ps(1.0f), exp8(_mm256_sub_ps(max, newMax)), above);
    sum = _mm256_mul_ps(sum, rescale);
    max = newMax;
  }
  sum = _mm256_add_ps(sum, _mm256_and_ps(exp8(_mm256_sub_ps(x, max)), mask));
}

template <DType D>
FUSEDPO_TARGET_AVX2 void rowMaxSumExp(const void* row, int64_t vocab, float* rowMax, float* rowSumExp) {
  const __m256 negativeInfinity = _mm256_set1_ps(-__builtin_inff());
  const __m256 allLanes = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  __m256 max0 = negativeInfinity, max1 = negativeInfinity;
  __m256 sum0 = _mm256_setzero_ps(), sum1 = _mm256_setzero_ps();
  __m256 rowMin = _mm256_set1_ps(__builtin_inff());
  int64_t i = 0;
  for (; i + 16 <= vocab; i += 16) {
    const __m256 a = load8<D>(row, i), b = load8<D>(row, i + 8);
    rowMin = _mm256_min_ps(rowMin, _mm256_min_ps(a, b));
    absorb8(a, allLanes, max0, sum0);
    absorb8(b, allLanes, max1, sum1);
  }
  for (; i < vocab; i += 8) {
    const int64_t count = vocab - i;
    const __m256 a = count >= 8 ? load8<D>(row, i) : loadPartial8<D>(row, i, count);
    const __m256 mask = count >= 8 ? allLanes : firstLanes(count);
    rowMin = _mm256_min_ps(rowMin, _mm256_blendv_ps(_mm256_set1_ps(__builtin_inff()), a, mask));
    absorb8(a, mask, max0, sum0);
  }
  // Merge the 16 lanes: sum_k sum[k] * exp(max[k] - M); a lane that saw no value adds 0.
  const float maxLogit = horizontalMax(_mm256_max_ps(max0, max1));
  const __m256 rowMaxVector = _mm256_set1_ps(maxLogit);
  const __m256 merged = _mm256_add_ps(_mm256_mul_ps(sum0, exp8(_mm256_sub_ps(max0, rowMaxVector))),
                                      _mm256_mul_ps(sum1, exp8(_mm256_sub_ps(max1, rowMaxVector))));
  const float sum = horizontalSum(merged);
  const bool finite = horizontalMin(rowMin) > -__builtin_inff() && sum == sum;
  *rowMax = finite ? maxLogit : __builtin_nanf("");
  *rowSumExp = sum;
}

template <DType D>
FUSEDPO_TARGET_AVX2 void forwardTokens(const ForwardArgs& args, int64_t begin, int64_t end) {
  const int64_t vocab = args.vocab;
  for (int64_t t = begin; t < end; ++t) {
    if (args.labels[t] == args.ignoreIndex) continue;
    const char* row = static_cast<const char*>(args.logits) + t * vocab * elementBytes<D>();
    rowMaxSumExp<D>(row, vocab, &args.rowMax[t], &args.rowSumExp[t]);
  }
}

// ---- backward --------------------------------------------------------------------------------

// How a token row is written: zeros (uncounted token, or coef 0); a finite row (lse and coef
// finite: every gradient is finite, so 16-bit rounding skips the NaN case); any other row.
enum class RowKind { Zeros, Finite, MayHoldNan };

// c * (onehot - exp(z - lse)) for the 8 indices i..i+7; off the label p * (-c), the same bits.
FUSEDPO_INLINE_AVX2 __m256 gradient8(__m256 z, int64_t i, int64_t label, __m256 lse, __m256 c, __m256 negativeC) {
  const __m256 p = exp8(_mm256_sub_ps(z, lse));
  const uint64_t offset = uint64_t(label - i);
  if (offset >= 8) return _mm256_mul_ps(p, negativeC);
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i isLabel = _mm256_cmpeq_epi32(lane, _mm256_set1_epi32(int(offset)));
  const __m256 onehot = _mm256_and_ps(_mm256_castsi256_ps(isLabel), _mm256_set1_ps(1.0f));
  return _mm256_mul_ps(c, _mm256_sub_ps(onehot, p));
}

template <DType D, RowKind Kind>
FUSEDPO_TARGET_AVX2 void rowGradient(const void* row, void* out, int64_t vocab, int64_t label, float lseValue,
                                     float coef) {
  constexpr bool Zero = Kind == RowKind::Zeros;
  constexpr bool KeepNan = Kind == RowKind::MayHoldNan;
  const __m256 lse = _mm256_set1_ps(lseValue), c = _mm256_set1_ps(coef), negativeC = _mm256_set1_ps(-coef);
  int64_t i = 0;
  for (; i + 8 <= vocab; i += 8) {
    const __m256 g = Zero ? _mm256_setzero_ps() : gradient8(load8<D>(row, i), i, label, lse, c, negativeC);
    store8<D, KeepNan>(out, i, g);
  }
  if (i < vocab) {
    const int64_t count = vocab - i;
    const __m256 g = Zero ? _mm256_setzero_ps() : gradient8(loadPartial8<D>(row, i, count), i, label, lse, c, negativeC);
    storePartial8<D, KeepNan>(out, i, count, g);
  }
}

template <DType D>
FUSEDPO_TARGET_AVX2 void backwardTokens(const BackwardArgs& args, int64_t begin, int64_t end) {
  const int64_t vocab = args.vocab, rowBytes = vocab * elementBytes<D>();
  const float infinity = __builtin_inff();
  for (int64_t t = begin; t < end; ++t) {
    const char* row = static_cast<const char*>(args.logits) + t * rowBytes;
    char* out = static_cast<char*>(args.dlogits) + t * rowBytes;
    const int32_t label = args.labels[t];
    const float coef = args.coef[t / args.tokens], lse = args.lse[t];
    if (label == args.ignoreIndex || coef == 0.0f) {
      rowGradient<D, RowKind::Zeros>(row, out, vocab, 0, 0.0f, 0.0f);
    } else if (lse > -infinity && lse < infinity && coef > -infinity && coef < infinity) {
      rowGradient<D, RowKind::Finite>(row, out, vocab, label, lse, coef);
    } else {
      rowGradient<D, RowKind::MayHoldNan>(row, out, vocab, label, lse, coef);
    }
  }
}

}  // namespace

FUSEDPO_TARGET_AVX2 void forwardTokensAvx2(const ForwardArgs& args, int64_t begin, int64_t end) {
  switch (args.dtype) {
    case DType::F32: forwardTokens<DType::F32>(args, begin, end); return;
    case DType::BF16: forwardTokens<DType::BF16>(args, begin, end); return;
    case DType::F16: forwardTokens<DType::F16>(args, begin, end); return;
  }
}

FUSEDPO_TARGET_AVX2 void backwardTokensAvx2(const BackwardArgs& args, int64_t begin, int64_t end) {
  switch (args.dtype) {
    case DType::F32: backwardTokens<DType::F32>(args, begin, end); return;
    case DType::BF16: backwardTokens<DType::BF16>(args, begin, end); return;
    case DType::F16: backwardTokens<DType::F16>(args, begin, end); return;
  }
}

}  // namespace fusedpo::cpu

#endif  // FUSEDPO_X86_KERNELS
