// Fields of the request objects that lib/ builds and validates before any native call, and the
// buffers they name (typed arrays or tensors' storage). Each field is read once (one Get), and
// checked here again: a field that is missing, of the wrong type or out of range, or a buffer
// that does not hold what the shape says, becomes a TypeError or RangeError naming the
// operation and the field, never a crash. lib/ gives the clearer message first; one from here
// means a caller reached the addon past lib/'s checks.
#pragma once

#include <napi.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "core/preference_loss.h"
#include "napi/buffers.h"

namespace fusedpo {

inline Napi::Value requireField(const Napi::Object& object, const char* name) {
  Napi::Value value = object.Get(name);
  if (value.IsUndefined()) {
    throw Napi::TypeError::New(object.Env(), std::string("native request: missing field ") + name);
  }
  return value;
}

// A finite number.
inline double numberField(const Napi::Object& object, const char* name) {
  Napi::Value value = requireField(object, name);
  if (!value.IsNumber()) {
    throw Napi::TypeError::New(object.Env(), std::string("native request: expected a number for ") + name);
  }
  const double number = value.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(number)) {
    throw Napi::RangeError::New(object.Env(), std::string("native request: expected a finite number for ") + name);
  }
  return number;
}

// An integer in [min, max] that a double holds exactly.
inline int64_t integerField(const Napi::Object& object, const char* name, int64_t min = 0,
                            int64_t max = 9007199254740991) {
  const double number = numberField(object, name);
  if (!(number >= static_cast<double>(min) && number <= static_cast<double>(max)) ||
      number != static_cast<double>(static_cast<int64_t>(number))) {
    throw Napi::RangeError::New(object.Env(), std::string("native request: expected an integer in [") +
                                                  std::to_string(min) + ", " + std::to_string(max) + "] for " + name);
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

// A boolean field that may be absent (false).
inline bool optionalBoolField(const Napi::Object& object, const char* name) {
  Napi::Value value = object.Get(name);
  if (value.IsUndefined()) return false;
  if (!value.IsBoolean()) {
    throw Napi::TypeError::New(object.Env(), std::string("native request: expected a boolean for ") + name);
  }
  return value.As<Napi::Boolean>().Value();
}

// Whether a field is absent (undefined or null).
inline bool isAbsent(const Napi::Value& value) { return value.IsNull() || value.IsUndefined(); }

// The data of a field holding `length` elements of `kind`: a typed array of that kind and length,
// or a tensor's NativeStorage (storage.h) holding them from the byte offset in the field
// `<name>ByteOffset` (0 when absent).
// The same for a field's value already read (`value` is object[name]).
inline void* bufferValue(const Napi::Object& object, const Napi::Value& value, const char* name, Element kind, size_t length) {
  size_t byteOffset = 0;
  if (!value.IsTypedArray()) {
    const std::string offsetName = std::string(name) + "ByteOffset";
    if (!object.Get(offsetName).IsUndefined()) byteOffset = static_cast<size_t>(integerField(object, offsetName.c_str()));
  }
  return bufferArgument(value, kind, length, byteOffset, "native request", name);
}

inline void* bufferField(const Napi::Object& object, const char* name, Element kind, size_t length) {
  return bufferValue(object, requireField(object, name), name, kind, length);
}

// A copy of a field of `length` floats (a typed array or a storage), each finite.
inline std::vector<float> finiteFloatsField(const Napi::Object& object, const char* name, size_t length) {
  const auto* data = static_cast<const float*>(bufferField(object, name, Element::F32, length));
  std::vector<float> copy(data, data + length);
  for (size_t i = 0; i < length; ++i) {
    if (!std::isfinite(copy[i])) {
      throw Napi::RangeError::New(object.Env(), std::string("native request: expected finite ") + name +
                                                    " but received a non-finite value at row " + std::to_string(i));
    }
  }
  return copy;
}

// The three sizes of a logits request, each positive, V below 2^31, their product checked.
inline LogitsShape logitsShapeFields(const Napi::Object& request) {
  LogitsShape shape{integerField(request, "rows", 1), integerField(request, "tokens", 1),
                    integerField(request, "vocab", 1, 2147483647)};
  checkedProduct(request.Env(), "native request", {shape.rows, shape.tokens, shape.vocab});
  return shape;
}

inline DType dtypeField(const Napi::Object& request) {
  return static_cast<DType>(integerField(request, "dtype", 0, 2));
}

inline Element logitsElement(DType dtype) { return dtype == DType::F32 ? Element::F32 : Element::U16; }

inline Impl implField(const Napi::Object& request) {
  return integerField(request, "impl", 0, 1) == 0 ? Impl::Reference : Impl::Fast;
}

// The labels of a request, copied and checked: each in [0, vocab) or ignoreIndex.
inline std::vector<int32_t> labelsField(const Napi::Object& request, LogitsShape shape, int32_t ignoreIndex) {
  return indicesArgument(requireField(request, "labels"), static_cast<size_t>(shape.rows * shape.tokens), shape.vocab,
                         true, ignoreIndex, "native request", "labels");
}

inline int32_t ignoreIndexField(const Napi::Object& request) {
  return static_cast<int32_t>(integerField(request, "ignoreIndex", -2147483648LL, 2147483647));
}

// A number parameter of the loss, in the widest range the registry gives it (loss_registry.h).
inline double parameterField(const Napi::Object& request, const char* name, double min, bool minExclusive, double max,
                             bool maxExclusive, bool allowInfinity) {
  Napi::Value value = requireField(request, name);
  if (!value.IsNumber()) {
    throw Napi::TypeError::New(request.Env(), std::string("native request: expected a number for ") + name);
  }
  const double x = value.As<Napi::Number>().DoubleValue();
  const bool representable = std::isfinite(x) || (allowInfinity && x == HUGE_VAL);
  const bool aboveMin = minExclusive ? x > min : x >= min;
  const bool belowMax = maxExclusive ? x < max : x <= max;
  if (!representable || !aboveMin || !belowMax) {
    throw Napi::RangeError::New(request.Env(), std::string("native request: expected ") + name + " in " +
                                                   (minExclusive ? "(" : "[") + std::to_string(min) + ", " +
                                                   std::to_string(max) + (maxExclusive ? ")" : "]") + " but received " +
                                                   std::to_string(x));
  }
  return x;
}

// The loss and its parameters (the LossParameterFields of lib/losses): every parameter of the
// registry, each read once and checked against its widest range.
inline LossParams lossParamsFields(const Napi::Object& request) {
  LossParams p;
  p.kind = static_cast<LossKind>(integerField(request, "lossKind", 0, kLossKindCount - 1));
  p.averageLogProb = boolField(request, "averageLogProb");
  p.nllWeight = numberField(request, "nllWeight");
  if (!(p.nllWeight >= 0)) throw Napi::RangeError::New(request.Env(), "native request: expected nllWeight >= 0");
  p.nllReduction = static_cast<NllReduction>(integerField(request, "nllReduction", 0, 1));
#define FUSEDPO_READ_PARAMETER(type, name, value, min, minExclusive, max, maxExclusive, allowInfinity)       \
  {                                                                                                          \
    const double x = parameterField(request, #name, min, minExclusive, max, maxExclusive, allowInfinity);    \
    if (static_cast<double>(static_cast<type>(x)) != x) {                                                    \
      throw Napi::RangeError::New(request.Env(), "native request: expected an integer for " #name);          \
    }                                                                                                        \
    p.name = static_cast<type>(x);                                                                           \
  }
  FUSEDPO_LOSS_PARAMETERS(FUSEDPO_READ_PARAMETER)
#undef FUSEDPO_READ_PARAMETER
  return p;  // groupSize counts for exo alone: rowsPerPrompt is 2 for every other loss
}

// The per-row inputs of stage 3 besides the logits, copied: refLogps (required by the losses with a
// reference) and rewards (exo's, optional); and the row count checked against the responses per
// prompt.
inline void lossInputFields(const Napi::Object& request, const LossParams& params, LogitsShape shape,
                            std::vector<float>& refLogps, std::vector<float>& rewards) {
  const size_t rows = static_cast<size_t>(shape.rows);
  if (shape.rows % rowsPerPrompt(params) != 0) {
    throw Napi::RangeError::New(request.Env(), "native request: rows must be a multiple of " +
                                                   std::to_string(rowsPerPrompt(params)) + " for loss " + lossName(params.kind));
  }
  if (!isAbsent(request.Get("refLogps"))) refLogps = finiteFloatsField(request, "refLogps", rows);
  if (lossNeedsReference(params.kind) && refLogps.empty()) {
    throw Napi::TypeError::New(request.Env(), std::string("native request: loss ") + lossName(params.kind) + " needs refLogps");
  }
  if (!isAbsent(request.Get("rewards"))) {
    if (!lossTakesRewards(params.kind)) {
      throw Napi::TypeError::New(request.Env(), std::string("native request: loss ") + lossName(params.kind) + " takes no rewards");
    }
    rewards = finiteFloatsField(request, "rewards", rows);
  }
}

}  // namespace fusedpo
