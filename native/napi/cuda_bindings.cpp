// Bindings of the CUDA addon (see cuda_bindings.h): the devices, device memory (CudaStorage, the
// storage of a cuda Tensor) and the fused loss on it, synchronously or on a worker thread.
//
// Errors: a failed CUDA call or an out-of-memory becomes a JavaScript Error whose message names
// the operation, the sizes asked for and CUDA's error (and, for memory, what the device had
// free); the addon and the CUDA context stay usable. lib/ validates every argument first, so a
// TypeError from here means lib/ and the addon disagree (a version mismatch).
#include "napi/cuda_bindings.h"

#include <map>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#ifdef FUSEDPO_WITH_CUDA
#include "cuda/preference_loss_cuda.h"
#include "napi/buffers.h"
#include "napi/cuda_loss_job.h"
#include "napi/loss_result.h"
#include "napi/request_fields.h"
#include "napi/storage.h"
#endif

namespace fusedpo {

#ifdef FUSEDPO_WITH_CUDA
namespace {

// ---- Device memory cache -----------------------------------------------------------------------
// Blocks that CudaStorage frees, kept for reuse by exact size: a training loop frees and asks for
// the same sizes every step, and cudaMalloc / cudaFree of a large block cost milliseconds (and
// cudaFree waits for the whole device). At most a quarter of the device's memory is kept; when
// cudaMalloc fails, the cache is emptied and it is asked again. cudaEmptyCache() empties it.
// Safe: every loss job has finished (or pins its storages) before a storage can be freed.
class DeviceBlockCache {
 public:
  cuda::CudaStatus allocate(void** ptr, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = blocks_.find(bytes);
    if (it != blocks_.end()) {
      *ptr = it->second;
      blocks_.erase(it);
      cached_ -= bytes;
      live_ += bytes;
      return cuda::CudaStatus{};
    }
    cuda::CudaStatus status = cuda::deviceAlloc(ptr, bytes);
    if (!status.ok() && !blocks_.empty()) {
      emptyLocked();
      status = cuda::deviceAlloc(ptr, bytes);
    }
    if (status.ok()) live_ += bytes;
    return status;
  }

  void release(void* ptr, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    live_ -= bytes;
    if (cached_ + bytes > limitLocked()) {
      cuda::deviceFree(ptr);  // a failure here (a dead context) leaves nothing to do
      return;
    }
    blocks_.emplace(bytes, ptr);
    cached_ += bytes;
  }

  void empty() {
    std::lock_guard<std::mutex> lock(mutex_);
    emptyLocked();
  }
  size_t cachedBytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_;
  }
  size_t liveBytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return live_;
  }

 private:
  void emptyLocked() {
    for (auto& block : blocks_) cuda::deviceFree(block.second);
    blocks_.clear();
    cached_ = 0;
  }
  size_t limitLocked() {
    if (limit_ == 0) {
      cuda::DeviceInfo info;
      cuda::deviceInfo(&info);
      limit_ = info.deviceCount > 0 ? static_cast<size_t>(info.devices[0].totalMemoryBytes) / 4 : 1;
    }
    return limit_;
  }

  std::mutex mutex_;
  std::multimap<size_t, void*> blocks_;
  size_t cached_ = 0, live_ = 0, limit_ = 0;
};

DeviceBlockCache& blockCache() {
  static DeviceBlockCache* cache = new DeviceBlockCache();  // never destroyed: finalizers may run late
  return *cache;
}

// ---- CudaStorage ------------------------------------------------------------------------------
// Device memory behind a cuda Tensor: from the block cache (else cudaMalloc), reported to V8 as
// external memory, given back by dispose() or by the finalizer. Copies to and from typed arrays run on the
// jobs' stream, so they are ordered after any loss job still running on this memory. A job in
// flight pins the storage: dispose() then marks it disposed at once and frees it when the job ends.
class CudaStorage : public Napi::ObjectWrap<CudaStorage> {
 public:
  static void addTo(Napi::Env env, Napi::Object exports) {
    Napi::Function fn = DefineClass(
        env, "CudaStorage",
        {InstanceMethod("dispose", &CudaStorage::Dispose), InstanceMethod("write", &CudaStorage::Write),
         InstanceMethod("read", &CudaStorage::Read), InstanceMethod("fill", &CudaStorage::Fill),
         InstanceAccessor("byteLength", &CudaStorage::GetByteLength, nullptr),
         InstanceAccessor("disposed", &CudaStorage::GetDisposed, nullptr)});
    addonInstanceData(env).cudaStorage = Napi::Persistent(fn);
    exports.Set("CudaStorage", fn);
  }

