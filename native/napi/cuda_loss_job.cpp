// Runs a CudaLossJob through the four stages of cuda/preference_loss_cuda.h. See cuda_loss_job.h.
#ifdef FUSEDPO_WITH_CUDA
#include "napi/cuda_loss_job.h"

#include "core/pair_loss.h"

#include <mutex>

#include "cuda/preference_loss_cuda.h"

namespace fusedpo {
namespace {

const char* dtypeName(DType dtype) {
  return dtype == DType::F32 ? "f32" : dtype == DType::BF16 ? "bf16" : "f16";
}

// The lock every job holds, the stream, and the device scratch, grown when a job needs more.
struct CudaJobState {
  std::mutex mutex;
  void* stream = nullptr;
  void* scratch = nullptr;
  size_t scratchBytes = 0;
};

CudaJobState& state() {
  static CudaJobState* instance = new CudaJobState();  // never destroyed: jobs may outlive exit
  return *instance;
}

void check(const cuda::CudaStatus& status, const std::string& context) {
  if (!status.ok()) throw CudaJobError(context + ": " + status.message);
}

void* streamLocked(CudaJobState& s) {
  if (s.stream == nullptr) check(cuda::streamCreate(&s.stream), "creating the CUDA stream");
  return s.stream;
}

// Carves the scratch into 256-byte-aligned pieces.
class ScratchLayout {
 public:
  template <typename T>
  size_t add(int64_t count) {
    const size_t offset = bytes_;
    bytes_ += (static_cast<size_t>(count) * sizeof(T) + 255) / 256 * 256;
    return offset;
  }
  size_t bytes() const { return bytes_; }

