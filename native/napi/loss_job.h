// One call of the fused preference loss, as plain C++ data: the Node-API bindings fill it from
// JavaScript, run it (on the main thread or on a worker thread) and turn it back into
// JavaScript values. No Node-API types here, so the job can run off the event loop.
//
// Buffers (R = rows = 2P, N = R*T):
//   logits  [R, T, V]  borrowed from a JS typed array (the binding keeps it alive)
//   labels  [N]        borrowed
//   refLogps[R]        borrowed, or nullptr for the reference-free losses
//   dlogits [R, T, V]  borrowed output, or nullptr when no gradient; may equal logits
//   lse, lp [N]        owned scratch (N floats each: never proportional to N*V)
#pragma once

#include <cstdint>
#include <vector>

#include "core/preference_loss.h"

namespace fusedpo {

struct LossJob {
  // inputs
  Impl impl = Impl::Fast;
  const void* logits = nullptr;
  DType dtype = DType::F32;
  LogitsShape shape{0, 0, 0};
  const int32_t* labels = nullptr;
  int32_t ignoreIndex = -100;
  const float* refLogps = nullptr;
  LossParams params;
  bool withLoss = true;  // false: sequence log-probs only
  bool allowNonFinite = false;
  bool returnLse = false;  // hand lse back, for a later backward pass (autograd)
  void* dlogits = nullptr;

  // outputs
  std::vector<float> lse, lp;
  std::vector<int64_t> nonFiniteToken;  // [R], -1 where the row is finite
  std::vector<double> logps;            // [R]
  std::vector<int32_t> tokenCounts;     // [R]
  std::vector<float> coef;              // [R]
  LossResult result;
  // The first non-finite logit, when one was found (row -1: none).
  int64_t nonFiniteRow = -1, nonFiniteTokenIndex = -1, nonFiniteVocab = -1;
  bool stoppedOnNonFinite = false;
};

// Runs the stages of preference_loss.h in order. When a non-finite logit is found and the
// caller did not allow them, it stops after the forward pass and reports where.
void runLossJob(LossJob& job);

}  // namespace fusedpo
