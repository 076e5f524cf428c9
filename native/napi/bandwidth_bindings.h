// The Node-API binding of the memory bandwidth probe (cpu/memory_bandwidth.h):
// `memoryBandwidth({ bytes, threads?, repeats? })` on the addon's exports, what `fusedpo bench`
// measures its floor with.
#pragma once

#include <napi.h>

namespace fusedpo {

void addBandwidthBindings(Napi::Env env, Napi::Object exports);

}  // namespace fusedpo
