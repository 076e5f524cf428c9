// Impl dispatch of causal_self_attention.h. One task per (batch, key/value head), split over the
// thread pool: the group of query heads that shares a key/value head reads and writes only its own
// columns of q, k, v, dq, dk, dv and out and its own [T, T] blocks of att, so nothing is shared
// between threads and the bits do not depend on the split (GPT-2: one query head a group).
//
// AVX-512, per (b, h), with D the head dim and the key/value head's keys and values copied once into
// transposed scratch Kt, Vt [D, T] (so that every inner loop runs over t2, 16 lanes, or over
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

// Copies the D columns of every token of batch b at `base` (a head's columns of k or v, rows
// `stride` apart) into [D, T].
void transposeHead(const float* base, int64_t stride, int64_t b, const AttentionShape& shape, float* out) {
  const int64_t T = shape.tokens, D = shape.headDim;
  for (int64_t t = 0; t < T; ++t) {
    const float* row = base + (b * T + t) * stride;
    for (int64_t d = 0; d < D; ++d) out[d * T + t] = row[d];
  }
}

// The SIMD width's primitives, so that one algorithm (attentionForwardGroup, attentionBackwardGroup)
// serves AVX-512 and AVX2: the 16-lane and the 8-lane helpers have the same contracts and sum in
// the same order. The algorithm is a plain template; each width's entry point is `flatten`, which
// inlines it and, inside that target, these primitives and theirs.
struct Lanes16 {
  static FUSEDPO_TARGET_AVX512 inline void scores(int64_t n, int64_t depth, const float* vec, float scale, const float* mat, int64_t ld, float* out) {
    vectorTimesRows(n, depth, vec, scale, mat, ld, out);
  }
  static FUSEDPO_TARGET_AVX512 inline void addRows(int64_t n, const float* w, const float* rows, int64_t stride, int64_t width, float* out) {
    addWeightedRows(n, w, rows, stride, width, out);
  }
  static FUSEDPO_TARGET_AVX512 inline float max(int64_t n, const float* x) { return cpu::max16(n, x); }
  static FUSEDPO_TARGET_AVX512 inline float expShifted(int64_t n, const float* x, float shift, float* out) { return cpu::expShifted16(n, x, shift, out); }
  static FUSEDPO_TARGET_AVX512 inline void scale(int64_t n, float factor, float* x) { cpu::scale16(n, factor, x); }
  static FUSEDPO_TARGET_AVX512 inline void axpy(int64_t n, float a, const float* x, float* y) { cpu::axpy16(n, a, x, y); }
  static FUSEDPO_TARGET_AVX512 inline float dot(int64_t n, const float* x, const float* y) { return cpu::dot16(n, x, y); }
  // ds[i] = weights[i] (ds[i] - dot) scale, i < n
  static FUSEDPO_TARGET_AVX512 inline void softmaxBackward(int64_t n, const float* weights, float dot, float scale, float* ds) {
    const __m512 dv = _mm512_set1_ps(dot), sv = _mm512_set1_ps(scale);
    for (int64_t i = 0; i < n; i += 16) {
      const __mmask16 m = cpu::tailMask(n - i);
      const __m512 d = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, weights + i), _mm512_sub_ps(_mm512_maskz_loadu_ps(m, ds + i), dv)), sv);
      _mm512_mask_storeu_ps(ds + i, m, d);
    }
  }
};

struct Lanes8 {
  static FUSEDPO_TARGET_AVX2 inline void scores(int64_t n, int64_t depth, const float* vec, float scale, const float* mat, int64_t ld, float* out) {
    vectorTimesRows8(n, depth, vec, scale, mat, ld, out);
  }
  static FUSEDPO_TARGET_AVX2 inline void addRows(int64_t n, const float* w, const float* rows, int64_t stride, int64_t width, float* out) {
    addWeightedRows8(n, w, rows, stride, width, out);
  }
  static FUSEDPO_TARGET_AVX2 inline float max(int64_t n, const float* x) { return cpu::max8(n, x); }
  static FUSEDPO_TARGET_AVX2 inline float expShifted(int64_t n, const float* x, float shift, float* out) { return cpu::expShifted8(n, x, shift, out); }
  static FUSEDPO_TARGET_AVX2 inline void scale(int64_t n, float factor, float* x) { cpu::scale8(n, factor, x); }
  static FUSEDPO_TARGET_AVX2 inline void axpy(int64_t n, float a, const float* x, float* y) { cpu::axpy8(n, a, x, y); }
  static FUSEDPO_TARGET_AVX2 inline float dot(int64_t n, const float* x, const float* y) { return cpu::dot8(n, x, y); }
  static FUSEDPO_TARGET_AVX2 inline void softmaxBackward(int64_t n, const float* weights, float dot, float scale, float* ds) {
    const __m256 dv = _mm256_set1_ps(dot), sv = _mm256_set1_ps(scale);
    for (int64_t i = 0; i < n; i += 8) {
      const int64_t left = n - i;
      const __m256 d = _mm256_mul_ps(_mm256_mul_ps(cpu::loadUpTo8(weights + i, left), _mm256_sub_ps(cpu::loadUpTo8(ds + i, left), dv)), sv);
      cpu::storeUpTo8(ds + i, left, d);
    }
  }
};

