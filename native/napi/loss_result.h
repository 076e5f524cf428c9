// The result of one loss call (NativeLossResult of lib/native.ts), from a finished job: a LossJob
// (CPU, loss_job.h) or a CudaLossJob (GPU, cuda_loss_job.h), which share field names.
//
// The per-row and per-token arrays of the result (logps, tokenCounts, coef, lse) are allocated by
// lib/ and passed in the request as `<name>Out`; the addon only fills them. An ArrayBuffer that
// cannot be had is then a RangeError in JavaScript: napi_create_arraybuffer would end the
// process instead (V8 treats its failure as fatal).
#pragma once

#include <napi.h>

#include <algorithm>

#include "core/preference_loss.h"
#include "napi/buffers.h"
#include "napi/request_fields.h"

namespace fusedpo {

// Where a job's per-row and per-token results go: lib/'s arrays, checked against the shape.
struct LossOutputs {
  float* logps = nullptr;         // [R]
  int32_t* tokenCounts = nullptr;  // [R]
  float* coef = nullptr;          // [R], when the request has a loss
  float* lse = nullptr;           // [R*T], when it asks for lse
};

inline LossOutputs lossOutputFields(const Napi::Object& request, LogitsShape shape, bool withLoss, bool returnLse) {
  const size_t rows = static_cast<size_t>(shape.rows);
  LossOutputs out;
  out.logps = static_cast<float*>(bufferField(request, "logpsOut", Element::F32, rows));
  out.tokenCounts = static_cast<int32_t*>(bufferField(request, "tokenCountsOut", Element::I32, rows));
  if (withLoss) out.coef = static_cast<float*>(bufferField(request, "coefOut", Element::F32, rows));
  if (returnLse) {
    out.lse = static_cast<float*>(bufferField(request, "lseOut", Element::F32, rows * static_cast<size_t>(shape.tokens)));
  }
  return out;
}

// NativeLossResult of lib/native.ts; fills `out` (the arrays lib/ passed) as it goes.
template <typename Job>
Napi::Object writeLossResult(Napi::Env env, const Job& job, const LossOutputs& out) {
  Napi::Object result = Napi::Object::New(env);
  if (job.nonFiniteRow >= 0) {
    Napi::Object where = Napi::Object::New(env);
    where.Set("row", static_cast<double>(job.nonFiniteRow));
    where.Set("token", static_cast<double>(job.nonFiniteTokenIndex));
    where.Set("vocab", static_cast<double>(job.nonFiniteVocab));
    result.Set("nonFinite", where);
    Napi::Array rows = Napi::Array::New(env);
    uint32_t count = 0;
    for (size_t s = 0; s < job.nonFiniteToken.size(); ++s) {
      if (job.nonFiniteToken[s] >= 0) rows.Set(count++, static_cast<double>(s));
    }
    result.Set("nonFiniteRows", rows);
  } else {
    result.Set("nonFinite", env.Null());
    result.Set("nonFiniteRows", Napi::Array::New(env));
  }
  if (job.stoppedOnNonFinite) return result;

  for (size_t s = 0; s < job.logps.size(); ++s) {
    out.logps[s] = static_cast<float>(job.logps[s]);
    out.tokenCounts[s] = job.tokenCounts[s];
  }
  if (job.returnLse && out.lse != nullptr) std::copy(job.lse.begin(), job.lse.end(), out.lse);
  if (!job.withLoss) return result;

  if (out.coef != nullptr) std::copy(job.coef.begin(), job.coef.end(), out.coef);
  result.Set("unrepresentableRow", static_cast<double>(job.unrepresentableRow));
  result.Set("loss", job.result.loss);
  const PreferenceMetrics& m = job.result.metrics;
  Napi::Object metrics = Napi::Object::New(env);
  metrics.Set("rewardsChosen", m.rewardsChosen);
  metrics.Set("rewardsRejected", m.rewardsRejected);
  metrics.Set("rewardsAccuracy", m.rewardsAccuracy);
  metrics.Set("rewardsMargin", m.rewardsMargin);
  metrics.Set("logpsChosen", m.logpsChosen);
  metrics.Set("logpsRejected", m.logpsRejected);
  metrics.Set("nll", m.nll);
  if (lossNeedsReference(job.params.kind)) metrics.Set("rejectedBelowReference", m.rejectedBelowReference);
  result.Set("metrics", metrics);
  return result;
}

}  // namespace fusedpo
