// Impl dispatch of rope.h: rows (b, t) split over the thread pool; each head's pairs in a plain
// loop compiled for the target (`flatten` inlines it into the AVX-512 and AVX2 entry points, where
// the compiler vectorizes it; other CPUs compile it for the baseline). The arithmetic per element
// is the reference's, so the results are too (up to the compiler's fused multiply-adds).
#include "../core/rope.h"
#include "cpu_features.h"
#include "nn_parallel.h"
#include "simd_exp.h"  // FUSEDPO_TARGET_* (on x86)

namespace fusedpo {
namespace {

// backward: the transposed rotation, accumulated into dinp.
template <bool Backward>
inline void ropeRows(const float* inp, const float* cos, const float* sin, float* out, const RopeShape& s, int64_t begin,
                     int64_t end) {
  const int64_t half = s.headDim / 2, width = s.heads * s.headDim;
  for (int64_t row = begin; row < end; ++row) {
    const float* c = cos + (row % s.tokens) * half;
    const float* n = sin + (row % s.tokens) * half;
    for (int64_t h = 0; h < s.heads; ++h) {
      const float* x = inp + row * width + h * s.headDim;
      float* y = out + row * width + h * s.headDim;
      for (int64_t i = 0; i < half; ++i) {
        const float a = x[i], b = x[i + half];
        if (Backward) {
          y[i] += a * c[i] + b * n[i];
          y[i + half] += b * c[i] - a * n[i];
        } else {
          y[i] = a * c[i] - b * n[i];
          y[i + half] = b * c[i] + a * n[i];
        }
      }
    }
  }
}

#if FUSEDPO_X86_KERNELS
template <bool Backward>
__attribute__((flatten)) FUSEDPO_TARGET_AVX512 void ropeRowsAvx512(const float* inp, const float* cos, const float* sin, float* out,
                                                                   const RopeShape& s, int64_t begin, int64_t end) {
  ropeRows<Backward>(inp, cos, sin, out, s, begin, end);
}
template <bool Backward>
__attribute__((flatten)) FUSEDPO_TARGET_AVX2 void ropeRowsAvx2(const float* inp, const float* cos, const float* sin, float* out,
                                                               const RopeShape& s, int64_t begin, int64_t end) {
  ropeRows<Backward>(inp, cos, sin, out, s, begin, end);
}
#endif

template <bool Backward>
void ropeDispatch(const float* inp, const float* cos, const float* sin, float* out, const RopeShape& shape) {
  [[maybe_unused]] const bool avx512 = cpu::avx512Active(), avx2 = cpu::avx2Active();
  auto body = [&](int64_t begin, int64_t end) {
#if FUSEDPO_X86_KERNELS
    if (avx512) return ropeRowsAvx512<Backward>(inp, cos, sin, out, shape, begin, end);
    if (avx2) return ropeRowsAvx2<Backward>(inp, cos, sin, out, shape, begin, end);
#endif
    ropeRows<Backward>(inp, cos, sin, out, shape, begin, end);
  };
  cpu::parallelForWork(shape.batch * shape.tokens, shape.heads * shape.headDim, body);
}

}  // namespace

void ropeForward(Impl impl, const float* inp, const float* cos, const float* sin, float* out, RopeShape shape) {
  if (impl == Impl::Reference) return referenceRopeForward(inp, cos, sin, out, shape, 0, shape.batch * shape.tokens);
  ropeDispatch<false>(inp, cos, sin, out, shape);
}

void ropeBackward(Impl impl, const float* dout, const float* cos, const float* sin, float* dinp, RopeShape shape) {
  if (impl == Impl::Reference) return referenceRopeBackward(dout, cos, sin, dinp, shape, 0, shape.batch * shape.tokens);
  ropeDispatch<true>(dout, cos, sin, dinp, shape);
}

}  // namespace fusedpo
