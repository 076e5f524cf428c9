// Fused log-softmax + gather of the label, per token, forward and backward; and the masked sums
// of the forward's per-token results per row (sequence log-probabilities).
//
//   logits  [R, T, V]  f32 / bf16 / f16          read once by the forward, once by the backward
//   labels  [R, T]     int32                     ignoreIndex: token not counted, logits never read
//   lse, lp [R*T]      float                     lse = log sum_v exp(z_v), lp = z_y - lse
//   logps   [R]        double                    sum over counted tokens of lp (fp32 tree)
//   dlogits [R, T, V]  dtype of logits           coef[s] * ([v == y] - exp(z_v - lse)), or 0
//
// Never materialized: softmax probabilities, log-softmax rows, anything of size R*T*V besides
// dlogits itself, which may be written over the logits (in place).
//
// The forward kernel gives one token row (or one chunk of it, see planRowSplit in common.cuh) to
// a team of threads: a warp for V <= 2048, else a block of 256. Each thread streams 16-byte
// vectors with an online (max, sum of exp) in fp32, four loads in flight, then the team folds
// its threads' pairs in a fixed shuffle tree. Chunks of a row are folded by a second kernel in
// chunk order. Everything is deterministic: the same inputs and shape give the same bits.
#include <algorithm>

#include "common.cuh"

