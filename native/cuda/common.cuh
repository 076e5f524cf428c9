// Shared pieces of the CUDA kernels: status messages, the 16-byte packed vector and the fp32
// conversions of the three storage dtypes, the (max, sum of exp) pair of an online log-sum-exp,
// and how a row of V logits is split across thread teams. Included by every .cu of native/cuda.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "preference_loss_cuda.h"

namespace fusedpo::cuda {

// ---- Status -------------------------------------------------------------------------------------

inline CudaStatus statusOk() { return CudaStatus{}; }

// "what (sizes...): cudaErrorName: description"
inline CudaStatus statusFromError(cudaError_t err, const char* format, ...) {
  cudaGetLastError();  // reset a non-sticky error so that the next launch check does not see it
  CudaStatus status;
  status.code = static_cast<int32_t>(err);
  va_list args;
  va_start(args, format);
  int used = vsnprintf(status.message, sizeof(status.message), format, args);
  va_end(args);
  if (used < 0) used = 0;
  size_t at = static_cast<size_t>(used) < sizeof(status.message) ? static_cast<size_t>(used)
                                                                 : sizeof(status.message) - 1;
  snprintf(status.message + at, sizeof(status.message) - at, ": %s: %s", cudaGetErrorName(err),
           cudaGetErrorString(err));
  return status;
}

inline CudaStatus invalidArgument(const char* format, ...) {
  CudaStatus status;
  status.code = kInvalidArgument;
  va_list args;
  va_start(args, format);
  vsnprintf(status.message, sizeof(status.message), format, args);
  va_end(args);
  return status;
}

// Every launch is followed by this: a bad configuration (grid, shared memory, no kernel image for
// this GPU) is reported here; a fault inside the kernel shows at the next synchronization.
#define FUSEDPO_CHECK_LAUNCH(...)                                   \
  do {                                                              \
    cudaError_t launchError_ = cudaGetLastError();                  \
    if (launchError_ != cudaSuccess) {                              \
      return statusFromError(launchError_, __VA_ARGS__);            \
    }                                                               \
  } while (0)

inline const char* dtypeName(DType dtype) {
  switch (dtype) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::F16: return "f16";
  }
  return "unknown dtype";
}

inline bool validDType(DType dtype) {
  return dtype == DType::F32 || dtype == DType::BF16 || dtype == DType::F16;
}

inline int64_t dtypeBytes(DType dtype) { return dtype == DType::F32 ? 4 : 2; }

inline int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ---- Storage dtypes -----------------------------------------------------------------------------
// All arithmetic is fp32; a value is widened on load and rounded to nearest even on store.

