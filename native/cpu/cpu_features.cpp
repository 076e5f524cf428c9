// CPU feature detection for the runtime SIMD dispatch (see cpu_features.h). x86-64 only: cpuid
// leaves 1 and 7, and xgetbv for the register state the OS saves (an AVX-512 CPU under an OS
// that does not save zmm state must not run AVX-512 code). Elsewhere the level is Generic.
#include "cpu_features.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "../core/preference_loss.h"

#if defined(__x86_64__) || defined(_M_X64)
#if defined(_MSC_VER)
#include <immintrin.h>
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#endif

namespace fusedpo::cpu {
namespace {

struct CpuFeatures {
  bool sse42 = false, avx = false, avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512bf16 = false;
  SimdLevel level = SimdLevel::Generic;
  std::string names;
};

#if defined(__x86_64__) || defined(_M_X64)
void cpuidCount(unsigned leaf, unsigned subleaf, unsigned regs[4]) {
#if defined(_MSC_VER)
  int r[4];
  __cpuidex(r, int(leaf), int(subleaf));
  for (int i = 0; i < 4; ++i) regs[i] = unsigned(r[i]);
#else
  __cpuid_count(leaf, subleaf, regs[0], regs[1], regs[2], regs[3]);
#endif
}

unsigned long long readXcr0() {
#if defined(_MSC_VER)
  return _xgetbv(0);
#else
  unsigned eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
#endif
}
#endif

CpuFeatures detect() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(_M_X64)
  unsigned regs[4] = {0, 0, 0, 0};
  cpuidCount(0, 0, regs);
  const unsigned maxLeaf = regs[0];
  cpuidCount(1, 0, regs);
  const unsigned ecx1 = regs[2];
  f.sse42 = (ecx1 >> 20) & 1;
  const bool osxsave = (ecx1 >> 27) & 1;
  // XCR0 bits: 1 SSE, 2 AVX (ymm upper halves); 5, 6, 7 the AVX-512 opmask and zmm state.
  const unsigned long long xcr0 = osxsave ? readXcr0() : 0;
  const bool osAvx = (xcr0 & 0x6) == 0x6;
  const bool osAvx512 = (xcr0 & 0xe6) == 0xe6;
  f.avx = osAvx && ((ecx1 >> 28) & 1);
  f.fma = f.avx && ((ecx1 >> 12) & 1);
  f.f16c = f.avx && ((ecx1 >> 29) & 1);
  if (maxLeaf >= 7) {
    cpuidCount(7, 0, regs);
    const unsigned ebx7 = regs[1];
    f.avx2 = f.avx && ((ebx7 >> 5) & 1);
    f.avx512f = osAvx512 && ((ebx7 >> 16) & 1);
    f.avx512dq = f.avx512f && ((ebx7 >> 17) & 1);
    f.avx512bw = f.avx512f && ((ebx7 >> 30) & 1);
    f.avx512vl = f.avx512f && ((ebx7 >> 31) & 1);
    cpuidCount(7, 1, regs);
    f.avx512bf16 = f.avx512f && ((regs[0] >> 5) & 1);
  }
#endif
  const struct {
    bool present;
    const char* name;
  } list[] = {{f.sse42, "sse4.2"},     {f.avx, "avx"},           {f.avx2, "avx2"},
              {f.fma, "fma"},          {f.f16c, "f16c"},         {f.avx512f, "avx512f"},
              {f.avx512bw, "avx512bw"}, {f.avx512vl, "avx512vl"}, {f.avx512dq, "avx512dq"},
              {f.avx512bf16, "avx512bf16"}};
  for (const auto& feature : list) {
    if (!feature.present) continue;
    if (!f.names.empty()) f.names += ' ';
    f.names += feature.name;
  }
  if (FUSEDPO_X86_KERNELS && f.avx2 && f.fma && f.f16c) f.level = SimdLevel::Avx2;
  if (f.level == SimdLevel::Avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq) {
    f.level = SimdLevel::Avx512;
  }
  return f;
}

// Detected on first use (a function-local static: thread-safe, no global constructor).
const CpuFeatures& features() {
  static const CpuFeatures detected = detect();
  return detected;
}

SimdLevel capFromEnvironment(SimdLevel level) {
  const char* cap = std::getenv("FUSEDPO_SIMD");
  if (cap == nullptr) return level;
  SimdLevel wanted = level;
  if (std::strcmp(cap, "generic") == 0) wanted = SimdLevel::Generic;
  if (std::strcmp(cap, "avx2") == 0) wanted = SimdLevel::Avx2;
  if (std::strcmp(cap, "avx512") == 0) wanted = SimdLevel::Avx512;
  return static_cast<int>(wanted) < static_cast<int>(level) ? wanted : level;
}

}  // namespace

SimdLevel detectedSimdLevel() { return features().level; }

SimdLevel activeSimdLevel() {
  static const SimdLevel active = capFromEnvironment(detectedSimdLevel());
  return active;
}

const char* simdLevelName(SimdLevel level) {
  switch (level) {
    case SimdLevel::Avx512: return "avx512";
    case SimdLevel::Avx2: return "avx2";
    case SimdLevel::Generic: break;
  }
  return "generic";
}

}  // namespace fusedpo::cpu

namespace fusedpo {

const char* simdLevel() { return cpu::simdLevelName(cpu::activeSimdLevel()); }

const char* cpuFeatures() { return cpu::features().names.c_str(); }

}  // namespace fusedpo