namespace fusedpo::cuda {

namespace {

constexpr int kUnroll = 4;  // 16-byte loads in flight per thread

// ---- Kernels -----------------------------------------------------------------------------------

// The (max, sum, poison) of a team, folded in a fixed order; meaningful in the team's lane 0.
// A block team uses shared memory and __syncthreads, so every thread of the block must call it.
template <int kTeam>
__device__ __forceinline__ OnlineLse teamReduceLse(OnlineLse acc) {
  warpReduceLse(acc);
  if constexpr (kTeam == 32) {
    return acc;
  } else {
    static_assert(kTeam == kBlockThreads, "a team is one warp or the whole block");
    __shared__ float sharedMax[kWarpsPerBlock];
    __shared__ float sharedSum[kWarpsPerBlock];
    __shared__ float sharedPoison[kWarpsPerBlock];
    const int warp = threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (lane == 0) {
      sharedMax[warp] = acc.max;
      sharedSum[warp] = acc.sum;
      sharedPoison[warp] = acc.poison;
    }
    __syncthreads();
    OnlineLse total;
    if (warp == 0) {
      if (lane < kWarpsPerBlock) {
        total.max = sharedMax[lane];
        total.sum = sharedSum[lane];
        total.poison = sharedPoison[lane];
      }
      warpReduceLse(total);  // all 32 lanes of warp 0 take part
    }
    __syncthreads();  // the shared arrays are reused by the next item
    return total;
  }
}

// Visits this lane's share of chunk [p, p + len) for a team of kTeam lanes: scalar(i) for the
// elements of the unaligned head and of the tail, vector(first, bits) for each 16-byte vector in
// between (`first`: the index in the chunk of its first element). Lanes take consecutive vectors
// (coalesced), kUnroll streaming loads in flight before any is used. scalarOnly: no vectors.
template <typename T, int kTeam, typename Scalar, typename Vector>
__device__ __forceinline__ void forEachInChunk(const T* p, int64_t len, int lane, bool scalarOnly,
                                               Scalar scalar, Vector vector) {
  constexpr int kVec = Packed128<T>::kSize;
  const ChunkLayout layout = chunkLayout(p, len, scalarOnly);
  for (int64_t i = lane; i < layout.head; i += kTeam) scalar(i);
  const int4* body = reinterpret_cast<const int4*>(p + layout.head);
  for (int64_t k = lane; k < layout.vectors; k += int64_t{kTeam} * kUnroll) {
    int4 raw[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t index = k + int64_t{u} * kTeam;
      raw[u] = index < layout.vectors ? __ldcs(body + index) : make_int4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t index = k + int64_t{u} * kTeam;
      if (index < layout.vectors) vector(layout.head + index * kVec, raw[u]);
    }
  }
  for (int64_t i = layout.tailStart + lane; i < len; i += kTeam) scalar(i);
}

// The online log-sum-exp of this thread's share of chunk [p, p + len).
template <typename T, int kTeam>
__device__ __forceinline__ OnlineLse chunkLse(const T* p, int64_t len, int lane) {
  constexpr int kVec = Packed128<T>::kSize;
  RunningLse acc;
  NonFiniteWatch<T> watch;
  forEachInChunk<T, kTeam>(
      p, len, lane, false,
      [&](int64_t i) {
        float x[1] = {toFloat(p[i])};
        watch.scalar(p[i]);
        acc.add(x, x[0]);
      },
      [&](int64_t, int4 bits) {
        const Packed128<T> packed(bits);
        float x[kVec];
#pragma unroll
        for (int j = 0; j < kVec; ++j) x[j] = toFloat(packed.payload[j]);
        acc.add(x, watch.vector(packed));
      });
  return acc.finish(watch.result());
}

// lse and lp of one counted token from its row's (max, sum of exp). lp is formed as
// (z_y - max) - log(sum) rather than z_y - lse, which keeps it exact to fp32 rounding even for
// logits near 1e4.
template <typename T>
__device__ __forceinline__ void finishToken(const T* row, int32_t label, float max, float sum,
                                            bool nonFinite, int64_t token, float* lse, float* lp) {
  if (nonFinite) {
    lse[token] = NAN;
    lp[token] = NAN;
    return;
  }
  const float logSum = logf(sum);
  lse[token] = max + logSum;
  lp[token] = (toFloat(row[label]) - max) - logSum;
}

// One team per (token, chunk) item. With one chunk per row it writes lse and lp directly; with
// several it writes partials[item] = (max, sum), sum NaN when the chunk holds a non-finite logit.
template <typename T, int kTeam>
__global__ void __launch_bounds__(kBlockThreads)
    preferenceLossForwardKernel(const T* __restrict__ logits, const int32_t* __restrict__ labels,
                                  int32_t ignoreIndex, int64_t tokenCount, int64_t vocab,
                                  int64_t chunks, int64_t chunkLen, float* __restrict__ lse,
                                  float* __restrict__ lp, float2* __restrict__ partials) {
  constexpr int kTeamsPerBlock = kBlockThreads / kTeam;
  const int team = threadIdx.x / kTeam;
  const int lane = threadIdx.x % kTeam;
  const int64_t items = tokenCount * chunks;
  for (int64_t item = int64_t{blockIdx.x} * kTeamsPerBlock + team; item < items;
       item += int64_t{gridDim.x} * kTeamsPerBlock) {
    const int64_t token = item / chunks;
    const int64_t chunk = item - token * chunks;
    const int32_t label = labels[token];
    if (label == ignoreIndex) {  // the same for the whole team: no one reaches the reduction
      if (chunks == 1 && lane == 0) {
        lse[token] = 0.f;
        lp[token] = 0.f;
      }
      continue;
    }
    const T* row = logits + token * vocab;
    const int64_t begin = chunk * chunkLen;
    const int64_t len = min(chunkLen, vocab - begin);
    OnlineLse acc = chunkLse<T, kTeam>(row + begin, len, lane);
    acc = teamReduceLse<kTeam>(acc);
    if (lane == 0) {
      if (chunks == 1) {
        finishToken(row, label, acc.max, acc.sum, acc.nonFinite(), token, lse, lp);
      } else {
        partials[item] = make_float2(acc.max, acc.nonFinite() ? NAN : acc.sum);
      }
    }
  }
}

// Folds the chunks of each token in chunk order: one thread per token.
template <typename T>
__global__ void mergeChunksKernel(const T* __restrict__ logits, const int32_t* __restrict__ labels,
                                  int32_t ignoreIndex, int64_t tokenCount, int64_t vocab,
                                  int64_t chunks, const float2* __restrict__ partials,
                                  float* __restrict__ lse, float* __restrict__ lp) {
  for (int64_t token = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; token < tokenCount;
       token += int64_t{gridDim.x} * blockDim.x) {
    const int32_t label = labels[token];
    if (label == ignoreIndex) {
      lse[token] = 0.f;
      lp[token] = 0.f;
      continue;
    }
    const float2* part = partials + token * chunks;
    float max = -INFINITY;
    bool nonFinite = false;
    for (int64_t c = 0; c < chunks; ++c) {
      const float2 q = part[c];
      max = fmaxf(max, q.x);
      nonFinite |= isnan(q.y);
    }
    float sum = 0.f;
    for (int64_t c = 0; c < chunks; ++c) {
      const float2 q = part[c];
      sum += rescaledSum(q.y, q.x, max);
    }
    finishToken(logits + token * vocab, label, max, sum, nonFinite, token, lse, lp);
  }
}

// Per row s: logps[s] = sum of lp over counted tokens (fp32: each thread sums its tokens in
// order, then a fixed shared-memory tree), tokenCounts[s], and the first counted token whose lse
// is NaN (the forward's mark of a non-finite logit), -1 when none. One block per row.
__global__ void __launch_bounds__(kBlockThreads)
    sequenceSumsKernel(const int32_t* __restrict__ labels, int32_t ignoreIndex,
                       const float* __restrict__ lse, const float* __restrict__ lp,
                       int64_t tokensPerRow, double* __restrict__ logps,
                       int32_t* __restrict__ tokenCounts, int64_t* __restrict__ nonFiniteToken) {
  __shared__ float sharedSum[kBlockThreads];
  __shared__ int32_t sharedCount[kBlockThreads];
  __shared__ int64_t sharedFirstBad[kBlockThreads];
  const int64_t row = blockIdx.x;
  const int64_t base = row * tokensPerRow;
  float sum = 0.f;
  int32_t count = 0;
  int64_t firstBad = INT64_MAX;
  for (int64_t t = threadIdx.x; t < tokensPerRow; t += kBlockThreads) {
    if (labels[base + t] == ignoreIndex) continue;
    sum += lp[base + t];
    count += 1;
    if (isnan(lse[base + t]) && t < firstBad) firstBad = t;
  }
  sharedSum[threadIdx.x] = sum;
  sharedCount[threadIdx.x] = count;
  sharedFirstBad[threadIdx.x] = firstBad;
  __syncthreads();
  for (int stride = kBlockThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
      sharedSum[threadIdx.x] += sharedSum[threadIdx.x + stride];
      sharedCount[threadIdx.x] += sharedCount[threadIdx.x + stride];
      sharedFirstBad[threadIdx.x] =
          min(sharedFirstBad[threadIdx.x], sharedFirstBad[threadIdx.x + stride]);
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    logps[row] = static_cast<double>(sharedSum[0]);
    tokenCounts[row] = sharedCount[0];
    nonFiniteToken[row] = sharedFirstBad[0] == INT64_MAX ? -1 : sharedFirstBad[0];
  }
}

// Writes zeros over chunk [out, out + len) of an uncounted token (its logits are not read).
template <typename T, int kTeam>
__device__ __forceinline__ void zeroChunk(T* out, int64_t len, int lane, bool scalarOnly) {
  const ChunkLayout layout = chunkLayout(out, len, scalarOnly);
  const T zero = fromFloat<T>(0.f);
  for (int64_t i = lane; i < layout.head; i += kTeam) out[i] = zero;
  int4* body = reinterpret_cast<int4*>(out + layout.head);
  for (int64_t k = lane; k < layout.vectors; k += kTeam) __stcs(body + k, make_int4(0, 0, 0, 0));
  for (int64_t i = layout.tailStart + lane; i < len; i += kTeam) out[i] = zero;
}

// dlogits over chunk [in, in + len) of a counted token: c * ([v == y] - exp(z - lse)), the
// true-class term c * (1 - p) formed in fp32 before the store rounds it, and written as the
// reference writes it (c * (0 - p), so an underflowed p gives +0, not -0). yInChunk = y - begin
// (outside [0, len) when the label lies in another chunk). `in` and `out` may be the same
// memory: each element is read and then written by the same thread.
template <typename T, int kTeam>
__device__ __forceinline__ void gradChunk(const T* in, T* out, int64_t len, int64_t yInChunk,
                                          float coef, float lse, int lane, bool scalarOnly) {
  constexpr int kVec = Packed128<T>::kSize;
  forEachInChunk<T, kTeam>(
      in, len, lane, scalarOnly,
      [&](int64_t i) {
        const float p = __expf(toFloat(in[i]) - lse);
        out[i] = fromFloat<T>(coef * ((i == yInChunk ? 1.f : 0.f) - p));
      },
      [&](int64_t first, int4 bits) {
        const int64_t offset = yInChunk - first;
        const int hit = (offset >= 0 && offset < kVec) ? static_cast<int>(offset) : -1;
        const Packed128<T> packed(bits);
        Packed128<T> grad;
#pragma unroll
        for (int j = 0; j < kVec; ++j) {
          const float p = __expf(toFloat(packed.payload[j]) - lse);
          grad.payload[j] = fromFloat<T>(coef * ((j == hit ? 1.f : 0.f) - p));
        }
        __stcs(reinterpret_cast<int4*>(out + first), grad.bits());
      });
}

// One team per (token, chunk) item, the same split as the forward. logits and dlogits are not
// __restrict__: they may alias (in place).
template <typename T, int kTeam>
__global__ void __launch_bounds__(kBlockThreads)
    preferenceLossBackwardKernel(const T* logits, const int32_t* __restrict__ labels,
                                   int32_t ignoreIndex, int64_t tokenCount, int64_t tokensPerRow,
                                   int64_t vocab, int64_t chunks, int64_t chunkLen,
                                   bool scalarOnly, const float* __restrict__ lse,
                                   const float* __restrict__ coef, T* dlogits) {
  constexpr int kTeamsPerBlock = kBlockThreads / kTeam;
  const int team = threadIdx.x / kTeam;
  const int lane = threadIdx.x % kTeam;
  const int64_t items = tokenCount * chunks;
  for (int64_t item = int64_t{blockIdx.x} * kTeamsPerBlock + team; item < items;
       item += int64_t{gridDim.x} * kTeamsPerBlock) {
    const int64_t token = item / chunks;
    const int64_t chunk = item - token * chunks;
    const int64_t begin = chunk * chunkLen;
    const int64_t len = min(chunkLen, vocab - begin);
    const int64_t offset = token * vocab + begin;
    const int32_t label = labels[token];
    const float rowCoef = label == ignoreIndex ? 0.f : coef[token / tokensPerRow];
    if (rowCoef == 0.f) {  // uncounted token, empty row or a zero gradient: +0, logits not read
      zeroChunk<T, kTeam>(dlogits + offset, len, lane, scalarOnly);
    } else {
      gradChunk<T, kTeam>(logits + offset, dlogits + offset, len, int64_t{label} - begin,
                          rowCoef, lse[token], lane, scalarOnly);
    }
  }
}

// The first index v of one token row whose logit is NaN or infinite: atomicMin over v into
// *firstBad, which starts as all ones (reads back as -1 when nothing is found).
template <typename T>
__global__ void firstNonFiniteVocabKernel(const T* __restrict__ row, int64_t vocab,
                                          unsigned long long* firstBad) {
  for (int64_t v = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; v < vocab;
       v += int64_t{gridDim.x} * blockDim.x) {
    if (!isfinite(toFloat(row[v]))) {
      atomicMin(firstBad, static_cast<unsigned long long>(v));
      return;  // later v of this thread are larger
    }
  }
}

// ---- Launchers ---------------------------------------------------------------------------------

CudaStatus checkShape(const char* what, LogitsShape shape) {
  if (shape.rows <= 0 || shape.tokens <= 0 || shape.vocab <= 0) {
    return invalidArgument("%s: shape must be three positive integers, got [%lld, %lld, %lld]",
                           what, static_cast<long long>(shape.rows),
                           static_cast<long long>(shape.tokens),
                           static_cast<long long>(shape.vocab));
  }
  int64_t tokenCount = 0, elements = 0;
  if (__builtin_mul_overflow(shape.rows, shape.tokens, &tokenCount) ||
      __builtin_mul_overflow(tokenCount, shape.vocab, &elements) ||
      elements > INT64_MAX / 4) {
    return invalidArgument("%s: shape [%lld, %lld, %lld] is too large", what,
                           static_cast<long long>(shape.rows),
                           static_cast<long long>(shape.tokens),
                           static_cast<long long>(shape.vocab));
  }
  if (shape.rows > kMaxGrid) {
    return invalidArgument("%s: %lld rows is more than one launch can take", what,
                           static_cast<long long>(shape.rows));
  }
  return statusOk();
}

CudaStatus checkPointer(const char* what, const char* name, const void* ptr, int64_t alignment) {
  if (ptr == nullptr) return invalidArgument("%s: %s is null", what, name);
  if (reinterpret_cast<uintptr_t>(ptr) % static_cast<uintptr_t>(alignment) != 0) {
    return invalidArgument("%s: %s (%p) is not aligned to %lld bytes", what, name, ptr,
                           static_cast<long long>(alignment));
  }
  return statusOk();
}

#define FUSEDPO_RETURN_IF_ERROR(expr)  \
  do {                                 \
    CudaStatus status_ = (expr);       \
    if (!status_.ok()) return status_; \
  } while (0)

int64_t gridFor(int64_t items, int64_t perBlock) {
  const int64_t blocks = ceilDiv(items, perBlock);
  return blocks < kMaxGrid ? blocks : kMaxGrid;
}

template <typename T>
CudaStatus launchForward(const T* logits, DType dtype, LogitsShape shape, const int32_t* labels,
                         int32_t ignoreIndex, float* lse, float* lp, float2* partials,
                         cudaStream_t stream) {
  const RowSplit split = planRowSplit(shape);
  const int64_t tokenCount = shape.rows * shape.tokens;
  const int64_t items = tokenCount * split.chunks;
  if (split.warpTeams) {
    preferenceLossForwardKernel<T, 32>
        <<<gridFor(items, kWarpsPerBlock), kBlockThreads, 0, stream>>>(
            logits, labels, ignoreIndex, tokenCount, shape.vocab, split.chunks, split.chunkLen,
            lse, lp, partials);
  } else {
    preferenceLossForwardKernel<T, kBlockThreads>
        <<<gridFor(items, 1), kBlockThreads, 0, stream>>>(
            logits, labels, ignoreIndex, tokenCount, shape.vocab, split.chunks, split.chunkLen,
            lse, lp, partials);
  }
  FUSEDPO_CHECK_LAUNCH("preferenceLossForward %s [%lld, %lld, %lld], %lld chunk(s) of %lld",
                       dtypeName(dtype), static_cast<long long>(shape.rows),
                       static_cast<long long>(shape.tokens), static_cast<long long>(shape.vocab),
                       static_cast<long long>(split.chunks),
                       static_cast<long long>(split.chunkLen));
  if (split.chunks > 1) {
    mergeChunksKernel<T><<<gridFor(tokenCount, kBlockThreads), kBlockThreads, 0, stream>>>(
        logits, labels, ignoreIndex, tokenCount, shape.vocab, split.chunks, partials, lse, lp);
    FUSEDPO_CHECK_LAUNCH("preferenceLossForward merge %s, %lld tokens x %lld chunks",
                         dtypeName(dtype), static_cast<long long>(tokenCount),
                         static_cast<long long>(split.chunks));
  }
  return statusOk();
}

template <typename T>
CudaStatus launchBackward(const T* logits, DType dtype, LogitsShape shape, const int32_t* labels,
                          int32_t ignoreIndex, const float* lse, const float* coef, T* dlogits,
                          cudaStream_t stream) {
  const RowSplit split = planRowSplit(shape);
  const int64_t tokenCount = shape.rows * shape.tokens;
  const int64_t items = tokenCount * split.chunks;
  // 16-byte accesses need logits and dlogits at the same offset modulo 16 (true in place and for
  // any two cudaMalloc buffers); otherwise every element goes scalar.
  const bool scalarOnly =
      ((reinterpret_cast<uintptr_t>(logits) ^ reinterpret_cast<uintptr_t>(dlogits)) & 15) != 0;
  if (split.warpTeams) {
    preferenceLossBackwardKernel<T, 32>
        <<<gridFor(items, kWarpsPerBlock), kBlockThreads, 0, stream>>>(
            logits, labels, ignoreIndex, tokenCount, shape.tokens, shape.vocab, split.chunks,
            split.chunkLen, scalarOnly, lse, coef, dlogits);
  } else {
    preferenceLossBackwardKernel<T, kBlockThreads>
        <<<gridFor(items, 1), kBlockThreads, 0, stream>>>(
            logits, labels, ignoreIndex, tokenCount, shape.tokens, shape.vocab, split.chunks,
            split.chunkLen, scalarOnly, lse, coef, dlogits);
  }
  FUSEDPO_CHECK_LAUNCH("preferenceLossBackward %s [%lld, %lld, %lld], %lld chunk(s) of %lld%s",
                       dtypeName(dtype), static_cast<long long>(shape.rows),
                       static_cast<long long>(shape.tokens), static_cast<long long>(shape.vocab),
                       static_cast<long long>(split.chunks),
                       static_cast<long long>(split.chunkLen), scalarOnly ? ", scalar" : "");
  return statusOk();
}

}  // namespace

size_t forwardWorkspaceBytes(LogitsShape shape) {
  if (shape.rows <= 0 || shape.tokens <= 0 || shape.vocab <= 0) return 0;
  const RowSplit split = planRowSplit(shape);
  if (split.chunks <= 1) return 0;
  return static_cast<size_t>(shape.rows * shape.tokens * split.chunks) * sizeof(float2);
}

CudaStatus preferenceLossForward(const void* logits, DType dtype, LogitsShape shape,
                                 const int32_t* labels, int32_t ignoreIndex, float* lse, float* lp,
                                 double* logps, int32_t* tokenCounts, int64_t* nonFiniteToken,
                                 void* workspace, size_t workspaceBytes, void* stream) {
  const char* what = "preferenceLossForward";
  if (!validDType(dtype)) {
    return invalidArgument("%s: unknown dtype %d", what, static_cast<int>(dtype));
  }
  FUSEDPO_RETURN_IF_ERROR(checkShape(what, shape));
  FUSEDPO_RETURN_IF_ERROR(checkPointer(what, "logits", logits, dtypeBytes(dtype)));
  FUSEDPO_RETURN_IF_ERROR(checkPointer(what, "labels", labels, 4));
  FUSEDPO_RETURN_IF_ERROR(checkPointer(what, "lse", lse, 4));
  FUSEDPO_RETURN_IF_ERROR(checkPointer(what, "lp", lp, 4));
  FUSEDPO_RETURN_IF_ERROR(checkPointer(what, "logps", logps, 8));
  FUSEDPO_RETURN_IF_ERROR(checkPointer(what, "tokenCounts", tokenCounts, 4));
  FUSEDPO_RETURN_IF_ERROR(checkPointer(what, "nonFiniteToken", nonFiniteToken, 8));
  const size_t needed = forwardWorkspaceBytes(shape);
  if (needed > 0) {
    if (workspaceBytes < needed) {
      return invalidArgument("%s: workspace of %zu bytes is smaller than the %zu bytes needed "
                             "for shape [%lld, %lld, %lld]",
                             what, workspaceBytes, needed, static_cast<long long>(shape.rows),
                             static_cast<long long>(shape.tokens),
                             static_cast<long long>(shape.vocab));
    }
    FUSEDPO_RETURN_IF_ERROR(checkPointer(what, "workspace", workspace, 8));
  }
  cudaStream_t cudaStream = static_cast<cudaStream_t>(stream);
  float2* partials = static_cast<float2*>(workspace);
  switch (dtype) {
    case DType::F32:
      FUSEDPO_RETURN_IF_ERROR(launchForward(static_cast<const float*>(logits), dtype, shape,
                                            labels, ignoreIndex, lse, lp, partials, cudaStream));
      break;
    case DType::BF16:
      FUSEDPO_RETURN_IF_ERROR(launchForward(static_cast<const __nv_bfloat16*>(logits), dtype,
                                            shape, labels, ignoreIndex, lse, lp, partials,
                                            cudaStream));
      break;
    case DType::F16:
      FUSEDPO_RETURN_IF_ERROR(launchForward(static_cast<const __half*>(logits), dtype, shape,
                                            labels, ignoreIndex, lse, lp, partials, cudaStream));
      break;
  }
  sequenceSumsKernel<<<static_cast<unsigned>(shape.rows), kBlockThreads, 0, cudaStream>>>(
      labels, ignoreIndex, lse, lp, shape.tokens, logps, tokenCounts, nonFiniteToken);
  FUSEDPO_CHECK_LAUNCH("sequenceSums, %lld rows x %lld tokens", static_cast<long long>(shape.rows),
                       static_cast<long long>(shape.tokens));
  return statusOk();
}

CudaStatus preferenceLossBackward(const void* logits, DType dtype, LogitsShape shape,
                                  const int32_t* labels, int32_t ignoreIndex, const float* lse,
                                  const float* coef, void* dlogits, void* stream) {
  const char* what = "preferenceLossBackward";
  if (!validDType(dtype)) {
    return invalidArgument("%s: unknown dtype %d", what, static_cast<int>(dtype));
  }
  FUSEDPO_RETURN_IF_ERROR(checkShape(what, shape));
  FUSEDPO_RETURN_IF_ERROR(checkPointer(what, "logits", logits, dtypeBytes(dtype)));
  FUSEDPO_RETURN_IF_ERROR(checkPointer(what, "dlogits", dlogits, dtypeBytes(dtype)));
  FUSEDPO_RETURN_IF_ERROR(checkPointer(what, "labels", labels, 4));
  FUSEDPO_RETURN_IF_ERROR(checkPointer(what, "lse", lse, 4));
  FUSEDPO_RETURN_IF_ERROR(checkPointer(what, "coef", coef, 4));
  cudaStream_t cudaStream = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::F32:
      return launchBackward(static_cast<const float*>(logits), dtype, shape, labels, ignoreIndex,
                            lse, coef, static_cast<float*>(dlogits), cudaStream);
    case DType::BF16:
      return launchBackward(static_cast<const __nv_bfloat16*>(logits), dtype, shape, labels,
                            ignoreIndex, lse, coef, static_cast<__nv_bfloat16*>(dlogits),
                            cudaStream);
    case DType::F16:
      return launchBackward(static_cast<const __half*>(logits), dtype, shape, labels, ignoreIndex,
                            lse, coef, static_cast<__half*>(dlogits), cudaStream);
  }
  return invalidArgument("%s: unknown dtype %d", what, static_cast<int>(dtype));
}

