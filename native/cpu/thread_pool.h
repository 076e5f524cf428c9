// The package's own thread pool: setThreadCount(n) keeps n - 1 worker threads, and parallelFor
// splits [0, count) into n static contiguous chunks, chunk 0 running on the calling thread.
// A chunk's bounds depend only on count and n, and the kernels compute every token row on its
// own, so results are bit-identical whatever n is.
//
// Calls are serialized: one parallelFor runs at a time (two Node worker threads may call in at
// once; the second waits). A parallelFor issued from inside a chunk runs inline on that thread.
// No global constructor: the pool is created at first use and never destroyed (its idle workers
// sleep on a condition variable until the process exits).
#pragma once

#include <cstdint>

namespace fusedpo::cpu {

using RangeTask = void (*)(void* context, int64_t begin, int64_t end);

void parallelFor(int64_t count, RangeTask task, void* context);

// parallelFor(count, [&](int64_t begin, int64_t end) { ... }).
template <class Body>
void parallelFor(int64_t count, Body& body) {
  parallelFor(
      count,
      [](void* context, int64_t begin, int64_t end) { (*static_cast<Body*>(context))(begin, end); },
      &body);
}

}  // namespace fusedpo::cpu
