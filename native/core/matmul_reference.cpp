// The plain scalar spec of matmul (core/matmul.h): the fast kernels are tested against it.
//
//   A[b] [M, K] or [K, M] (transA)   B[b] [K, N] or [N, K] (transB)   C[b] [M, N]
//
// Every C element is one fp32 sum over p = 0..K-1 in order, started at 0, and then written
// (or added to C when accumulating). No blocking, no vectors, no threads.
#include "matmul.h"

namespace fusedpo {

void referenceMatmul(const float* A, const float* B, float* C, const MatmulShape& shape,
                     bool accumulate) {
  const int64_t M = shape.M, N = shape.N, K = shape.K;
  for (int64_t b = 0; b < shape.batch; ++b) {
    const float* a = A + b * shape.strideA;
    const float* bm = B + b * shape.strideB;
    float* c = C + b * shape.strideC;
    for (int64_t i = 0; i < M; ++i) {
      for (int64_t j = 0; j < N; ++j) {
        float sum = 0.0f;
        for (int64_t p = 0; p < K; ++p) {
          const float aip = shape.transA ? a[p * M + i] : a[i * K + p];
          const float bpj = shape.transB ? bm[j * K + p] : bm[p * N + j];
          sum += aip * bpj;
        }
        c[i * N + j] = accumulate ? c[i * N + j] + sum : sum;
      }
    }
  }
}

}  // namespace fusedpo
