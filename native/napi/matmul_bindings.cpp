// The binding of matmul: unpacks the request lib/ops/matmul.ts builds (NativeMatmulRequest of
// lib/native.ts, every field validated there first), checks that each typed array covers what
// the kernel will touch, and runs the product synchronously on the calling thread and the pool.
// No arithmetic here beyond those extents.
#include "napi/matmul_bindings.h"

#include <new>
#include <string>

#include "core/matmul.h"
#include "napi/buffers.h"
#include "napi/request_fields.h"
#include "napi/storage.h"

namespace fusedpo {
namespace {

// Elements a batch of `batch` matrices of `size` elements, `stride` apart, spans; a RangeError
// past 2^53 elements (the inputs are each below 2^53, so the sum is exact before the check).
int64_t span(Napi::Env env, int64_t batch, int64_t stride, int64_t size) {
  if (batch == 0) return 0;
  const int64_t extent = checkedProduct(env, "matmul", {batch - 1, stride}) + size;
  return checkedProduct(env, "matmul", {extent, 4}) / 4;  // its bytes fit as well
}

Napi::Value Matmul(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsObject()) {
    throw Napi::TypeError::New(info.Env(), "matmul: expected a request object");
  }
  Napi::Env env = info.Env();
  const Napi::Object request = info[0].As<Napi::Object>();
  constexpr int64_t kMaxDim = 2147483647;
  MatmulShape shape;
  shape.batch = integerField(request, "batch", 0, kMaxDim);
  shape.M = integerField(request, "m", 0, kMaxDim);
  shape.N = integerField(request, "n", 0, kMaxDim);
  shape.K = integerField(request, "k", 0, kMaxDim);
  shape.transA = boolField(request, "transA");
  shape.transB = boolField(request, "transB");
  shape.strideA = integerField(request, "strideA");
  shape.strideB = integerField(request, "strideB");
  shape.strideC = integerField(request, "strideC");
  const Impl impl = implField(request);
  const bool accumulate = boolField(request, "accumulate");
  // The output matrices of a batch must not overlap each other.
  const int64_t sizeC = checkedProduct(env, "matmul", {shape.M, shape.N});
  if (shape.batch > 1 && shape.strideC < sizeC) {
    throw Napi::RangeError::New(env, "matmul: expected strideC >= m*n when batch > 1 (the output matrices must not overlap)");
  }
  const int64_t lengthA = span(env, shape.batch, shape.strideA, checkedProduct(env, "matmul", {shape.M, shape.K}));
  const int64_t lengthB = span(env, shape.batch, shape.strideB, checkedProduct(env, "matmul", {shape.K, shape.N}));
  const int64_t lengthC = span(env, shape.batch, shape.strideC, sizeC);
  const auto* a = static_cast<const float*>(bufferField(request, "a", Element::F32, static_cast<size_t>(lengthA)));
  const auto* b = static_cast<const float*>(bufferField(request, "b", Element::F32, static_cast<size_t>(lengthB)));
  auto* c = static_cast<float*>(bufferField(request, "c", Element::F32, static_cast<size_t>(lengthC)));
  OverlapCheck overlaps;
  overlaps.input("a", a, static_cast<size_t>(lengthA) * 4);
  overlaps.input("b", b, static_cast<size_t>(lengthB) * 4);
  overlaps.output("c", c, static_cast<size_t>(lengthC) * 4);
  overlaps.check(env, "matmul");
  try {
    matmul(impl, a, b, c, shape, accumulate);
  } catch (const std::bad_alloc&) {
    throw outOfMemory(env, "matmul", 0, "packed panels");
  }
  return env.Undefined();
}

}  // namespace

void addMatmulBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("matmul", Napi::Function::New(env, Matmul, "matmul"));
}

}  // namespace fusedpo