// One (batch b, key/value head g) task of the forward: the head's keys transposed once into kt
// [D, T], then each query head of its group, each query t over its window [start, t].
template <class L>
inline void attentionForwardGroup(const float* q, const float* k, const float* v, float* att, float* out,
                                                 const AttentionShape& s, int64_t b, int64_t g, float* kt) {
  const int64_t T = s.tokens, NH = s.heads, D = s.headDim, group = NH / s.kvHeads;
  transposeHead(k + g * D, s.kvStride, b, s, kt);
  for (int64_t h = g * group; h < (g + 1) * group; ++h) {
    for (int64_t t = 0; t < T; ++t) {
      const float* qt = q + (b * T + t) * s.qStride + h * D;
      float* weights = att + ((b * NH + h) * T + t) * T;
      const int64_t start = attentionStart(s, t), n = t - start + 1;
      for (int64_t t2 = 0; t2 < start; ++t2) weights[t2] = 0.0f;
      for (int64_t t2 = t + 1; t2 < T; ++t2) weights[t2] = 0.0f;
      float* w = weights + start;
      L::scores(n, D, qt, s.scale, kt + start, T, w);
      const float max = L::max(n, w);
      const float sum = L::expShifted(n, w, max, w);
      L::scale(n, 1.0f / sum, w);

      float* o = out + (b * T + t) * s.outStride + h * D;
      for (int64_t i = 0; i < D; ++i) o[i] = 0.0f;
      L::addRows(n, w, v + (b * T + start) * s.kvStride + g * D, s.kvStride, D, o);
    }
  }
}

// One (b, g) task of the backward: dk and dv of the key/value head summed over its group's query
// heads in scratch (transposed, [D, T] each), then added into dk and dv once.
template <class L>
inline void attentionBackwardGroup(const float* q, const float* k, const float* v, const float* att,
                                                  const float* dout, float* dq, float* dk, float* dv,
                                                  const AttentionShape& s, int64_t b, int64_t g, float* scratch) {
  const int64_t T = s.tokens, NH = s.heads, D = s.headDim, group = NH / s.kvHeads;
  float* vt = scratch;          // [D, T]
  float* dkt = vt + D * T;      // [D, T]
  float* dvt = dkt + D * T;     // [D, T]
  float* ds = dvt + D * T;      // [T]
  transposeHead(v + g * D, s.kvStride, b, s, vt);
  for (int64_t i = 0; i < 2 * D * T; ++i) dkt[i] = 0.0f;
  for (int64_t h = g * group; h < (g + 1) * group; ++h) {
    for (int64_t t = 0; t < T; ++t) {
      const int64_t start = attentionStart(s, t), n = t - start + 1;
      const float* weights = att + ((b * NH + h) * T + t) * T + start;
      const float* gt = dout + (b * T + t) * s.outStride + h * D;
      const float* qt = q + (b * T + t) * s.qStride + h * D;
      float* dqt = dq + (b * T + t) * s.qStride + h * D;
      // datt, into ds; dv
      L::scores(n, D, gt, 1.0f, vt + start, T, ds);
      for (int64_t d = 0; d < D; ++d) L::axpy(n, gt[d], weights, dvt + d * T + start);
      // softmax backward, times the score scale
      L::softmaxBackward(n, weights, L::dot(n, weights, ds), s.scale, ds);
      // dq, dk
      L::addRows(n, ds, k + (b * T + start) * s.kvStride + g * D, s.kvStride, D, dqt);
      for (int64_t d = 0; d < D; ++d) L::axpy(n, qt[d], ds, dkt + d * T + start);
    }
  }
  for (int64_t t = 0; t < T; ++t) {
    float* dkRow = dk + (b * T + t) * s.kvStride + g * D;
    float* dvRow = dv + (b * T + t) * s.kvStride + g * D;
    for (int64_t d = 0; d < D; ++d) {
      dkRow[d] += dkt[d * T + t];
      dvRow[d] += dvt[d * T + t];
    }
  }
}

__attribute__((flatten)) FUSEDPO_TARGET_AVX512 void attentionForwardGroupAvx512(const float* q, const float* k, const float* v, float* att, float* out,
                                                       const AttentionShape& s, int64_t b, int64_t g, float* kt) {
  attentionForwardGroup<Lanes16>(q, k, v, att, out, s, b, g, kt);
}

