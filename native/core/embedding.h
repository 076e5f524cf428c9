// Embedding lookup (GPT-2's token and position tables), forward and backward, f32.
//
//   idx        [count]            int32 in [0, vocab): lib/ops validates it, kernels trust it
//   table      [vocab, channels]  dtable the same
//   out, dout  [count, channels]
//
// Forward: out[i,:] = table[idx[i],:]. Backward scatter-adds: dtable[idx[i],:] += dout[i,:].
// Rows that share an index add up in index order i = 0, 1, ...; the fast path splits the
// channels (never the indices) over threads, so its bits are the reference's for any thread
// count.
#pragma once

#include <cstdint>

#include "preference_loss.h"  // Impl

namespace fusedpo {

void embeddingForward(Impl impl, const int32_t* idx, const float* table, float* out, int64_t count,
                      int64_t channels);
void embeddingBackward(Impl impl, const int32_t* idx, const float* dout, float* dtable,
                       int64_t count, int64_t channels);

// The plain reference, embedding.cpp.
void referenceEmbeddingForward(const int32_t* idx, const float* table, float* out, int64_t count,
                               int64_t channels);
void referenceEmbeddingBackward(const int32_t* idx, const float* dout, float* dtable, int64_t count,
                                int64_t channels);

}  // namespace fusedpo
