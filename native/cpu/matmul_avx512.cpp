// matmul's microkernel with AVX-512F, 16 fp32 lanes (see matmul_kernels.h for the contract).
// Compiled for baseline x86-64: every function here carries FUSEDPO_TARGET_AVX512 and runs only
// after the runtime dispatch checked the CPU (cpu_features.cpp).
//
// Tile 12 x 32: 24 zmm accumulators (12 rows x 2 vectors of 16 columns), 2 for the row of B
// and 1 for the broadcast element of A, out of 32 registers. Per step p: 2 loads of B,
// 12 broadcasts of A and 24 FMAs: enough independent chains to keep both FMA pipes busy
// through their 4-cycle latency, and 2 loads + 12 broadcasts per 24 FMAs is well within
// the load ports.
#include "cpu_features.h"

#if FUSEDPO_X86_KERNELS

#include "matmul_kernels.h"
#include "simd_exp.h"  // the intrinsics, FUSEDPO_TARGET_AVX512

namespace fusedpo::cpu {
namespace {

constexpr int kRows = 12;     // MR
constexpr int kColumns = 32;  // NR: two vectors

FUSEDPO_TARGET_AVX512 void tile12x32(int64_t kc, const float* packedA, const float* packedB,
                                     float* c, int64_t ldc, bool add) {
  __m512 left[kRows], right[kRows];
#pragma GCC unroll 12
  for (int r = 0; r < kRows; ++r) {
    left[r] = _mm512_setzero_ps();
    right[r] = _mm512_setzero_ps();
  }
  for (int64_t p = 0; p < kc; ++p) {
    const __m512 b0 = _mm512_load_ps(packedB);
    const __m512 b1 = _mm512_load_ps(packedB + 16);
#pragma GCC unroll 12
    for (int r = 0; r < kRows; ++r) {
      const __m512 a = _mm512_set1_ps(packedA[r]);
      left[r] = _mm512_fmadd_ps(a, b0, left[r]);
      right[r] = _mm512_fmadd_ps(a, b1, right[r]);
    }
    packedA += kRows;
    packedB += kColumns;
  }
#pragma GCC unroll 12
  for (int r = 0; r < kRows; ++r) {
    float* row = c + r * ldc;
    if (add) {
      left[r] = _mm512_add_ps(_mm512_loadu_ps(row), left[r]);
      right[r] = _mm512_add_ps(_mm512_loadu_ps(row + 16), right[r]);
    }
    _mm512_storeu_ps(row, left[r]);
    _mm512_storeu_ps(row + 16, right[r]);
  }
}

}  // namespace

MatmulKernel matmulKernelAvx512() { return {tile12x32, kRows, kColumns, 512, 96}; }

}  // namespace fusedpo::cpu

#endif  // FUSEDPO_X86_KERNELS
