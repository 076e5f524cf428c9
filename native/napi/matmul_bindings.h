// The Node-API binding of matmul (core/matmul.h): `matmul(request)` on the addon's exports.
#pragma once

#include <napi.h>

namespace fusedpo {

void addMatmulBindings(Napi::Env env, Napi::Object exports);

}  // namespace fusedpo
