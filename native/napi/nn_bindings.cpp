// Node-API bindings of the GPT's ops: positional arguments (impl first, then typed arrays, then
// sizes and scalars), unpacked and passed straight to the kernels. No arithmetic here.
//
// lib/ops/nn.ts validates every argument first (kinds, lengths, ranges, indices, aliasing); this
// file checks only that each array is a typed array of the expected kind, so that a version
// mismatch between lib/ and the addon is a TypeError rather than a crash. It does not check
// lengths: these functions are internal and reached only through lib/ops.
#include "napi/nn_bindings.h"

#include <cstdint>
#include <string>
#include <vector>

#include "core/adamw.h"
#include "core/attention.h"
#include "core/elementwise.h"
#include "core/embedding.h"
#include "core/gelu.h"
#include "core/layernorm.h"
#include "core/softmax.h"
#include "napi/storage.h"

namespace fusedpo {
namespace {

// Reads the arguments of one call, naming the function in its errors.
class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* name, size_t count) : info_(info), name_(name) {
    if (info.Length() != count) fail("expected " + std::to_string(count) + " arguments");
  }

  Impl impl(size_t i) const { return number(i) == 0 ? Impl::Reference : Impl::Fast; }

  double number(size_t i) const {
    if (!info_[i].IsNumber()) fail("argument " + std::to_string(i) + " is not a number");
    return info_[i].As<Napi::Number>().DoubleValue();
  }

  int64_t size(size_t i) const { return static_cast<int64_t>(number(i)); }

  float* floats(size_t i) const { return static_cast<float*>(data(i, napi_float32_array)); }
  // nullptr for null or undefined.
  float* optionalFloats(size_t i) const {
    return info_[i].IsNull() || info_[i].IsUndefined() ? nullptr : floats(i);
  }
  const int32_t* ints(size_t i) const { return static_cast<const int32_t*>(data(i, napi_int32_array)); }

  // Every Float32Array of a JavaScript array, and their lengths.
  void floatList(size_t i, std::vector<const float*>& arrays, std::vector<int64_t>& counts) const {
    if (!info_[i].IsArray()) fail("argument " + std::to_string(i) + " is not an array");
    Napi::Array list = info_[i].As<Napi::Array>();
    for (uint32_t k = 0; k < list.Length(); ++k) {
      Napi::Value value = list.Get(k);
      if (value.IsObject() && !value.IsTypedArray()) {  // a tensor's NativeStorage: 4-byte floats
        arrays.push_back(reinterpret_cast<const float*>(storageData(value, 0, 0, name_)));
        counts.push_back(static_cast<int64_t>(NativeStorage::Unwrap(value.As<Napi::Object>())->byteLength() / 4));
        continue;
      }
      if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
        fail("element " + std::to_string(k) + " of argument " + std::to_string(i) + " is not a Float32Array");
      }
      Napi::TypedArray array = value.As<Napi::TypedArray>();
      arrays.push_back(reinterpret_cast<const float*>(static_cast<uint8_t*>(array.ArrayBuffer().Data()) +
                                                      array.ByteOffset()));
      counts.push_back(static_cast<int64_t>(array.ElementLength()));
    }
  }

 private:
  void* data(size_t i, napi_typedarray_type kind) const {
    // A tensor's NativeStorage (lib/tensor.ts), whose size lib/ checked against the shapes.
    if (info_[i].IsObject() && !info_[i].IsTypedArray()) return storageData(info_[i], 0, 0, name_);
    if (!info_[i].IsTypedArray() || info_[i].As<Napi::TypedArray>().TypedArrayType() != kind) {
      fail("argument " + std::to_string(i) + " is not a " +
           (kind == napi_float32_array ? "Float32Array" : "Int32Array"));
    }
    Napi::TypedArray array = info_[i].As<Napi::TypedArray>();
    return static_cast<uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset();
  }

  [[noreturn]] void fail(const std::string& what) const {
    throw Napi::TypeError::New(info_.Env(), std::string(name_) + " (native): " + what);
  }

  const Napi::CallbackInfo& info_;
  const char* name_;
};

// ---- elementwise -----------------------------------------------------------------------------

