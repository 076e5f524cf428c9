// See host_memory.h.
#include "cpu/host_memory.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(_WIN32)
#include <malloc.h>  // _aligned_malloc: MSVC's C library has no aligned_alloc
#endif

namespace fusedpo {

namespace {
constexpr size_t kMappedFrom = size_t(1) << 16;
constexpr size_t kAlignment = 64;
}  // namespace

// Under AddressSanitizer every allocation goes through the C library, which it instruments:
// an access one byte past a tensor, or after it was freed, is then reported.
#if defined(__linux__) && !defined(__SANITIZE_ADDRESS__)
#define FUSEDPO_MAP_LARGE 1
#endif

void* allocateHostMemory(size_t bytes) {
#if defined(FUSEDPO_MAP_LARGE)
  if (bytes >= kMappedFrom) {
    void* data = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (data == MAP_FAILED) return nullptr;
    adviseHugePages(data, bytes);
    return data;  // the kernel zero-fills on first touch
  }
#endif
  const size_t rounded = bytes == 0 ? kAlignment : (bytes + kAlignment - 1) / kAlignment * kAlignment;
#if defined(_WIN32)
  void* data = _aligned_malloc(rounded, kAlignment);
#else
  void* data = std::aligned_alloc(kAlignment, rounded);
#endif
  if (data != nullptr) std::memset(data, 0, rounded);
  return data;
}

void freeHostMemory(void* data, size_t bytes) {
  if (data == nullptr) return;
#if defined(FUSEDPO_MAP_LARGE)
  if (bytes >= kMappedFrom) {
    munmap(data, bytes);
    return;
  }
#endif
#if defined(_WIN32)
  _aligned_free(data);
#else
  std::free(data);
#endif
}

void adviseHugePages(void* data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHugePage = uintptr_t(1) << 21;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHugePage - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

}  // namespace fusedpo
