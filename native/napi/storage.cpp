// See storage.h.
#include "napi/storage.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "cpu/host_memory.h"
#include "napi/buffers.h"

namespace fusedpo {

size_t byteCountArgument(const Napi::Env& env, const Napi::Value& value, const char* owner) {
  if (!value.IsNumber()) throw Napi::TypeError::New(env, std::string(owner) + ": expected a byte count");
  const double bytes = value.As<Napi::Number>().DoubleValue();
  if (!(bytes >= 0) || bytes > 9007199254740991.0 || bytes != static_cast<double>(static_cast<size_t>(bytes))) {
    throw Napi::RangeError::New(env, std::string(owner) + ": expected a non-negative integer byte count");
  }
  return static_cast<size_t>(bytes);
}

CopyRange copyRangeArguments(const Napi::CallbackInfo& info, const char* owner, size_t storageBytes, bool disposed,
                             const char* what) {
  Napi::Env env = info.Env();
  const std::string method = std::string(owner) + "." + what;
  if (disposed) throw Napi::Error::New(env, method + ": the storage was disposed");
  TypedArrayView array;
  if (info.Length() < 2 || !readTypedArray(info[0], &array) || !info[1].IsNumber()) {
    throw Napi::TypeError::New(env, method + ": expected (typedArray, byteOffset)");
  }
  const size_t offset = byteCountArgument(env, info[1], owner);
  const size_t bytes = array.byteLength;
  if (offset > storageBytes || bytes > storageBytes - offset) {
    throw Napi::RangeError::New(env, method + ": " + std::to_string(bytes) + " bytes at offset " + std::to_string(offset) +
                                         " do not fit in " + std::to_string(storageBytes));
  }
  return {array.data, bytes, offset};
}


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
  bytes_ = byteCountArgument(env, info.Length() > 0 ? info[0] : env.Undefined(), "NativeStorage");
  data_ = static_cast<uint8_t*>(allocateHostMemory(bytes_));
  if (data_ == nullptr) throw outOfMemory(env, "NativeStorage", static_cast<double>(bytes_), "host memory for a tensor");
  Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(bytes_));
}

NativeStorage::~NativeStorage() { release(Env()); }

void NativeStorage::release(napi_env env) {
  disposed_ = true;
  if (pins_ > 0 || data_ == nullptr) return;
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
  const CopyRange r = copyRangeArguments(info, "NativeStorage", bytes_, disposed(), "write");
  std::memcpy(data_ + r.offset, r.array, r.arrayBytes);
  return info.Env().Undefined();
}

Napi::Value NativeStorage::Read(const Napi::CallbackInfo& info) {
  const CopyRange r = copyRangeArguments(info, "NativeStorage", bytes_, disposed(), "read");
  std::memcpy(r.array, data_ + r.offset, r.arrayBytes);
  return info.Env().Undefined();
}

// fill(byteValue): every byte set (0 zeroes any dtype).
Napi::Value NativeStorage::Fill(const Napi::CallbackInfo& info) {
  if (disposed()) throw Napi::Error::New(info.Env(), "NativeStorage.fill: the storage was disposed");
  const double byte = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
  if (!(byte >= 0 && byte <= 255) || byte != static_cast<double>(static_cast<int>(byte))) {
    throw Napi::RangeError::New(info.Env(), "NativeStorage.fill: expected a byte value in [0, 255]");
  }
  const int value = static_cast<int>(byte);
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
  NativeStorage* storage = checkedStorage<NativeStorage>(value, addonInstanceData(value.Env()).nativeStorage, byteOffset,
                                                         bytes, name, "a NativeStorage");
  return storage->data() + byteOffset;
}

}  // namespace fusedpo
