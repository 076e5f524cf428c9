// Node-API bindings of fusedpo: the only C++ that knows JavaScript. It unpacks the request
// objects that lib/losses.ts builds (after validating every argument there), runs the kernels
// of native/core and native/cpu, and packs their results. No arithmetic here.
//
// Errors: lib/ validates before calling; the bindings check again what the kernels will touch
// (request_fields.h, buffers.h), so that no caller can make a kernel read or write past its
// buffers, and an error from here names the field. Data-dependent failures (a non-finite logit,
// a gradient too large for its dtype) come back as fields of the result, and lib/ turns them into
// errors. An allocation that fails is a RangeError naming the operation and the bytes, never an
// abort.
#include <napi.h>

#include <algorithm>
#include <new>
#include <stdexcept>
#include <string>

#include "core/preference_loss.h"
#include "cpu/host_memory.h"
#include "napi/bandwidth_bindings.h"
#include "napi/interrupt_bindings.h"
#include "napi/buffers.h"
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

// The buffers a job borrows (as JavaScript values: typed arrays or NativeStorage objects), so
// that a job off the event loop can keep them alive, pin the storages and check, when it ends,
// that no typed array lost its memory meanwhile.
struct BorrowedBuffers {
  Napi::Value logits;
  Napi::Value dlogits;  // empty when there is no gradient buffer, or in place
};

// Fills job's inputs from the request object built by lib/losses.ts (NativeLossRequest), each
// field read once; copies the labels (checked against the vocabulary), refLogps and rewards.
void readRequest(const Napi::Object& request, LossJob& job, BorrowedBuffers& borrowed) {
  job.impl = implField(request);
  job.dtype = dtypeField(request);
  job.shape = logitsShapeFields(request);
  const size_t logitCount = static_cast<size_t>(job.shape.rows * job.shape.tokens * job.shape.vocab);
  const Element kind = logitsElement(job.dtype);
  borrowed.logits = requireField(request, "logits");
  job.logits = bufferValue(request, borrowed.logits, "logits", kind, logitCount);
  job.ignoreIndex = ignoreIndexField(request);
  job.labels = labelsField(request, job.shape, job.ignoreIndex);
  job.allowNonFinite = boolField(request, "allowNonFinite");
  job.returnLse = optionalBoolField(request, "returnLse");
  job.withLoss = boolField(request, "withLoss");
  if (!job.withLoss) return;

  Napi::Value dlogits = request.Get("dlogits");
  if (!isAbsent(dlogits)) {
    job.dlogits = bufferValue(request, dlogits, "dlogits", kind, logitCount);
    if (job.dlogits != job.logits) borrowed.dlogits = dlogits;
    OverlapCheck overlaps;
    const size_t bytes = logitCount * elementBytes(kind);
    overlaps.input("logits", job.logits, bytes);
    overlaps.output("dlogits", job.dlogits, bytes, job.logits);
    overlaps.check(request.Env(), "preferenceLoss");
  }
  job.params = lossParamsFields(request);
  lossInputFields(request, job.params, job.shape, job.refLogps, job.rewards);
}

// "[R, T, V]" for messages.
std::string shapeText(LogitsShape shape) {
  return "[" + std::to_string(shape.rows) + ", " + std::to_string(shape.tokens) + ", " + std::to_string(shape.vocab) + "]";
}

Napi::Value PreferenceLoss(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsObject()) {
    throw Napi::TypeError::New(info.Env(), "preferenceLoss: expected a request object");
  }
  LossJob job;
  BorrowedBuffers borrowed;
  const Napi::Object request = info[0].As<Napi::Object>();
  readRequest(request, job, borrowed);
  const LossOutputs outputs = lossOutputFields(request, job.shape, job.withLoss, job.returnLse);
  try {
    runLossJob(job);
  } catch (const std::bad_alloc&) {
    throw outOfMemory(info.Env(), "preferenceLoss", lossJobScratchBytes(job), "scratch for logits of shape " + shapeText(job.shape));
  }
  return writeLossResult(info.Env(), job, outputs);
}

