// The register-blocked microkernels of matmul's fast path, one per SIMD level, and the blocking
// each is driven with (cpu/matmul.cpp packs the panels and splits the work over threads).
//
// A microkernel computes one MR x NR tile of C from packed panels over kc steps:
//   packedA [kc, MR]  column p holds op(A)[i0 .. i0+MR-1, p0+p]  (rows past M are zeros)
//   packedB [kc, NR]  row p holds    op(B)[p0+p, j0 .. j0+NR-1]  (columns past N are zeros)
//   c       [MR, NR]  row stride ldc; c = sum (add = false) or c += sum (add = true), where
//                     sum[r][j] = sum over p = 0..kc-1, in order, of packedA[p][r] * packedB[p][j]
// Every lane's sum is its own chain in p, so a tile element's bits do not depend on where the
// tile sits, on the padding around it, or on which thread runs it.
#pragma once

#include <cstdint>

#include "cpu_features.h"

namespace fusedpo::cpu {

using MatmulMicrokernel = void (*)(int64_t kc, const float* packedA, const float* packedB,
                                   float* c, int64_t ldc, bool add);

struct MatmulKernel {
  MatmulMicrokernel tile;
  int MR, NR;
  // KC fixes where the sum over K is split (and so the result's bits); MC only sizes the packed
  // blocks of A (an MC x KC block stays in L2 while the KC x NR panels of B stream past it).
  // Both were measured, not derived: on the Zen 5 development VM (48 KiB L1, 1 MiB L2) KC 512
  // and MC 96 beat the textbook KC 256 (B panel in L1) by 5-10% on K >= 768 for AVX-512 and
  // AVX2: fewer passes over C and over packed A per flop.
  int64_t KC, MC;
};

MatmulKernel matmulKernelGeneric();
#if FUSEDPO_X86_KERNELS
MatmulKernel matmulKernelAvx2();
MatmulKernel matmulKernelAvx512();
#endif

}  // namespace fusedpo::cpu
