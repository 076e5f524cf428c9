// NativeStorage: the memory behind a Tensor (lib/tensor.ts). Allocated here rather than as a V8
// ArrayBuffer so that a training loop can free a step's intermediates the moment it is done with
// them (dispose()), instead of waiting for the garbage collector; the bytes are reported to V8
// either way, and the finalizer frees what was never disposed.
//
// JavaScript never gets a view of the memory (a view would outlive dispose()): data moves in and
// out by copy (write/read), and kernels receive the storage object itself, which the bindings
// unwrap with storageData() after checking that it is alive and large enough.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>

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
  bool disposed() const { return data_ == nullptr; }

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
};

// The bytes [byteOffset, byteOffset + bytes) of a NativeStorage passed as `value`, or a
// TypeError naming `name` when it is not a storage, is disposed, or is too small.
uint8_t* storageData(const Napi::Value& value, size_t byteOffset, size_t bytes, const char* name);

}  // namespace fusedpo
