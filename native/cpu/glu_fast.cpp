// Impl dispatch of glu.h: elementwise, split over the thread pool in contiguous ranges; sigmoid
// and tanh formed with simd_exp.h's branch-free expApprox (std::exp costs far more than the memory
// traffic), in one plain loop compiled for the target (`flatten`: AVX-512, AVX2, or the baseline),
// where the compiler vectorizes it. Each element's arithmetic does not depend on the split. For
// large |x| the exp saturates (0 or +inf): sigmoid and tanh come out as exactly 0, 1 or -1.
#include "../core/glu.h"

// Contraction off: a range of the split runs partly in vector code and partly in a scalar
// epilogue, and with FMA contracted in one and not the other an element's bits would depend on
// where the thread pool split the range. Unfused, each element's arithmetic is the same anywhere.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
#include "cpu_features.h"
#include "nn_parallel.h"
#include "simd_exp.h"  // expApprox: every architecture

namespace fusedpo {
namespace {

constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluCubic = 0.044715f;

template <GluActivation Kind>
inline void activation(float x, float* value, float* slope) {
  if (Kind == GluActivation::Silu) {
    const float s = 1.0f / (1.0f + cpu::expApprox(-x));
    *value = x * s;
    *slope = s * (1.0f + x * (1.0f - s));
  } else {
    const float u = kGeluScale * (x + kGeluCubic * x * x * x);
    const float th = 1.0f - 2.0f / (cpu::expApprox(u + u) + 1.0f);
    *value = 0.5f * x * (1.0f + th);
    *slope = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * kGeluScale * (1.0f + 3.0f * kGeluCubic * x * x);
  }
}

// out = act(gate) up, or (Backward) dgate += dout up act'(gate), dup += dout act(gate).
template <GluActivation Kind, bool Backward>
inline void gluRange(const float* gate, const float* up, const float* dout, float* out, float* dgate, float* dup,
                     int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    float value, slope;
    activation<Kind>(gate[i], &value, &slope);
    if (!Backward) {
      out[i] = value * up[i];
    } else {
      if (dgate) dgate[i] += dout[i] * up[i] * slope;
      if (dup) dup[i] += dout[i] * value;
    }
  }
}

#if FUSEDPO_X86_KERNELS
template <GluActivation Kind, bool Backward>
__attribute__((flatten)) FUSEDPO_TARGET_AVX512 void gluRangeAvx512(const float* gate, const float* up, const float* dout, float* out,
                                                                   float* dgate, float* dup, int64_t begin, int64_t end) {
  gluRange<Kind, Backward>(gate, up, dout, out, dgate, dup, begin, end);
}
template <GluActivation Kind, bool Backward>
__attribute__((flatten)) FUSEDPO_TARGET_AVX2 void gluRangeAvx2(const float* gate, const float* up, const float* dout, float* out,
                                                               float* dgate, float* dup, int64_t begin, int64_t end) {
  gluRange<Kind, Backward>(gate, up, dout, out, dgate, dup, begin, end);
}
#endif

template <GluActivation Kind, bool Backward>
void gluDispatch(const float* gate, const float* up, const float* dout, float* out, float* dgate, float* dup, int64_t count) {
  [[maybe_unused]] const bool avx512 = cpu::avx512Active(), avx2 = cpu::avx2Active();
  auto body = [&](int64_t begin, int64_t end) {
#if FUSEDPO_X86_KERNELS
    if (avx512) return gluRangeAvx512<Kind, Backward>(gate, up, dout, out, dgate, dup, begin, end);
    if (avx2) return gluRangeAvx2<Kind, Backward>(gate, up, dout, out, dgate, dup, begin, end);
#endif
    gluRange<Kind, Backward>(gate, up, dout, out, dgate, dup, begin, end);
  };
  cpu::parallelForWork(count, 8, body);
}

}  // namespace

void gluForward(Impl impl, const float* gate, const float* up, float* out, int64_t count, GluActivation activation) {
  if (impl == Impl::Reference) return referenceGluForward(gate, up, out, count, activation);
  if (activation == GluActivation::Silu) return gluDispatch<GluActivation::Silu, false>(gate, up, nullptr, out, nullptr, nullptr, count);
  gluDispatch<GluActivation::GeluTanh, false>(gate, up, nullptr, out, nullptr, nullptr, count);
}

void gluBackward(Impl impl, const float* gate, const float* up, const float* dout, float* dgate, float* dup, int64_t count,
                 GluActivation activation) {
  if (impl == Impl::Reference) return referenceGluBackward(gate, up, dout, dgate, dup, count, activation);
  if (activation == GluActivation::Silu) return gluDispatch<GluActivation::Silu, true>(gate, up, dout, nullptr, dgate, dup, count);
  gluDispatch<GluActivation::GeluTanh, true>(gate, up, dout, nullptr, dgate, dup, count);
}

}  // namespace fusedpo
