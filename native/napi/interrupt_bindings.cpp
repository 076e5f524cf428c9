// See interrupt_bindings.h. The message is a string of at most 1023 UTF-8 bytes (longer is a
// RangeError: the handler writes a fixed buffer).
#include "napi/interrupt_bindings.h"

#include <string>

#include "cpu/interrupts.h"

namespace fusedpo {
namespace {

Napi::Value WatchInterrupts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsString()) {
    throw Napi::TypeError::New(env, "watchInterrupts: expected one argument, the message (a string)");
  }
  std::string message = info[0].As<Napi::String>().Utf8Value();
  if (message.size() > 1023) {
    throw Napi::RangeError::New(env, "watchInterrupts: expected a message of at most 1023 bytes but received " +
                                         std::to_string(message.size()));
  }
  return Napi::Boolean::New(env, cpu::watchInterrupts(message.data(), message.size()));
}

Napi::Value UnwatchInterrupts(const Napi::CallbackInfo& info) {
  cpu::unwatchInterrupts();
  return info.Env().Undefined();
}

Napi::Value InterruptSignal(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), cpu::interruptSignal());
}

}  // namespace

void addInterruptBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("watchInterrupts", Napi::Function::New(env, WatchInterrupts, "watchInterrupts"));
  exports.Set("unwatchInterrupts", Napi::Function::New(env, UnwatchInterrupts, "unwatchInterrupts"));
  exports.Set("interruptSignal", Napi::Function::New(env, InterruptSignal, "interruptSignal"));
}

}  // namespace fusedpo
