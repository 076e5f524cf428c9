// See storage.h.
#include "napi/storage.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "cpu/host_memory.h"

namespace fusedpo {
namespace {


size_t checkedBytes(const Napi::Env& env, const Napi::Value& value) {
  if (!value.IsNumber()) throw Napi::TypeError::New(env, "NativeStorage: expected a byte count");
  const double bytes = value.As<Napi::Number>().DoubleValue();
  if (!(bytes >= 0) || bytes > 9007199254740991.0 || bytes != static_cast<double>(static_cast<size_t>(bytes))) {
    throw Napi::RangeError::New(env, "NativeStorage: expected a non-negative integer byte count");
  }
  return static_cast<size_t>(bytes);
}

// (typed array, byte offset into the storage) of read/write, checked against the storage.
struct CopyRange {
  uint8_t* array;
  size_t arrayBytes;
  size_t offset;
};

CopyRange copyRange(const Napi::CallbackInfo& info, const NativeStorage& storage, const char* what) {
  Napi::Env env = info.Env();
  if (storage.disposed()) {
    throw Napi::Error::New(env, std::string("NativeStorage.") + what + ": the storage was disposed");
  }
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsNumber()) {
    throw Napi::TypeError::New(env, std::string("NativeStorage.") + what + ": expected (typedArray, byteOffset)");
  }
  Napi::TypedArray array = info[0].As<Napi::TypedArray>();
  const size_t offset = checkedBytes(env, info[1]);
  const size_t bytes = array.ByteLength();
  if (offset > storage.byteLength() || bytes > storage.byteLength() - offset) {
    throw Napi::RangeError::New(env, std::string("NativeStorage.") + what + ": " + std::to_string(bytes) +
                                         " bytes at offset " + std::to_string(offset) +
                                         " do not fit in " + std::to_string(storage.byteLength()));
  }
  auto* base = static_cast<uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset();
  return {base, bytes, offset};
}

}  // namespace

AddonInstanceData& addonInstanceData(Napi::Env env) {
  AddonInstanceData* data = env.GetInstanceData<AddonInstanceData>();
  if (data == nullptr) {
    data = new AddonInstanceData();
    env.SetInstanceData(data);
  }
  return *data;
}

void NativeStorage::addTo(Napi::Env env, Napi::Object exports) {
  Napi::Function constructor = DefineClass(
      env, "NativeStorage",
      {InstanceMethod("dispose", &NativeStorage::Dispose),
       InstanceMethod("write", &NativeStorage::Write),
       InstanceMethod("read", &NativeStorage::Read),
       InstanceMethod("fill", &NativeStorage::Fill),
       InstanceAccessor("byteLength", &NativeStorage::GetByteLength, nullptr),
       InstanceAccessor("disposed", &NativeStorage::GetDisposed, nullptr)});
  addonInstanceData(env).nativeStorage = Napi::Persistent(constructor);
  exports.Set("NativeStorage", constructor);
}

NativeStorage::NativeStorage(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeStorage>(info) {
  Napi::Env env = info.Env();
  bytes_ = checkedBytes(env, info.Length() > 0 ? info[0] : env.Undefined());
  data_ = static_cast<uint8_t*>(allocateHostMemory(bytes_));
  if (data_ == nullptr) {
    throw Napi::RangeError::New(env, "NativeStorage: could not allocate " + std::to_string(bytes_) + " bytes");
  }
  Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(bytes_));
}

NativeStorage::~NativeStorage() { release(Env()); }

void NativeStorage::release(napi_env env) {
  if (data_ == nullptr) return;
  freeHostMemory(data_, bytes_);
  data_ = nullptr;
  int64_t unused = 0;
  napi_adjust_external_memory(env, -static_cast<int64_t>(bytes_), &unused);
}

Napi::Value NativeStorage::Dispose(const Napi::CallbackInfo& info) {
  release(info.Env());
  return info.Env().Undefined();
}

Napi::Value NativeStorage::Write(const Napi::CallbackInfo& info) {
  const CopyRange r = copyRange(info, *this, "write");
  std::memcpy(data_ + r.offset, r.array, r.arrayBytes);
  return info.Env().Undefined();
}

Napi::Value NativeStorage::Read(const Napi::CallbackInfo& info) {
  const CopyRange r = copyRange(info, *this, "read");
  std::memcpy(r.array, data_ + r.offset, r.arrayBytes);
  return info.Env().Undefined();
}

// fill(byteValue): every byte set (0 zeroes any dtype).
Napi::Value NativeStorage::Fill(const Napi::CallbackInfo& info) {
  if (disposed()) throw Napi::Error::New(info.Env(), "NativeStorage.fill: the storage was disposed");
  const int value = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
  std::memset(data_, value, bytes_);
  return info.Env().Undefined();
}

Napi::Value NativeStorage::GetByteLength(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(bytes_));
}

Napi::Value NativeStorage::GetDisposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), disposed());
}

uint8_t* storageData(const Napi::Value& value, size_t byteOffset, size_t bytes, const char* name) {
  Napi::Env env = value.Env();
  Napi::FunctionReference& constructor = addonInstanceData(env).nativeStorage;
  if (!value.IsObject() || constructor.IsEmpty() || !value.As<Napi::Object>().InstanceOf(constructor.Value())) {
    throw Napi::TypeError::New(env, std::string(name) + ": expected a NativeStorage");
  }
  NativeStorage* storage = NativeStorage::Unwrap(value.As<Napi::Object>());
  if (storage->disposed()) {
    throw Napi::Error::New(env, std::string(name) + ": the tensor's storage was disposed");
  }
  if (byteOffset > storage->byteLength() || bytes > storage->byteLength() - byteOffset) {
    throw Napi::RangeError::New(env, std::string(name) + ": " + std::to_string(bytes) + " bytes at offset " +
                                         std::to_string(byteOffset) + " do not fit in its storage of " +
                                         std::to_string(storage->byteLength()));
  }
  return storage->data() + byteOffset;
}

}  // namespace fusedpo
