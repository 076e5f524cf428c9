// FUSEDPO_HD marks a function that both g++ (host) and nvcc (host and device) compile: the
// per-pair loss formulas and the 16-bit float conversions are written once for the CPU and the
// GPU kernels.
#pragma once

#if defined(__CUDACC__)
#define FUSEDPO_HD __host__ __device__
#else
#define FUSEDPO_HD
#endif
