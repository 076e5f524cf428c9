// Large host buffers (dlogits: as large as the logits, hundreds of MB) that are cheap to touch
// for the first time. A fresh 262 MB zero-filled array from V8 costs about 0.9 s of 4 KiB page
// faults on the development machine, 60x the fused kernel itself; the same memory faulted in
// as transparent huge pages takes 2 MiB at a time (about 25 ms when the OS has them free).
#pragma once

#include <cstddef>

namespace fusedpo {

// Zero-filled host memory, 64-byte aligned, for tensors. From 64 KiB up it is a mapping of its
// own (advised onto huge pages), given back to the OS when freed: the C library's heap may keep
// freed blocks and grow instead of reusing them (a loop of 40 KB tensors grew by 1.5 GB). Reuse
// of freed tensors' memory is lib/tensor.ts's storage pool, by size class, with no native
// allocation at all in a training loop's steady state.
// Free with freeHostMemory and the same byte count. nullptr when the memory cannot be had.
void* allocateHostMemory(size_t bytes);
void freeHostMemory(void* data, size_t bytes);

// Asks the OS to back [data, data + bytes) with huge pages when first touched: a hint for the
// 2 MiB-aligned part of a range that is not yet touched (a fresh large calloc, such as a new V8
// ArrayBuffer). No effect where the OS has no such pages or is not Linux.
void adviseHugePages(void* data, size_t bytes);

}  // namespace fusedpo