// Stage 4 alone: dlogits from the logits, the lse of an earlier forward call (returnLse) and
// per-row coefficients given by the caller (autograd scales them by the upstream gradient).
Napi::Value PreferenceLossBackward(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsObject()) {
    throw Napi::TypeError::New(info.Env(), "preferenceLossBackward: expected a request object");
  }
  Napi::Object request = info[0].As<Napi::Object>();
  const Impl impl = implField(request);
  const DType dtype = dtypeField(request);
  const LogitsShape shape = logitsShapeFields(request);
  const size_t tokenCount = static_cast<size_t>(shape.rows * shape.tokens);
  const size_t logitCount = tokenCount * static_cast<size_t>(shape.vocab);
  const Element kind = logitsElement(dtype);
  const int32_t ignoreIndex = ignoreIndexField(request);
  const std::vector<int32_t> labels = labelsField(request, shape, ignoreIndex);
  const void* logits = bufferField(request, "logits", kind, logitCount);
  void* dlogits = bufferField(request, "dlogits", kind, logitCount);
  const auto* lse = static_cast<const float*>(bufferField(request, "lse", Element::F32, tokenCount));
  const auto* coef = static_cast<const float*>(bufferField(request, "coef", Element::F32, static_cast<size_t>(shape.rows)));
  OverlapCheck overlaps;
  const size_t bytes = logitCount * elementBytes(kind);
  overlaps.input("logits", logits, bytes);
  overlaps.input("lse", lse, tokenCount * 4);
  overlaps.input("coef", coef, static_cast<size_t>(shape.rows) * 4);
  overlaps.output("dlogits", dlogits, bytes, logits);
  overlaps.check(info.Env(), "preferenceLossBackward");
  try {
    preferenceLossBackward(impl, logits, dtype, shape, labels.data(), ignoreIndex, lse, coef, dlogits);
  } catch (const std::bad_alloc&) {
    throw outOfMemory(info.Env(), "preferenceLossBackward", 0, "scratch");
  }
  return info.Env().Undefined();
}

// The storage behind a borrowed value, when it is one (nullptr for a typed array).
NativeStorage* storageOf(const Napi::Value& value) {
  if (value.IsEmpty() || value.IsTypedArray() || !value.IsObject()) return nullptr;
  return NativeStorage::Unwrap(value.As<Napi::Object>());  // bufferArgument checked the class
}

// Runs a LossJob on libuv's thread pool. Labels and refLogps are the job's own copies; the
// logits and dlogits it borrows stay referenced until the promise settles (the collector cannot
// free them), a tensor's storage is pinned (dispose() defers the free), and a typed array whose
// memory was taken from it meanwhile (its ArrayBuffer detached: lib/ marks the buffers
// untransferable, so only a native caller could) rejects the promise instead of resolving it.
// In an environment that is shutting down (a worker terminated), the settle is skipped:
// nothing is thrown across the boundary.
class LossWorker : public Napi::AsyncWorker {
 public:
  LossWorker(Napi::Env env, Napi::Object request)
      : Napi::AsyncWorker(env, "fusedpo.preferenceLoss"),
        deferred_(Napi::Promise::Deferred::New(env)),
        request_(Napi::Persistent(request)) {  // and through it the result arrays lib/ passed
    BorrowedBuffers borrowed;
    readRequest(request, job_, borrowed);
    outputs_ = lossOutputFields(request, job_.shape, job_.withLoss, job_.returnLse);
    for (const Napi::Value& value : {borrowed.logits, borrowed.dlogits}) {
      if (value.IsEmpty() || !value.IsObject()) continue;
      Borrowed b{Napi::Persistent(value.As<Napi::Object>()), storageOf(value), 0};
      TypedArrayView view;
      if (readTypedArray(value, &view)) b.length = view.length;
      if (b.storage != nullptr) b.storage->pin();
      borrowed_.push_back(std::move(b));
    }
  }

