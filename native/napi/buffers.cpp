// See buffers.h.
#include "napi/buffers.h"

#include <cmath>
#include <cstring>

#include "napi/storage.h"

namespace fusedpo {

namespace {

constexpr double kMaxElements = 9007199254740992.0;  // 2^53

napi_typedarray_type napiKind(Element kind) {
  switch (kind) {
    case Element::F32: return napi_float32_array;
    case Element::U16: return napi_uint16_array;
    case Element::I32: return napi_int32_array;
  }
  return napi_float32_array;
}

const char* napiKindName(napi_typedarray_type type) {
  switch (type) {
    case napi_int8_array: return "Int8Array";
    case napi_uint8_array: return "Uint8Array";
    case napi_uint8_clamped_array: return "Uint8ClampedArray";
    case napi_int16_array: return "Int16Array";
    case napi_uint16_array: return "Uint16Array";
    case napi_int32_array: return "Int32Array";
    case napi_uint32_array: return "Uint32Array";
    case napi_float32_array: return "Float32Array";
    case napi_float64_array: return "Float64Array";
    case napi_bigint64_array: return "BigInt64Array";
    case napi_biguint64_array: return "BigUint64Array";
  }
  return "typed array";
}

size_t napiKindBytes(napi_typedarray_type type) {
  switch (type) {
    case napi_int8_array:
    case napi_uint8_array:
    case napi_uint8_clamped_array: return 1;
    case napi_int16_array:
    case napi_uint16_array: return 2;
    case napi_int32_array:
    case napi_uint32_array:
    case napi_float32_array: return 4;
    default: return 8;
  }
}

}  // namespace

size_t elementBytes(Element kind) { return kind == Element::U16 ? 2 : 4; }

const char* typedArrayName(Element kind) { return napiKindName(napiKind(kind)); }

bool readTypedArray(const Napi::Value& value, TypedArrayView* view) {
  if (!value.IsTypedArray()) return false;
  void* data = nullptr;
  size_t length = 0;
  napi_typedarray_type type;
  if (napi_get_typedarray_info(value.Env(), value, &type, &length, &data, nullptr, nullptr) != napi_ok) return false;
  view->type = type;
  view->length = length;
  view->byteLength = length * napiKindBytes(type);
  view->data = static_cast<uint8_t*>(data);
  return true;
}

std::string describeValue(const Napi::Value& value) {
  TypedArrayView view;
  if (readTypedArray(value, &view)) {
    return std::string("a ") + napiKindName(view.type) + " of " + std::to_string(view.length) + " elements";
  }
  switch (value.Type()) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "a boolean";
    case napi_number: {
      std::string text = std::to_string(value.As<Napi::Number>().DoubleValue());
      return "the number " + text;
    }
    case napi_string: return "a string";
    case napi_symbol: return "a symbol";
    case napi_function: return "a function";
    case napi_bigint: return "a bigint";
    default: break;
  }
  if (value.IsArray()) return "an array";
  return "an object";
}

uint8_t* bufferArgument(const Napi::Value& value, Element kind, size_t count, size_t byteOffset, const char* op,
                        const std::string& name) {
  Napi::Env env = value.Env();
  const size_t bytes = count * elementBytes(kind);
  TypedArrayView view;
  if (readTypedArray(value, &view)) {
    if (view.type != napiKind(kind)) {
      throw Napi::TypeError::New(env, std::string(op) + ": expected a " + typedArrayName(kind) + " for " + name +
                                          " but received " + describeValue(value));
    }
    if (view.length != count) {
      throw Napi::RangeError::New(env, std::string(op) + ": expected a " + typedArrayName(kind) + " of " +
                                           std::to_string(count) + " elements for " + name + " but received " +
                                           describeValue(value) + (view.length == 0 ? " (detached?)" : ""));
    }
    return view.data;
  }
  if (value.IsObject()) return storageData(value, byteOffset, bytes, (std::string(op) + " (" + name + ")").c_str());
  throw Napi::TypeError::New(env, std::string(op) + ": expected a " + typedArrayName(kind) + " or a tensor's storage for " +
                                      name + " but received " + describeValue(value));
}

std::vector<int32_t> indicesArgument(const Napi::Value& value, size_t count, int64_t bound, bool allowIgnore,
                                     int32_t ignore, const char* op, const std::string& name) {
  const auto* source = reinterpret_cast<const int32_t*>(bufferArgument(value, Element::I32, count, 0, op, name));
  std::vector<int32_t> indices(count);
  if (count > 0) std::memcpy(indices.data(), source, count * sizeof(int32_t));
  for (size_t i = 0; i < count; ++i) {
    const int32_t index = indices[i];
    if ((index < 0 || index >= bound) && !(allowIgnore && index == ignore)) {
      throw Napi::RangeError::New(
          value.Env(), std::string(op) + ": expected " + name + " in [0, " + std::to_string(bound) + ")" +
                           (allowIgnore ? " or " + std::to_string(ignore) : std::string()) + " but received " +
                           std::to_string(index) + " at position " + std::to_string(i));
    }
  }
  return indices;
}

void OverlapCheck::input(const std::string& name, const void* data, size_t bytes) {
  ranges_.push_back({name, static_cast<const uint8_t*>(data), bytes, false, nullptr});
}

void OverlapCheck::output(const std::string& name, const void* data, size_t bytes, const void* inPlaceOf) {
  ranges_.push_back({name, static_cast<const uint8_t*>(data), bytes, true, inPlaceOf});
}

void OverlapCheck::check(Napi::Env env, const char* op) const {
  for (size_t i = 0; i < ranges_.size(); ++i) {
    const Range& out = ranges_[i];
    if (!out.output || out.begin == nullptr || out.bytes == 0) continue;
    for (size_t j = 0; j < ranges_.size(); ++j) {
      const Range& other = ranges_[j];
      if (j == i || other.begin == nullptr || other.bytes == 0) continue;
      if (other.output && j < i) continue;  // each pair of outputs once
      const bool overlap = out.begin < other.begin + other.bytes && other.begin < out.begin + out.bytes;
      if (!overlap) continue;
      const bool inPlace = !other.output && out.inPlaceOf != nullptr && out.inPlaceOf == other.begin &&
                           out.begin == other.begin && out.bytes == other.bytes;
      if (inPlace) continue;
      throw Napi::TypeError::New(env, std::string(op) + ": expected " + out.name + " to share no memory with " +
                                          other.name + " but they overlap");
    }
  }
}

int64_t checkedProduct(Napi::Env env, const char* op, std::initializer_list<int64_t> factors) {
  double product = 1;
  int64_t exact = 1;
  for (int64_t f : factors) {
    if (f < 0) throw Napi::RangeError::New(env, std::string(op) + ": sizes out of range (negative, or an extent past 2^53 elements)");
    product *= static_cast<double>(f);
    if (product > kMaxElements) {
      throw Napi::RangeError::New(env, std::string(op) + ": sizes whose product exceeds 2^53 elements");
    }
    exact *= f;
  }
  return exact;
}

Napi::Error outOfMemory(Napi::Env env, const std::string& op, double bytes, const std::string& what) {
  char count[64];
  std::snprintf(count, sizeof count, "%.0f", bytes);
  return Napi::RangeError::New(env, op + ": out of memory: could not allocate " + count + " bytes (" + what + ")");
}

}  // namespace fusedpo