  explicit CudaStorage(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CudaStorage>(info) {
    Napi::Env env = info.Env();
    bytes_ = byteCountArgument(env, info.Length() > 0 ? info[0] : env.Undefined(), "CudaStorage");
    if (bytes_ > 0) {
      const cuda::CudaStatus status = blockCache().allocate(&data_, bytes_);
      if (!status.ok()) throw Napi::Error::New(env, std::string("cuda tensor: ") + status.message);
    }
    Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(bytes_));
  }

  ~CudaStorage() override { release(Env()); }

  uint8_t* data() const { return static_cast<uint8_t*>(data_); }
  size_t byteLength() const { return bytes_; }
  bool disposed() const { return disposed_; }
  void pin() { ++pins_; }
  void unpin(napi_env env) {
    if (--pins_ == 0 && disposed_) release(env);
  }

 private:
  void release(napi_env env) {
    disposed_ = true;
    if (pins_ > 0 || freed_) return;
    freed_ = true;
    if (data_ != nullptr) blockCache().release(data_, bytes_);
    data_ = nullptr;
    int64_t unused = 0;
    napi_adjust_external_memory(env, -static_cast<int64_t>(bytes_), &unused);
  }

  // Copies wait for the stream: the data are in place (or read) when the call returns.
  void finish(Napi::Env env, const cuda::CudaStatus& copied, const char* what, size_t bytes) {
    cuda::CudaStatus status = copied;
    if (status.ok()) status = cuda::streamSynchronize(cudaJobStream());
    if (!status.ok()) {
      throw Napi::Error::New(env, std::string("cuda tensor ") + what + " of " + std::to_string(bytes) +
                                      " bytes: " + status.message);
    }
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    release(info.Env());
    return info.Env().Undefined();
  }
  Napi::Value Write(const Napi::CallbackInfo& info) {
    const CopyRange r = copyRangeArguments(info, "CudaStorage", bytes_, disposed_, "write");
    finish(info.Env(), cuda::copyToDevice(data() + r.offset, r.array, r.arrayBytes, cudaJobStream()), "write", r.arrayBytes);
    return info.Env().Undefined();
  }
  Napi::Value Read(const Napi::CallbackInfo& info) {
    const CopyRange r = copyRangeArguments(info, "CudaStorage", bytes_, disposed_, "read");
    finish(info.Env(), cuda::copyToHost(r.array, data() + r.offset, r.arrayBytes, cudaJobStream()), "read", r.arrayBytes);
    return info.Env().Undefined();
  }
  Napi::Value Fill(const Napi::CallbackInfo& info) {
    if (disposed_) throw Napi::Error::New(info.Env(), "CudaStorage.fill: the storage was disposed");
    const double byte = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
    if (!(byte >= 0 && byte <= 255) || byte != static_cast<double>(static_cast<int>(byte))) {
      throw Napi::RangeError::New(info.Env(), "CudaStorage.fill: expected a byte value in [0, 255]");
    }
    const int value = static_cast<int>(byte);
    finish(info.Env(), cuda::deviceMemset(data_, value, bytes_, cudaJobStream()), "fill", bytes_);
    return info.Env().Undefined();
  }
  Napi::Value GetByteLength(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(bytes_));
  }
  Napi::Value GetDisposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), disposed_); }

  void* data_ = nullptr;
  size_t bytes_ = 0;
  int pins_ = 0;
  bool disposed_ = false;
  bool freed_ = false;
};

// The CudaStorage in field `name` of a request, alive and holding `bytes` at `<name>ByteOffset`.
CudaStorage* storageField(const Napi::Object& request, const char* name, size_t bytes, size_t* byteOffset) {
  *byteOffset = static_cast<size_t>(integerField(request, (std::string(name) + "ByteOffset").c_str()));
  return checkedStorage<CudaStorage>(requireField(request, name), addonInstanceData(request.Env()).cudaStorage,
                                     *byteOffset, bytes, name, "a CudaStorage (the storage of a cuda tensor)");
}

