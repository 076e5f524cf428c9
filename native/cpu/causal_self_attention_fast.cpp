// Impl dispatch of causal_self_attention.h. One task per (batch, head), split over the thread pool: a head
// reads and writes only its own columns of qkv, dqkv and out and its own [T, T] block of att, so
// nothing is shared between threads and the bits do not depend on the split.
//
// AVX-512, per (b, h), with hs = C / NH and the head's keys and values copied once into
// transposed scratch Kt, Vt [hs, T] (so that every inner loop runs over t2, 16 lanes, or over
// hs, never a horizontal sum per score):
//   forward:  s[0..t] = sum_d q[d] Kt[d, 0..t]; softmax with exp16; out_t = sum_t2 att[t2] v_t2
//   backward: datt[0..t] = sum_d dout[d] Vt[d, 0..t]; dVt[d, 0..t] += dout[d] att[0..t];
//             dKt[d, 0..t] += q[d] ds[0..t]; dq_t += sum_t2 ds[t2] k_t2;
//             then dk, dv are added from dKt, dVt into dqkv.
// The two long sums (over d for the scores and datt, over t2 for out_t and dq_t) keep 64 columns
// in registers with two interleaved accumulator sets (vectorTimesRows, addWeightedRows): through
// memory, each step would wait on the previous one's store (measured 1.7x slower).
// The scratch is per task (a few hs x T floats: 16 KiB at hs = 32, T = 128).
// AVX2: the same algorithm at 8 lanes. Its 16 ymm registers hold 32 columns of the long sums
// (4 vectors x 2 accumulator sets, rowCombination8); each column's sum takes the same operations
// in the same order as at AVX-512, whatever the block width.
// Other CPUs: the reference, split by batch.
#include <cmath>
#include <cstddef>
#include <vector>

#include "../core/causal_self_attention.h"
#include "cpu_features.h"
#include "thread_pool.h"
#include "vector_ops_avx2.h"
#include "vector_ops_avx512.h"

namespace fusedpo {
namespace {

#if FUSEDPO_X86_KERNELS
// out[0..n) = scale sum_d vec[d] mat[d ld + 0..n), d < depth: 64 columns at a time held in
// registers, depth unrolled by two (8 independent accumulator chains).
FUSEDPO_INLINE_AVX512 void vectorTimesRows(int64_t n, int64_t depth, const float* vec, float scale,
                                           const float* mat, int64_t ld, float* out) {
  for (int64_t j = 0; j < n; j += 64) {
    __mmask16 mask[4];
    __m512 even[4], odd[4];
    for (int k = 0; k < 4; ++k) {
      mask[k] = n - j - 16 * k > 0 ? cpu::tailMask(n - j - 16 * k) : __mmask16(0);
      even[k] = _mm512_setzero_ps();
      odd[k] = _mm512_setzero_ps();
    }
    int64_t d = 0;
    for (; d + 2 <= depth; d += 2) {
      const __m512 s0 = _mm512_set1_ps(vec[d] * scale), s1 = _mm512_set1_ps(vec[d + 1] * scale);
      const float* row0 = mat + d * ld + j;
      const float* row1 = row0 + ld;
      for (int k = 0; k < 4; ++k) {
        even[k] = _mm512_fmadd_ps(s0, _mm512_maskz_loadu_ps(mask[k], row0 + 16 * k), even[k]);
        odd[k] = _mm512_fmadd_ps(s1, _mm512_maskz_loadu_ps(mask[k], row1 + 16 * k), odd[k]);
      }
    }
    if (d < depth) {
      const __m512 s0 = _mm512_set1_ps(vec[d] * scale);
      for (int k = 0; k < 4; ++k) {
        even[k] = _mm512_fmadd_ps(s0, _mm512_maskz_loadu_ps(mask[k], mat + d * ld + j + 16 * k), even[k]);
      }
    }
    for (int k = 0; k < 4; ++k) _mm512_mask_storeu_ps(out + j + 16 * k, mask[k], _mm512_add_ps(even[k], odd[k]));
  }
}

// out[0..width) += sum_{t2 < n} w[t2] rows[t2 stride + 0..width): 64 columns at a time in
// registers, t2 unrolled by two.
FUSEDPO_INLINE_AVX512 void addWeightedRows(int64_t n, const float* w, const float* rows, int64_t stride,
                                           int64_t width, float* out) {
  for (int64_t j = 0; j < width; j += 64) {
    __mmask16 mask[4];
    __m512 even[4], odd[4];
    for (int k = 0; k < 4; ++k) {
      mask[k] = width - j - 16 * k > 0 ? cpu::tailMask(width - j - 16 * k) : __mmask16(0);
      even[k] = _mm512_maskz_loadu_ps(mask[k], out + j + 16 * k);
      odd[k] = _mm512_setzero_ps();
    }
    int64_t t2 = 0;
    for (; t2 + 2 <= n; t2 += 2) {
      const __m512 w0 = _mm512_set1_ps(w[t2]), w1 = _mm512_set1_ps(w[t2 + 1]);
      const float* row0 = rows + t2 * stride + j;
      const float* row1 = row0 + stride;
      for (int k = 0; k < 4; ++k) {
        even[k] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(mask[k], row0 + 16 * k), even[k]);
        odd[k] = _mm512_fmadd_ps(w1, _mm512_maskz_loadu_ps(mask[k], row1 + 16 * k), odd[k]);
      }
    }
    if (t2 < n) {
      const __m512 w0 = _mm512_set1_ps(w[t2]);
      for (int k = 0; k < 4; ++k) {
        even[k] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(mask[k], rows + t2 * stride + j + 16 * k), even[k]);
      }
    }
    for (int k = 0; k < 4; ++k) _mm512_mask_storeu_ps(out + j + 16 * k, mask[k], _mm512_add_ps(even[k], odd[k]));
  }
}

