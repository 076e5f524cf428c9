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

// The data of a Float32Array holding exactly the `length` elements a batch of matrices spans.
// Or a tensor's NativeStorage (storage.h), with its byte offset in `<name>ByteOffset`.
float* floatArrayField(const Napi::Object& object, const char* name, int64_t length) {
  Napi::Value value = requireField(object, name);
  if (value.IsObject() && !value.IsTypedArray()) {
    Napi::Value offset = object.Get(std::string(name) + "ByteOffset");
    const size_t byteOffset = offset.IsNumber() ? static_cast<size_t>(offset.As<Napi::Number>().DoubleValue()) : 0;
    return reinterpret_cast<float*>(storageData(value, byteOffset, static_cast<size_t>(length) * 4, name));
  }
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array ||
      static_cast<int64_t>(value.As<Napi::TypedArray>().ElementLength()) != length) {
    throw Napi::TypeError::New(object.Env(), std::string("matmul request: expected a Float32Array of ") +
                                                 std::to_string(length) + " elements for " + name);
  }
  Napi::TypedArray array = value.As<Napi::TypedArray>();
  auto* base = static_cast<uint8_t*>(array.ArrayBuffer().Data());
  return reinterpret_cast<float*>(base + array.ByteOffset());
}

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
  const float* a = floatArrayField(request, "a", span(shape.batch, shape.strideA, shape.M * shape.K));
  const float* b = floatArrayField(request, "b", span(shape.batch, shape.strideB, shape.K * shape.N));
  float* c = floatArrayField(request, "c", span(shape.batch, shape.strideC, shape.M * shape.N));
  matmul(impl, a, b, c, shape, accumulate);
  return info.Env().Undefined();
}

}  // namespace

void addMatmulBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("matmul", Napi::Function::New(env, Matmul, "matmul"));
}

}  // namespace fusedpo