// A copy of a host field of `length` floats (lse, coef of a backward pass).
std::vector<float> hostFloatsField(const Napi::Object& request, const char* name, size_t length) {
  const auto* data = static_cast<const float*>(bufferField(request, name, Element::F32, length));
  return std::vector<float>(data, data + length);
}

// A CudaLossJob from the request lib/losses.ts builds (NativeCudaLossRequest), each field read
// once, labels and refLogps copied and checked; and the storages it uses (logits, and dlogits
// unless null or in place), for pinning.
CudaLossJob readCudaRequest(const Napi::Object& request, std::vector<CudaStorage*>& storages) {
  CudaLossJob job;
  job.dtype = dtypeField(request);
  job.shape = logitsShapeFields(request);
  const size_t tokens = static_cast<size_t>(job.shape.rows * job.shape.tokens);
  const size_t logitBytes = tokens * static_cast<size_t>(job.shape.vocab) * (job.dtype == DType::F32 ? 4 : 2);
  size_t offset = 0;
  CudaStorage* logits = storageField(request, "logits", logitBytes, &offset);
  job.logits = logits->data() + offset;
  storages.push_back(logits);
  job.ignoreIndex = ignoreIndexField(request);
  job.labels = labelsField(request, job.shape, job.ignoreIndex);
  Napi::Value dlogits = request.Get("dlogits");
  if (!isAbsent(dlogits)) {
    size_t outOffset = 0;
    CudaStorage* out = storageField(request, "dlogits", logitBytes, &outOffset);
    job.dlogits = out->data() + outOffset;
    OverlapCheck overlaps;
    overlaps.input("logits", job.logits, logitBytes);
    overlaps.output("dlogits", job.dlogits, logitBytes, job.logits);
    overlaps.check(request.Env(), "cudaPreferenceLoss");
    if (out != logits) storages.push_back(out);
  }
  if (boolField(request, "backwardOnly")) {
    job.kind = CudaLossJob::Kind::BackwardOnly;
    job.lseIn = hostFloatsField(request, "lse", tokens);
    job.coefIn = hostFloatsField(request, "coef", static_cast<size_t>(job.shape.rows));
    if (job.dlogits == nullptr) throw Napi::TypeError::New(request.Env(), "native request: backwardOnly needs dlogits");
    return job;
  }
  job.allowNonFinite = boolField(request, "allowNonFinite");
  job.returnLse = boolField(request, "returnLse");
  const Napi::Value withLoss = request.Get("withLoss");  // absent: true
  if (!withLoss.IsUndefined() && !withLoss.IsBoolean()) {
    throw Napi::TypeError::New(request.Env(), "native request: expected a boolean for withLoss");
  }
  job.withLoss = withLoss.IsUndefined() || withLoss.As<Napi::Boolean>().Value();
  if (!job.withLoss) {
    if (job.dlogits != nullptr) throw Napi::TypeError::New(request.Env(), "native request: withLoss false takes no dlogits");
    return job;
  }
  job.params = lossParamsFields(request);
  lossInputFields(request, job.params, job.shape, job.refLogps, job.rewards);
  return job;
}

// Where a job's results go: lib/'s arrays (none for the backward pass alone).
LossOutputs cudaOutputFields(const Napi::Object& request, const CudaLossJob& job) {
  if (job.kind == CudaLossJob::Kind::BackwardOnly) return LossOutputs{};
  return lossOutputFields(request, job.shape, job.withLoss, job.returnLse);
}

// What a finished job gives JavaScript: undefined for the backward pass alone, else the result.
Napi::Value jobResult(Napi::Env env, const CudaLossJob& job, const LossOutputs& outputs) {
  if (job.kind == CudaLossJob::Kind::BackwardOnly) return env.Undefined();
  return writeLossResult(env, job, outputs);
}