__device__ __forceinline__ float toFloat(float x) { return x; }
__device__ __forceinline__ float toFloat(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float toFloat(__half x) { return __half2float(x); }

template <typename T>
__device__ __forceinline__ T fromFloat(float x);
template <>
__device__ __forceinline__ float fromFloat<float>(float x) { return x; }
template <>
__device__ __forceinline__ __nv_bfloat16 fromFloat<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ __forceinline__ __half fromFloat<__half>(float x) { return __float2half_rn(x); }

// 16 bytes of T in registers: 4 f32 or 8 bf16/f16, one 128-bit load or store (llm.c's Packed128).
template <typename T>
struct alignas(16) Packed128 {
  static constexpr int kSize = static_cast<int>(sizeof(int4) / sizeof(T));
  T payload[kSize];

  __device__ __forceinline__ Packed128() {}
  __device__ __forceinline__ explicit Packed128(int4 bits) {
    static_assert(sizeof(bits) == sizeof(payload), "Packed128 must hold 16 bytes");
    memcpy(&payload, &bits, sizeof(bits));
  }
  __device__ __forceinline__ int4 bits() const {
    int4 out;
    memcpy(&out, &payload, sizeof(out));
    return out;
  }
};

// The part of a chunk [p, p + len) that 128-bit accesses can cover: `head` scalar elements until
// p + head is 16-byte aligned, then `vectors` whole 16-byte vectors, then scalars from tailStart.
// A row starts at row*V*sizeof(T) bytes, which is 16-byte aligned only when V*sizeof(T) % 16 == 0,
// so every chunk computes its own head. p must be aligned to sizeof(T) (checked by launchers).
struct ChunkLayout {
  int64_t head, vectors, tailStart;
};

template <typename T>
__host__ __device__ __forceinline__ ChunkLayout chunkLayout(const T* p, int64_t len, bool scalarOnly) {
  constexpr int64_t kVec = Packed128<T>::kSize;
  ChunkLayout layout;
  int64_t head = static_cast<int64_t>(((16 - (reinterpret_cast<uintptr_t>(p) & 15)) & 15) /
                                      sizeof(T));
  if (scalarOnly || head > len) head = len;
  layout.head = head;
  layout.vectors = (len - head) / kVec;
  layout.tailStart = head + layout.vectors * kVec;
  return layout;
}

// ---- Online log-sum-exp -------------------------------------------------------------------------
// (max, sum of exp(x - max)) over the values seen so far, plus `poison`, which stays 0 until a
// NaN or an infinity is seen (x * 0 is NaN exactly for non-finite x; no fast-math, so the FMA is
// kept). A non-finite input makes the token's lse and lp NaN, whatever max and sum hold.
struct OnlineLse {
  float max = -INFINITY;
  float sum = 0.f;
  float poison = 0.f;

  template <int kCount>
  __device__ __forceinline__ void add(const float (&x)[kCount]) {
    float localMax = x[0];
#pragma unroll
    for (int i = 0; i < kCount; ++i) {
      localMax = fmaxf(localMax, x[i]);
      poison = fmaf(x[i], 0.f, poison);
    }
    if (localMax > max) {
      sum *= __expf(max - localMax);  // max = -inf: sum is 0 and __expf(-inf) = 0
      max = localMax;
    }
#pragma unroll
    for (int i = 0; i < kCount; ++i) sum += __expf(x[i] - max);
  }

  __device__ __forceinline__ bool nonFinite() const { return poison != 0.f; }  // NaN != 0
};

// sum * exp(max - newMax), 0 for an empty part (sum 0, max possibly -inf: avoids -inf - -inf).
__device__ __forceinline__ float rescaledSum(float sum, float max, float newMax) {
  return sum == 0.f ? 0.f : sum * __expf(max - newMax);
}

// Folds `other` into `acc`. The result depends on the order of the folds, so every caller folds
// in a fixed order (shuffle trees, loops over chunks), which makes the results bit-identical
// from run to run.
__device__ __forceinline__ void mergeLse(OnlineLse& acc, float otherMax, float otherSum,
                                         float otherPoison) {
  float newMax = fmaxf(acc.max, otherMax);
  acc.sum = rescaledSum(acc.sum, acc.max, newMax) + rescaledSum(otherSum, otherMax, newMax);
  acc.max = newMax;
  acc.poison += otherPoison;
}

__device__ __forceinline__ void warpReduceLse(OnlineLse& acc) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    float otherMax = __shfl_xor_sync(0xffffffffu, acc.max, offset);
    float otherSum = __shfl_xor_sync(0xffffffffu, acc.sum, offset);
    float otherPoison = __shfl_xor_sync(0xffffffffu, acc.poison, offset);
    mergeLse(acc, otherMax, otherSum, otherPoison);
  }
}

// ---- How rows are split ------------------------------------------------------------------------
// A "team" (one warp, or one block of kBlockThreads) reduces one chunk of one token's row. Rows
// of up to kWarpTeamMaxVocab logits go one per warp (8 rows per block); longer rows one chunk per
// block, and a row is cut into several chunks when V is large (chunks of about kChunkTarget
// logits keep the last wave of blocks short) or when there are few rows (so that enough blocks
// exist to fill the GPU). The plan depends on the shape only, never on the device, so results do
// not depend on which GPU ran them. Chunk lengths are multiples of 256 elements, so the chunks of
// a row share its alignment.
constexpr int kBlockThreads = 256;
constexpr int kWarpsPerBlock = kBlockThreads / 32;
constexpr int64_t kWarpTeamMaxVocab = 2048;
constexpr int64_t kChunkTarget = 32768;
constexpr int64_t kChunkMin = 4096;
constexpr int64_t kMinItems = 2048;
constexpr int64_t kMaxGrid = 0x7fffffff;

struct RowSplit {
  int64_t chunks;    // chunks per token row
  int64_t chunkLen;  // logits per chunk (the last one may be shorter)
  bool warpTeams;    // one warp per (token, chunk) instead of one block
};

inline RowSplit planRowSplit(LogitsShape shape) {
  const int64_t vocab = shape.vocab;
  const int64_t tokens = shape.rows * shape.tokens;
  if (vocab <= kWarpTeamMaxVocab) return RowSplit{1, vocab, true};
  int64_t chunks = ceilDiv(vocab, kChunkTarget);
  int64_t forFewRows = ceilDiv(kMinItems, tokens);
  if (forFewRows > chunks) chunks = forFewRows;
  int64_t most = vocab / kChunkMin;  // chunks of at least kChunkMin logits, and at least one
  if (most < 1) most = 1;
  if (chunks > most) chunks = most;
  int64_t chunkLen = ceilDiv(ceilDiv(vocab, chunks), 256) * 256;
  chunks = ceilDiv(vocab, chunkLen);  // no empty chunk
  return RowSplit{chunks, chunkLen, false};
}

}  // namespace fusedpo::cuda
