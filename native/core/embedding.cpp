// The plain reference of embedding.h. Shapes there.
#include "embedding.h"

namespace fusedpo {

void referenceEmbeddingForward(const int32_t* idx, const float* table, float* out, int64_t count,
                               int64_t channels) {
  for (int64_t i = 0; i < count; ++i) {
    const float* row = table + int64_t(idx[i]) * channels;
    for (int64_t c = 0; c < channels; ++c) out[i * channels + c] = row[c];
  }
}

void referenceEmbeddingBackward(const int32_t* idx, const float* dout, float* dtable, int64_t count,
                                int64_t channels) {
  for (int64_t i = 0; i < count; ++i) {
    float* drow = dtable + int64_t(idx[i]) * channels;
    for (int64_t c = 0; c < channels; ++c) drow[c] += dout[i * channels + c];
  }
}

}  // namespace fusedpo
