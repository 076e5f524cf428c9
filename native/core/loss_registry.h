// Generated from lib/losses/registry.ts by `npm run generate`: do not edit. The registry is the
// one list of losses and parameters (docs/losses.md is their contract); pair_loss.h holds each
// loss's formula under its LossKind.
#pragma once

#include <cmath>
#include <cstdint>

#include "host_device.h"

namespace fusedpo {

// The value of NativeLossRequest.lossKind: the index of the loss in the registry's LOSSES.
enum class LossKind : int32_t {
  Dpo = 0,          // dpo
  MinorDpo = 1,     // minordpo
  Ipo = 2,          // ipo
  Hinge = 3,        // hinge
  Robust = 4,       // robust
  ExoPair = 5,      // exo_pair
  NcaPair = 6,      // nca_pair
  BcoPair = 7,      // bco_pair
  SppoHard = 8,     // sppo_hard
  ApoZero = 9,      // apo_zero
  ApoDown = 10,     // apo_down
  Discopop = 11,    // discopop
  SigmoidNorm = 12, // sigmoid_norm
  Dpop = 13,        // dpop
  Simpo = 14,       // simpo
  Orpo = 15,        // orpo
  Exo = 16,         // exo
  Chipo = 17,       // chipo
};
constexpr int32_t kLossKindCount = 18;

// Every number parameter of the losses, as fields of LossParams:
//   X(type, name, default, min, minExclusive, max, maxExclusive, allowInfinity)
// with the widest range any loss allows it (lib/ checks each loss's own range first; the
// bindings check these, so that no value reaches a kernel that its formulas cannot take).
#define FUSEDPO_LOSS_PARAMETERS(X) \
  X(double, beta, 0.1, 0.0, true, HUGE_VAL, false, false) \
  X(double, labelSmoothing, 0.0, 0.0, false, 1.0, true, false) \
  X(double, dpopLambda, 50.0, 0.0, false, HUGE_VAL, false, false) \
  X(double, simpoGamma, 0.5, -HUGE_VAL, false, HUGE_VAL, false, false) \
  X(double, orpoLambda, 0.1, 0.0, false, HUGE_VAL, false, false) \
  X(double, discopopTau, 0.05, 0.0, true, HUGE_VAL, false, false) \
  X(double, bcoDelta, 0.0, -HUGE_VAL, false, HUGE_VAL, false, false) \
  X(double, chipoClip, HUGE_VAL, 0.0, true, HUGE_VAL, false, true) \
  X(double, exoRewardBeta, 0.5, 0.0, true, HUGE_VAL, false, false) \
  X(int32_t, groupSize, 2.0, 2.0, false, 65536.0, false, false)

// The loss compares the policy with a reference model (refLogps).
FUSEDPO_HD inline bool lossNeedsReference(LossKind kind) {
  switch (kind) {
    case LossKind::Dpo:
    case LossKind::MinorDpo:
    case LossKind::Ipo:
    case LossKind::Hinge:
    case LossKind::Robust:
    case LossKind::ExoPair:
    case LossKind::NcaPair:
    case LossKind::BcoPair:
    case LossKind::SppoHard:
    case LossKind::ApoZero:
    case LossKind::ApoDown:
    case LossKind::Discopop:
    case LossKind::SigmoidNorm:
    case LossKind::Dpop:
    case LossKind::Exo:
    case LossKind::Chipo:
      return true;
    default:
      return false;
  }
}

// The loss's formula divides the log-ratios by the rows' token counts.
FUSEDPO_HD inline bool lossDividesByLength(LossKind kind) {
  switch (kind) {
    case LossKind::Ipo:
    case LossKind::SigmoidNorm:
    case LossKind::Simpo:
    case LossKind::Orpo:
      return true;
    default:
      return false;
  }
}

// The loss takes per-response rewards.
FUSEDPO_HD inline bool lossTakesRewards(LossKind kind) {
  switch (kind) {
    case LossKind::Exo:
      return true;
    default:
      return false;
  }
}

inline const char* lossName(LossKind kind) {
  switch (kind) {
    case LossKind::Dpo:
      return "dpo";
    case LossKind::MinorDpo:
      return "minordpo";
    case LossKind::Ipo:
      return "ipo";
    case LossKind::Hinge:
      return "hinge";
    case LossKind::Robust:
      return "robust";
    case LossKind::ExoPair:
      return "exo_pair";
    case LossKind::NcaPair:
      return "nca_pair";
    case LossKind::BcoPair:
      return "bco_pair";
    case LossKind::SppoHard:
      return "sppo_hard";
    case LossKind::ApoZero:
      return "apo_zero";
    case LossKind::ApoDown:
      return "apo_down";
    case LossKind::Discopop:
      return "discopop";
    case LossKind::SigmoidNorm:
      return "sigmoid_norm";
    case LossKind::Dpop:
      return "dpop";
    case LossKind::Simpo:
      return "simpo";
    case LossKind::Orpo:
      return "orpo";
    case LossKind::Exo:
      return "exo";
    case LossKind::Chipo:
      return "chipo";
  }
  return "unknown";
}

}  // namespace fusedpo
