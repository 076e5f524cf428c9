// The functions only the CUDA addon has. The CPU addon compiles the same file without
// FUSEDPO_WITH_CUDA and adds nothing, so lib/native.ts can tell the two apart by `info().cuda`.
#pragma once

#include <napi.h>

namespace fusedpo {

#ifdef FUSEDPO_WITH_CUDA
constexpr bool kWithCuda = true;
#else
constexpr bool kWithCuda = false;
#endif

void addCudaBindings(Napi::Env env, Napi::Object exports);

}  // namespace fusedpo
