// See memory_bandwidth.h. Vectors of the baseline instruction set (SSE2 on x86-64, NEON on
// arm64): a stream from memory goes no faster with wider vectors, and 32 floats summed in eight
// independent vectors keep each thread far ahead of what memory delivers to it.
#include "cpu/memory_bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "cpu/thread_pool.h"

#if defined(_WIN32)
#include <malloc.h>
#define NOMINMAX
#include <windows.h>
#else
#include <unistd.h>
#endif

namespace fusedpo {
namespace {

constexpr size_t kLanes = 16;        // floats summed independently by one thread
constexpr size_t kBlock = 2 * kLanes;  // floats per block: 128 bytes, two cache lines

// Memory from the C library, not touched here: its pages are faulted in by the threads that
// stream them. Not advised onto huge pages (cpu/host_memory.h does that for tensors): the
// logits a user passes in are ordinary arrays, and where the OS compacts memory to find huge
// pages on demand, the advice costs seconds here.
class Buffer {
 public:
  explicit Buffer(size_t bytes) {
#if defined(_WIN32)
    data_ = static_cast<float*>(_aligned_malloc(bytes, kAlignment));
#else
    data_ = static_cast<float*>(std::aligned_alloc(kAlignment, bytes));
#endif
    if (data_ == nullptr) throw std::bad_alloc();
  }
  ~Buffer() {
#if defined(_WIN32)
    _aligned_free(data_);
#else
    std::free(data_);
#endif
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  float* data() const { return data_; }

 private:
  static constexpr size_t kAlignment = 128;  // a block; bytes is a whole number of blocks
  float* data_ = nullptr;
};

// Part `k` of `parts` over `blocks` blocks, in floats: [begin, end).
struct Part {
  size_t begin, end;
};
Part partOf(size_t blocks, int64_t k, int64_t parts) {
  return {blocks * size_t(k) / size_t(parts) * kBlock, blocks * size_t(k + 1) / size_t(parts) * kBlock};
}

#if defined(__GNUC__) || defined(__clang__)
// Eight vectors of four floats summed independently (GCC's and Clang's vector extension: SSE2
// on x86-64, NEON on arm64); the compiler keeps them in registers.
typedef float Vec4 __attribute__((vector_size(16)));

float sumPart(const float* a, size_t begin, size_t end) {
  constexpr size_t kVectors = kBlock / 4;
  Vec4 lanes[kVectors] = {};
  for (size_t i = begin; i < end; i += kBlock) {
    for (size_t j = 0; j < kVectors; ++j) {
      Vec4 v;
      std::memcpy(&v, a + i + 4 * j, sizeof v);
      lanes[j] += v;
    }
  }
  float sum = 0;
  for (size_t j = 0; j < kVectors; ++j) sum += lanes[j][0] + lanes[j][1] + lanes[j][2] + lanes[j][3];
  return sum;
}
#else
float sumPart(const float* a, size_t begin, size_t end) {
  float lanes[kLanes] = {};
  for (size_t i = begin; i < end; i += kBlock) {
    const float* p = a + i;
    for (size_t j = 0; j < kLanes; ++j) lanes[j] += p[j];
    for (size_t j = 0; j < kLanes; ++j) lanes[j] += p[kLanes + j];
  }
  float sum = 0;
  for (size_t j = 0; j < kLanes; ++j) sum += lanes[j];
  return sum;
}
#endif

void scalePart(const float* __restrict a, float* __restrict b, size_t begin, size_t end) {
  for (size_t i = begin; i < end; ++i) b[i] = a[i] * 1.5f;
}

// Runs body(k) for k in [0, parts) at once, one part per pool thread (parts <= pool size).
template <class Body>
void eachPart(int parts, Body&& body) {
  auto range = [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) body(k);
  };
  cpu::parallelFor(parts, range);
}

double seconds(std::chrono::steady_clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

MemoryBandwidth measureMemoryBandwidth(size_t bytes, int threads, int repeats) {
  const size_t blocks = bytes / (kBlock * sizeof(float));
  const size_t used = blocks * kBlock * sizeof(float);
  Buffer a(used), b(used);
  float* const src = a.data();
  float* const dst = b.data();
  // First touch by the thread that streams each part (its pages land on that thread's node).
  eachPart(threads, [&](int64_t k) {
    const Part part = partOf(blocks, k, threads);
    for (size_t i = part.begin; i < part.end; ++i) {
      src[i] = float(i % 1000) * 1e-3f;
      dst[i] = 0.0f;
    }
  });

  std::vector<float> sums(size_t(threads), 0.0f);
  double checksum = 0, bestRead = 1e300, bestCopy = 1e300;
  for (int rep = 0; rep < repeats; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    eachPart(threads, [&](int64_t k) {
      const Part part = partOf(blocks, k, threads);
      sums[size_t(k)] = sumPart(src, part.begin, part.end);
    });
    bestRead = std::min(bestRead, seconds(std::chrono::steady_clock::now() - t0));
    for (float s : sums) checksum += s;

    t0 = std::chrono::steady_clock::now();
    eachPart(threads, [&](int64_t k) {
      const Part part = partOf(blocks, k, threads);
      scalePart(src, dst, part.begin, part.end);
    });
    bestCopy = std::min(bestCopy, seconds(std::chrono::steady_clock::now() - t0));
    // Read back what was written (first and last of every part): the copies are used.
    for (int64_t k = 0; k < threads; ++k) {
      const Part part = partOf(blocks, k, threads);
      if (part.end > part.begin) checksum += double(dst[part.begin]) + double(dst[part.end - 1]);
    }
  }
  return {bestRead, bestCopy, checksum, used};
}

double physicalMemoryBytes() {
#if defined(_WIN32)
  MEMORYSTATUSEX status;
  status.dwLength = sizeof status;
  return GlobalMemoryStatusEx(&status) ? double(status.ullTotalPhys) : 0.0;
#else
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long pageSize = sysconf(_SC_PAGESIZE);
  return pages > 0 && pageSize > 0 ? double(pages) * double(pageSize) : 0.0;
#endif
}

}  // namespace fusedpo
