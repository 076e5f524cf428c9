// Stages 1 and 4 with AVX-512 (avx512f/bw/vl/dq), 16 fp32 lanes. Compiled for baseline x86-64:
// every function that uses these instructions carries FUSEDPO_TARGET_AVX512 and is reached only
// after the runtime dispatch checked the CPU (cpu_features.cpp). No std library call in here.
//
//   logits, dlogits [N, V]  f32, or bf16 / f16 bits, loaded into fp32 registers
//     bf16: zero-extend and shift left 16; f16: vcvtph2ps
//     stores: bf16 rounds to nearest even with integer adds (the same bits as half.h's
//     floatToBf16; vcvtneps2bf16 is not used: it flushes subnormals), f16 with vcvtps2ph (RNE)
//
// Forward, per token row: one pass of online log-sum-exp in 32 lanes (absorb16), each lane with
// its own running max and sum, merged at the end of the row; the row is read once whatever V
// is, and loads overlap the exp arithmetic. Non-finite logits cost one vminps per vector:
// -inf shows in the row's minimum; NaN and +inf make the sum NaN (exp(NaN), exp(inf - inf)).
// Backward, per token row: one pass, 16 logits in, 16 gradients out, ordinary stores. (Streaming
// stores were measured slower here, out of place and in place, on the Zen 5 development VM.)
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

FUSEDPO_INLINE_AVX512 __mmask16 firstLanes(int64_t n) {
  return n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1u);
}

FUSEDPO_INLINE_AVX512 __m512 widen16(__m256i bits, DType dtype) {
  if (dtype == DType::BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
  return _mm512_cvtph_ps(bits);
}

// 16 logits from index i.
template <DType D>
FUSEDPO_INLINE_AVX512 __m512 load16(const void* base, int64_t i) {
  if constexpr (D == DType::F32) {
    return _mm512_loadu_ps(static_cast<const float*>(base) + i);
  } else {
    const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(base) + i));
    return widen16(bits, D);
  }
}

// The lanes of mask from index i; the others are 0 and never touched in memory.
template <DType D>
FUSEDPO_INLINE_AVX512 __m512 loadMasked16(const void* base, int64_t i, __mmask16 mask) {
  if constexpr (D == DType::F32) {
    return _mm512_maskz_loadu_ps(mask, static_cast<const float*>(base) + i);
  } else {
    const __m256i bits = _mm256_maskz_loadu_epi16(mask, static_cast<const uint16_t*>(base) + i);
    return widen16(bits, D);
  }
}

// fp32 -> 16-bit storage, round to nearest even (see the top of the file). Without KeepNan
// the value must not be NaN (a NaN with low mantissa bits could round to infinity).
template <DType D, bool KeepNan>
FUSEDPO_INLINE_AVX512 __m256i narrow16(__m512 value) {
  if constexpr (D == DType::F16) {
    return _mm512_cvtps_ph(value, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  } else {
    const __m512i bits = _mm512_castps_si512(value);
    const __m512i lowestKept = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    const __m512i rounded = _mm512_srli_epi32(
        _mm512_add_epi32(bits, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lowestKept)), 16);
    if (!KeepNan) return _mm512_cvtepi32_epi16(rounded);
    const __mmask16 isNan = _mm512_cmp_ps_mask(value, value, _CMP_UNORD_Q);
    const __m512i quietNan = _mm512_or_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(0x40));
    return _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(isNan, rounded, quietNan));
  }
}

template <DType D, bool KeepNan>
FUSEDPO_INLINE_AVX512 void store16(void* base, int64_t i, __m512 value) {
  if constexpr (D == DType::F32) {
    _mm512_storeu_ps(static_cast<float*>(base) + i, value);
  } else {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(static_cast<uint16_t*>(base) + i), narrow16<D, KeepNan>(value));
  }
}

template <DType D, bool KeepNan>
FUSEDPO_INLINE_AVX512 void storeMasked16(void* base, int64_t i, __m512 value, __mmask16 mask) {
  if constexpr (D == DType::F32) {
    _mm512_mask_storeu_ps(static_cast<float*>(base) + i, mask, value);
  } else {
    _mm256_mask_storeu_epi16(static_cast<uint16_t*>(base) + i, mask, narrow16<D, KeepNan>(value));
  }
}

// ---- forward ---------------------------------------------------------------------------------

// One step of the online log-sum-exp of a lane set: (max, sum) absorbs the values x of lanes
// mask. The sum is rescaled only where x exceeds the lane's max, which after a row's first few
// vectors is rare: the common path is one compare and one exp per vector.
FUSEDPO_INLINE_AVX512 void absorb16(__m512 x, __mmask16 mask, __m512& max, __m512& sum) {
  const __mmask16 above = _mm512_mask_cmp_ps_mask(mask, x, max, _CMP_GT_OQ);
  if (above != 0) {
    const __m512 newMax = _mm512_mask_max_ps(max, above, max, x);
    // Only the lanes that grew: a lane still at -inf would give -inf - -inf = NaN.
    sum = _mm512_mask_mul_ps(sum, above, sum, exp16(_mm512_sub_ps(max, newMax)));
    max = newMax;
  }
  sum = _mm512_mask_add_ps(sum, mask, sum, exp16(_mm512_sub_ps(x, max)));
}

