// Fields of the request objects that lib/ builds and validates before any native call. A field
// that is missing or of the wrong type here means lib/ and the addon disagree (a version
// mismatch): it becomes a TypeError naming the field, never a crash.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

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

}  // namespace fusedpo