Napi::Value CudaPreferenceLoss(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "cudaPreferenceLoss: expected a request object");
  std::vector<CudaStorage*> storages;
  const Napi::Object request = info[0].As<Napi::Object>();
  CudaLossJob job = readCudaRequest(request, storages);
  const LossOutputs outputs = cudaOutputFields(request, job);
  try {
    runCudaLossJob(job);
  } catch (const CudaJobError& e) {
    throw Napi::Error::New(env, e.what());
  } catch (const std::bad_alloc&) {
    throw outOfMemory(env, "cudaPreferenceLoss", 0, "host scratch for " + describeJob(job));
  }
  return jobResult(env, job, outputs);
}

// Runs a CudaLossJob on libuv's thread pool: the event loop stays free while the GPU works. The
// storages it reads and writes are pinned (dispose() defers the free) and referenced (the
// collector cannot finalize them) until the promise settles.
class CudaLossWorker : public Napi::AsyncWorker {
 public:
  CudaLossWorker(Napi::Env env, Napi::Object request)
      : Napi::AsyncWorker(env, "fusedpo.cudaPreferenceLoss"), deferred_(Napi::Promise::Deferred::New(env)) {
    job_ = readCudaRequest(request, storages_);
    outputs_ = cudaOutputFields(request, job_);
    request_ = Napi::Persistent(request);  // and through it the result arrays
    for (CudaStorage* storage : storages_) {
      storage->pin();
      references_.push_back(Napi::Persistent(storage->Value()));
    }
  }
  Napi::Promise promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      runCudaLossJob(job_);
    } catch (const CudaJobError& e) {
      SetError(e.what());
    } catch (const std::bad_alloc&) {
      SetError("cudaPreferenceLossAsync: out of memory: host scratch for " + describeJob(job_));
    }
  }
  void OnOK() override {
    release();
    deferred_.Resolve(jobResult(Env(), job_, outputs_));
  }
  void OnError(const Napi::Error& error) override {
    release();
    deferred_.Reject(error.Value());
  }

 private:
  void release() {
    for (CudaStorage* storage : storages_) storage->unpin(Env());
    for (Napi::ObjectReference& reference : references_) reference.Reset();
    request_.Reset();
  }
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference request_;
  CudaLossJob job_;
  LossOutputs outputs_;
  std::vector<CudaStorage*> storages_;
  std::vector<Napi::ObjectReference> references_;
};

Napi::Value CudaPreferenceLossAsync(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsObject()) {
    throw Napi::TypeError::New(info.Env(), "cudaPreferenceLossAsync: expected a request object");
  }
  auto* worker = new CudaLossWorker(info.Env(), info[0].As<Napi::Object>());
  Napi::Promise promise = worker->promise();
  worker->Queue();  // deletes itself when done
  return promise;
}

// CudaMemory of lib/native.ts: bytes held by live cuda tensors, and kept in the cache.
Napi::Value CudaMemory(const Napi::CallbackInfo& info) {
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("tensorBytes", static_cast<double>(blockCache().liveBytes()));
  out.Set("cachedBytes", static_cast<double>(blockCache().cachedBytes()));
  return out;
}

Napi::Value CudaEmptyCache(const Napi::CallbackInfo& info) {
  blockCache().empty();
  return info.Env().Undefined();
}

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
    device.Set("freeMemoryBytes", static_cast<double>(d.freeMemoryBytes));
    list.Set(static_cast<uint32_t>(i), device);
  }
  out.Set("devices", list);
  out.Set("error", status.ok() ? env.Null() : Napi::String::New(env, status.message));
  return out;
}

}  // namespace

void addCudaBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("cudaInfo", Napi::Function::New(env, CudaInfo, "cudaInfo"));
  exports.Set("cudaPreferenceLoss", Napi::Function::New(env, CudaPreferenceLoss, "cudaPreferenceLoss"));
  exports.Set("cudaPreferenceLossAsync", Napi::Function::New(env, CudaPreferenceLossAsync, "cudaPreferenceLossAsync"));
  exports.Set("cudaMemory", Napi::Function::New(env, CudaMemory, "cudaMemory"));
  exports.Set("cudaEmptyCache", Napi::Function::New(env, CudaEmptyCache, "cudaEmptyCache"));
  CudaStorage::addTo(env, exports);
}
#else
void addCudaBindings(Napi::Env, Napi::Object) {}
#endif

}  // namespace fusedpo
