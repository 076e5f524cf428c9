// Impl dispatch of adamw.h: the update is the reference's loop over each thread's contiguous
// range (elementwise, so the bits never depend on the split); the norm sums fixed blocks of
// kBlock elements in fp64, in parallel, and adds the block sums in tensor and block order.
#include <cmath>
#include <cstddef>
#include <vector>

#include "../core/adamw.h"
#include "nn_parallel.h"

namespace fusedpo {
namespace {

constexpr int64_t kBlock = 4096;

}  // namespace

void adamwUpdate(Impl impl, float* param, const float* grad, float* m, float* v, int64_t count,
                 const AdamWParams& params) {
  if (impl == Impl::Reference) return referenceAdamwUpdate(param, grad, m, v, 0, count, params);
  auto body = [&](int64_t begin, int64_t end) { referenceAdamwUpdate(param, grad, m, v, begin, end, params); };
  cpu::parallelForWork(count, 4, body);
}

double globalGradNorm(Impl impl, const float* const* grads, const int64_t* counts, int64_t tensors) {
  if (impl == Impl::Reference) return referenceGlobalGradNorm(grads, counts, tensors);
  // Block k of tensor j: its index in the flat list of blocks.
  std::vector<int64_t> firstBlock(std::size_t(tensors) + 1, 0);
  for (int64_t j = 0; j < tensors; ++j) firstBlock[j + 1] = firstBlock[j] + (counts[j] + kBlock - 1) / kBlock;
  std::vector<double> partial(std::size_t(firstBlock[tensors]), 0.0);
  auto sumBlocks = [&](int64_t begin, int64_t end) {
    int64_t j = 0;
    for (int64_t block = begin; block < end; ++block) {
      while (firstBlock[j + 1] <= block) ++j;
      const int64_t start = (block - firstBlock[j]) * kBlock;
      const int64_t stop = counts[j] - start < kBlock ? counts[j] : start + kBlock;
      double sum = 0.0;
      for (int64_t i = start; i < stop; ++i) sum += double(grads[j][i]) * double(grads[j][i]);
      partial[block] = sum;
    }
  };
  cpu::parallelForWork(int64_t(partial.size()), kBlock, sumBlocks);
  double sum = 0.0;
  for (double p : partial) sum += p;
  return std::sqrt(sum);
}

}  // namespace fusedpo
