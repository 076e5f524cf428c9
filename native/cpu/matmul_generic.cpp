// matmul's microkernel in plain C++ for CPUs without AVX2, and for builds without the x86
// kernels (aarch64, MSVC); see matmul_kernels.h for the contract. The tile is written as loops
// over 8 independent columns so that compilers vectorize it with what the baseline target has
// (SSE2: 4 x 2 accumulators of 4 lanes, NEON likewise). Multiply, then add: no FMA here.
#include "matmul_kernels.h"

namespace fusedpo::cpu {
namespace {

constexpr int kRows = 4;     // MR
constexpr int kColumns = 8;  // NR

void tile4x8(int64_t kc, const float* packedA, const float* packedB, float* c, int64_t ldc,
             bool add) {
  float sum[kRows][kColumns] = {};
  for (int64_t p = 0; p < kc; ++p) {
    for (int r = 0; r < kRows; ++r) {
      const float a = packedA[r];
      for (int j = 0; j < kColumns; ++j) sum[r][j] += a * packedB[j];
    }
    packedA += kRows;
    packedB += kColumns;
  }
  for (int r = 0; r < kRows; ++r) {
    float* row = c + r * ldc;
    for (int j = 0; j < kColumns; ++j) row[j] = add ? row[j] + sum[r][j] : sum[r][j];
  }
}

}  // namespace

MatmulKernel matmulKernelGeneric() { return {tile4x8, kRows, kColumns, 256, 128}; }

}  // namespace fusedpo::cpu