Napi::Value AddForward(const Napi::CallbackInfo& info) {
  Args a(info, "addForward", 6);  // impl, a, b, out, rows, cols
  addForward(a.impl(0), a.floats(1), a.floats(2), a.floats(3), a.size(4), a.size(5));
  return info.Env().Undefined();
}

Napi::Value AddBackward(const Napi::CallbackInfo& info) {
  Args a(info, "addBackward", 6);  // impl, dout, da | null, db | null, rows, cols
  addBackward(a.impl(0), a.floats(1), a.optionalFloats(2), a.optionalFloats(3), a.size(4), a.size(5));
  return info.Env().Undefined();
}

Napi::Value MulForward(const Napi::CallbackInfo& info) {
  Args a(info, "mulForward", 6);  // impl, a, b, out, rows, cols
  mulForward(a.impl(0), a.floats(1), a.floats(2), a.floats(3), a.size(4), a.size(5));
  return info.Env().Undefined();
}

Napi::Value MulBackward(const Napi::CallbackInfo& info) {
  Args a(info, "mulBackward", 8);  // impl, a, b, dout, da | null, db | null, rows, cols
  mulBackward(a.impl(0), a.floats(1), a.floats(2), a.floats(3), a.optionalFloats(4), a.optionalFloats(5),
              a.size(6), a.size(7));
  return info.Env().Undefined();
}

Napi::Value ScaleForward(const Napi::CallbackInfo& info) {
  Args a(info, "scaleForward", 5);  // impl, a, s, out, count
  scaleForward(a.impl(0), a.floats(1), static_cast<float>(a.number(2)), a.floats(3), a.size(4));
  return info.Env().Undefined();
}

Napi::Value ScaleBackward(const Napi::CallbackInfo& info) {
  Args a(info, "scaleBackward", 5);  // impl, dout, s, da, count
  scaleBackward(a.impl(0), a.floats(1), static_cast<float>(a.number(2)), a.floats(3), a.size(4));
  return info.Env().Undefined();
}

// sum / mean, forward (a, out) and backward (dout, da): impl, x, y, rows, cols
template <void (*Kernel)(Impl, const float*, float*, int64_t, int64_t)>
Napi::Value ReduceLastDim(const Napi::CallbackInfo& info) {
  Args a(info, "sum/mean", 5);
  Kernel(a.impl(0), a.floats(1), a.floats(2), a.size(3), a.size(4));
  return info.Env().Undefined();
}

// ---- embedding, layernorm, gelu, softmax, attention ------------------------------------------

Napi::Value EmbeddingForward(const Napi::CallbackInfo& info) {
  Args a(info, "embeddingForward", 6);  // impl, idx, table, out, count, channels
  embeddingForward(a.impl(0), a.ints(1), a.floats(2), a.floats(3), a.size(4), a.size(5));
  return info.Env().Undefined();
}

Napi::Value EmbeddingBackward(const Napi::CallbackInfo& info) {
  Args a(info, "embeddingBackward", 6);  // impl, idx, dout, dtable, count, channels
  embeddingBackward(a.impl(0), a.ints(1), a.floats(2), a.floats(3), a.size(4), a.size(5));
  return info.Env().Undefined();
}

Napi::Value LayernormForward(const Napi::CallbackInfo& info) {
  Args a(info, "layernormForward", 9);  // impl, inp, weight, bias, out, mean, rstd, rows, channels
  layernormForward(a.impl(0), a.floats(1), a.floats(2), a.floats(3), a.floats(4), a.floats(5), a.floats(6),
                   a.size(7), a.size(8));
  return info.Env().Undefined();
}

Napi::Value LayernormBackward(const Napi::CallbackInfo& info) {
  // impl, dout, inp, weight, mean, rstd, dinp, dweight, dbias, rows, channels
  Args a(info, "layernormBackward", 11);
  layernormBackward(a.impl(0), a.floats(1), a.floats(2), a.floats(3), a.floats(4), a.floats(5), a.floats(6),
                    a.floats(7), a.floats(8), a.size(9), a.size(10));
  return info.Env().Undefined();
}

Napi::Value GeluForward(const Napi::CallbackInfo& info) {
  Args a(info, "geluForward", 4);  // impl, inp, out, count
  geluForward(a.impl(0), a.floats(1), a.floats(2), a.size(3));
  return info.Env().Undefined();
}