  Napi::Promise promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      runLossJob(job_);
    } catch (const std::bad_alloc&) {
      outOfMemory_ = true;
      SetError("out of memory");
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }

  void OnOK() override {
    const std::string lost = lostBuffer();
    release();
    if (!lost.empty()) {
      deferred_.Reject(Napi::Error::New(Env(), "preferenceLossAsync: the memory of " + lost +
                                                   " was taken (its ArrayBuffer detached) while the job ran; "
                                                   "the result is discarded").Value());
      return;
    }
    deferred_.Resolve(writeLossResult(Env(), job_, outputs_));
  }

  void OnError(const Napi::Error& error) override {
    release();
    if (outOfMemory_) {
      deferred_.Reject(outOfMemory(Env(), "preferenceLossAsync", lossJobScratchBytes(job_),
                                   "scratch for logits of shape " + shapeText(job_.shape)).Value());
      return;
    }
    deferred_.Reject(error.Value());
  }

 private:
  struct Borrowed {
    Napi::ObjectReference reference;
    NativeStorage* storage;  // pinned, or nullptr for a typed array
    size_t length;           // a typed array's element count when the job started
  };

  // The name of a typed array that no longer holds its elements, or "".
  std::string lostBuffer() {
    for (size_t k = 0; k < borrowed_.size(); ++k) {
      if (borrowed_[k].storage != nullptr) continue;
      TypedArrayView view;
      if (!readTypedArray(borrowed_[k].reference.Value(), &view) || view.length != borrowed_[k].length) {
        return k == 0 ? "logits" : "out";
      }
    }
    return "";
  }

  void release() {
    for (Borrowed& b : borrowed_) {
      if (b.storage != nullptr) b.storage->unpin(Env());
      b.reference.Reset();
    }
    borrowed_.clear();
    request_.Reset();
  }

  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference request_;
  LossJob job_;
  LossOutputs outputs_;
  std::vector<Borrowed> borrowed_;
  bool outOfMemory_ = false;
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

// Advises the pages of a fresh ArrayBuffer (made by `new ArrayBuffer` in lib/, which throws a
// RangeError when memory is short, where napi_create_arraybuffer would end the process), not yet
// touched, onto huge pages (cpu/host_memory.h): its first write costs a fraction of 4 KiB page
// faults. Anything else is ignored: it is only advice.
Napi::Value AdviseHugePages(const Napi::CallbackInfo& info) {
  if (info.Length() > 0 && info[0].IsArrayBuffer()) {
    void* data = nullptr;
    size_t bytes = 0;
    if (napi_get_arraybuffer_info(info.Env(), info[0], &data, &bytes) == napi_ok && data != nullptr) {
      adviseHugePages(data, bytes);
    }
  }
  return info.Env().Undefined();
}

// The external bytes this environment has reported to V8 (NativeStorage), as V8 counts them.
Napi::Value ExternalMemory(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(),
                           static_cast<double>(Napi::MemoryManagement::AdjustExternalMemory(info.Env(), 0)));
}

Napi::Value SetThreadCount(const Napi::CallbackInfo& info) {
  const double threads = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 0;
  if (!(threads >= 1 && threads <= 1024) || threads != static_cast<double>(static_cast<int>(threads))) {
    throw Napi::RangeError::New(info.Env(), "setThreadCount: expected an integer between 1 and 1024");
  }
  setThreadCount(static_cast<int>(threads));
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
  exports.Set("adviseHugePages", Napi::Function::New(env, AdviseHugePages, "adviseHugePages"));
  exports.Set("externalMemory", Napi::Function::New(env, ExternalMemory, "externalMemory"));
  exports.Set("setThreadCount", Napi::Function::New(env, SetThreadCount, "setThreadCount"));
  exports.Set("preferenceLoss", Napi::Function::New(env, PreferenceLoss, "preferenceLoss"));
  exports.Set("preferenceLossBackward",
              Napi::Function::New(env, PreferenceLossBackward, "preferenceLossBackward"));
  exports.Set("preferenceLossAsync",
              Napi::Function::New(env, PreferenceLossAsync, "preferenceLossAsync"));
  NativeStorage::addTo(env, exports);
  addCudaBindings(env, exports);
  addNnBindings(env, exports);
  addMatmulBindings(env, exports);
  addBandwidthBindings(env, exports);
  addInterruptBindings(env, exports);
  return exports;
}

}  // namespace
}  // namespace fusedpo

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  return fusedpo::Init(env, exports);
}

NODE_API_MODULE(fusedpo, InitAddon)
