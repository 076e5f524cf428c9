// Runs one LossJob through the four stages of core/preference_loss.h. See loss_job.h.
#include "napi/loss_job.h"

#include "core/pair_loss.h"

namespace fusedpo {

void runLossJob(LossJob& job) {
  const int64_t rows = job.shape.rows;
  const int64_t tokens = rows * job.shape.tokens;
  job.lse.assign(tokens, 0.0f);
  job.lp.assign(tokens, 0.0f);
  job.nonFiniteToken.assign(rows, -1);
  job.logps.assign(rows, 0.0);
  job.tokenCounts.assign(rows, 0);
  const int32_t* labels = job.labels.data();
  preferenceLossForward(job.impl, job.logits, job.dtype, job.shape, labels, job.ignoreIndex,
                        job.lse.data(), job.lp.data(), job.logps.data(), job.tokenCounts.data(),
                        job.nonFiniteToken.data());

  for (int64_t s = 0; s < rows; ++s) {
    if (job.nonFiniteToken[s] < 0) continue;
    job.nonFiniteRow = s;
    job.nonFiniteTokenIndex = job.nonFiniteToken[s];
    job.nonFiniteVocab =
        firstNonFiniteVocab(job.logits, job.dtype, job.shape, s, job.nonFiniteTokenIndex);
    break;
  }
  if (job.nonFiniteRow >= 0 && !job.allowNonFinite) {
    job.stoppedOnNonFinite = true;
    return;
  }

  if (!job.withLoss) return;

  job.coef.assign(rows, 0.0f);
  job.result = preferenceLossCoefficients(job.params, rows, job.logps.data(), job.tokenCounts.data(),
                                          job.refLogps.empty() ? nullptr : job.refLogps.data(),
                                          job.rewards.empty() ? nullptr : job.rewards.data(), job.coef.data());
  if (job.nonFiniteRow < 0) {
    job.unrepresentableRow = firstUnrepresentableCoefficient(job.coef.data(), rows, job.dtype, job.result.loss);
    if (job.unrepresentableRow >= 0) return;
  }
  if (job.dlogits != nullptr) {
    preferenceLossBackward(job.impl, job.logits, job.dtype, job.shape, labels,
                             job.ignoreIndex, job.lse.data(), job.coef.data(), job.dlogits);
  }
}

double lossJobScratchBytes(const LossJob& job) {
  const double rows = static_cast<double>(job.shape.rows);
  const double tokens = rows * static_cast<double>(job.shape.tokens);
  // lse, lp (float each), then per row: nonFiniteToken (int64), logps (double), counts, coef
  return tokens * 8 + rows * (8 + 8 + 4 + 4);
}

}  // namespace fusedpo
