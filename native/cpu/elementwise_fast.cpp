// Impl dispatch of elementwise.h. The fast path is the reference's loops split over the thread
// pool: these ops are memory-bound, and GCC vectorizes the plain loops with the baseline SSE2.
//   elementwise:  contiguous ranges of elements
//   db (sums over rows): contiguous ranges of columns, each column summed over the rows in order
//   sums of the last dim: ranges of rows; a single long row (the sum of all elements) is cut
//   into fixed blocks of kBlock elements whose fp64 sums are added in block order
// None of these splits changes an element's arithmetic, so the bits never depend on the thread
// count; they equal the reference's except for sums of rows longer than kBlock.
#include <cstddef>
#include <vector>

#include "../core/elementwise.h"
#include "nn_parallel.h"

namespace fusedpo {
namespace {

constexpr int64_t kBlock = 4096;

// db[c] += sum_r dout[r,c] (times a[r,c] when a is given), columns [c0, c1), rows in order.
void sumOverRows(const float* dout, const float* a, float* db, int64_t rows, int64_t cols,
                 int64_t c0, int64_t c1) {
  std::vector<float> sums(std::size_t(c1 - c0), 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    const float* g = dout + r * cols;
    if (a == nullptr) {
      for (int64_t c = c0; c < c1; ++c) sums[c - c0] += g[c];
    } else {
      const float* x = a + r * cols;
      for (int64_t c = c0; c < c1; ++c) sums[c - c0] += g[c] * x[c];
    }
  }
  for (int64_t c = c0; c < c1; ++c) db[c] += sums[c - c0];
}

double blockSum(const float* x, int64_t count) {
  double sum = 0.0;
  for (int64_t i = 0; i < count; ++i) sum += x[i];
  return sum;
}

// sum_c x[c] as fp64 sums of blocks of kBlock, added in order.
double rowSum(const float* x, int64_t cols) {
  double sum = 0.0;
  for (int64_t start = 0; start < cols; start += kBlock) {
    sum += blockSum(x + start, cols - start < kBlock ? cols - start : kBlock);
  }
  return sum;
}

void reduceLastDim(const float* a, float* out, int64_t rows, int64_t cols, bool mean) {
  if (rows == 1 && cols > kBlock) {
    const int64_t blocks = (cols + kBlock - 1) / kBlock;
    std::vector<double> partial(std::size_t(blocks), 0.0);
    auto sumBlocks = [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        const int64_t start = k * kBlock;
        partial[k] = blockSum(a + start, cols - start < kBlock ? cols - start : kBlock);
      }
    };
    cpu::parallelForWork(blocks, kBlock, sumBlocks);
    double sum = 0.0;
    for (double p : partial) sum += p;
    out[0] = float(mean ? sum / double(cols) : sum);
    return;
  }
  auto sumRows = [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const double sum = rowSum(a + r * cols, cols);
      out[r] = float(mean ? sum / double(cols) : sum);
    }
  };
  cpu::parallelForWork(rows, cols, sumRows);
}

void reduceLastDimBackward(const float* dout, float* da, int64_t rows, int64_t cols, bool mean) {
  if (rows == 1) {
    const float g = mean ? dout[0] / float(cols) : dout[0];
    auto flat = [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) da[c] += g;
    };
    return cpu::parallelForWork(cols, 1, flat);
  }
  auto spread = [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float g = mean ? dout[r] / float(cols) : dout[r];
      for (int64_t c = 0; c < cols; ++c) da[r * cols + c] += g;
    }
  };
  cpu::parallelForWork(rows, cols, spread);
}

}  // namespace

void addForward(Impl impl, const float* a, const float* b, float* out, int64_t rows, int64_t cols) {
  if (impl == Impl::Reference) return referenceAddForward(a, b, out, rows, cols);
  auto body = [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = a[r * cols + c] + b[c];
    }
  };
  if (rows == 1) {
    auto flat = [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) out[c] = a[c] + b[c];
    };
    return cpu::parallelForWork(cols, 1, flat);
  }
  cpu::parallelForWork(rows, cols, body);
}