Napi::Value GeluBackward(const Napi::CallbackInfo& info) {
  Args a(info, "geluBackward", 5);  // impl, inp, dout, dinp, count
  geluBackward(a.impl(0), a.floats(1), a.floats(2), a.floats(3), a.size(4));
  return info.Env().Undefined();
}

Napi::Value SoftmaxForward(const Napi::CallbackInfo& info) {
  Args a(info, "softmaxForward", 5);  // impl, inp, out, rows, cols
  softmaxForward(a.impl(0), a.floats(1), a.floats(2), a.size(3), a.size(4));
  return info.Env().Undefined();
}

Napi::Value SoftmaxBackward(const Napi::CallbackInfo& info) {
  Args a(info, "softmaxBackward", 6);  // impl, out, dout, dinp, rows, cols
  softmaxBackward(a.impl(0), a.floats(1), a.floats(2), a.floats(3), a.size(4), a.size(5));
  return info.Env().Undefined();
}

Napi::Value AttentionForward(const Napi::CallbackInfo& info) {
  Args a(info, "attentionForward", 8);  // impl, qkv, att, out, B, T, C, NH
  attentionForward(a.impl(0), a.floats(1), a.floats(2), a.floats(3),
                   AttentionShape{a.size(4), a.size(5), a.size(6), a.size(7)});
  return info.Env().Undefined();
}

Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  Args a(info, "attentionBackward", 9);  // impl, qkv, att, dout, dqkv, B, T, C, NH
  attentionBackward(a.impl(0), a.floats(1), a.floats(2), a.floats(3), a.floats(4),
                    AttentionShape{a.size(5), a.size(6), a.size(7), a.size(8)});
  return info.Env().Undefined();
}

// ---- optimizer -------------------------------------------------------------------------------

Napi::Value AdamwUpdate(const Napi::CallbackInfo& info) {
  // impl, param, grad, m, v, count, lr, beta1, beta2, eps, weightDecay, step
  Args a(info, "adamwUpdate", 12);
  const AdamWParams params{static_cast<float>(a.number(6)), static_cast<float>(a.number(7)),
                           static_cast<float>(a.number(8)), static_cast<float>(a.number(9)),
                           static_cast<float>(a.number(10)), a.size(11)};
  adamwUpdate(a.impl(0), a.floats(1), a.floats(2), a.floats(3), a.floats(4), a.size(5), params);
  return info.Env().Undefined();
}

Napi::Value GlobalGradNorm(const Napi::CallbackInfo& info) {
  Args a(info, "globalGradNorm", 2);  // impl, grads (an array of Float32Arrays)
  std::vector<const float*> grads;
  std::vector<int64_t> counts;
  a.floatList(1, grads, counts);
  const double norm = globalGradNorm(a.impl(0), grads.data(), counts.data(), static_cast<int64_t>(grads.size()));
  return Napi::Number::New(info.Env(), norm);
}

}  // namespace

void addNnBindings(Napi::Env env, Napi::Object exports) {
  const auto add = [&](const char* name, Napi::Function::Callback callback) {
    exports.Set(name, Napi::Function::New(env, callback, name));
  };
  add("addForward", AddForward);
  add("addBackward", AddBackward);
  add("mulForward", MulForward);
  add("mulBackward", MulBackward);
  add("scaleForward", ScaleForward);
  add("scaleBackward", ScaleBackward);
  add("sumForward", ReduceLastDim<sumForward>);
  add("sumBackward", ReduceLastDim<sumBackward>);
  add("meanForward", ReduceLastDim<meanForward>);
  add("meanBackward", ReduceLastDim<meanBackward>);
  add("embeddingForward", EmbeddingForward);
  add("embeddingBackward", EmbeddingBackward);
  add("layernormForward", LayernormForward);
  add("layernormBackward", LayernormBackward);
  add("geluForward", GeluForward);
  add("geluBackward", GeluBackward);
  add("softmaxForward", SoftmaxForward);
  add("softmaxBackward", SoftmaxBackward);
  add("attentionForward", AttentionForward);
  add("attentionBackward", AttentionBackward);
  add("adamwUpdate", AdamwUpdate);
  add("globalGradNorm", GlobalGradNorm);
}

}  // namespace fusedpo