// 8 columns at p, through lastMask when masked (the last vector of a block).
FUSEDPO_INLINE_AVX2 __m256 loadColumns8(const float* p, bool masked, __m256i lastMask) {
  return masked ? _mm256_maskload_ps(p, lastMask) : _mm256_loadu_ps(p);
}

// One block of the AVX2 long sums: out[0..columns) (+)= sum_{i < count} (coef[i] scale)
// rows[i stride + 0..columns), where columns = 8 (Vectors - 1) + lastColumns, 1 <= lastColumns <= 8:
// 8 Vectors columns held in registers, i unrolled by two (2 Vectors independent chains). Only
// the last vector is masked, and only when lastColumns < 8. With accumulate, out's values start
// the even sums (as in addWeightedRows).
template <int Vectors>
FUSEDPO_INLINE_AVX2 void rowCombinationBlock8(int64_t count, const float* coef, float scale, const float* rows,
                                              int64_t stride, int64_t lastColumns, bool accumulate, float* out) {
  const __m256i lastMask = cpu::tailMask8(lastColumns);
  const bool masked = lastColumns < 8;
  __m256 even[Vectors], odd[Vectors];
  for (int k = 0; k < Vectors; ++k) {
    even[k] = accumulate ? loadColumns8(out + 8 * k, k == Vectors - 1 && masked, lastMask) : _mm256_setzero_ps();
    odd[k] = _mm256_setzero_ps();
  }
  int64_t i = 0;
  for (; i + 2 <= count; i += 2) {
    const __m256 s0 = _mm256_set1_ps(coef[i] * scale), s1 = _mm256_set1_ps(coef[i + 1] * scale);
    const float* row0 = rows + i * stride;
    const float* row1 = row0 + stride;
    for (int k = 0; k < Vectors; ++k) {
      const bool last = k == Vectors - 1 && masked;
      even[k] = _mm256_fmadd_ps(s0, loadColumns8(row0 + 8 * k, last, lastMask), even[k]);
      odd[k] = _mm256_fmadd_ps(s1, loadColumns8(row1 + 8 * k, last, lastMask), odd[k]);
    }
  }
  if (i < count) {
    const __m256 s0 = _mm256_set1_ps(coef[i] * scale);
    for (int k = 0; k < Vectors; ++k) {
      even[k] = _mm256_fmadd_ps(s0, loadColumns8(rows + i * stride + 8 * k, k == Vectors - 1 && masked, lastMask), even[k]);
    }
  }
  for (int k = 0; k < Vectors; ++k) {
    const __m256 sum = _mm256_add_ps(even[k], odd[k]);
    if (k == Vectors - 1 && masked) {
      _mm256_maskstore_ps(out + 8 * k, lastMask, sum);
    } else {
      _mm256_storeu_ps(out + 8 * k, sum);
    }
  }
}

