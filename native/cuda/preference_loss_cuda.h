// The fused preference loss on an NVIDIA GPU: the same four stages as the CPU contract
// (../core/preference_loss.h, docs/losses.md), on device buffers. Plain C++17: no CUDA type appears
// here, so g++ can compile a binding against it without the CUDA headers. Streams are
// `cudaStream_t` passed as `void*` (nullptr: the legacy default stream).
//
// Shapes (R = 2P rows, chosen rows 0..P-1, rejected rows P..2P-1; N = R*T tokens). Every pointer
// below is a DEVICE pointer unless its name starts with `host`:
//   logits         [R, T, V]  f32, or bf16/f16 as 16-bit storage; at least element-aligned
//   labels         [R, T]     int32; ignoreIndex marks an uncounted token, whose logits are
//                             never read. Labels must already lie in [0, V): kernels trust them.
//   lse, lp        [N]        float; 0 for uncounted tokens, NaN for a token with a non-finite
//                             logit
//   logps          [R]        double; masked sums of lp per row: an fp32 tree reduction in a
//                             fixed order (bit-identical run to run), widened to double
//   tokenCounts    [R]        int32
//   nonFiniteToken [R]        int64; first counted token t of row s with a NaN/inf logit, or -1
//   refLogps       [R]        float; nullptr for the reference-free losses (simpo, orpo)
//   rewards        [R]        float; exo's optional rewards, else nullptr
//   coef           [R]        float; c[s] = dLoss/dpi[s] (0 for a row without counted tokens)
//   dlogits        [R, T, V]  same dtype as logits; may be the logits buffer itself (in place)
//   workspace                 forwardWorkspaceBytes(shape) bytes (may be 0 bytes, nullptr)
//
// Nothing proportional to N*V is allocated: the forward pass reads each counted token's logits
// once, the backward pass reads them once more and writes dlogits once (3 passes, the floor).
//
// Every function returns a CudaStatus and never throws or aborts. Kernels run asynchronously on
// the given stream; an error inside a kernel surfaces at the next call that synchronizes.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../core/preference_loss.h"

namespace fusedpo::cuda {

// code: 0 success; > 0 the cudaError_t value; kInvalidArgument for an argument this layer
// refused before calling CUDA. message names the operation, the sizes and the CUDA error.
struct CudaStatus {
  int32_t code = 0;
  char message[256] = {0};
  bool ok() const { return code == 0; }
};
constexpr int32_t kInvalidArgument = -1;

// ---- Devices ----------------------------------------------------------------------------------
constexpr int kMaxDevices = 16;

struct DeviceProperties {
  char name[256];
  int32_t computeMajor, computeMinor;
  int32_t multiProcessorCount;
  int64_t totalMemoryBytes;
  int64_t freeMemoryBytes;  // the current device only (it needs a context); -1 for the others
  int32_t memoryBusWidthBits;
  int32_t pciBusId;
};

struct DeviceInfo {
  int32_t driverVersion = 0;   // e.g. 13000 for CUDA 13.0; 0 when no driver is installed
  int32_t runtimeVersion = 0;  // the CUDA runtime linked into this library
  int32_t deviceCount = 0;     // devices listed below: at most kMaxDevices
  DeviceProperties devices[kMaxDevices];
};

// Never fails for "no GPU": then deviceCount = 0 and the returned status carries the reason
// (e.g. cudaErrorNoDevice, cudaErrorInsufficientDriver) with code != 0. info is filled as far as
// it could be either way.
CudaStatus deviceInfo(DeviceInfo* info);
CudaStatus setDevice(int32_t device);

// ---- Memory and streams ----------------------------------------------------------------------
// On failure the message gives the size asked for and the device's free/total memory.
CudaStatus deviceAlloc(void** ptr, size_t bytes);
CudaStatus deviceFree(void* ptr);  // nullptr is fine
CudaStatus deviceMemset(void* ptr, int value, size_t bytes, void* stream);
// Asynchronous on `stream` (host memory that is not pinned makes them effectively synchronous).
CudaStatus copyToDevice(void* dst, const void* hostSrc, size_t bytes, void* stream);
CudaStatus copyToHost(void* hostDst, const void* src, size_t bytes, void* stream);
CudaStatus copyDeviceToDevice(void* dst, const void* src, size_t bytes, void* stream);
CudaStatus streamCreate(void** stream);
CudaStatus streamDestroy(void* stream);
CudaStatus streamSynchronize(void* stream);

// ---- The loss ---------------------------------------------------------------------------------
// Bytes of device scratch preferenceLossForward needs for this shape (partial log-sum-exp pairs
// when a row of V logits is split across several thread blocks); 0 when none.
size_t forwardWorkspaceBytes(LogitsShape shape);

// Stages 1 and 2: per-token lse and lp, then the per-row sums, counts and first non-finite
// token. lse, lp, logps, tokenCounts, nonFiniteToken are written; nothing is synchronized.
CudaStatus preferenceLossForward(const void* logits, DType dtype, LogitsShape shape,
                                 const int32_t* labels, int32_t ignoreIndex, float* lse, float* lp,
                                 double* logps, int32_t* tokenCounts, int64_t* nonFiniteToken,
                                 void* workspace, size_t workspaceBytes, void* stream);

// Stage 3: every prompt's loss (addPrompt of ../core/pair_loss.h), the batch loss and metrics
// (docs/losses.md), and coef [R], in one thread block, in a fixed order. deviceResult is a device
// buffer of sizeof(LossResult) bytes that receives the result; when hostResult is not nullptr
// the result is copied into it and the stream is synchronized.
CudaStatus preferenceLossCoefficients(const LossParams& params, int64_t rows, const double* logps,
                                      const int32_t* tokenCounts, const float* refLogps,
                                      const float* rewards, float* coef, LossResult* deviceResult,
                                      LossResult* hostResult, void* stream);

// Stage 4: dlogits[s,t,v] = coef[s] * m[s,t] * ([v == y[s,t]] - exp(z[s,t,v] - lse[s,t])),
// streaming stores. Uncounted tokens and rows whose coef is 0 get +0 without reading their
// logits. dlogits may equal logits (in place); a dlogits buffer whose address differs from the
// logits' by a multiple of 16 bytes (any two cudaMalloc buffers) keeps 128-bit stores, any other
// offset falls back to scalar accesses (correct, slower).
CudaStatus preferenceLossBackward(const void* logits, DType dtype, LogitsShape shape,
                                  const int32_t* labels, int32_t ignoreIndex, const float* lse,
                                  const float* coef, void* dlogits, void* stream);

// For the error message of a flagged row: the first vocabulary index v of (row, token) whose
// logit is not finite, or -1. deviceScratch: 8 bytes of device memory. Synchronizes the stream.
CudaStatus firstNonFiniteVocab(const void* logits, DType dtype, LogitsShape shape, int64_t row,
                               int64_t token, int64_t* deviceScratch, int64_t* hostResult,
                               void* stream);

}  // namespace fusedpo::cuda
