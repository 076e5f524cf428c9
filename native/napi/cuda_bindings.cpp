// Bindings of the CUDA addon: device discovery for now (see cuda_bindings.h).
#include "napi/cuda_bindings.h"

#include <string>

#ifdef FUSEDPO_WITH_CUDA
#include "cuda/preference_loss_cuda.h"
#endif

namespace fusedpo {

#ifdef FUSEDPO_WITH_CUDA
namespace {

// CudaInfo of lib/native.ts: the driver, the devices, or why there are none.
Napi::Value CudaInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  cuda::DeviceInfo devices;
  const cuda::CudaStatus status = cuda::deviceInfo(&devices);
  Napi::Object out = Napi::Object::New(env);
  out.Set("driverFound", devices.driverVersion > 0);
  out.Set("driverVersion", devices.driverVersion);
  out.Set("runtimeVersion", devices.runtimeVersion);
  Napi::Array list = Napi::Array::New(env);
  for (int32_t i = 0; i < devices.deviceCount; ++i) {
    const cuda::DeviceProperties& d = devices.devices[i];
    Napi::Object device = Napi::Object::New(env);
    device.Set("index", i);
    device.Set("name", d.name);
    device.Set("computeCapability",
               std::to_string(d.computeMajor) + "." + std::to_string(d.computeMinor));
    device.Set("totalMemoryBytes", static_cast<double>(d.totalMemoryBytes));
    list.Set(static_cast<uint32_t>(i), device);
  }
  out.Set("devices", list);
  out.Set("error", status.ok() ? env.Null() : Napi::String::New(env, status.message));
  return out;
}

}  // namespace

void addCudaBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("cudaInfo", Napi::Function::New(env, CudaInfo, "cudaInfo"));
}
#else
void addCudaBindings(Napi::Env, Napi::Object) {}
#endif

}  // namespace fusedpo