// out[0..width) (+)= sum_{i < count} (coef[i] scale) rows[i stride + 0..width): full blocks of 32
// columns, then one block of the 1..31 left, its last vector masked.
FUSEDPO_INLINE_AVX2 void rowCombination8(int64_t count, const float* coef, float scale, const float* rows,
                                         int64_t stride, int64_t width, bool accumulate, float* out) {
  int64_t j = 0;
  for (; j + 32 <= width; j += 32) rowCombinationBlock8<4>(count, coef, scale, rows + j, stride, 8, accumulate, out + j);
  const int64_t left = width - j;
  if (left <= 0) return;
  const int64_t lastColumns = left - 8 * ((left - 1) / 8);
  switch ((left + 7) / 8) {
    case 1: return rowCombinationBlock8<1>(count, coef, scale, rows + j, stride, lastColumns, accumulate, out + j);
    case 2: return rowCombinationBlock8<2>(count, coef, scale, rows + j, stride, lastColumns, accumulate, out + j);
    case 3: return rowCombinationBlock8<3>(count, coef, scale, rows + j, stride, lastColumns, accumulate, out + j);
    default: return rowCombinationBlock8<4>(count, coef, scale, rows + j, stride, lastColumns, accumulate, out + j);
  }
}

// vectorTimesRows at 8 lanes: out[0..n) = scale sum_d vec[d] mat[d ld + 0..n), d < depth.
FUSEDPO_INLINE_AVX2 void vectorTimesRows8(int64_t n, int64_t depth, const float* vec, float scale,
                                          const float* mat, int64_t ld, float* out) {
  rowCombination8(depth, vec, scale, mat, ld, n, false, out);
}

// addWeightedRows at 8 lanes: out[0..width) += sum_{t2 < n} w[t2] rows[t2 stride + 0..width)
// (w[t2] * 1.0f is w[t2] exactly).
FUSEDPO_INLINE_AVX2 void addWeightedRows8(int64_t n, const float* w, const float* rows, int64_t stride,
                                          int64_t width, float* out) {
  rowCombination8(n, w, 1.0f, rows, stride, width, true, out);
}

// Copies the hs columns at column offset `column` of every token of batch b into [hs, T].
void transposeHead(const float* qkv, int64_t b, int64_t column, const CausalSelfAttentionShape& shape, float* out) {
  const int64_t T = shape.tokens, C3 = 3 * shape.channels, hs = shape.channels / shape.heads;
  for (int64_t t = 0; t < T; ++t) {
    const float* row = qkv + (b * T + t) * C3 + column;
    for (int64_t d = 0; d < hs; ++d) out[d * T + t] = row[d];
  }
}

FUSEDPO_TARGET_AVX512 void causalSelfAttentionForwardHeadAvx512(const float* qkv, float* att, float* out,
                                                      const CausalSelfAttentionShape& shape, int64_t b, int64_t h,
                                                      float* kt) {
  const int64_t T = shape.tokens, C = shape.channels, NH = shape.heads;
  const int64_t hs = C / NH, C3 = 3 * C;
  const float scale = 1.0f / std::sqrt(float(hs));
  transposeHead(qkv, b, C + h * hs, shape, kt);
  for (int64_t t = 0; t < T; ++t) {
    const float* q = qkv + (b * T + t) * C3 + h * hs;
    float* weights = att + ((b * NH + h) * T + t) * T;
    const int64_t n = t + 1;
    for (int64_t t2 = n; t2 < T; ++t2) weights[t2] = 0.0f;
    vectorTimesRows(n, hs, q, scale, kt, T, weights);
    const float max = cpu::max16(n, weights);
    const float sum = cpu::expShifted16(n, weights, max, weights);
    cpu::scale16(n, 1.0f / sum, weights);

    float* o = out + (b * T + t) * C + h * hs;
    for (int64_t i = 0; i < hs; ++i) o[i] = 0.0f;
    addWeightedRows(n, weights, qkv + b * T * C3 + 2 * C + h * hs, C3, hs, o);
  }
}

