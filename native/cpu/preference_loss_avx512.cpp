// Stages 1 and 4 with AVX-512 (avx512f/bw/vl/dq), 16 fp32 lanes. Compiled for baseline x86-64:
// every function that uses these instructions carries FUSEDPO_TARGET_AVX512 and is reached only
// after the runtime dispatch checked the CPU (cpu_features.cpp). No std library call in here.
//
//   logits, dlogits [N, V]  f32, or bf16 / f16 bits, loaded into fp32 registers
//     bf16: zero-extend and shift left 16; f16: vcvtph2ps
//     stores: bf16 rounds to nearest even with integer adds (the same bits as half.h's
//     floatToBf16; vcvtneps2bf16 is not used: it flushes subnormals), f16 with vcvtps2ph (RNE)
//
// Forward, per token row, in chunks of kChunk = 2048 logits (8 KiB of f32, in L1 after its first
// pass): pass A takes the chunk's max and min from memory; pass B sums exp(z - M) from L1 with M
// the row's running max so far (every exponent <= 0: expNonPositive16) and prefetches the next
// chunk, whose pass A then reads from cache; the sums are rescaled once per chunk where the max
// grew. Against the single-pass online form this replaced (a running max per lane, a compare
// and a branch per vector), the forward of 4 x 256 x 32000 on 2 threads of the Zen 5
// development VM went from 6.5 to 5.7 ms in f32 and from 5.3 to 4.0 ms in bf16. Non-finite
// logits: -inf shows in the row's min; NaN and +inf make the sum NaN (exp(NaN), exp(inf - inf)).
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

constexpr int64_t kChunk = 2048;

template <DType D>
FUSEDPO_TARGET_AVX512 void rowMaxSumExp(const void* row, int64_t vocab, float* rowMax, float* rowSumExp) {
  const float infinity = __builtin_inff();
  float runningMax = -infinity, rowMin = infinity;
  __m512 sum0 = _mm512_setzero_ps(), sum1 = _mm512_setzero_ps();
  for (int64_t begin = 0; begin < vocab; begin += kChunk) {
    const int64_t end = begin + kChunk < vocab ? begin + kChunk : vocab;
    const int64_t fullEnd = begin + (end - begin) / 32 * 32;
    // Pass A. _mm512_max_ps(x, m) returns m where x is NaN: NaN never becomes the max.
    __m512 max0 = _mm512_set1_ps(-infinity), max1 = max0;
    __m512 min0 = _mm512_set1_ps(infinity), min1 = min0;
    for (int64_t i = begin; i < fullEnd; i += 32) {
      const __m512 a = load16<D>(row, i), b = load16<D>(row, i + 16);
      max0 = _mm512_max_ps(a, max0);
      max1 = _mm512_max_ps(b, max1);
      min0 = _mm512_min_ps(a, min0);
      min1 = _mm512_min_ps(b, min1);
    }
    for (int64_t i = fullEnd; i < end; i += 16) {
      const __mmask16 mask = firstLanes(end - i);
      const __m512 a = loadMasked16<D>(row, i, mask);
      max0 = _mm512_mask_max_ps(max0, mask, a, max0);
      min0 = _mm512_mask_min_ps(min0, mask, a, min0);
    }
    const float chunkMax = _mm512_reduce_max_ps(_mm512_max_ps(max0, max1));
    const float chunkMin = _mm512_reduce_min_ps(_mm512_min_ps(min0, min1));
    rowMin = chunkMin < rowMin ? chunkMin : rowMin;
    if (chunkMax > runningMax) {
      // exp(-inf) = 0 for the first chunk (the sums are 0 then anyway).
      const __m512 rescale = exp16(_mm512_set1_ps(runningMax - chunkMax));
      sum0 = _mm512_mul_ps(sum0, rescale);
      sum1 = _mm512_mul_ps(sum1, rescale);
      runningMax = chunkMax;
    }
    // Pass B. A chunk that holds only NaN leaves runningMax at -inf: its exponents are NaN.
    const __m512 m = _mm512_set1_ps(runningMax);
    for (int64_t i = begin; i < fullEnd; i += 32) {
      // One prefetch per 64-byte line of the next chunk (32 f32 logits span two).
      _mm_prefetch(static_cast<const char*>(row) + (i + kChunk) * elementBytes<D>(), _MM_HINT_T0);
      if constexpr (elementBytes<D>() == 4) _mm_prefetch(static_cast<const char*>(row) + (i + 16 + kChunk) * elementBytes<D>(), _MM_HINT_T0);
      sum0 = _mm512_add_ps(sum0, expNonPositive16(_mm512_sub_ps(load16<D>(row, i), m)));
      sum1 = _mm512_add_ps(sum1, expNonPositive16(_mm512_sub_ps(load16<D>(row, i + 16), m)));
    }
    for (int64_t i = fullEnd; i < end; i += 16) {
      const __mmask16 mask = firstLanes(end - i);
      sum0 = _mm512_mask_add_ps(sum0, mask, sum0, expNonPositive16(_mm512_sub_ps(loadMasked16<D>(row, i, mask), m)));
    }
  }
  const float sum = _mm512_reduce_add_ps(_mm512_add_ps(sum0, sum1));
  const bool finite = rowMin > -infinity && sum == sum;
  *rowMax = finite ? runningMax : __builtin_nanf("");
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
