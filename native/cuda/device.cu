// Devices, memory and streams for the binding: thin wrappers of the CUDA runtime that turn every
// error into a CudaStatus naming the operation and its sizes (out of memory says how much was
// asked for and how much the device has free). No kernels here.
#include "common.cuh"

namespace fusedpo::cuda {

namespace {

// " (free X of Y MiB on device d)", or "" when the device cannot say.
void describeMemory(char* out, size_t size) {
  out[0] = '\0';
  int device = -1;
  size_t freeBytes = 0, totalBytes = 0;
  if (cudaGetDevice(&device) != cudaSuccess || cudaMemGetInfo(&freeBytes, &totalBytes) != cudaSuccess) {
    cudaGetLastError();  // do not leave this query's error behind for the next launch check
    return;
  }
  snprintf(out, size, " (%.1f MiB free of %.1f MiB on device %d)", freeBytes / 1048576.0,
           totalBytes / 1048576.0, device);
}

cudaStream_t asStream(void* stream) { return static_cast<cudaStream_t>(stream); }

}  // namespace

CudaStatus deviceInfo(DeviceInfo* info) {
  if (info == nullptr) return invalidArgument("deviceInfo: info is null");
  *info = DeviceInfo{};
  int driverVersion = 0, runtimeVersion = 0;
  cudaDriverGetVersion(&driverVersion);  // 0 when no driver is installed; never fails otherwise
  cudaRuntimeGetVersion(&runtimeVersion);
  info->driverVersion = driverVersion;
  info->runtimeVersion = runtimeVersion;
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear it: a later call may still succeed once a device is present
    return statusFromError(err, "deviceInfo: cudaGetDeviceCount (driver %d, runtime %d)",
                           driverVersion, runtimeVersion);
  }
  int current = 0;
  cudaGetDevice(&current);
  info->deviceCount = count < kMaxDevices ? count : kMaxDevices;
  for (int d = 0; d < info->deviceCount; ++d) {
    DeviceProperties& out = info->devices[d];
    cudaDeviceProp prop;
    err = cudaGetDeviceProperties(&prop, d);
    if (err != cudaSuccess) {
      return statusFromError(err, "deviceInfo: cudaGetDeviceProperties(%d)", d);
    }
    snprintf(out.name, sizeof(out.name), "%s", prop.name);
    out.computeMajor = prop.major;
    out.computeMinor = prop.minor;
    out.multiProcessorCount = prop.multiProcessorCount;
    out.totalMemoryBytes = static_cast<int64_t>(prop.totalGlobalMem);
    out.memoryBusWidthBits = prop.memoryBusWidth;
    out.pciBusId = prop.pciBusID;
    // Free memory needs a context: asked of the current device only, so that listing the
    // devices does not create a context (and its memory) on every GPU of the machine.
    out.freeMemoryBytes = -1;
    size_t freeBytes = 0, totalBytes = 0;
    if (d == current) {
      if (cudaMemGetInfo(&freeBytes, &totalBytes) == cudaSuccess) {
        out.freeMemoryBytes = static_cast<int64_t>(freeBytes);
      } else {
        cudaGetLastError();
      }
    }
  }
  return statusOk();
}

CudaStatus setDevice(int32_t device) {
  cudaError_t err = cudaSetDevice(device);
  if (err != cudaSuccess) return statusFromError(err, "cudaSetDevice(%d)", device);
  return statusOk();
}

CudaStatus deviceAlloc(void** ptr, size_t bytes) {
  if (ptr == nullptr) return invalidArgument("deviceAlloc: ptr is null");
  *ptr = nullptr;
  if (bytes == 0) return statusOk();
  cudaError_t err = cudaMalloc(ptr, bytes);
  if (err != cudaSuccess) {
    *ptr = nullptr;
    cudaGetLastError();  // an allocation failure is not sticky; clear it
    char memory[96];
    describeMemory(memory, sizeof(memory));
    return statusFromError(err, "cudaMalloc of %zu bytes (%.1f MiB)%s", bytes,
                           bytes / 1048576.0, memory);
  }
  return statusOk();
}

CudaStatus deviceFree(void* ptr) {
  if (ptr == nullptr) return statusOk();
  cudaError_t err = cudaFree(ptr);
  if (err != cudaSuccess) return statusFromError(err, "cudaFree(%p)", ptr);
  return statusOk();
}

CudaStatus deviceMemset(void* ptr, int value, size_t bytes, void* stream) {
  if (bytes == 0) return statusOk();
  if (ptr == nullptr) return invalidArgument("deviceMemset: ptr is null (%zu bytes)", bytes);
  cudaError_t err = cudaMemsetAsync(ptr, value, bytes, asStream(stream));
  if (err != cudaSuccess) return statusFromError(err, "cudaMemsetAsync of %zu bytes", bytes);
  return statusOk();
}

namespace {

CudaStatus copy(const char* what, void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                void* stream) {
  if (bytes == 0) return statusOk();
  if (dst == nullptr || src == nullptr) {
    return invalidArgument("%s of %zu bytes: null pointer (dst %p, src %p)", what, bytes, dst,
                           src);
  }
  cudaError_t err = cudaMemcpyAsync(dst, src, bytes, kind, asStream(stream));
  if (err != cudaSuccess) return statusFromError(err, "%s of %zu bytes", what, bytes);
  return statusOk();
}

}  // namespace

CudaStatus copyToDevice(void* dst, const void* hostSrc, size_t bytes, void* stream) {
  return copy("copyToDevice", dst, hostSrc, bytes, cudaMemcpyHostToDevice, stream);
}

CudaStatus copyToHost(void* hostDst, const void* src, size_t bytes, void* stream) {
  return copy("copyToHost", hostDst, src, bytes, cudaMemcpyDeviceToHost, stream);
}

CudaStatus copyDeviceToDevice(void* dst, const void* src, size_t bytes, void* stream) {
  return copy("copyDeviceToDevice", dst, src, bytes, cudaMemcpyDeviceToDevice, stream);
}

CudaStatus streamCreate(void** stream) {
  if (stream == nullptr) return invalidArgument("streamCreate: stream is null");
  cudaStream_t created = nullptr;
  cudaError_t err = cudaStreamCreateWithFlags(&created, cudaStreamNonBlocking);
  if (err != cudaSuccess) return statusFromError(err, "cudaStreamCreateWithFlags");
  *stream = created;
  return statusOk();
}

CudaStatus streamDestroy(void* stream) {
  if (stream == nullptr) return statusOk();
  cudaError_t err = cudaStreamDestroy(asStream(stream));
  if (err != cudaSuccess) return statusFromError(err, "cudaStreamDestroy(%p)", stream);
  return statusOk();
}

CudaStatus streamSynchronize(void* stream) {
  cudaError_t err = cudaStreamSynchronize(asStream(stream));
  if (err != cudaSuccess) return statusFromError(err, "cudaStreamSynchronize(%p)", stream);
  return statusOk();
}

}  // namespace fusedpo::cuda