FUSEDPO_TARGET_AVX512 void causalSelfAttentionBackwardHeadAvx512(const float* qkv, const float* att, const float* dout,
                                                       float* dqkv, const CausalSelfAttentionShape& shape, int64_t b,
                                                       int64_t h, float* scratch) {
  const int64_t T = shape.tokens, C = shape.channels, NH = shape.heads;
  const int64_t hs = C / NH, C3 = 3 * C;
  const float scale = 1.0f / std::sqrt(float(hs));
  float* vt = scratch;            // [hs, T]
  float* dkt = vt + hs * T;       // [hs, T]
  float* dvt = dkt + hs * T;      // [hs, T]
  float* ds = dvt + hs * T;       // [T]
  transposeHead(qkv, b, 2 * C + h * hs, shape, vt);
  for (int64_t i = 0; i < 2 * hs * T; ++i) dkt[i] = 0.0f;
  for (int64_t t = 0; t < T; ++t) {
    const float* weights = att + ((b * NH + h) * T + t) * T;
    const float* g = dout + (b * T + t) * C + h * hs;
    const float* q = qkv + (b * T + t) * C3 + h * hs;
    float* dq = dqkv + (b * T + t) * C3 + h * hs;
    const int64_t n = t + 1;
    // datt, into ds; dv
    vectorTimesRows(n, hs, g, 1.0f, vt, T, ds);
    for (int64_t d = 0; d < hs; ++d) cpu::axpy16(n, g[d], weights, dvt + d * T);
    // softmax backward, times the score scale
    const __m512 dot = _mm512_set1_ps(cpu::dot16(n, weights, ds)), sv = _mm512_set1_ps(scale);
    for (int64_t t2 = 0; t2 < n; t2 += 16) {
      const __mmask16 m = cpu::tailMask(n - t2);
      const __m512 d = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, weights + t2),
                                                   _mm512_sub_ps(_mm512_maskz_loadu_ps(m, ds + t2), dot)), sv);
      _mm512_mask_storeu_ps(ds + t2, m, d);
    }
    // dq, dk
    addWeightedRows(n, ds, qkv + b * T * C3 + C + h * hs, C3, hs, dq);
    for (int64_t d = 0; d < hs; ++d) cpu::axpy16(n, q[d], ds, dkt + d * T);
  }
  for (int64_t t = 0; t < T; ++t) {
    float* dk = dqkv + (b * T + t) * C3 + C + h * hs;
    float* dv = dk + C;
    for (int64_t d = 0; d < hs; ++d) {
      dk[d] += dkt[d * T + t];
      dv[d] += dvt[d * T + t];
    }
  }
}

FUSEDPO_TARGET_AVX2 void causalSelfAttentionForwardHeadAvx2(const float* qkv, float* att, float* out,
                                                            const CausalSelfAttentionShape& shape, int64_t b,
                                                            int64_t h, float* kt) {
  const int64_t T = shape.tokens, C = shape.channels, NH = shape.heads;
  const int64_t hs = C / NH, C3 = 3 * C;
  const float scale = 1.0f / std::sqrt(float(hs));
  transposeHead(qkv, b, C + h * hs, shape, kt);
  for (int64_t t = 0; t < T; ++t) {
    const float* q = qkv + (b * T + t) * C3 + h * hs;
    float* weights = att + ((b * NH + h) * T + t) * T;
    const int64_t n = t + 1;
    for (int64_t t2 = n; t2 < T; ++t2) weights[t2] = 0.0f;
    vectorTimesRows8(n, hs, q, scale, kt, T, weights);
    const float max = cpu::max8(n, weights);
    const float sum = cpu::expShifted8(n, weights, max, weights);
    cpu::scale8(n, 1.0f / sum, weights);

    float* o = out + (b * T + t) * C + h * hs;
    for (int64_t i = 0; i < hs; ++i) o[i] = 0.0f;
    addWeightedRows8(n, weights, qkv + b * T * C3 + 2 * C + h * hs, C3, hs, o);
  }
}

FUSEDPO_TARGET_AVX2 void causalSelfAttentionBackwardHeadAvx2(const float* qkv, const float* att, const float* dout,
                                                             float* dqkv, const CausalSelfAttentionShape& shape,
                                                             int64_t b, int64_t h, float* scratch) {
  const int64_t T = shape.tokens, C = shape.channels, NH = shape.heads;
  const int64_t hs = C / NH, C3 = 3 * C;
  const float scale = 1.0f / std::sqrt(float(hs));
  float* vt = scratch;            // [hs, T]
  float* dkt = vt + hs * T;       // [hs, T]
  float* dvt = dkt + hs * T;      // [hs, T]
  float* ds = dvt + hs * T;       // [T]
  transposeHead(qkv, b, 2 * C + h * hs, shape, vt);
  for (int64_t i = 0; i < 2 * hs * T; ++i) dkt[i] = 0.0f;
  for (int64_t t = 0; t < T; ++t) {
    const float* weights = att + ((b * NH + h) * T + t) * T;
    const float* g = dout + (b * T + t) * C + h * hs;
    const float* q = qkv + (b * T + t) * C3 + h * hs;
    float* dq = dqkv + (b * T + t) * C3 + h * hs;
    const int64_t n = t + 1;
    // datt, into ds; dv
    vectorTimesRows8(n, hs, g, 1.0f, vt, T, ds);
    for (int64_t d = 0; d < hs; ++d) cpu::axpy8(n, g[d], weights, dvt + d * T);
    // softmax backward, times the score scale
    const __m256 dot = _mm256_set1_ps(cpu::dot8(n, weights, ds)), sv = _mm256_set1_ps(scale);
    for (int64_t t2 = 0; t2 < n; t2 += 8) {
      const int64_t left = n - t2;
      const __m256 d = _mm256_mul_ps(_mm256_mul_ps(cpu::loadUpTo8(weights + t2, left),
                                                   _mm256_sub_ps(cpu::loadUpTo8(ds + t2, left), dot)), sv);
      cpu::storeUpTo8(ds + t2, left, d);
    }
    // dq, dk
    addWeightedRows8(n, ds, qkv + b * T * C3 + C + h * hs, C3, hs, dq);
    for (int64_t d = 0; d < hs; ++d) cpu::axpy8(n, q[d], ds, dkt + d * T);
  }
  for (int64_t t = 0; t < T; ++t) {
    float* dk = dqkv + (b * T + t) * C3 + C + h * hs;
    float* dv = dk + C;
    for (int64_t d = 0; d < hs; ++d) {
      dk[d] += dkt[d * T + t];
      dv[d] += dvt[d * T + t];
    }
  }
}
#endif

