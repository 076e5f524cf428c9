// matmul's microkernel with AVX2 + FMA, 8 fp32 lanes (see matmul_kernels.h for the contract).
// Compiled for baseline x86-64: every function here carries FUSEDPO_TARGET_AVX2 and runs only
// after the runtime dispatch checked the CPU (cpu_features.cpp).
//
// Tile 6 x 16: 12 ymm accumulators (6 rows x 2 vectors of 8 columns), 2 for the row of B and
// 1 for the broadcast element of A, out of 16 registers (the classic Haswell shape).
#include "cpu_features.h"

#if FUSEDPO_X86_KERNELS

#include "matmul_kernels.h"
#include "simd_exp.h"  // the intrinsics, FUSEDPO_TARGET_AVX2

namespace fusedpo::cpu {
namespace {

constexpr int kRows = 6;      // MR
constexpr int kColumns = 16;  // NR: two vectors

FUSEDPO_TARGET_AVX2 void tile6x16(int64_t kc, const float* packedA, const float* packedB,
                                  float* c, int64_t ldc, bool add) {
  __m256 left[kRows], right[kRows];
#pragma GCC unroll 6
  for (int r = 0; r < kRows; ++r) {
    left[r] = _mm256_setzero_ps();
    right[r] = _mm256_setzero_ps();
  }
  for (int64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_load_ps(packedB);
    const __m256 b1 = _mm256_load_ps(packedB + 8);
#pragma GCC unroll 6
    for (int r = 0; r < kRows; ++r) {
      const __m256 a = _mm256_broadcast_ss(packedA + r);
      left[r] = _mm256_fmadd_ps(a, b0, left[r]);
      right[r] = _mm256_fmadd_ps(a, b1, right[r]);
    }
    packedA += kRows;
    packedB += kColumns;
  }
#pragma GCC unroll 6
  for (int r = 0; r < kRows; ++r) {
    float* row = c + r * ldc;
    if (add) {
      left[r] = _mm256_add_ps(_mm256_loadu_ps(row), left[r]);
      right[r] = _mm256_add_ps(_mm256_loadu_ps(row + 8), right[r]);
    }
    _mm256_storeu_ps(row, left[r]);
    _mm256_storeu_ps(row + 8, right[r]);
  }
}

}  // namespace

MatmulKernel matmulKernelAvx2() { return {tile6x16, kRows, kColumns, 512, 96}; }

}  // namespace fusedpo::cpu

#endif  // FUSEDPO_X86_KERNELS
