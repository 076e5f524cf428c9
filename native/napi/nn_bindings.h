// The Node-API bindings of the GPT's ops (native/core/{elementwise,embedding,layer_norm,gelu,
// softmax,causal_self_attention,adamw}.h), added to the addon's exports by Init in addon.cpp.
#pragma once

#include <napi.h>

namespace fusedpo {

void addNnBindings(Napi::Env env, Napi::Object exports);

}  // namespace fusedpo