// The reference on the batches [b0, b1).
CausalSelfAttentionShape batches(CausalSelfAttentionShape shape, int64_t b0, int64_t b1) {
  shape.batch = b1 - b0;
  return shape;
}

}  // namespace

void causalSelfAttentionForward(Impl impl, const float* qkv, float* att, float* out, CausalSelfAttentionShape shape) {
  if (impl == Impl::Reference) return referenceCausalSelfAttentionForward(qkv, att, out, shape);
  const int64_t T = shape.tokens, C = shape.channels, NH = shape.heads;
#if FUSEDPO_X86_KERNELS
  if (cpu::avx512Active()) {
    auto heads = [&](int64_t begin, int64_t end) {
      std::vector<float> kt(std::size_t(C / NH * T));
      for (int64_t task = begin; task < end; ++task) {
        causalSelfAttentionForwardHeadAvx512(qkv, att, out, shape, task / NH, task % NH, kt.data());
      }
    };
    return cpu::parallelFor(shape.batch * NH, heads);
  }
  if (cpu::avx2Active()) {
    auto heads = [&](int64_t begin, int64_t end) {
      std::vector<float> kt(std::size_t(C / NH * T));
      for (int64_t task = begin; task < end; ++task) {
        causalSelfAttentionForwardHeadAvx2(qkv, att, out, shape, task / NH, task % NH, kt.data());
      }
    };
    return cpu::parallelFor(shape.batch * NH, heads);
  }
#endif
  auto rows = [&](int64_t b0, int64_t b1) {
    referenceCausalSelfAttentionForward(qkv + b0 * T * 3 * C, att + b0 * NH * T * T, out + b0 * T * C, batches(shape, b0, b1));
  };
  cpu::parallelFor(shape.batch, rows);
}

void causalSelfAttentionBackward(Impl impl, const float* qkv, const float* att, const float* dout, float* dqkv,
                       CausalSelfAttentionShape shape) {
  if (impl == Impl::Reference) return referenceCausalSelfAttentionBackward(qkv, att, dout, dqkv, shape);
  const int64_t T = shape.tokens, C = shape.channels, NH = shape.heads;
#if FUSEDPO_X86_KERNELS
  if (cpu::avx512Active()) {
    auto heads = [&](int64_t begin, int64_t end) {
      std::vector<float> scratch(std::size_t(3 * (C / NH) * T + T));
      for (int64_t task = begin; task < end; ++task) {
        causalSelfAttentionBackwardHeadAvx512(qkv, att, dout, dqkv, shape, task / NH, task % NH, scratch.data());
      }
    };
    return cpu::parallelFor(shape.batch * NH, heads);
  }
  if (cpu::avx2Active()) {
    auto heads = [&](int64_t begin, int64_t end) {
      std::vector<float> scratch(std::size_t(3 * (C / NH) * T + T));
      for (int64_t task = begin; task < end; ++task) {
        causalSelfAttentionBackwardHeadAvx2(qkv, att, dout, dqkv, shape, task / NH, task % NH, scratch.data());
      }
    };
    return cpu::parallelFor(shape.batch * NH, heads);
  }
#endif
  auto rows = [&](int64_t b0, int64_t b1) {
    referenceCausalSelfAttentionBackward(qkv + b0 * T * 3 * C, att + b0 * NH * T * T, dout + b0 * T * C,
                               dqkv + b0 * T * 3 * C, batches(shape, b0, b1));
  };
  cpu::parallelFor(shape.batch, rows);
}

}  // namespace fusedpo
