// Which SIMD path Impl::Fast takes. Detected once, at first use, from cpuid and from the state
// the operating system enables (xgetbv), then capped by the environment variable FUSEDPO_SIMD
// (avx512 | avx2 | generic; any other value is ignored here, lib/ validates it).
#pragma once

// The AVX2 and AVX-512 kernels are built on x86-64 with GCC or Clang (they use
// __attribute__((target))); elsewhere only the generic kernels exist and the level is Generic.
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define FUSEDPO_X86_KERNELS 1
#else
#define FUSEDPO_X86_KERNELS 0
#endif

namespace fusedpo::cpu {

enum class SimdLevel : int { Generic = 0, Avx2 = 1, Avx512 = 2 };

// The best level this CPU and OS support: Avx2 needs avx2, fma and f16c; Avx512 needs avx512f,
// avx512bw, avx512vl and avx512dq besides.
SimdLevel detectedSimdLevel();
// detectedSimdLevel() capped by FUSEDPO_SIMD: the level the kernels use.
SimdLevel activeSimdLevel();
const char* simdLevelName(SimdLevel level);

// Whether the AVX-512 kernels are the ones to run.
inline bool avx512Active() {
#if FUSEDPO_X86_KERNELS
  return activeSimdLevel() == SimdLevel::Avx512;
#else
  return false;
#endif
}

// Whether AVX2 kernels may run: the active level is Avx2 or higher. An op with both kernels
// checks avx512Active() first.
inline bool avx2Active() {
#if FUSEDPO_X86_KERNELS
  return static_cast<int>(activeSimdLevel()) >= static_cast<int>(SimdLevel::Avx2);
#else
  return false;
#endif
}

}  // namespace fusedpo::cpu
