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
// OnlineLse: (max, sum of exp(x - max)) over the values seen so far, plus `poison`, which stays 0
// until a NaN or an infinity is seen. A non-finite input makes the token's lse and lp NaN,
// whatever max and sum hold. Threads fold their pairs with mergeLse, in a fixed order.
struct OnlineLse {
  float max = -INFINITY;
  float sum = 0.f;
  float poison = 0.f;

  __device__ __forceinline__ bool nonFinite() const { return poison != 0.f; }  // NaN != 0
};

constexpr float kLog2e = 1.4426950408889634f;

// 2^x on the special-function unit (what __expf uses, without its multiply).
__device__ __forceinline__ float exp2Approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// A thread's running sum in its hot loop, one FFMA and one ex2 per value: sum of
// 2^(x*log2e - maxL) with maxL = fp32(max * log2e). The FFMA forms x*log2e exactly before
// subtracting, so the only error of the shift is maxL's rounding, the same for every term, which
// finish() removes: fma(max, log2e, -maxL) is that rounding's exact residual. (Subtracting max
// first and multiplying after costs an instruction more per value.)
struct RunningLse {
  float max = -INFINITY;
  float maxL = -INFINITY;
  float sum = 0.f;

  // x: a vector of values; localMax: their largest (a NaN in x may be left out of it).
  template <int kCount>
  __device__ __forceinline__ void add(const float (&x)[kCount], float localMax) {
    if (localMax > max) {
      const float newMaxL = localMax * kLog2e;
      sum *= exp2Approx(maxL - newMaxL);  // first time: maxL = -inf, sum = 0 stays 0
      max = localMax;
      maxL = newMaxL;
    }
#pragma unroll
    for (int i = 0; i < kCount; ++i) sum += exp2Approx(fmaf(x[i], kLog2e, -maxL));
  }

  __device__ __forceinline__ OnlineLse finish(float poison) const {
    OnlineLse out;
    out.max = max;
    out.poison = poison;
    const float residual = fmaf(max, kLog2e, -maxL);  // NaN for max = +-inf: then sum stays
    out.sum = sum > 0.f && isfinite(residual) ? sum * exp2Approx(-residual) : sum;
    return out;
  }
};

// Watches the values of a thread for NaN and infinities, and gives the largest of each vector.
// f32: x*0 is NaN exactly for non-finite x (no fast-math, so the FMA is kept), one FMA a value.
// bf16/f16: NaN-propagating packed min and max of pairs, about one instruction per two values;
// a non-finite value leaves NaN or +inf in the max, or NaN or -inf in the min.
template <typename T>
struct NonFiniteWatch;

template <>
struct NonFiniteWatch<float> {
  float poison = 0.f;
  __device__ __forceinline__ void scalar(float x) { poison = fmaf(x, 0.f, poison); }
  __device__ __forceinline__ float vector(const Packed128<float>& v) {
    float m = v.payload[0];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      m = fmaxf(m, v.payload[i]);
      poison = fmaf(v.payload[i], 0.f, poison);
    }
    return m;
  }
  __device__ __forceinline__ float result() const { return poison; }
};

template <typename Half, typename Half2>
struct PackedNonFiniteWatch {
  Half2 high;  // the largest pair so far, starting at -inf
  Half2 low;   // the smallest, starting at +inf
  __device__ __forceinline__ PackedNonFiniteWatch() {
    high = Half2(Half(-INFINITY), Half(-INFINITY));
    low = Half2(Half(INFINITY), Half(INFINITY));
  }
  __device__ __forceinline__ void scalar(Half x) {
    const Half2 pair(x, x);
    high = __hmax2_nan(high, pair);
    low = __hmin2_nan(low, pair);
  }
  __device__ __forceinline__ float vector(const Packed128<Half>& v) {
    const Half2* pairs = reinterpret_cast<const Half2*>(v.payload);
    Half2 vmax = pairs[0], vmin = pairs[0];
#pragma unroll
    for (int i = 1; i < 4; ++i) {
      vmax = __hmax2_nan(vmax, pairs[i]);
      vmin = __hmin2_nan(vmin, pairs[i]);
    }
    high = __hmax2_nan(high, vmax);
    low = __hmin2_nan(low, vmin);
    return fmaxf(toFloat(vmax.x), toFloat(vmax.y));
  }
  __device__ __forceinline__ float result() const {
    const float a = toFloat(high.x), b = toFloat(high.y), c = toFloat(low.x), d = toFloat(low.y);
    const bool bad = isnan(a) || isnan(b) || isnan(c) || isnan(d) || a == INFINITY || b == INFINITY ||
                     c == -INFINITY || d == -INFINITY;
    return bad ? NAN : 0.f;
  }
};

template <>
struct NonFiniteWatch<__nv_bfloat16> : PackedNonFiniteWatch<__nv_bfloat16, __nv_bfloat162> {};
template <>
struct NonFiniteWatch<__half> : PackedNonFiniteWatch<__half, __half2> {};

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
