// parallelFor for the GPT's small ops: waking the pool's workers costs tens of microseconds, more
// than a 1024 x 256 layernorm or bias add takes on one core, so work below kMinParallelWork
// element-visits runs inline on the calling thread. Every op splits its work so that no result
// depends on the split, so this choice never changes a bit.
#pragma once

#include <cstdint>

#include "thread_pool.h"

namespace fusedpo::cpu {

constexpr int64_t kMinParallelWork = int64_t(1) << 19;

// body(begin, end) over [0, count), where one item costs about workPerItem element-visits.
template <class Body>
void parallelForWork(int64_t count, int64_t workPerItem, Body& body) {
  if (count * workPerItem < kMinParallelWork) {
    if (count > 0) body(int64_t(0), count);
    return;
  }
  parallelFor(count, body);
}

}  // namespace fusedpo::cpu
