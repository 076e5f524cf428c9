// Impl dispatch of embedding.h. Forward copies rows, split over the pool by index. Backward
// splits the channels: each thread adds the dout rows, in index order, into its own columns of
// dtable, so repeated indices never race and the bits are the reference's for any thread count.
#include "../core/embedding.h"
#include "nn_parallel.h"

namespace fusedpo {

void embeddingForward(Impl impl, const int32_t* idx, const float* table, float* out, int64_t count,
                      int64_t channels) {
  if (impl == Impl::Reference) return referenceEmbeddingForward(idx, table, out, count, channels);
  auto rows = [&](int64_t begin, int64_t end) {
    referenceEmbeddingForward(idx + begin, table, out + begin * channels, end - begin, channels);
  };
  cpu::parallelForWork(count, channels, rows);
}

void embeddingBackward(Impl impl, const int32_t* idx, const float* dout, float* dtable,
                       int64_t count, int64_t channels) {
  if (impl == Impl::Reference) return referenceEmbeddingBackward(idx, dout, dtable, count, channels);
  auto columns = [&](int64_t c0, int64_t c1) {
    for (int64_t i = 0; i < count; ++i) {
      float* drow = dtable + int64_t(idx[i]) * channels;
      const float* g = dout + i * channels;
      for (int64_t c = c0; c < c1; ++c) drow[c] += g[c];
    }
  };
  cpu::parallelForWork(channels, count, columns);
}

}  // namespace fusedpo
