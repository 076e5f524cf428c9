// One call of the fused preference loss, as plain C++ data: the Node-API bindings fill it from
// JavaScript, run it (on the main thread or on a worker thread) and turn it back into
// JavaScript values. No Node-API types here, so the job can run off the event loop.
//
// Buffers (R = rows = 2P, N = R*T):
//   logits  [R, T, V]  borrowed from a typed array or a tensor's storage (the binding keeps it
//                      alive and, off the event loop, pinned)
//   labels  [N]        owned: copied and range-checked by the binding, so that nothing the caller
//                      does after the check (or while a job runs) can change an index
//   refLogps[R]        owned copy, empty for the reference-free losses
//   rewards [R]        owned copy of exo's rewards, or empty
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
  std::vector<int32_t> labels;
  int32_t ignoreIndex = -100;
  std::vector<float> refLogps;  // empty: no reference
  std::vector<float> rewards;   // exo's rewards, or empty
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
  // The first row whose gradient coefficient does not fit the dtype of dlogits (-1: none), from
  // finite inputs: the loss reports it instead of writing infinities into dlogits.
  int64_t unrepresentableRow = -1;
};

// Runs the stages of preference_loss.h in order. When a non-finite logit is found and the
// caller did not allow them, it stops after the forward pass and reports where. Throws
// std::bad_alloc when its scratch cannot be had (lossJobScratchBytes says how much it asks for).
void runLossJob(LossJob& job);

// The bytes of scratch runLossJob allocates for this job's shape.
double lossJobScratchBytes(const LossJob& job);

}  // namespace fusedpo
