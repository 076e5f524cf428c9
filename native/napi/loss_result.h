// The result object of one loss call (NativeLossResult of lib/native.ts), from a finished job:
// a LossJob (CPU, loss_job.h) or a CudaLossJob (GPU, cuda_loss_job.h), which share field names.
#pragma once

#include <napi.h>

#include <algorithm>

#include "core/preference_loss.h"

namespace fusedpo {

// NativeLossResult of lib/native.ts.
template <typename Job>
Napi::Object writeLossResult(Napi::Env env, const Job& job) {
  Napi::Object out = Napi::Object::New(env);
  if (job.nonFiniteRow >= 0) {
    Napi::Object where = Napi::Object::New(env);
    where.Set("row", static_cast<double>(job.nonFiniteRow));
    where.Set("token", static_cast<double>(job.nonFiniteTokenIndex));
    where.Set("vocab", static_cast<double>(job.nonFiniteVocab));
    out.Set("nonFinite", where);
    Napi::Array rows = Napi::Array::New(env);
    uint32_t count = 0;
    for (size_t s = 0; s < job.nonFiniteToken.size(); ++s) {
      if (job.nonFiniteToken[s] >= 0) rows.Set(count++, static_cast<double>(s));
    }
    out.Set("nonFiniteRows", rows);
  } else {
    out.Set("nonFinite", env.Null());
    out.Set("nonFiniteRows", Napi::Array::New(env));
  }
  if (job.stoppedOnNonFinite) return out;

  const size_t rows = job.logps.size();
  Napi::Float32Array logps = Napi::Float32Array::New(env, rows);
  Napi::Int32Array tokenCounts = Napi::Int32Array::New(env, rows);
  for (size_t s = 0; s < rows; ++s) {
    logps[s] = static_cast<float>(job.logps[s]);
    tokenCounts[s] = job.tokenCounts[s];
  }
  out.Set("logps", logps);
  out.Set("tokenCounts", tokenCounts);
  if (job.returnLse) {
    Napi::Float32Array lse = Napi::Float32Array::New(env, job.lse.size());
    std::copy(job.lse.begin(), job.lse.end(), lse.Data());
    out.Set("lse", lse);
  }
  if (!job.withLoss) return out;

  Napi::Float32Array coef = Napi::Float32Array::New(env, rows);
  for (size_t s = 0; s < rows; ++s) coef[s] = job.coef[s];
  out.Set("coef", coef);
  out.Set("unrepresentableRow", static_cast<double>(job.unrepresentableRow));
  out.Set("loss", job.result.loss);
  const PreferenceMetrics& m = job.result.metrics;
  Napi::Object metrics = Napi::Object::New(env);
  metrics.Set("rewardsChosen", m.rewardsChosen);
  metrics.Set("rewardsRejected", m.rewardsRejected);
  metrics.Set("rewardsAccuracy", m.rewardsAccuracy);
  metrics.Set("rewardsMargin", m.rewardsMargin);
  metrics.Set("logpsChosen", m.logpsChosen);
  metrics.Set("logpsRejected", m.logpsRejected);
  metrics.Set("nll", m.nll);
  out.Set("metrics", metrics);
  return out;
}

}  // namespace fusedpo
