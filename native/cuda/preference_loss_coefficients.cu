// Stage 3 on the GPU: the loss of every preference pair, the batch loss and TRL's metrics, and
// the per-row coefficients c[s] = dLoss/dpi[s] that the backward pass scales the softmax by.
//
//   logps       [R]  double   summed log-probs per row (from preferenceLossForward)
//   tokenCounts [R]  int32
//   refLogps    [R]  float    or nullptr (the reference-free losses: read as 0)
//   rewards     [R]  float    or nullptr (exo's optional rewards)
//   coef        [R]  float    out; 0 for an empty row
//   result      [1]  LossResult (device) out
//
// The code is the CPU's, ../core/pair_loss.h: addPrompt per prompt (a pair's pairLoss, or exo's
// group of K rows, and the metrics' margins) and batchResult for the loss and metrics, as in
// preferenceLossOfBatch. Instead of its serial loop, one block of 256 threads takes prompts
// i = tid, tid + 256, ...
// and the per-thread fp64 sums meet in a fixed shared-memory tree: deterministic, and equal to
// the CPU's result up to the order of the fp64 additions (coef is the same expression).
#include "common.cuh"

#include "../core/pair_loss.h"

namespace fusedpo::cuda {

namespace {

// ---- Kernels -----------------------------------------------------------------------------------

// Sums values[k] over the block with a fixed tree; every thread gets the totals back. shared
// must hold kCount * kBlockThreads doubles.
template <int kCount>
__device__ __forceinline__ void blockSums(double (&values)[kCount], double* shared) {
#pragma unroll
  for (int k = 0; k < kCount; ++k) shared[k * kBlockThreads + threadIdx.x] = values[k];
  __syncthreads();
  for (int stride = kBlockThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
#pragma unroll
      for (int k = 0; k < kCount; ++k) {
        shared[k * kBlockThreads + threadIdx.x] += shared[k * kBlockThreads + threadIdx.x + stride];
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int k = 0; k < kCount; ++k) values[k] = shared[k * kBlockThreads];
  __syncthreads();  // shared is reused by the next call
}

// One block of kBlockThreads.
__global__ void __launch_bounds__(kBlockThreads)
    preferenceLossKernel(LossParams params, int64_t groups, const double* __restrict__ logps,
                         const int32_t* __restrict__ tokenCounts,
                         const float* __restrict__ refLogps, const float* __restrict__ rewards,
                         float* __restrict__ coef, LossResult* __restrict__ result) {
  __shared__ double shared[PairSums::kCount * kBlockThreads];

  double nllTotals[2] = {0.0, 0.0};  // the chosen rows' log-prob sum and token sum
  for (int64_t i = threadIdx.x; i < groups; i += kBlockThreads) {
    nllTotals[0] += logps[i];
    nllTotals[1] += tokenCounts[i];
  }
  blockSums(nllTotals, shared);
  const double nllSlope = nllTermsOf(params, groups, nllTotals[0], nllTotals[1]).slope;

  PairSums sums;
  for (int64_t i = threadIdx.x; i < groups; i += kBlockThreads) {
    addPrompt(params, groups, i, logps, tokenCounts, refLogps, rewards, nllSlope, coef, sums);
  }
  blockSums(sums.values, shared);
  if (threadIdx.x == 0) *result = batchResult(params, groups, sums, nllTotals[0], nllTotals[1]);
}

}  // namespace

// ---- Launchers ---------------------------------------------------------------------------------

CudaStatus preferenceLossCoefficients(const LossParams& params, int64_t rows, const double* logps,
                                      const int32_t* tokenCounts, const float* refLogps,
                                      const float* rewards, float* coef, LossResult* deviceResult,
                                      LossResult* hostResult, void* stream) {
  const char* what = "preferenceLossCoefficients";
  const int64_t perPrompt = rowsPerPrompt(params);
  if (perPrompt < 2 || rows <= 0 || rows % perPrompt != 0) {
    return invalidArgument("%s: rows must be a positive multiple of %lld (responses per prompt), got %lld", what,
                           static_cast<long long>(perPrompt), static_cast<long long>(rows));
  }
  if (logps == nullptr || tokenCounts == nullptr || coef == nullptr || deviceResult == nullptr) {
    return invalidArgument("%s: logps, tokenCounts, coef and deviceResult must not be null",
                           what);
  }
  if (refLogps == nullptr && lossNeedsReference(params.kind)) {
    return invalidArgument("%s: refLogps is null but loss %d needs the reference log-probs", what,
                           static_cast<int>(params.kind));
  }
  cudaStream_t cudaStream = static_cast<cudaStream_t>(stream);
  const int64_t groups = rows / perPrompt;
  preferenceLossKernel<<<1, kBlockThreads, 0, cudaStream>>>(params, groups, logps, tokenCounts,
                                                             refLogps, rewards, coef, deviceResult);
  FUSEDPO_CHECK_LAUNCH("%s: loss %s, %lld prompts", what, lossName(params.kind),
                       static_cast<long long>(groups));
  if (hostResult != nullptr) {
    cudaError_t err = cudaMemcpyAsync(hostResult, deviceResult, sizeof(LossResult),
                                      cudaMemcpyDeviceToHost, cudaStream);
    if (err != cudaSuccess) {
      return statusFromError(err, "%s: copy of the result (%zu bytes) to the host", what,
                             sizeof(LossResult));
    }
    err = cudaStreamSynchronize(cudaStream);
    if (err != cudaSuccess) {
      return statusFromError(err, "%s: cudaStreamSynchronize after the loss of %lld prompts", what,
                             static_cast<long long>(groups));
    }
  }
  return statusOk();
}

}  // namespace fusedpo::cuda
