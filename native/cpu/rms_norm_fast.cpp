// Impl dispatch of rms_norm.h.
// Forward and dinp: rows split over the thread pool; each row's sums (of x^2, of g n) in W float
// lanes, W = 16 (AVX-512), 8 (AVX2) or 4 (other CPUs), summed last: the same plain loop compiled
// for each target (`flatten` inlines the template there, where the compiler vectorizes it).
// dweight: columns split over the pool, each column accumulated over the rows in row order with
// the reference's own code, so its bits are the reference's whatever the thread count.
#include <cmath>
#include <vector>

#include "../core/rms_norm.h"
#include "cpu_features.h"
#include "nn_parallel.h"
#include "simd_exp.h"  // FUSEDPO_TARGET_* (on x86)

namespace fusedpo {
namespace {

// sum_c a[c] b[c] over W lanes, then the lanes in order.
template <int W>
inline float laneDot(const float* a, const float* b, int64_t n) {
  float acc[W] = {};
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    for (int k = 0; k < W; ++k) acc[k] += a[i + k] * b[i + k];
  }
  for (int k = 0; i < n; ++i, ++k) acc[k] += a[i] * b[i];
  float sum = 0.0f;
  for (int k = 0; k < W; ++k) sum += acc[k];
  return sum;
}

template <int W>
inline void rmsNormRows(const float* inp, const float* weight, float* out, float* rstd, int64_t begin, int64_t end,
                        int64_t C, float eps, float offset) {
  for (int64_t r = begin; r < end; ++r) {
    const float* x = inp + r * C;
    float* y = out + r * C;
    const float s = 1.0f / std::sqrt(laneDot<W>(x, x, C) / float(C) + eps);
    rstd[r] = s;
    for (int64_t c = 0; c < C; ++c) y[c] = x[c] * s * (weight[c] + offset);
  }
}

template <int W>
inline void rmsNormDinpRows(const float* dout, const float* inp, const float* weight, const float* rstd, float* dinp,
                            int64_t begin, int64_t end, int64_t C, float offset, float* g) {
  for (int64_t r = begin; r < end; ++r) {
    const float* x = inp + r * C;
    const float* dy = dout + r * C;
    float* dx = dinp + r * C;
    const float s = rstd[r];
    for (int64_t c = 0; c < C; ++c) g[c] = dy[c] * (weight[c] + offset);
    const float gnMean = laneDot<W>(g, x, C) * s / float(C);
    for (int64_t c = 0; c < C; ++c) dx[c] += s * (g[c] - x[c] * s * gnMean);
  }
}

#if FUSEDPO_X86_KERNELS
__attribute__((flatten)) FUSEDPO_TARGET_AVX512 void rmsNormRowsAvx512(const float* inp, const float* weight, float* out, float* rstd,
                                                                      int64_t begin, int64_t end, int64_t C, float eps, float offset) {
  rmsNormRows<16>(inp, weight, out, rstd, begin, end, C, eps, offset);
}
__attribute__((flatten)) FUSEDPO_TARGET_AVX2 void rmsNormRowsAvx2(const float* inp, const float* weight, float* out, float* rstd,
                                                                  int64_t begin, int64_t end, int64_t C, float eps, float offset) {
  rmsNormRows<8>(inp, weight, out, rstd, begin, end, C, eps, offset);
}
__attribute__((flatten)) FUSEDPO_TARGET_AVX512 void rmsNormDinpRowsAvx512(const float* dout, const float* inp, const float* weight,
                                                                          const float* rstd, float* dinp, int64_t begin, int64_t end,
                                                                          int64_t C, float offset, float* g) {
  rmsNormDinpRows<16>(dout, inp, weight, rstd, dinp, begin, end, C, offset, g);
}
__attribute__((flatten)) FUSEDPO_TARGET_AVX2 void rmsNormDinpRowsAvx2(const float* dout, const float* inp, const float* weight,
                                                                      const float* rstd, float* dinp, int64_t begin, int64_t end,
                                                                      int64_t C, float offset, float* g) {
  rmsNormDinpRows<8>(dout, inp, weight, rstd, dinp, begin, end, C, offset, g);
}
#endif

}  // namespace

void rmsNormForward(Impl impl, const float* inp, const float* weight, float* out, float* rstd, int64_t rows,
                    int64_t channels, float eps, float offset) {
  if (impl == Impl::Reference) return referenceRmsNormForward(inp, weight, out, rstd, rows, channels, eps, offset);
  [[maybe_unused]] const bool avx512 = cpu::avx512Active(), avx2 = cpu::avx2Active();
  auto body = [&](int64_t begin, int64_t end) {
#if FUSEDPO_X86_KERNELS
    if (avx512) return rmsNormRowsAvx512(inp, weight, out, rstd, begin, end, channels, eps, offset);
    if (avx2) return rmsNormRowsAvx2(inp, weight, out, rstd, begin, end, channels, eps, offset);
#endif
    rmsNormRows<4>(inp, weight, out, rstd, begin, end, channels, eps, offset);
  };
  cpu::parallelForWork(rows, channels, body);
}

void rmsNormBackward(Impl impl, const float* dout, const float* inp, const float* weight, const float* rstd, float* dinp,
                     float* dweight, int64_t rows, int64_t channels, float offset) {
  if (impl == Impl::Reference) return referenceRmsNormBackward(dout, inp, weight, rstd, dinp, dweight, rows, channels, offset);
  [[maybe_unused]] const bool avx512 = cpu::avx512Active(), avx2 = cpu::avx2Active();
  auto dinpRows = [&](int64_t begin, int64_t end) {
    std::vector<float> g(static_cast<size_t>(channels));  // g = dout (weight + offset), one row's
#if FUSEDPO_X86_KERNELS
    if (avx512) return rmsNormDinpRowsAvx512(dout, inp, weight, rstd, dinp, begin, end, channels, offset, g.data());
    if (avx2) return rmsNormDinpRowsAvx2(dout, inp, weight, rstd, dinp, begin, end, channels, offset, g.data());
#endif
    rmsNormDinpRows<4>(dout, inp, weight, rstd, dinp, begin, end, channels, offset, g.data());
  };
  cpu::parallelForWork(rows, channels, dinpRows);
  auto columns = [&](int64_t c0, int64_t c1) { referenceRmsNormWeightGradColumns(dout, inp, rstd, dweight, rows, channels, c0, c1); };
  cpu::parallelForWork(channels, rows, columns);
}

}  // namespace fusedpo
