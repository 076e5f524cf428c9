// The plain scalar spec of stages 1 and 4 (Impl::Reference), called by the dispatchers of
// preferenceLossForward/Backward in ../cpu/preference_loss.cpp. Shapes as in
// preference_loss.h. The fast paths are tested against these.
#pragma once

#include <cstdint>

#include "preference_loss.h"

namespace fusedpo {

void referencePreferenceLossForward(const void* logits, DType dtype, LogitsShape shape,
                                      const int32_t* labels, int32_t ignoreIndex, float* lse,
                                      float* lp, int64_t* nonFiniteToken);

void referencePreferenceLossBackward(const void* logits, DType dtype, LogitsShape shape,
                                       const int32_t* labels, int32_t ignoreIndex,
                                       const float* lse, const float* coef, void* dlogits);

}  // namespace fusedpo
