// Node-API bindings of fusedpo: the only C++ that knows JavaScript. It unpacks the request
// objects that lib/losses.ts builds (after validating every argument there), runs the kernels
// of native/core and native/cpu, and packs their results. No arithmetic here.
//
// Errors: lib/ validates before calling, so a TypeError from here means lib/ and the addon
// disagree (a version mismatch); it names the field. Data-dependent failures (a non-finite
// logit) come back as fields of the result, and lib/errors.ts turns them into errors.
#include <napi.h>

#include <algorithm>
#include <string>

#include "core/preference_loss.h"
#include "cpu/host_memory.h"
#include "napi/cuda_bindings.h"
#include "napi/loss_job.h"
#include "napi/loss_result.h"
#include "napi/matmul_bindings.h"
#include "napi/nn_bindings.h"
#include "napi/request_fields.h"
#include "napi/storage.h"

namespace fusedpo {
namespace {

const char* kAddonVersion = "0.1.0";

// Fills job's inputs from the request object built by lib/losses.ts (NativeLossRequest).
void readRequest(const Napi::Object& request, LossJob& job) {
  job.impl = numberField(request, "impl") == 0 ? Impl::Reference : Impl::Fast;
  const int dtype = static_cast<int>(numberField(request, "dtype"));
  job.dtype = static_cast<DType>(dtype);
  job.shape.rows = static_cast<int64_t>(numberField(request, "rows"));
  job.shape.tokens = static_cast<int64_t>(numberField(request, "tokens"));
  job.shape.vocab = static_cast<int64_t>(numberField(request, "vocab"));
  const size_t tokenCount = static_cast<size_t>(job.shape.rows * job.shape.tokens);
  const size_t logitCount = tokenCount * static_cast<size_t>(job.shape.vocab);
  const napi_typedarray_type logitsKind =
      job.dtype == DType::F32 ? napi_float32_array : napi_uint16_array;
  job.logits = bufferField(request, "logits", logitsKind, logitCount);
  job.labels = static_cast<const int32_t*>(
      bufferField(request, "labels", napi_int32_array, tokenCount));
  job.ignoreIndex = static_cast<int32_t>(numberField(request, "ignoreIndex"));
  job.allowNonFinite = boolField(request, "allowNonFinite");
  Napi::Value returnLse = request.Get("returnLse");
  job.returnLse = returnLse.IsBoolean() && returnLse.As<Napi::Boolean>().Value();
  job.withLoss = boolField(request, "withLoss");
  if (!job.withLoss) return;

  Napi::Value ref = request.Get("refLogps");
  job.refLogps = ref.IsNull() || ref.IsUndefined()
                     ? nullptr
                     : static_cast<const float*>(bufferField(
                           request, "refLogps", napi_float32_array, job.shape.rows));
  Napi::Value dlogits = request.Get("dlogits");
  job.dlogits = dlogits.IsNull() || dlogits.IsUndefined()
                    ? nullptr
                    : bufferField(request, "dlogits", logitsKind, logitCount);

  job.params = lossParamsFields(request);
}

Napi::Value PreferenceLoss(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsObject()) {
    throw Napi::TypeError::New(info.Env(), "preferenceLoss: expected a request object");
  }
  LossJob job;
  readRequest(info[0].As<Napi::Object>(), job);
  runLossJob(job);
  return writeLossResult(info.Env(), job);
}

// Stage 4 alone: dlogits from the logits, the lse of an earlier forward call (returnLse) and
// per-row coefficients given by the caller (autograd scales them by the upstream gradient).
Napi::Value LogsoftmaxGatherBackward(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsObject()) {
    throw Napi::TypeError::New(info.Env(), "logsoftmaxGatherBackward: expected a request object");
  }
  Napi::Object request = info[0].As<Napi::Object>();
  const Impl impl = numberField(request, "impl") == 0 ? Impl::Reference : Impl::Fast;
  const DType dtype = static_cast<DType>(static_cast<int>(numberField(request, "dtype")));
  const LogitsShape shape{static_cast<int64_t>(numberField(request, "rows")),
                          static_cast<int64_t>(numberField(request, "tokens")),
                          static_cast<int64_t>(numberField(request, "vocab"))};
  const size_t tokenCount = static_cast<size_t>(shape.rows * shape.tokens);
  const size_t logitCount = tokenCount * static_cast<size_t>(shape.vocab);
  const napi_typedarray_type logitsKind = dtype == DType::F32 ? napi_float32_array : napi_uint16_array;
  logsoftmaxGatherBackward(
      impl, bufferField(request, "logits", logitsKind, logitCount), dtype, shape,
      static_cast<const int32_t*>(bufferField(request, "labels", napi_int32_array, tokenCount)),
      static_cast<int32_t>(numberField(request, "ignoreIndex")),
      static_cast<const float*>(bufferField(request, "lse", napi_float32_array, tokenCount)),
      static_cast<const float*>(bufferField(request, "coef", napi_float32_array, shape.rows)),
      bufferField(request, "dlogits", logitsKind, logitCount));
  return info.Env().Undefined();
}

