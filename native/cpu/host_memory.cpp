// See host_memory.h.
#include "cpu/host_memory.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace fusedpo {

namespace {
constexpr size_t kMappedFrom = size_t(1) << 16;
constexpr size_t kAlignment = 64;

#if defined(__linux__)
// Mappings given back by freeHostMemory, kept for reuse: a training step makes the same sizes
// every step, and a fresh mapping costs a page fault per 4 KiB on first touch (about 3.5 ms per
// MiB measured here) where clearing a reused one costs a memset. At most kCacheBytes are kept;
// a mapping that does not fit goes back to the OS at once. Guarded by a mutex: worker threads
// load the addon into environments of their own.
constexpr size_t kCacheBytes = size_t(256) << 20;

struct MappingCache {
  std::mutex mutex;
  std::unordered_map<size_t, std::vector<void*>> bySize;
  size_t bytes = 0;
};

MappingCache& cache() {
  static MappingCache* instance = new MappingCache();  // never destroyed: safe at exit
  return *instance;
}

void* takeCached(size_t bytes) {
  MappingCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  auto found = c.bySize.find(bytes);
  if (found == c.bySize.end() || found->second.empty()) return nullptr;
  void* data = found->second.back();
  found->second.pop_back();
  c.bytes -= bytes;
  return data;
}

bool keepCached(void* data, size_t bytes) {
  MappingCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  if (c.bytes + bytes > kCacheBytes) return false;
  c.bySize[bytes].push_back(data);
  c.bytes += bytes;
  return true;
}
#endif
}  // namespace

void* allocateHostMemory(size_t bytes) {
#if defined(__linux__)
  if (bytes >= kMappedFrom) {
    if (void* reused = takeCached(bytes)) {
      std::memset(reused, 0, bytes);
      return reused;
    }
    void* data = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (data == MAP_FAILED) return nullptr;
    adviseHugePages(data, bytes);
    return data;  // the kernel zero-fills on first touch
  }
#endif
  const size_t rounded = bytes == 0 ? kAlignment : (bytes + kAlignment - 1) / kAlignment * kAlignment;
  void* data = std::aligned_alloc(kAlignment, rounded);
  if (data != nullptr) std::memset(data, 0, rounded);
  return data;
}

void freeHostMemory(void* data, size_t bytes) {
  if (data == nullptr) return;
#if defined(__linux__)
  if (bytes >= kMappedFrom) {
    if (!keepCached(data, bytes)) munmap(data, bytes);
    return;
  }
#endif
  std::free(data);
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
