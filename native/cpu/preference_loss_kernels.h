// The per-SIMD-level kernels of stages 1 and 4 (Impl::Fast), each run by one thread over a
// contiguous range of tokens [begin, end) of the flattened [R*T] token axis. The dispatcher
// (preference_loss.cpp) picks a level once and splits the tokens over the thread pool; a token
// row's result never depends on the range it falls in.
#pragma once

#include <cstdint>

#include "../core/preference_loss.h"
#include "cpu_features.h"

namespace fusedpo::cpu {

// Stage 1, first half. For every counted token t in [begin, end):
//   rowMax[t]    = max_v z[t, v], or NaN when a logit of the row is NaN or infinite
//   rowSumExp[t] = sum_v exp(z[t, v] - rowMax[t]), fp32
// Uncounted tokens are neither read nor written. The dispatcher then forms lse and lp in place
// (rowMax and rowSumExp are the caller's lse and lp buffers).
struct ForwardArgs {
  const void* logits;  // [N, V]
  DType dtype;
  int64_t vocab;
  const int32_t* labels;  // [N]
  int32_t ignoreIndex;
  float* rowMax;     // [N]
  float* rowSumExp;  // [N]
};

// Stage 4 for tokens [begin, end): dlogits[t, v] = c * ([v == y] - exp(z[t, v] - lse[t])) with
// c = coef[t / T]; +0 for uncounted tokens and rows whose coef is 0.
struct BackwardArgs {
  const void* logits;  // [N, V]
  DType dtype;
  int64_t tokens;  // T
  int64_t vocab;
  const int32_t* labels;  // [N]
  int32_t ignoreIndex;
  const float* lse;   // [N]
  const float* coef;  // [R]
  void* dlogits;      // [N, V], may equal logits
};

void forwardTokensGeneric(const ForwardArgs& args, int64_t begin, int64_t end);
void backwardTokensGeneric(const BackwardArgs& args, int64_t begin, int64_t end);

#if FUSEDPO_X86_KERNELS
void forwardTokensAvx2(const ForwardArgs& args, int64_t begin, int64_t end);
void backwardTokensAvx2(const BackwardArgs& args, int64_t begin, int64_t end);
void forwardTokensAvx512(const ForwardArgs& args, int64_t begin, int64_t end);
void backwardTokensAvx512(const BackwardArgs& args, int64_t begin, int64_t end);
#endif

}  // namespace fusedpo::cpu