void addBackward(Impl impl, const float* dout, float* da, float* db, int64_t rows, int64_t cols) {
  if (impl == Impl::Reference) return referenceAddBackward(dout, da, db, rows, cols);
  if (da != nullptr) {
    auto body = [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) da[i] += dout[i];
    };
    cpu::parallelForWork(rows * cols, 1, body);
  }
  if (db != nullptr) {
    auto columns = [&](int64_t c0, int64_t c1) { sumOverRows(dout, nullptr, db, rows, cols, c0, c1); };
    cpu::parallelForWork(cols, rows, columns);
  }
}

void mulForward(Impl impl, const float* a, const float* b, float* out, int64_t rows, int64_t cols) {
  if (impl == Impl::Reference) return referenceMulForward(a, b, out, rows, cols);
  auto body = [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = a[r * cols + c] * b[c];
    }
  };
  if (rows == 1) {
    auto flat = [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) out[c] = a[c] * b[c];
    };
    return cpu::parallelForWork(cols, 1, flat);
  }
  cpu::parallelForWork(rows, cols, body);
}

void mulBackward(Impl impl, const float* a, const float* b, const float* dout, float* da, float* db,
                 int64_t rows, int64_t cols) {
  if (impl == Impl::Reference) return referenceMulBackward(a, b, dout, da, db, rows, cols);
  if (da != nullptr) {
    auto body = [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        for (int64_t c = 0; c < cols; ++c) da[r * cols + c] += dout[r * cols + c] * b[c];
      }
    };
    if (rows == 1) {
      auto flat = [&](int64_t begin, int64_t end) {
        for (int64_t c = begin; c < end; ++c) da[c] += dout[c] * b[c];
      };
      cpu::parallelForWork(cols, 1, flat);
    } else {
      cpu::parallelForWork(rows, cols, body);
    }
  }
  if (db != nullptr) {
    auto columns = [&](int64_t c0, int64_t c1) { sumOverRows(dout, a, db, rows, cols, c0, c1); };
    cpu::parallelForWork(cols, rows, columns);
  }
}

void scaleForward(Impl impl, const float* a, float s, float* out, int64_t count) {
  if (impl == Impl::Reference) return referenceScaleForward(a, s, out, count);
  auto body = [&](int64_t begin, int64_t end) { referenceScaleForward(a + begin, s, out + begin, end - begin); };
  cpu::parallelForWork(count, 1, body);
}

void scaleBackward(Impl impl, const float* dout, float s, float* da, int64_t count) {
  if (impl == Impl::Reference) return referenceScaleBackward(dout, s, da, count);
  auto body = [&](int64_t begin, int64_t end) { referenceScaleBackward(dout + begin, s, da + begin, end - begin); };
  cpu::parallelForWork(count, 1, body);
}

void sumForward(Impl impl, const float* a, float* out, int64_t rows, int64_t cols) {
  if (impl == Impl::Reference) return referenceReduceLastDimForward(a, out, rows, cols, false);
  reduceLastDim(a, out, rows, cols, false);
}

void sumBackward(Impl impl, const float* dout, float* da, int64_t rows, int64_t cols) {
  if (impl == Impl::Reference) return referenceReduceLastDimBackward(dout, da, rows, cols, false);
  reduceLastDimBackward(dout, da, rows, cols, false);
}

void meanForward(Impl impl, const float* a, float* out, int64_t rows, int64_t cols) {
  if (impl == Impl::Reference) return referenceReduceLastDimForward(a, out, rows, cols, true);
  reduceLastDim(a, out, rows, cols, true);
}

void meanBackward(Impl impl, const float* dout, float* da, int64_t rows, int64_t cols) {
  if (impl == Impl::Reference) return referenceReduceLastDimBackward(dout, da, rows, cols, true);
  reduceLastDimBackward(dout, da, rows, cols, true);
}

}  // namespace fusedpo
