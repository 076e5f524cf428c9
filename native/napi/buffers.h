// The buffers the kernels read and write, as the bindings receive them: typed arrays (over an
// ArrayBuffer or a SharedArrayBuffer) or a tensor's NativeStorage. Every reader here checks the
// extent the kernel will touch against what the buffer really holds (as V8 reports it, not as
// any getter says), so a kernel never runs past the memory it was given, whatever the caller
// passed; and the sizes it is given are checked for overflow before any extent is formed.
//
// lib/ validates everything first and gives the clearer message; an error from here means that
// a caller reached the addon with something lib/ did not check, and it still names the
// operation, the argument, what was expected and what came.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace fusedpo {

enum class Element { F32, U16, I32 };

size_t elementBytes(Element kind);
// "Float32Array", "Uint16Array", "Int32Array".
const char* typedArrayName(Element kind);

// A short description of a received value for error messages: "a Float64Array of 5 elements".
std::string describeValue(const Napi::Value& value);

// A typed array's kind, element count and first element, read once through Node-API (which,
// unlike Napi::TypedArray::ArrayBuffer(), also works for typed arrays over a SharedArrayBuffer).
// false when `value` is not a typed array.
struct TypedArrayView {
  napi_typedarray_type type;
  size_t length;      // elements
  size_t byteLength;  // length times the element size
  uint8_t* data;
};
bool readTypedArray(const Napi::Value& value, TypedArrayView* view);

// The memory of argument `name` of `op`: a typed array of `kind` holding exactly `count`
// elements, or a NativeStorage holding at least `count` elements from `byteOffset` (a tensor's
// storage may be larger than the tensor: storages are reused by size class). Else a TypeError
// (wrong kind) or RangeError (wrong size) naming op and name.
uint8_t* bufferArgument(const Napi::Value& value, Element kind, size_t count, size_t byteOffset, const char* op,
                        const std::string& name);

// Copies `count` int32 indices out of argument `name` (typed array or storage) and checks that
// each is in [0, bound) or equals `ignore` (pass `allowIgnore` false for none). A copy, so that
// neither a later write by JavaScript nor another thread writing a SharedArrayBuffer can change
// an index after it was checked. RangeError naming the first bad index and its position.
std::vector<int32_t> indicesArgument(const Napi::Value& value, size_t count, int64_t bound, bool allowIgnore,
                                     int32_t ignore, const char* op, const std::string& name);

// Outputs must not overlap any other buffer of the call, except an output that is exactly one
// named input (in place, where the kernel allows it). The bindings register every buffer, then
// call check().
class OverlapCheck {
 public:
  void input(const std::string& name, const void* data, size_t bytes);
  // `inPlaceOf`: the one input this output may be (same first byte and length), or nullptr.
  void output(const std::string& name, const void* data, size_t bytes, const void* inPlaceOf = nullptr);
  void check(Napi::Env env, const char* op) const;

 private:
  struct Range {
    std::string name;
    const uint8_t* begin;
    size_t bytes;
    bool output;
    const void* inPlaceOf;
  };
  std::vector<Range> ranges_;
};

// The product of non-negative sizes, or a RangeError naming op when it exceeds 2^53 (no array
// of this package can hold that many elements, and every extent stays an exact double).
int64_t checkedProduct(Napi::Env env, const char* op, std::initializer_list<int64_t> factors);

// A RangeError for an allocation that failed: "<op>: out of memory: could not allocate <bytes>
// bytes (<what>)". Bindings catch std::bad_alloc and throw this instead of aborting.
Napi::Error outOfMemory(Napi::Env env, const std::string& op, double bytes, const std::string& what);

}  // namespace fusedpo