template <DType D>
FUSEDPO_TARGET_AVX512 void rowMaxSumExp(const void* row, int64_t vocab, float* rowMax, float* rowSumExp) {
  const __m512 negativeInfinity = _mm512_set1_ps(-__builtin_inff());
  __m512 max0 = negativeInfinity, max1 = negativeInfinity;
  __m512 sum0 = _mm512_setzero_ps(), sum1 = _mm512_setzero_ps();
  __m512 rowMin = _mm512_set1_ps(__builtin_inff());
  int64_t i = 0;
  for (; i + 32 <= vocab; i += 32) {
    const __m512 a = load16<D>(row, i), b = load16<D>(row, i + 16);
    rowMin = _mm512_min_ps(rowMin, _mm512_min_ps(a, b));
    absorb16(a, 0xffff, max0, sum0);
    absorb16(b, 0xffff, max1, sum1);
  }
  for (; i < vocab; i += 16) {
    const __mmask16 mask = firstLanes(vocab - i);
    const __m512 a = loadMasked16<D>(row, i, mask);
    rowMin = _mm512_mask_min_ps(rowMin, mask, rowMin, a);
    absorb16(a, mask, max0, sum0);
  }
  // Merge the 32 lanes: sum_k sum[k] * exp(max[k] - M). A lane that saw no value has max -inf
  // and sum 0, and adds 0.
  const float maxLogit = _mm512_reduce_max_ps(_mm512_max_ps(max0, max1));
  const __m512 rowMaxVector = _mm512_set1_ps(maxLogit);
  const __m512 merged = _mm512_add_ps(_mm512_mul_ps(sum0, exp16(_mm512_sub_ps(max0, rowMaxVector))),
                                      _mm512_mul_ps(sum1, exp16(_mm512_sub_ps(max1, rowMaxVector))));
  const float sum = _mm512_reduce_add_ps(merged);
  const bool finite = _mm512_reduce_min_ps(rowMin) > -__builtin_inff() && sum == sum;
  *rowMax = finite ? maxLogit : __builtin_nanf("");
  *rowSumExp = sum;
}

template <DType D>
FUSEDPO_TARGET_AVX512 void forwardTokens(const ForwardArgs& args, int64_t begin, int64_t end) {
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

// c * (onehot - exp(z - lse)) for the 16 indices i..i+15. Off the label it is p * (-c), the
// same bits as c * (0 - p); the one vector holding the label takes the longer way.
FUSEDPO_INLINE_AVX512 __m512 gradient16(__m512 z, int64_t i, int64_t label, __m512 lse, __m512 c,
                                        __m512 negativeC) {
  const __m512 p = exp16(_mm512_sub_ps(z, lse));
  const uint64_t offset = uint64_t(label - i);
  if (offset >= 16) return _mm512_mul_ps(p, negativeC);
  const __m512 onehot = _mm512_maskz_mov_ps(__mmask16(1u << offset), _mm512_set1_ps(1.0f));
  return _mm512_mul_ps(c, _mm512_sub_ps(onehot, p));
}

template <DType D, RowKind Kind>
FUSEDPO_TARGET_AVX512 void rowGradient(const void* row, void* out, int64_t vocab, int64_t label, float lseValue,
                                       float coef) {
  constexpr bool Zero = Kind == RowKind::Zeros;
  constexpr bool KeepNan = Kind == RowKind::MayHoldNan;
  const __m512 lse = _mm512_set1_ps(lseValue), c = _mm512_set1_ps(coef), negativeC = _mm512_set1_ps(-coef);
  int64_t i = 0;
  for (; i + 16 <= vocab; i += 16) {
    const __m512 g = Zero ? _mm512_setzero_ps() : gradient16(load16<D>(row, i), i, label, lse, c, negativeC);
    store16<D, KeepNan>(out, i, g);
  }
  if (i < vocab) {
    const __mmask16 mask = firstLanes(vocab - i);
    const __m512 g = Zero ? _mm512_setzero_ps() : gradient16(loadMasked16<D>(row, i, mask), i, label, lse, c, negativeC);
    storeMasked16<D, KeepNan>(out, i, g, mask);
  }
}

template <DType D>
FUSEDPO_TARGET_AVX512 void backwardTokens(const BackwardArgs& args, int64_t begin, int64_t end) {
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

FUSEDPO_TARGET_AVX512 void forwardTokensAvx512(const ForwardArgs& args, int64_t begin, int64_t end) {
  switch (args.dtype) {
    case DType::F32: forwardTokens<DType::F32>(args, begin, end); return;
    case DType::BF16: forwardTokens<DType::BF16>(args, begin, end); return;
    case DType::F16: forwardTokens<DType::F16>(args, begin, end); return;
  }
}

FUSEDPO_TARGET_AVX512 void backwardTokensAvx512(const BackwardArgs& args, int64_t begin, int64_t end) {
  switch (args.dtype) {
    case DType::F32: backwardTokens<DType::F32>(args, begin, end); return;
    case DType::BF16: backwardTokens<DType::BF16>(args, begin, end); return;
    case DType::F16: backwardTokens<DType::F16>(args, begin, end); return;
  }
}

}  // namespace fusedpo::cpu

#endif  // FUSEDPO_X86_KERNELS
