// Stages 1 and 4 with AVX2 + FMA + F16C, 8 fp32 lanes: the loads, stores and backward of
// preference_loss_avx512.cpp (read that file's comment first) at half the width; the finite
// rows of the backward also take the cheaper exp of exponents <= 0. Compiled for
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

// The forward of preference_loss_avx512.cpp (chunks of 2048 logits, pass A for max and min
// from memory, pass B for the sum of exp(z - M) from L1, the next chunk prefetched), with one
// sum, not two: with AVX2's 16 registers a second one spilled to the stack, as the single-pass
// online form this replaced did (a store and a reload in the loop-carried chain, seen with perf
// annotate; the forward of 4 x 256 x 32000 f32 took 26 ms on one thread of the Zen 5
// development VM against 13.3 ms now, which perf shows bound by pass B's arithmetic: about
// 1.6 ns per 8 exponentials in L1).
constexpr int64_t kChunk = 2048;

template <DType D>
FUSEDPO_TARGET_AVX2 void rowMaxSumExp(const void* row, int64_t vocab, float* rowMax, float* rowSumExp) {
  const float infinity = __builtin_inff();
  float runningMax = -infinity, rowMin = infinity;
  __m256 sum0 = _mm256_setzero_ps();
  for (int64_t begin = 0; begin < vocab; begin += kChunk) {
    const int64_t end = begin + kChunk < vocab ? begin + kChunk : vocab;
    const int64_t fullEnd = begin + (end - begin) / 16 * 16;
    // Pass A. _mm256_max_ps(x, m) returns m where x is NaN: NaN never becomes the max.
    __m256 max0 = _mm256_set1_ps(-infinity), max1 = max0;
    __m256 min0 = _mm256_set1_ps(infinity), min1 = min0;
    for (int64_t i = begin; i < fullEnd; i += 16) {
      const __m256 a = load8<D>(row, i), b = load8<D>(row, i + 8);
      max0 = _mm256_max_ps(a, max0);
      max1 = _mm256_max_ps(b, max1);
      min0 = _mm256_min_ps(a, min0);
      min1 = _mm256_min_ps(b, min1);
    }
    for (int64_t i = fullEnd; i < end; i += 8) {
      const int64_t count = end - i;
      const __m256 a = count >= 8 ? load8<D>(row, i) : loadPartial8<D>(row, i, count);
      const __m256 mask = count >= 8 ? _mm256_castsi256_ps(_mm256_set1_epi32(-1)) : firstLanes(count);
      max0 = _mm256_max_ps(_mm256_blendv_ps(_mm256_set1_ps(-infinity), a, mask), max0);
      min0 = _mm256_min_ps(_mm256_blendv_ps(_mm256_set1_ps(infinity), a, mask), min0);
    }
    const float chunkMax = horizontalMax(_mm256_max_ps(max0, max1));
    const float chunkMin = horizontalMin(_mm256_min_ps(min0, min1));
    rowMin = chunkMin < rowMin ? chunkMin : rowMin;
    if (chunkMax > runningMax) {
      // exp(-inf) = 0 for the first chunk (the sums are 0 then anyway).
      const __m256 rescale = expNonPositive8<false>(_mm256_set1_ps(runningMax - chunkMax));
      sum0 = _mm256_mul_ps(sum0, rescale);
      runningMax = chunkMax;
    }
    // Pass B. A chunk that holds only NaN leaves runningMax at -inf: its exponents are NaN.
    const __m256 m = _mm256_set1_ps(runningMax);
    for (int64_t i = begin; i < fullEnd; i += 8) {
      // The next chunk's pass A then reads from cache: its memory time hides under this arithmetic.
      _mm_prefetch(static_cast<const char*>(row) + (i + kChunk) * elementBytes<D>(), _MM_HINT_T0);
      sum0 = _mm256_add_ps(sum0, expNonPositive8<false>(_mm256_sub_ps(load8<D>(row, i), m)));
    }
    for (int64_t i = fullEnd; i < end; i += 8) {
      const int64_t count = end - i;
      const __m256 a = count >= 8 ? load8<D>(row, i) : loadPartial8<D>(row, i, count);
      const __m256 mask = count >= 8 ? _mm256_castsi256_ps(_mm256_set1_epi32(-1)) : firstLanes(count);
      sum0 = _mm256_add_ps(sum0, _mm256_and_ps(expNonPositive8<false>(_mm256_sub_ps(a, m)), mask));
    }
  }
  const float sum = horizontalSum(sum0);
  const bool finite = rowMin > -infinity && sum == sum;
  *rowMax = finite ? runningMax : __builtin_nanf("");
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
// In a finite row z - lse <= 0 up to rounding (lse >= max z): the cheaper exp serves; other
// rows (lse or c infinite or NaN) keep exp8's whole range, as the scalar spec has it.
template <bool WholeRange>
FUSEDPO_INLINE_AVX2 __m256 gradient8(__m256 z, int64_t i, int64_t label, __m256 lse, __m256 c, __m256 negativeC) {
  const __m256 exponent = _mm256_sub_ps(z, lse);
  const __m256 p = WholeRange ? exp8(exponent) : expNonPositive8<true>(exponent);
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
    const __m256 g = Zero ? _mm256_setzero_ps() : gradient8<KeepNan>(load8<D>(row, i), i, label, lse, c, negativeC);
    store8<D, KeepNan>(out, i, g);
  }
  if (i < vocab) {
    const int64_t count = vocab - i;
    const __m256 g = Zero ? _mm256_setzero_ps() : gradient8<KeepNan>(loadPartial8<D>(row, i, count), i, label, lse, c, negativeC);
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
