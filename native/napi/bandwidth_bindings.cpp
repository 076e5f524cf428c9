// The binding of memoryBandwidth: reads the request (NativeBandwidthRequest of lib/native.ts),
// checks every field again (lib/bandwidth.ts checks first and gives the same messages), runs the
// probe on the calling thread and the pool, and returns GB/s. It blocks the event loop for as
// long as it runs (about a second for 2 x 512 MiB): it is a benchmark, run by the CLI.
//
// The checks: the request is an object with no fields but bytes, threads and repeats; bytes an
// integer from 1 MiB to an eighth of the machine's physical memory (two buffers of that size are
// touched: a quarter of memory at most, so that the probe never drives the machine into swap or
// the OOM killer); threads an integer from 1 to the thread pool's size; repeats from 1 to 100.
#include "napi/bandwidth_bindings.h"

#include <cmath>
#include <cstdio>
#include <cstdint>
#include <new>
#include <string>

#include "core/preference_loss.h"  // threadCount
#include "cpu/memory_bandwidth.h"
#include "napi/buffers.h"

namespace fusedpo {
namespace {

constexpr const char* kOp = "memoryBandwidth";

[[noreturn]] void typeError(Napi::Env env, const std::string& what) {
  throw Napi::TypeError::New(env, std::string(kOp) + ": " + what);
}
[[noreturn]] void rangeError(Napi::Env env, const std::string& what) {
  throw Napi::RangeError::New(env, std::string(kOp) + ": " + what);
}

std::string integerText(double value) {
  char text[64];
  std::snprintf(text, sizeof text, "%.0f", value);
  return text;
}

// Field `name` of the request: an integer in [min, max], or `fallback` when absent (undefined)
// and `fallback` >= 0 (a required field has none).
int64_t integerField(const Napi::Object& request, const char* name, double min, double max, double fallback,
                     const char* why = "") {
  const Napi::Value value = request.Get(name);
  if (value.IsUndefined()) {
    if (fallback >= 0) return static_cast<int64_t>(fallback);
    typeError(request.Env(), std::string("expected an integer for ") + name + " but received undefined");
  }
  if (!value.IsNumber()) {
    typeError(request.Env(), std::string("expected an integer for ") + name + " but received " + describeValue(value));
  }
  const double number = value.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(number) || number < min || number > max || number != std::floor(number)) {
    rangeError(request.Env(), std::string("expected an integer in [") + integerText(min) + ", " + integerText(max) +
                                  "] for " + name + why + " but received " + describeValue(value));
  }
  return static_cast<int64_t>(number);
}

Napi::Value MemoryBandwidthBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsObject() || info[0].IsArray() || info[0].IsFunction()) {
    typeError(env, "expected one request object { bytes, threads?, repeats? } but received " +
                       (info.Length() == 0 ? std::string("no argument") : describeValue(info[0])));
  }
  const Napi::Object request = info[0].As<Napi::Object>();
  const Napi::Array keys = request.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    const std::string key = keys.Get(i).ToString().Utf8Value();
    if (key != "bytes" && key != "threads" && key != "repeats") {
      typeError(env, "unknown field '" + key + "' (expected bytes, threads, repeats)");
    }
  }
  const double physical = physicalMemoryBytes();
  // An eighth of physical memory per buffer; 2^40 where the OS does not say.
  const double maxBytes = physical > 0 ? std::floor(physical / 8) : 1099511627776.0;
  if (maxBytes < double(kMinBandwidthBytes)) rangeError(env, "this machine reports too little memory to measure");
  const int pool = threadCount();
  const auto bytes = static_cast<size_t>(
      integerField(request, "bytes", double(kMinBandwidthBytes), maxBytes, -1, " (each of 2 buffers; at most an eighth of memory)"));
  const auto threads = static_cast<int>(integerField(request, "threads", 1, pool, pool, " (the thread pool's size is the most)"));
  const auto repeats = static_cast<int>(integerField(request, "repeats", 1, 100, 3));

  MemoryBandwidth measured;
  try {
    measured = measureMemoryBandwidth(bytes, threads, repeats);
  } catch (const std::bad_alloc&) {
    throw outOfMemory(env, kOp, 2.0 * double(bytes), "two buffers to stream");
  }
  Napi::Object out = Napi::Object::New(env);
  const double used = static_cast<double>(measured.bytes);
  out.Set("readGBps", used / measured.readSeconds / 1e9);
  out.Set("readWriteGBps", 2 * used / measured.readWriteSeconds / 1e9);
  out.Set("readSeconds", measured.readSeconds);
  out.Set("readWriteSeconds", measured.readWriteSeconds);
  out.Set("bytes", used);
  out.Set("threads", threads);
  out.Set("repeats", repeats);
  out.Set("checksum", measured.checksum);
  return out;
}

}  // namespace

void addBandwidthBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("memoryBandwidth", Napi::Function::New(env, MemoryBandwidthBinding, kOp));
}

}  // namespace fusedpo
