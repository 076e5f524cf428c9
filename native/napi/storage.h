// NativeStorage: the memory behind a Tensor (lib/tensor.ts). Allocated here rather than as a V8
// ArrayBuffer so that a training loop can free a step's intermediates the moment it is done with
// them (dispose()), instead of waiting for the garbage collector; the bytes are reported to V8
// either way, and the finalizer frees what was never disposed.
//
// JavaScript never gets a view of the memory (a view would outlive dispose()): data moves in and
// out by copy (write/read), and kernels receive the storage object itself, which the bindings
// unwrap with storageData() after checking that it is alive and large enough.
//
// A job running off the event loop pins the storages it uses (pin/unpin, on the JavaScript
// thread): dispose() while pinned marks the storage disposed at once (no new use is accepted)
// and frees the memory when the last pin goes.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace fusedpo {

// The addon's per-environment data (the main thread and each worker thread load the addon into
// an environment of their own): the constructors that storage arguments are checked against.
struct AddonInstanceData {
  Napi::FunctionReference nativeStorage;
  Napi::FunctionReference cudaStorage;  // the CUDA addon only
};
// Created on first use, freed with the environment.
AddonInstanceData& addonInstanceData(Napi::Env env);

class NativeStorage : public Napi::ObjectWrap<NativeStorage> {
 public:
  static void addTo(Napi::Env env, Napi::Object exports);
  explicit NativeStorage(const Napi::CallbackInfo& info);
  ~NativeStorage() override;

  uint8_t* data() const { return data_; }
  size_t byteLength() const { return bytes_; }
  bool disposed() const { return disposed_; }
  void pin() { ++pins_; }
  void unpin(napi_env env) {
    if (--pins_ == 0 && disposed_) release(env);
  }

 private:
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value Write(const Napi::CallbackInfo& info);
  Napi::Value Read(const Napi::CallbackInfo& info);
  Napi::Value Fill(const Napi::CallbackInfo& info);
  Napi::Value GetByteLength(const Napi::CallbackInfo& info);
  Napi::Value GetDisposed(const Napi::CallbackInfo& info);
  void release(napi_env env);

  uint8_t* data_ = nullptr;
  size_t bytes_ = 0;
  int pins_ = 0;
  bool disposed_ = false;
};

// ---- Argument checks shared by NativeStorage and the CUDA addon's CudaStorage ----------------

// A byte count (or offset) argument of `owner` ("NativeStorage"): a non-negative integer that a
// double holds exactly; else a TypeError or RangeError naming the owner.
size_t byteCountArgument(const Napi::Env& env, const Napi::Value& value, const char* owner);

// The (typedArray, byteOffset) arguments of `owner.what` (write, read) on a storage of
// storageBytes: the array's bytes and where they go in the storage, checked.
struct CopyRange {
  uint8_t* array;
  size_t arrayBytes;
  size_t offset;
};
CopyRange copyRangeArguments(const Napi::CallbackInfo& info, const char* owner, size_t storageBytes, bool disposed,
                             const char* what);

// The storage object in `value` (an instance of `constructor`, described as `expected` when it is
// not), alive and holding `bytes` at `byteOffset`; else an error naming the argument `name`.
template <typename Storage>
Storage* checkedStorage(const Napi::Value& value, const Napi::FunctionReference& constructor, size_t byteOffset,
                        size_t bytes, const char* name, const char* expected) {
  Napi::Env env = value.Env();
  if (!value.IsObject() || constructor.IsEmpty() || !value.As<Napi::Object>().InstanceOf(constructor.Value())) {
    throw Napi::TypeError::New(env, std::string(name) + ": expected " + expected);
  }
  Storage* storage = Storage::Unwrap(value.As<Napi::Object>());
  if (storage->disposed()) throw Napi::Error::New(env, std::string(name) + ": the tensor's storage was disposed");
  if (byteOffset > storage->byteLength() || bytes > storage->byteLength() - byteOffset) {
    throw Napi::RangeError::New(env, std::string(name) + ": " + std::to_string(bytes) + " bytes at offset " +
                                         std::to_string(byteOffset) + " do not fit in its storage of " +
                                         std::to_string(storage->byteLength()));
  }
  return storage;
}

// The bytes [byteOffset, byteOffset + bytes) of a NativeStorage passed as `value`, or a
// TypeError naming `name` when it is not a storage, is disposed, or is too small.
uint8_t* storageData(const Napi::Value& value, size_t byteOffset, size_t bytes, const char* name);

}  // namespace fusedpo