// Runs a LossJob on libuv's thread pool. The request object, and through it every typed array
// the kernels read or write, stays referenced until the promise settles, so the garbage
// collector cannot free them mid-run.
class LossWorker : public Napi::AsyncWorker {
 public:
  LossWorker(Napi::Env env, Napi::Object request)
      : Napi::AsyncWorker(env, "fusedpo.preferenceLoss"),
        deferred_(Napi::Promise::Deferred::New(env)),
        request_(Napi::Persistent(request)) {
    readRequest(request, job_);
  }

  Napi::Promise promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override { runLossJob(job_); }
  void OnOK() override {
    deferred_.Resolve(writeLossResult(Env(), job_));
    request_.Reset();
  }
  void OnError(const Napi::Error& error) override {
    deferred_.Reject(error.Value());
    request_.Reset();
  }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference request_;
  LossJob job_;
};

Napi::Value PreferenceLossAsync(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsObject()) {
    throw Napi::TypeError::New(info.Env(), "preferenceLossAsync: expected a request object");
  }
  auto* worker = new LossWorker(info.Env(), info[0].As<Napi::Object>());
  Napi::Promise promise = worker->promise();
  worker->Queue();  // the worker deletes itself when done
  return promise;
}

// A zero-filled ArrayBuffer of `bytes` from V8's own allocator (so the collector frees it as
// promptly as any other), whose pages, not yet touched, are advised onto huge pages
// (cpu/host_memory.h): its first write costs a fraction of 4 KiB page faults.
Napi::Value AllocateBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber() || info[0].As<Napi::Number>().DoubleValue() < 1) {
    throw Napi::TypeError::New(env, "allocateBuffer: expected a positive byte count");
  }
  const size_t bytes = static_cast<size_t>(info[0].As<Napi::Number>().DoubleValue());
  Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(env, bytes);
  adviseHugePages(buffer.Data(), bytes);
  return buffer;
}

// The external bytes this environment has reported to V8 (NativeStorage), as V8 counts them.
Napi::Value ExternalMemory(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(),
                           static_cast<double>(Napi::MemoryManagement::AdjustExternalMemory(info.Env(), 0)));
}

Napi::Value SetThreadCount(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), "setThreadCount: expected a number");
  }
  setThreadCount(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("addonVersion", kAddonVersion);
  out.Set("napiVersion", NAPI_VERSION);
  out.Set("simd", simdLevel());
  out.Set("cpuFeatures", cpuFeatures());
  out.Set("threads", threadCount());
  out.Set("cuda", kWithCuda);
  return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("info", Napi::Function::New(env, Info, "info"));
  exports.Set("allocateBuffer", Napi::Function::New(env, AllocateBuffer, "allocateBuffer"));
  exports.Set("externalMemory", Napi::Function::New(env, ExternalMemory, "externalMemory"));
  exports.Set("setThreadCount", Napi::Function::New(env, SetThreadCount, "setThreadCount"));
  exports.Set("preferenceLoss", Napi::Function::New(env, PreferenceLoss, "preferenceLoss"));
  exports.Set("logsoftmaxGatherBackward",
              Napi::Function::New(env, LogsoftmaxGatherBackward, "logsoftmaxGatherBackward"));
  exports.Set("preferenceLossAsync",
              Napi::Function::New(env, PreferenceLossAsync, "preferenceLossAsync"));
  NativeStorage::addTo(env, exports);
  addCudaBindings(env, exports);
  addNnBindings(env, exports);
  addMatmulBindings(env, exports);
  return exports;
}

}  // namespace
}  // namespace fusedpo

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  return fusedpo::Init(env, exports);
}

NODE_API_MODULE(fusedpo, InitAddon)
