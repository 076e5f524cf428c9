// Impl dispatch of softmax.h. Rows are split over the thread pool (each row computed whole by
// one thread: bits independent of the split). AVX-512: one max pass, one pass of exp16 (simd_exp.h)
// that stores and sums, one scaling pass; fp32 lane sums. AVX2: the same with exp8 and the
// 8-lane row primitives of vector_ops_avx2.h. Other CPUs: the reference's loops.
#include "../core/softmax.h"
#include "cpu_features.h"
#include "nn_parallel.h"
#include "vector_ops_avx2.h"
#include "vector_ops_avx512.h"

namespace fusedpo {
namespace {

#if FUSEDPO_X86_KERNELS
FUSEDPO_TARGET_AVX512 void softmaxRowsAvx512(const float* inp, float* out, int64_t begin, int64_t end,
                                             int64_t cols) {
  for (int64_t r = begin; r < end; ++r) {
    const float* x = inp + r * cols;
    float* y = out + r * cols;
    const float max = cpu::max16(cols, x);
    const float sum = cpu::expShifted16(cols, x, max, y);
    cpu::scale16(cols, 1.0f / sum, y);
  }
}

FUSEDPO_TARGET_AVX512 void softmaxBackwardRowsAvx512(const float* out, const float* dout, float* dinp,
                                                     int64_t begin, int64_t end, int64_t cols) {
  for (int64_t r = begin; r < end; ++r) {
    const float* y = out + r * cols;
    const float* dy = dout + r * cols;
    float* dx = dinp + r * cols;
    const __m512 dot = _mm512_set1_ps(cpu::dot16(cols, y, dy));
    for (int64_t c = 0; c < cols; c += 16) {
      const __mmask16 m = cpu::tailMask(cols - c);
      const __m512 g = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, y + c), _mm512_sub_ps(_mm512_maskz_loadu_ps(m, dy + c), dot));
      _mm512_mask_storeu_ps(dx + c, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, dx + c), g));
    }
  }
}

FUSEDPO_TARGET_AVX2 void softmaxRowsAvx2(const float* inp, float* out, int64_t begin, int64_t end, int64_t cols) {
  for (int64_t r = begin; r < end; ++r) {
    const float* x = inp + r * cols;
    float* y = out + r * cols;
    const float max = cpu::max8(cols, x);
    const float sum = cpu::expShifted8(cols, x, max, y);
    cpu::scale8(cols, 1.0f / sum, y);
  }
}

FUSEDPO_TARGET_AVX2 void softmaxBackwardRowsAvx2(const float* out, const float* dout, float* dinp, int64_t begin,
                                                 int64_t end, int64_t cols) {
  for (int64_t r = begin; r < end; ++r) {
    const float* y = out + r * cols;
    const float* dy = dout + r * cols;
    float* dx = dinp + r * cols;
    const __m256 dot = _mm256_set1_ps(cpu::dot8(cols, y, dy));
    for (int64_t c = 0; c < cols; c += 8) {
      const int64_t left = cols - c;
      const __m256 g = _mm256_mul_ps(cpu::loadUpTo8(y + c, left), _mm256_sub_ps(cpu::loadUpTo8(dy + c, left), dot));
      cpu::storeUpTo8(dx + c, left, _mm256_add_ps(cpu::loadUpTo8(dx + c, left), g));
    }
  }
}
#endif

}  // namespace

void softmaxForward(Impl impl, const float* inp, float* out, int64_t rows, int64_t cols) {
  if (impl == Impl::Reference) return referenceSoftmaxForward(inp, out, rows, cols);
  [[maybe_unused]] const bool avx512 = cpu::avx512Active(), avx2 = cpu::avx2Active();
  auto body = [&](int64_t begin, int64_t end) {
#if FUSEDPO_X86_KERNELS
    if (avx512) return softmaxRowsAvx512(inp, out, begin, end, cols);
    if (avx2) return softmaxRowsAvx2(inp, out, begin, end, cols);
#endif
    referenceSoftmaxForward(inp + begin * cols, out + begin * cols, end - begin, cols);
  };
  cpu::parallelForWork(rows, 2 * cols, body);
}

void softmaxBackward(Impl impl, const float* out, const float* dout, float* dinp, int64_t rows,
                     int64_t cols) {
  if (impl == Impl::Reference) return referenceSoftmaxBackward(out, dout, dinp, rows, cols);
  [[maybe_unused]] const bool avx512 = cpu::avx512Active(), avx2 = cpu::avx2Active();
  auto body = [&](int64_t begin, int64_t end) {
#if FUSEDPO_X86_KERNELS
    if (avx512) return softmaxBackwardRowsAvx512(out, dout, dinp, begin, end, cols);
    if (avx2) return softmaxBackwardRowsAvx2(out, dout, dinp, begin, end, cols);
#endif
    referenceSoftmaxBackward(out + begin * cols, dout + begin * cols, dinp + begin * cols, end - begin, cols);
  };
  cpu::parallelForWork(rows, 2 * cols, body);
}

}  // namespace fusedpo
