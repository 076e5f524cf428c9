// preferenceLossForward / preferenceLossBackward (core/preference_loss.h): the entry points
// of stages 1 and 2, and 4. Impl::Reference runs the scalar spec (core/reference.cpp); Impl::Fast runs
// the kernels of the active SIMD level (cpu_features.h) over the thread pool, one contiguous
// range of tokens per thread.
//
//   logits, dlogits [N, V] (N = R*T)   labels, lse, lp [N]   coef, nonFiniteToken [R]
//
// Forward: the kernels leave the row max in lse and the sum of exp(z - max) in lp; each thread
// then forms lse = max + log(sum) (in fp64, rounded once) and lp = z[y] - lse for its own tokens.
// The first non-finite token of each row is found afterwards by a serial scan of lse (NaN only
// there), so it does not depend on the split either.
#include <cmath>
#include <limits>

#include "../core/half.h"
#include "../core/preference_loss.h"
#include "../core/reference.h"
#include "cpu_features.h"
#include "preference_loss_kernels.h"
#include "thread_pool.h"

namespace fusedpo {
namespace {

using ForwardKernel = void (*)(const cpu::ForwardArgs&, int64_t, int64_t);
using BackwardKernel = void (*)(const cpu::BackwardArgs&, int64_t, int64_t);

ForwardKernel forwardKernel() {
  switch (cpu::activeSimdLevel()) {
#if FUSEDPO_X86_KERNELS
    case cpu::SimdLevel::Avx512: return cpu::forwardTokensAvx512;
    case cpu::SimdLevel::Avx2: return cpu::forwardTokensAvx2;
#endif
    default: break;
  }
  return cpu::forwardTokensGeneric;
}

BackwardKernel backwardKernel() {
  switch (cpu::activeSimdLevel()) {
#if FUSEDPO_X86_KERNELS
    case cpu::SimdLevel::Avx512: return cpu::backwardTokensAvx512;
    case cpu::SimdLevel::Avx2: return cpu::backwardTokensAvx2;
#endif
    default: break;
  }
  return cpu::backwardTokensGeneric;
}

// lse = max + log(sum), lp = z[y] - lse for tokens [begin, end), in place over the kernel's
// (max, sum) pairs; 0 for uncounted tokens, NaN for non-finite rows.
void finishForward(const cpu::ForwardArgs& args, int64_t begin, int64_t end) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t t = begin; t < end; ++t) {
    const int32_t label = args.labels[t];
    float* lse = &args.rowMax[t];
    float* lp = &args.rowSumExp[t];
    if (label == args.ignoreIndex) {
      *lse = 0.0f;
      *lp = 0.0f;
    } else if (std::isnan(*lse)) {
      *lp = nan;
    } else {
      *lse = float(double(*lse) + std::log(double(*lp)));
      *lp = loadLogit(args.logits, args.dtype, t * args.vocab + label) - *lse;
    }
  }
}

}  // namespace

void preferenceLossForward(Impl impl, const void* logits, DType dtype, LogitsShape shape,
                           const int32_t* labels, int32_t ignoreIndex, float* lse, float* lp,
                           double* logps, int32_t* tokenCounts, int64_t* nonFiniteToken) {
  if (impl == Impl::Reference) {
    referencePreferenceLossForward(logits, dtype, shape, labels, ignoreIndex, lse, lp,
                                   nonFiniteToken);
    sequenceSums(logits, dtype, shape, labels, ignoreIndex, lse, logps, tokenCounts);
    return;
  }
  const cpu::ForwardArgs args{logits, dtype, shape.vocab, labels, ignoreIndex, lse, lp};
  const ForwardKernel kernel = forwardKernel();
  auto forwardRange = [&](int64_t begin, int64_t end) {
    kernel(args, begin, end);
    finishForward(args, begin, end);
  };
  cpu::parallelFor(shape.rows * shape.tokens, forwardRange);

  for (int64_t s = 0; s < shape.rows; ++s) {
    nonFiniteToken[s] = -1;
    for (int64_t t = 0; t < shape.tokens; ++t) {
      if (std::isnan(lse[s * shape.tokens + t])) {
        nonFiniteToken[s] = t;
        break;
      }
    }
  }
  sequenceSums(logits, dtype, shape, labels, ignoreIndex, lse, logps, tokenCounts);
}

void preferenceLossBackward(Impl impl, const void* logits, DType dtype, LogitsShape shape,
                              const int32_t* labels, int32_t ignoreIndex, const float* lse,
                              const float* coef, void* dlogits) {
  if (impl == Impl::Reference) {
    referencePreferenceLossBackward(logits, dtype, shape, labels, ignoreIndex, lse, coef,
                                    dlogits);
    return;
  }
  const int64_t tokens = shape.rows * shape.tokens;
  const cpu::BackwardArgs args{logits, dtype, shape.tokens, shape.vocab, labels,
                               ignoreIndex, lse, coef, dlogits};
  const BackwardKernel kernel = backwardKernel();
  auto backwardRange = [&](int64_t begin, int64_t end) { kernel(args, begin, end); };
  cpu::parallelFor(tokens, backwardRange);
}

}  // namespace fusedpo
