// The bindings of cpu/interrupts.h: watchInterrupts(message), unwatchInterrupts(),
// interruptSignal(), used by lib/train/interrupt.ts.
#pragma once

#include <napi.h>

namespace fusedpo {

void addInterruptBindings(Napi::Env env, Napi::Object exports);

}  // namespace fusedpo
