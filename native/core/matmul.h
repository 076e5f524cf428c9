// The contract of the f32 matrix multiply behind every linear layer and attention product of the
// CPU training path. Plain C++17: no Node-API here.
//
//   C[b] = op(A[b]) @ op(B[b])        (accumulate = false: C[b] is overwritten)
//   C[b] += op(A[b]) @ op(B[b])       (accumulate = true: gradients summed into C)
//
// Shapes (row-major f32, each matrix contiguous):
//   op(A[b])  [M, K]   A[b] stored [M, K], or [K, M] when transA
//   op(B[b])  [K, N]   B[b] stored [K, N], or [N, K] when transB
//   C[b]      [M, N]
//   A[b] = A + b * strideA, B[b] = B + b * strideB, C[b] = C + b * strideC (in elements);
//   a stride of 0 broadcasts one matrix over the batch (a weight shared by every head).
// A linear layer y = x @ W^T (W stored [out, in]) uses all four combinations:
//   forward  y  = x @ W^T     transB
//   backward dx = dy @ W      neither
//            dW = dy^T @ x    transA  (accumulate = true to sum over micro-batches)
//
// K = 0 gives C = 0 (or leaves C as it is when accumulating). C must not overlap A or B, and the
// C[b] of different b must not overlap each other (strideC = 0 with batch > 1 is refused by
// lib/ops/matmul.ts).
//
// Impl::Reference is the triple loop below (referenceMatmul): for each C element, one fp32 sum
// over p = 0..K-1 in order, then added to C when accumulating. Impl::Fast packs panels of A and
// B and runs a register-blocked kernel of the active SIMD level on the thread pool; it sums over
// K in blocks of a fixed size KC (C += each block's sum, fused multiply-adds within a block), so
// its bits differ from the reference, but they depend only on the SIMD level: every C element
// is computed by one thread in the same order, whatever the thread count, on every run.
// Nothing proportional to the matrices is allocated: packed panels (at most KC x NC of B and
// MC x KC of A per thread) live in per-thread buffers kept between calls.
#pragma once

#include <cstdint>

#include "preference_loss.h"  // Impl; setThreadCount and simdLevel pick the fast path's threads and level

namespace fusedpo {

struct MatmulShape {
  int64_t batch = 1;
  int64_t M = 0, N = 0, K = 0;
  bool transA = false, transB = false;
  int64_t strideA = 0, strideB = 0, strideC = 0;  // elements between consecutive batch matrices
};

void matmul(Impl impl, const float* A, const float* B, float* C, const MatmulShape& shape,
            bool accumulate);

// The plain spec, what Impl::Reference runs: core/matmul_reference.cpp.
void referenceMatmul(const float* A, const float* B, float* C, const MatmulShape& shape,
                     bool accumulate);

}  // namespace fusedpo