__attribute__((flatten)) FUSEDPO_TARGET_AVX512 void attentionBackwardGroupAvx512(const float* q, const float* k, const float* v, const float* att,
                                                        const float* dout, float* dq, float* dk, float* dv,
                                                        const AttentionShape& s, int64_t b, int64_t g, float* scratch) {
  attentionBackwardGroup<Lanes16>(q, k, v, att, dout, dq, dk, dv, s, b, g, scratch);
}

__attribute__((flatten)) FUSEDPO_TARGET_AVX2 void attentionForwardGroupAvx2(const float* q, const float* k, const float* v, float* att, float* out,
                                                   const AttentionShape& s, int64_t b, int64_t g, float* kt) {
  attentionForwardGroup<Lanes8>(q, k, v, att, out, s, b, g, kt);
}

__attribute__((flatten)) FUSEDPO_TARGET_AVX2 void attentionBackwardGroupAvx2(const float* q, const float* k, const float* v, const float* att,
                                                    const float* dout, float* dq, float* dk, float* dv,
                                                    const AttentionShape& s, int64_t b, int64_t g, float* scratch) {
  attentionBackwardGroup<Lanes8>(q, k, v, att, dout, dq, dk, dv, s, b, g, scratch);
}
#endif

// The shape of the batches [b0, b1) (the reference, split by batch on the generic path).
AttentionShape batches(AttentionShape shape, int64_t b0, int64_t b1) {
  shape.batch = b1 - b0;
  return shape;
}

}  // namespace

void attentionForward(Impl impl, const float* q, const float* k, const float* v, float* att, float* out,
                      const AttentionShape& shape) {
  if (impl == Impl::Reference) return referenceAttentionForward(q, k, v, att, out, shape);
  const int64_t T = shape.tokens, NH = shape.heads, NKV = shape.kvHeads, D = shape.headDim;
#if FUSEDPO_X86_KERNELS
  if (cpu::avx512Active() || cpu::avx2Active()) {
    const bool avx512 = cpu::avx512Active();
    auto groups = [&](int64_t begin, int64_t end) {
      std::vector<float> kt(std::size_t(D * T));
      for (int64_t task = begin; task < end; ++task) {
        if (avx512) attentionForwardGroupAvx512(q, k, v, att, out, shape, task / NKV, task % NKV, kt.data());
        else attentionForwardGroupAvx2(q, k, v, att, out, shape, task / NKV, task % NKV, kt.data());
      }
    };
    return cpu::parallelFor(shape.batch * NKV, groups);
  }
#endif
  auto rows = [&](int64_t b0, int64_t b1) {
    referenceAttentionForward(q + b0 * T * shape.qStride, k + b0 * T * shape.kvStride, v + b0 * T * shape.kvStride,
                              att + b0 * NH * T * T, out + b0 * T * shape.outStride, batches(shape, b0, b1));
  };
  cpu::parallelFor(shape.batch, rows);
}

void attentionBackward(Impl impl, const float* q, const float* k, const float* v, const float* att, const float* dout,
                       float* dq, float* dk, float* dv, const AttentionShape& shape) {
  if (impl == Impl::Reference) return referenceAttentionBackward(q, k, v, att, dout, dq, dk, dv, shape);
  const int64_t T = shape.tokens, NH = shape.heads, NKV = shape.kvHeads, D = shape.headDim;
#if FUSEDPO_X86_KERNELS
  if (cpu::avx512Active() || cpu::avx2Active()) {
    const bool avx512 = cpu::avx512Active();
    auto groups = [&](int64_t begin, int64_t end) {
      std::vector<float> scratch(std::size_t(3 * D * T + T));
      for (int64_t task = begin; task < end; ++task) {
        if (avx512) attentionBackwardGroupAvx512(q, k, v, att, dout, dq, dk, dv, shape, task / NKV, task % NKV, scratch.data());
        else attentionBackwardGroupAvx2(q, k, v, att, dout, dq, dk, dv, shape, task / NKV, task % NKV, scratch.data());
      }
    };
    return cpu::parallelFor(shape.batch * NKV, groups);
  }
#endif
  auto rows = [&](int64_t b0, int64_t b1) {
    referenceAttentionBackward(q + b0 * T * shape.qStride, k + b0 * T * shape.kvStride, v + b0 * T * shape.kvStride,
                               att + b0 * NH * T * T, dout + b0 * T * shape.outStride, dq + b0 * T * shape.qStride,
                               dk + b0 * T * shape.kvStride, dv + b0 * T * shape.kvStride, batches(shape, b0, b1));
  };
  cpu::parallelFor(shape.batch, rows);
}

}  // namespace fusedpo
