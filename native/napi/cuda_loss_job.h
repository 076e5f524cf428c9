// One call of the fused preference loss on the GPU, as plain C++ data (no Node-API types, no
// CUDA types): the CUDA addon's bindings fill it from JavaScript, run it on the main thread or
// on a worker thread, and turn it back into JavaScript values. The CPU twin is loss_job.h.
//
// Buffers (R = rows = 2P, N = R*T):
//   logits  [R, T, V]  DEVICE memory of a cuda Tensor (the binding pins it while the job runs)
//   dlogits [R, T, V]  DEVICE memory, or nullptr when no gradient; may equal logits (in place)
//   labels  [N], refLogps [R], coef [R], lse [N]: host copies, owned by the job (small: never
//                      proportional to N*V); they travel to and from the device's scratch
//
// Every job runs under one process-wide lock, on one CUDA stream, with one grow-only device
// scratch (labels, lse, lp, sums, coefficients): jobs never overlap, so the scratch is shared.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/preference_loss.h"

namespace fusedpo {

// A failed CUDA call (or out-of-memory), with a message naming the operation, the sizes asked
// for and CUDA's own error. The bindings turn it into a JavaScript Error.
class CudaJobError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct CudaLossJob {
  enum class Kind { Loss, BackwardOnly };  // fwd + loss (+ backward), or backward alone
  Kind kind = Kind::Loss;

  // inputs
  const void* logits = nullptr;
  DType dtype = DType::F32;
  LogitsShape shape{0, 0, 0};
  std::vector<int32_t> labels;
  int32_t ignoreIndex = -100;
  std::vector<float> refLogps;  // empty for the reference-free losses
  std::vector<float> rewards;   // exo's rewards, or empty
  LossParams params;
  bool allowNonFinite = false;
  bool withLoss = true;  // false: sequence log-probs only (sequenceLogps)
  bool returnLse = false;
  void* dlogits = nullptr;
  std::vector<float> coefIn;  // BackwardOnly: the coefficients to use
  std::vector<float> lseIn;   // BackwardOnly: the lse of the forward call

  // outputs (the names of loss_job.h)
  std::vector<float> lse;
  std::vector<int64_t> nonFiniteToken;
  std::vector<double> logps;
  std::vector<int32_t> tokenCounts;
  std::vector<float> coef;
  LossResult result;
  int64_t nonFiniteRow = -1, nonFiniteTokenIndex = -1, nonFiniteVocab = -1;
  bool stoppedOnNonFinite = false;
  int64_t unrepresentableRow = -1;  // as in loss_job.h
};

// Runs the job's stages in order on the GPU and waits for them. Throws CudaJobError.
void runCudaLossJob(CudaLossJob& job);

// The stream every job and every tensor copy runs on (created on first use); as void*.
void* cudaJobStream();

// "shape [R, T, V] bf16": for error messages.
std::string describeJob(const CudaLossJob& job);

}  // namespace fusedpo
