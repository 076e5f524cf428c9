// Stages 1 and 4 in plain C++ for CPUs without AVX2, and for builds without the x86 kernels
// (aarch64, MSVC): the loops are written over 16 independent lanes so that compilers can
// vectorize them with what the baseline target has (SSE2, NEON). Forward: two passes over the
// token row (max, then sum of exp), the row being in L2 by then; backward: one pass. exp is
// simd_exp.h's expApprox; 16-bit values go through half.h.
#include "../core/half.h"
#include "preference_loss_kernels.h"
#include "simd_exp.h"

namespace fusedpo::cpu {
namespace {

constexpr int kLanes = 16;

template <DType D>
inline float loadElement(const void* base, int64_t i) {
  if constexpr (D == DType::F32) return static_cast<const float*>(base)[i];
  if constexpr (D == DType::BF16) return bf16ToFloat(static_cast<const uint16_t*>(base)[i]);
  return f16ToFloat(static_cast<const uint16_t*>(base)[i]);
}

template <DType D>
inline void storeElement(void* base, int64_t i, float value) {
  if constexpr (D == DType::F32) static_cast<float*>(base)[i] = value;
  if constexpr (D == DType::BF16) static_cast<uint16_t*>(base)[i] = floatToBf16(value);
  if constexpr (D == DType::F16) static_cast<uint16_t*>(base)[i] = floatToF16(value);
}

// A monotonic map of the non-NaN floats to int32 (and back: it is its own inverse). The max is
// taken on these integers because a floating-point comparison keeps GCC from vectorizing the
// loop (it may raise FE_INVALID); a NaN's image may win the max, but NaN rows are flagged anyway.
inline int32_t orderedBits(float value) {
  const int32_t bits = int32_t(bitsOf(value));
  return bits ^ ((bits >> 31) & 0x7fffffff);
}

inline float fromOrderedBits(int32_t ordered) {
  return floatOf(uint32_t(ordered ^ ((ordered >> 31) & 0x7fffffff)));
}

template <DType D>
void rowMaxSumExp(const void* row, int64_t vocab, float* rowMax, float* rowSumExp) {
  int32_t laneMax[kLanes];
  float laneProbe[kLanes], laneSum[kLanes];
  for (int k = 0; k < kLanes; ++k) {
    laneMax[k] = orderedBits(-__builtin_inff());
    laneProbe[k] = 0.0f;
    laneSum[k] = 0.0f;
  }
  const int64_t whole = vocab - vocab % kLanes;
  for (int64_t i = 0; i < whole; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const float z = loadElement<D>(row, i + k);
      const int32_t ordered = orderedBits(z);
      laneMax[k] = ordered > laneMax[k] ? ordered : laneMax[k];
      laneProbe[k] += z - z;  // 0 for finite z, NaN for NaN or infinity
    }
  }
  for (int64_t i = whole; i < vocab; ++i) {
    const float z = loadElement<D>(row, i);
    const int32_t ordered = orderedBits(z);
    laneMax[0] = ordered > laneMax[0] ? ordered : laneMax[0];
    laneProbe[0] += z - z;
  }
  int32_t maxOrdered = laneMax[0];
  float probe = 0.0f;
  for (int k = 0; k < kLanes; ++k) {
    maxOrdered = laneMax[k] > maxOrdered ? laneMax[k] : maxOrdered;
    probe += laneProbe[k];
  }
  const float maxLogit = fromOrderedBits(maxOrdered);
  for (int64_t i = 0; i < whole; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) laneSum[k] += expApprox(loadElement<D>(row, i + k) - maxLogit);
  }
  for (int64_t i = whole; i < vocab; ++i) laneSum[0] += expApprox(loadElement<D>(row, i) - maxLogit);
  float sum = 0.0f;
  for (int k = 0; k < kLanes; ++k) sum += laneSum[k];
  *rowMax = probe == 0.0f ? maxLogit : __builtin_nanf("");
  *rowSumExp = sum;
}

template <DType D>
void rowGradient(const void* row, void* out, int64_t vocab, int64_t label, float lse, float coef) {
  if (lse != lse) {  // a token with a non-finite logit: NaN everywhere, as the reference
    for (int64_t i = 0; i < vocab; ++i) storeElement<D>(out, i, coef * ((i == label ? 1.0f : 0.0f) - lse));
    return;
  }
  // In place (out == row) every logit is read before it is overwritten: the label's first.
  const float labelProbability = expApprox(loadElement<D>(row, label) - lse);
  for (int64_t i = 0; i < vocab; ++i) {
    const float p = expApprox(loadElement<D>(row, i) - lse);
    storeElement<D>(out, i, coef * (0.0f - p));
  }
  storeElement<D>(out, label, coef * (1.0f - labelProbability));
}

template <DType D>
void rowZeros(void* out, int64_t vocab) {
  for (int64_t i = 0; i < vocab; ++i) storeElement<D>(out, i, 0.0f);
}

template <DType D>
void forwardTokens(const ForwardArgs& args, int64_t begin, int64_t end) {
  const int64_t rowBytes = args.vocab * (D == DType::F32 ? 4 : 2);
  for (int64_t t = begin; t < end; ++t) {
    if (args.labels[t] == args.ignoreIndex) continue;
    rowMaxSumExp<D>(static_cast<const char*>(args.logits) + t * rowBytes, args.vocab, &args.rowMax[t],
                    &args.rowSumExp[t]);
  }
}

template <DType D>
void backwardTokens(const BackwardArgs& args, int64_t begin, int64_t end) {
  const int64_t rowBytes = args.vocab * (D == DType::F32 ? 4 : 2);
  for (int64_t t = begin; t < end; ++t) {
    const char* row = static_cast<const char*>(args.logits) + t * rowBytes;
    char* out = static_cast<char*>(args.dlogits) + t * rowBytes;
    const int32_t label = args.labels[t];
    const float coef = args.coef[t / args.tokens];
    if (label == args.ignoreIndex || coef == 0.0f) {
      rowZeros<D>(out, args.vocab);
    } else {
      rowGradient<D>(row, out, args.vocab, label, args.lse[t], coef);
    }
  }
}

}  // namespace

void forwardTokensGeneric(const ForwardArgs& args, int64_t begin, int64_t end) {
  switch (args.dtype) {
    case DType::F32: forwardTokens<DType::F32>(args, begin, end); return;
    case DType::BF16: forwardTokens<DType::BF16>(args, begin, end); return;
    case DType::F16: forwardTokens<DType::F16>(args, begin, end); return;
  }
}

void backwardTokensGeneric(const BackwardArgs& args, int64_t begin, int64_t end) {
  switch (args.dtype) {
    case DType::F32: backwardTokens<DType::F32>(args, begin, end); return;
    case DType::BF16: backwardTokens<DType::BF16>(args, begin, end); return;
    case DType::F16: backwardTokens<DType::F16>(args, begin, end); return;
  }
}

}  // namespace fusedpo::cpu