CudaStatus firstNonFiniteVocab(const void* logits, DType dtype, LogitsShape shape, int64_t row,
                               int64_t token, int64_t* deviceScratch, int64_t* hostResult,
                               void* stream) {
  const char* what = "firstNonFiniteVocab";
  if (!validDType(dtype)) {
    return invalidArgument("%s: unknown dtype %d", what, static_cast<int>(dtype));
  }
  FUSEDPO_RETURN_IF_ERROR(checkShape(what, shape));
  FUSEDPO_RETURN_IF_ERROR(checkPointer(what, "logits", logits, dtypeBytes(dtype)));
  FUSEDPO_RETURN_IF_ERROR(checkPointer(what, "deviceScratch", deviceScratch, 8));
  if (hostResult == nullptr) return invalidArgument("%s: hostResult is null", what);
  if (row < 0 || row >= shape.rows || token < 0 || token >= shape.tokens) {
    return invalidArgument("%s: (row %lld, token %lld) is outside [%lld, %lld]", what,
                           static_cast<long long>(row), static_cast<long long>(token),
                           static_cast<long long>(shape.rows),
                           static_cast<long long>(shape.tokens));
  }
  cudaStream_t cudaStream = static_cast<cudaStream_t>(stream);
  cudaError_t err = cudaMemsetAsync(deviceScratch, 0xff, sizeof(int64_t), cudaStream);
  if (err != cudaSuccess) return statusFromError(err, "%s: cudaMemsetAsync of 8 bytes", what);
  const int64_t offset = (row * shape.tokens + token) * shape.vocab;
  const int64_t grid = std::min<int64_t>(gridFor(shape.vocab, kBlockThreads), 1024);
  unsigned long long* firstBad = reinterpret_cast<unsigned long long*>(deviceScratch);
  switch (dtype) {
    case DType::F32:
      firstNonFiniteVocabKernel<<<grid, kBlockThreads, 0, cudaStream>>>(
          static_cast<const float*>(logits) + offset, shape.vocab, firstBad);
      break;
    case DType::BF16:
      firstNonFiniteVocabKernel<<<grid, kBlockThreads, 0, cudaStream>>>(
          static_cast<const __nv_bfloat16*>(logits) + offset, shape.vocab, firstBad);
      break;
    case DType::F16:
      firstNonFiniteVocabKernel<<<grid, kBlockThreads, 0, cudaStream>>>(
          static_cast<const __half*>(logits) + offset, shape.vocab, firstBad);
      break;
  }
  FUSEDPO_CHECK_LAUNCH("%s %s, vocab %lld", what, dtypeName(dtype),
                       static_cast<long long>(shape.vocab));
  err = cudaMemcpyAsync(hostResult, deviceScratch, sizeof(int64_t), cudaMemcpyDeviceToHost,
                        cudaStream);
  if (err != cudaSuccess) return statusFromError(err, "%s: copy of 8 bytes to the host", what);
  err = cudaStreamSynchronize(cudaStream);
  if (err != cudaSuccess) return statusFromError(err, "%s: cudaStreamSynchronize", what);
  return statusOk();
}

}  // namespace fusedpo::cuda