 private:
  size_t bytes_ = 0;
};

}  // namespace

std::string describeJob(const CudaLossJob& job) {
  return "shape [" + std::to_string(job.shape.rows) + ", " + std::to_string(job.shape.tokens) +
         ", " + std::to_string(job.shape.vocab) + "] " + dtypeName(job.dtype);
}

void* cudaJobStream() {
  CudaJobState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  return streamLocked(s);
}

void runCudaLossJob(CudaLossJob& job) {
  CudaJobState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  void* stream = streamLocked(s);
  const std::string what = "preferenceLoss on cuda (" + describeJob(job) + ")";
  const int64_t rows = job.shape.rows;
  const int64_t tokens = rows * job.shape.tokens;

  ScratchLayout layout;
  const size_t labelsAt = layout.add<int32_t>(tokens);
  const size_t lseAt = layout.add<float>(tokens);
  const size_t lpAt = layout.add<float>(tokens);
  const size_t logpsAt = layout.add<double>(rows);
  const size_t countsAt = layout.add<int32_t>(rows);
  const size_t nonFiniteAt = layout.add<int64_t>(rows);
  const size_t refAt = layout.add<float>(rows);
  const size_t rewardsAt = layout.add<float>(rows);
  const size_t coefAt = layout.add<float>(rows);
  const size_t resultAt = layout.add<LossResult>(1);
  const size_t probeAt = layout.add<int64_t>(1);
  const size_t workspaceBytes = cuda::forwardWorkspaceBytes(job.shape);
  const size_t workspaceAt = layout.add<uint8_t>(static_cast<int64_t>(workspaceBytes));
  if (layout.bytes() > s.scratchBytes) {
    check(cuda::deviceFree(s.scratch), what + ", freeing the old scratch");
    s.scratch = nullptr;
    s.scratchBytes = 0;
    check(cuda::deviceAlloc(&s.scratch, layout.bytes()),
          what + ", allocating " + std::to_string(layout.bytes()) + " bytes of scratch");
    s.scratchBytes = layout.bytes();
  }
  auto* base = static_cast<uint8_t*>(s.scratch);
  auto* labels = reinterpret_cast<int32_t*>(base + labelsAt);
  auto* lse = reinterpret_cast<float*>(base + lseAt);
  auto* lp = reinterpret_cast<float*>(base + lpAt);
  auto* logps = reinterpret_cast<double*>(base + logpsAt);
  auto* counts = reinterpret_cast<int32_t*>(base + countsAt);
  auto* nonFinite = reinterpret_cast<int64_t*>(base + nonFiniteAt);
  auto* ref = reinterpret_cast<float*>(base + refAt);
  auto* rewards = reinterpret_cast<float*>(base + rewardsAt);
  auto* coef = reinterpret_cast<float*>(base + coefAt);
  auto* result = reinterpret_cast<LossResult*>(base + resultAt);
  auto* probe = reinterpret_cast<int64_t*>(base + probeAt);
  void* workspace = base + workspaceAt;

  check(cuda::copyToDevice(labels, job.labels.data(), job.labels.size() * sizeof(int32_t), stream),
        what + ", copying the labels");

  if (job.kind == CudaLossJob::Kind::BackwardOnly) {
    check(cuda::copyToDevice(lse, job.lseIn.data(), job.lseIn.size() * sizeof(float), stream),
          what + ", copying lse");
    check(cuda::copyToDevice(coef, job.coefIn.data(), job.coefIn.size() * sizeof(float), stream),
          what + ", copying the coefficients");
    check(cuda::preferenceLossBackward(job.logits, job.dtype, job.shape, labels, job.ignoreIndex,
                                       lse, coef, job.dlogits, stream),
          what + ", backward");
    check(cuda::streamSynchronize(stream), what + ", backward");
    return;
  }

  check(cuda::preferenceLossForward(job.logits, job.dtype, job.shape, labels, job.ignoreIndex, lse,
                                    lp, logps, counts, nonFinite, workspace, workspaceBytes,
                                    stream),
        what + ", forward");
  job.nonFiniteToken.assign(rows, -1);
  job.logps.assign(rows, 0.0);
  job.tokenCounts.assign(rows, 0);
  check(cuda::copyToHost(job.nonFiniteToken.data(), nonFinite, rows * sizeof(int64_t), stream),
        what + ", forward");
  check(cuda::copyToHost(job.logps.data(), logps, rows * sizeof(double), stream), what + ", forward");
  check(cuda::copyToHost(job.tokenCounts.data(), counts, rows * sizeof(int32_t), stream),
        what + ", forward");
  check(cuda::streamSynchronize(stream), what + ", forward");

  for (int64_t row = 0; row < rows; ++row) {
    if (job.nonFiniteToken[row] < 0) continue;
    job.nonFiniteRow = row;
    job.nonFiniteTokenIndex = job.nonFiniteToken[row];
    check(cuda::firstNonFiniteVocab(job.logits, job.dtype, job.shape, row, job.nonFiniteTokenIndex,
                                    probe, &job.nonFiniteVocab, stream),
          what + ", locating a non-finite logit");
    break;
  }
  if (job.nonFiniteRow >= 0 && !job.allowNonFinite) {
    job.stoppedOnNonFinite = true;  // nothing written: in place, the logits are untouched
    return;
  }
  if (job.returnLse) {
    job.lse.assign(tokens, 0.f);
    check(cuda::copyToHost(job.lse.data(), lse, tokens * sizeof(float), stream), what + ", copying lse");
  }
  if (!job.withLoss) {  // sequenceLogps: the sums alone
    check(cuda::streamSynchronize(stream), what + ", forward");
    return;
  }

  if (!job.refLogps.empty()) {
    check(cuda::copyToDevice(ref, job.refLogps.data(), rows * sizeof(float), stream),
          what + ", copying refLogps");
  }
  if (!job.rewards.empty()) {
    check(cuda::copyToDevice(rewards, job.rewards.data(), rows * sizeof(float), stream),
          what + ", copying rewards");
  }
  check(cuda::preferenceLossCoefficients(job.params, rows, logps, counts,
                                         job.refLogps.empty() ? nullptr : ref,
                                         job.rewards.empty() ? nullptr : rewards, coef, result,
                                         &job.result, stream),
        what + ", loss");
  job.coef.assign(rows, 0.f);
  check(cuda::copyToHost(job.coef.data(), coef, rows * sizeof(float), stream), what + ", loss");
  if (job.nonFiniteRow < 0) {
    // A gradient too large for the dtype is reported (loss_job.h), never written as infinities.
    check(cuda::streamSynchronize(stream), what + ", loss");
    job.unrepresentableRow = firstUnrepresentableCoefficient(job.coef.data(), rows, job.dtype, job.result.loss);
    if (job.unrepresentableRow >= 0) return;
  }
  if (job.dlogits != nullptr) {
    check(cuda::preferenceLossBackward(job.logits, job.dtype, job.shape, labels, job.ignoreIndex,
                                       lse, coef, job.dlogits, stream),
          what + ", backward");
  }
  check(cuda::streamSynchronize(stream), what + (job.dlogits ? ", backward" : ", loss"));
}

}  // namespace fusedpo
#endif  // FUSEDPO_WITH_CUDA
