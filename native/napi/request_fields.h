// Fields of the request objects that lib/ builds and validates before any native call, and the
// buffers they name (typed arrays or tensors' storage). A field
// that is missing or of the wrong type here means lib/ and the addon disagree (a version
// mismatch): it becomes a TypeError naming the field, never a crash.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

#include "core/preference_loss.h"
#include "napi/storage.h"

namespace fusedpo {

inline Napi::Value requireField(const Napi::Object& object, const char* name) {
  Napi::Value value = object.Get(name);
  if (value.IsUndefined()) {
    throw Napi::TypeError::New(object.Env(), std::string("native request: missing field ") + name);
  }
  return value;
}

inline double numberField(const Napi::Object& object, const char* name) {
  Napi::Value value = requireField(object, name);
  if (!value.IsNumber()) {
    throw Napi::TypeError::New(object.Env(), std::string("native request: expected a number for ") + name);
  }
  return value.As<Napi::Number>().DoubleValue();
}

// A non-negative integer that a double holds exactly.
inline int64_t integerField(const Napi::Object& object, const char* name) {
  const double number = numberField(object, name);
  if (!(number >= 0 && number <= 9007199254740991.0) || number != static_cast<double>(static_cast<int64_t>(number))) {
    throw Napi::TypeError::New(object.Env(),
                               std::string("native request: expected a non-negative integer for ") + name);
  }
  return static_cast<int64_t>(number);
}

inline bool boolField(const Napi::Object& object, const char* name) {
  Napi::Value value = requireField(object, name);
  if (!value.IsBoolean()) {
    throw Napi::TypeError::New(object.Env(), std::string("native request: expected a boolean for ") + name);
  }
  return value.As<Napi::Boolean>().Value();
}

inline size_t elementBytes(napi_typedarray_type kind) {
  return kind == napi_uint16_array ? 2 : 4;  // the kinds used here: f32, i32, u16
}

// The data of a field holding `length` elements of `kind`: a typed array of that kind, or a
// tensor's NativeStorage (storage.h) with the byte offset in the field `<name>ByteOffset`. A
// detached typed array has length 0 and fails the count check; lib/ reports it first, clearer.
inline void* bufferField(const Napi::Object& object, const char* name, napi_typedarray_type kind,
                  size_t length) {
  Napi::Value value = requireField(object, name);
  if (!value.IsTypedArray()) {
    Napi::Value offset = object.Get(std::string(name) + "ByteOffset");
    const size_t byteOffset =
        offset.IsNumber() ? static_cast<size_t>(offset.As<Napi::Number>().DoubleValue()) : 0;
    return storageData(value, byteOffset, length * elementBytes(kind), name);
  }
  if (value.As<Napi::TypedArray>().TypedArrayType() != kind ||
      value.As<Napi::TypedArray>().ElementLength() != length) {
    throw Napi::TypeError::New(object.Env(),
                               std::string("native request: wrong typed array for ") + name +
                                   " (expected " + std::to_string(length) + " elements)");
  }
  Napi::TypedArray array = value.As<Napi::TypedArray>();
  auto* base = static_cast<uint8_t*>(array.ArrayBuffer().Data());
  return base + array.ByteOffset();
}

// The loss and its parameters (the LossParameterFields of lib/losses.ts).
inline LossParams lossParamsFields(const Napi::Object& request) {
  LossParams p;
  p.kind = static_cast<LossKind>(static_cast<int>(numberField(request, "lossKind")));
  p.beta = numberField(request, "beta");
  p.labelSmoothing = numberField(request, "labelSmoothing");
  p.averageLogProb = boolField(request, "averageLogProb");
  p.nllWeight = numberField(request, "nllWeight");
  p.dpopLambda = numberField(request, "dpopLambda");
  p.simpoGamma = numberField(request, "simpoGamma");
  p.orpoLambda = numberField(request, "orpoLambda");
  p.discopopTau = numberField(request, "discopopTau");
  p.bcoDelta = numberField(request, "bcoDelta");
  return p;
}

}  // namespace fusedpo
