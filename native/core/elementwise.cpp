// The plain reference of elementwise.h: readable loops, no threads. Shapes there.
#include "elementwise.h"

namespace fusedpo {

void referenceAddForward(const float* a, const float* b, float* out, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = a[r * cols + c] + b[c];
  }
}

void referenceAddBackward(const float* dout, float* da, float* db, int64_t rows, int64_t cols) {
  if (da != nullptr) {
    for (int64_t i = 0; i < rows * cols; ++i) da[i] += dout[i];
  }
  if (db != nullptr) {
    for (int64_t c = 0; c < cols; ++c) {
      float sum = 0.0f;
      for (int64_t r = 0; r < rows; ++r) sum += dout[r * cols + c];
      db[c] += sum;
    }
  }
}

void referenceMulForward(const float* a, const float* b, float* out, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = a[r * cols + c] * b[c];
  }
}

void referenceMulBackward(const float* a, const float* b, const float* dout, float* da, float* db,
                          int64_t rows, int64_t cols) {
  if (da != nullptr) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) da[r * cols + c] += dout[r * cols + c] * b[c];
    }
  }
  if (db != nullptr) {
    for (int64_t c = 0; c < cols; ++c) {
      float sum = 0.0f;
      for (int64_t r = 0; r < rows; ++r) sum += dout[r * cols + c] * a[r * cols + c];
      db[c] += sum;
    }
  }
}

void referenceScaleForward(const float* a, float s, float* out, int64_t count) {
  for (int64_t i = 0; i < count; ++i) out[i] = s * a[i];
}

void referenceScaleBackward(const float* dout, float s, float* da, int64_t count) {
  for (int64_t i = 0; i < count; ++i) da[i] += s * dout[i];
}

void referenceReduceLastDimForward(const float* a, float* out, int64_t rows, int64_t cols, bool mean) {
  for (int64_t r = 0; r < rows; ++r) {
    double sum = 0.0;
    for (int64_t c = 0; c < cols; ++c) sum += a[r * cols + c];
    out[r] = float(mean ? sum / double(cols) : sum);
  }
}

void referenceReduceLastDimBackward(const float* dout, float* da, int64_t rows, int64_t cols, bool mean) {
  for (int64_t r = 0; r < rows; ++r) {
    const float g = mean ? dout[r] / float(cols) : dout[r];
    for (int64_t c = 0; c < cols; ++c) da[r * cols + c] += g;
  }
}

}  // namespace fusedpo
