// The machine's streaming memory bandwidth, measured by the addon itself on its own thread pool:
// the floor `fusedpo bench` sets the fused loss against (3 passes over the logits: the forward
// pass reads them once, the backward pass reads them again and writes dlogits), so that a user
// of the installed package needs no compiler and no benchmark sources.
//
// Two passes over buffers far larger than the last-level cache, each split into `threads`
// contiguous parts that run at once (one part per pool thread, the parts first touched by the
// thread that later streams them):
// - read: the sum of a buffer of floats (16 independent partial sums per thread, so the loop is
//   bound by memory, not by the latency of one addition; the sums are returned, so the loop
//   cannot be optimized away);
// - read+write: b[i] = 1.5f * a[i], into a second buffer of the same size.
// Each pass is repeated; the fastest run counts (the machine's capability, not its noise).
#pragma once

#include <cstddef>

namespace fusedpo {

struct MemoryBandwidth {
  double readSeconds;       // the fastest read pass over `bytes`
  double readWriteSeconds;  // the fastest copy pass: `bytes` read and `bytes` written
  double checksum;          // the sums of the read passes and a few copied values
  size_t bytes;             // the bytes of each buffer, as used (rounded down to whole blocks)
};

// Two buffers of `bytes` each (at least kMinBandwidthBytes), `threads` parts (1 to the pool's
// size: more would run one after another), `repeats` >= 1 runs of each pass. Throws
// std::bad_alloc when the buffers cannot be had. The caller checks the arguments.
constexpr size_t kMinBandwidthBytes = size_t(1) << 20;
MemoryBandwidth measureMemoryBandwidth(size_t bytes, int threads, int repeats);

// The machine's physical memory in bytes (0 when it cannot be told).
double physicalMemoryBytes();

}  // namespace fusedpo
