// The binding of matmul: unpacks the request lib/ops/matmul.ts builds (NativeMatmulRequest of
// lib/native.ts, every field validated there first), checks that each typed array covers what
// the kernel will touch, and runs the product synchronously on the calling thread and the pool.
// No arithmetic here beyond those extents.
#include "napi/matmul_bindings.h"

#include <string>

#include "core/matmul.h"
#include "napi/request_fields.h"
#include "napi/storage.h"

namespace fusedpo {
namespace {

// Elements a batch of `batch` matrices of `size` elements, `stride` apart, spans.
int64_t span(int64_t batch, int64_t stride, int64_t size) {
  return batch == 0 ? 0 : (batch - 1) * stride + size;
}

Napi::Value Matmul(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsObject()) {
    throw Napi::TypeError::New(info.Env(), "matmul: expected a request object");
  }
  const Napi::Object request = info[0].As<Napi::Object>();
  MatmulShape shape;
  shape.batch = integerField(request, "batch");
  shape.M = integerField(request, "m");
  shape.N = integerField(request, "n");
  shape.K = integerField(request, "k");
  shape.transA = boolField(request, "transA");
  shape.transB = boolField(request, "transB");
  shape.strideA = integerField(request, "strideA");
  shape.strideB = integerField(request, "strideB");
  shape.strideC = integerField(request, "strideC");
  const Impl impl = integerField(request, "impl") == 0 ? Impl::Reference : Impl::Fast;
  const bool accumulate = boolField(request, "accumulate");
  const auto* a = static_cast<const float*>(
      bufferField(request, "a", napi_float32_array, span(shape.batch, shape.strideA, shape.M * shape.K)));
  const auto* b = static_cast<const float*>(
      bufferField(request, "b", napi_float32_array, span(shape.batch, shape.strideB, shape.K * shape.N)));
  auto* c = static_cast<float*>(
      bufferField(request, "c", napi_float32_array, span(shape.batch, shape.strideC, shape.M * shape.N)));
  matmul(impl, a, b, c, shape, accumulate);
  return info.Env().Undefined();
}

}  // namespace

void addMatmulBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("matmul", Napi::Function::New(env, Matmul, "matmul"));
}

}  // namespace fusedpo
