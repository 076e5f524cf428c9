// The loss of one preference pair and its derivatives (docs/losses.md), and the batch loss over all
// pairs. One header for g++ and nvcc: the CPU's stage 3 (reference.cpp) calls
// preferenceLossOfBatch; the GPU's stage-3 kernel calls the same addPrompt and batchResult but
// sums the prompts in a fixed tree, so the two agree up to the order of fp64 sums.
//
// Inputs of a pair i (rows i and P+i):
//   pw, pl   summed sequence log-probs pi[i], pi[P+i] (never averaged here)
//   rw, rl   reference log-probs (0 for the reference-free simpo and orpo)
//   nw, nl   counted tokens of each row (0: an empty row)
// pairLoss returns the loss and dLoss/dpw, dLoss/dpl: the chain rule through averageLogProb's
// division by n, and through the division by n of the length-normalized losses, is included.
//
// Empty rows: every division by n is guarded (x/0 counts as 0, for pi and ref alike), and the
// derivative with respect to an empty row's pi is 0, so an empty row never produces NaN.
#pragma once

#include <cmath>
#include <cstdint>

#include "host_device.h"
#include "preference_loss.h"

namespace fusedpo {

struct PairTerms {
  double loss;
  double dpw, dpl;  // dLoss/dpw, dLoss/dpl
};

// The log-ratios a loss sees: uw = (pw - rw) * kw and ul = (pl - rl) * kl, where k = 1/n when
// the loss divides by length (its own formula, or averageLogProb) and 1 otherwise. The metrics
// are computed from these same values.
struct PairMargins {
  double uw, ul;
  double kw, kl;  // d uw / d pw, d ul / d pl
};

// ORPO's odds need a mean log-prob a < 0: at a = 0 (every token predicted with fp32 probability
// 1, or an empty row) log(1 - e^a) is -inf. a is clamped to at most this bound, which caps the
// log-odds at about 13.8 and the derivative 1/(1 - e^a) at about 1e6; past it the gradient is 0.
constexpr double kOrpoMaxMeanLogp = -1e-6;

// log sigmoid(x) = min(x, 0) - log1p(exp(-|x|)): no overflow for any x.
FUSEDPO_HD inline double logSigmoid(double x) { return fmin(x, 0.0) - log1p(exp(-fabs(x))); }

// sigmoid(x), exp of a non-positive number only. logSigmoid'(x) = sigmoid(-x).
FUSEDPO_HD inline double sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + exp(-x));
  const double e = exp(x);
  return e / (1.0 + e);
}

// max(0, x) that keeps a NaN (fmax(0, NaN) is 0): a row with a non-finite logit, let through
// with allowNonFinite, must make its pair's loss NaN, not silently drop out of it.
FUSEDPO_HD inline double positivePart(double x) { return x < 0 ? 0.0 : x; }

FUSEDPO_HD inline double inverseOrZero(double n) { return n > 0 ? 1.0 / n : 0.0; }

// log(1 + e^x), no overflow for any x.
FUSEDPO_HD inline double softplus(double x) { return fmax(x, 0.0) + log1p(exp(-fabs(x))); }

FUSEDPO_HD inline PairMargins marginsDividedIf(bool divide, bool referenceFree, double pw, double pl,
                                              double rw, double rl, double nw, double nl) {
  if (referenceFree) rw = rl = 0.0;
  PairMargins m;
  m.kw = divide ? inverseOrZero(nw) : 1.0;
  m.kl = divide ? inverseOrZero(nl) : 1.0;
  m.uw = (pw - rw) * m.kw;
  m.ul = (pl - rl) * m.kl;
  return m;
}

// The log-ratios the loss's formula takes: divided by length when the loss divides
// (lossDividesByLength) or averageLogProb asks.
FUSEDPO_HD inline PairMargins pairMargins(const LossParams& p, double pw, double pl, double rw,
                                          double rl, double nw, double nl) {
  return marginsDividedIf(lossDividesByLength(p.kind) || p.averageLogProb, !lossNeedsReference(p.kind),
                          pw, pl, rw, rl, nw, nl);
}

// The log-ratios the metrics report (docs/losses.md, Metrics): the summed ones (divided only by
// averageLogProb) for every loss with a reference, so ipo and sigmoid_norm report what dpo does,
// as TRL; the mean token log-probs of the reference-free losses (simpo, orpo), as TRL's CPO and
// ORPO trainers.
FUSEDPO_HD inline PairMargins metricMargins(const LossParams& p, double pw, double pl, double rw,
                                            double rl, double nw, double nl) {
  const bool referenceFree = !lossNeedsReference(p.kind);
  return marginsDividedIf(p.averageLogProb || referenceFree, referenceFree, pw, pl, rw, rl, nw, nl);
}

// ORPO's log-odds o(a) = log(p / (1 - p)) with p = e^a: a - log(-expm1(a)), and
// o'(a) = 1 / (1 - e^a) = -1 / expm1(a).
FUSEDPO_HD inline double orpoLogOdds(double a) { return a - log(-expm1(a)); }
FUSEDPO_HD inline double orpoLogOddsSlope(double a) { return -1.0 / expm1(a); }

// Every case computes the loss L(uw, ul) and gw = dL/duw, gl = dL/dul; D = uw - ul, b = beta,
// e = labelSmoothing, s = sigmoid, ls = logSigmoid (ls'(x) = s(-x), s'(x) = s(x) s(-x)).
FUSEDPO_HD inline PairTerms pairLoss(const LossParams& p, double pw, double pl, double rw,
                                     double rl, double nw, double nl) {
  const PairMargins m = pairMargins(p, pw, pl, rw, rl, nw, nl);
  const double uw = m.uw, ul = m.ul, D = uw - ul;
  const double b = p.beta, e = p.labelSmoothing;
  double loss = 0, gw = 0, gl = 0;
  switch (p.kind) {
    // DPO (Rafailov 2023, arXiv 2305.18290), conservative DPO for e > 0:
    //   L = -(1-e) ls(bD) - e ls(-bD);  dL/dD = b (-(1-e) s(-bD) + e s(bD))
    case LossKind::Dpo: {
      const double x = b * D;
      loss = -(1 - e) * logSigmoid(x) - e * logSigmoid(-x);
      gw = b * (-(1 - e) * sigmoid(-x) + e * sigmoid(x));
      gl = -gw;
      break;
    }
    // MinorDPO (arXiv 2408.09834): the rejected sequence is pushed down only while it is above
    // the reference. z = b (uw - max(0, ul)), L = -(1-e) ls(z) - e ls(-z);
    //   dL/dz = -(1-e) s(-z) + e s(z);  d max(0, ul)/d ul = 1 when ul >= 0 (torch.clamp), else 0
    case LossKind::MinorDpo: {
      const double z = b * (uw - positivePart(ul));
      loss = -(1 - e) * logSigmoid(z) - e * logSigmoid(-z);
      const double dz = -(1 - e) * sigmoid(-z) + e * sigmoid(z);
      gw = b * dz;
      gl = ul >= 0 ? -b * dz : 0.0;
      break;
    }
    // IPO (Azar 2023, arXiv 2310.12036), length-normalized as TRL: u = (p - r)/n.
    //   L = (D - 1/(2b))^2;  dL/dD = 2 (D - 1/(2b))
    case LossKind::Ipo: {
      const double r = D - 1 / (2 * b);
      loss = r * r;
      gw = 2 * r;
      gl = -gw;
      break;
    }
    // SLiC hinge (Zhao 2023, arXiv 2305.10425): L = max(0, 1 - bD); dL/dD = -b where 1 - bD > 0,
    // 0 where 1 - bD <= 0.
    case LossKind::Hinge: {
      const double r = 1 - b * D;
      loss = positivePart(r);
      gw = r > 0 ? -b : 0.0;
      gl = -gw;
      break;
    }
    // Robust DPO (Chowdhury 2024, arXiv 2403.00409), 0 <= e < 0.5:
    //   L = (-(1-e) ls(bD) + e ls(-bD)) / (1-2e);  dL/dD = b (-(1-e) s(-bD) - e s(bD)) / (1-2e)
    case LossKind::Robust: {
      const double x = b * D;
      loss = (-(1 - e) * logSigmoid(x) + e * logSigmoid(-x)) / (1 - 2 * e);
      gw = b * (-(1 - e) * sigmoid(-x) - e * sigmoid(x)) / (1 - 2 * e);
      gl = -gw;
      break;
    }
    // EXO, pairwise form (Ji 2024, arXiv 2402.00856), e > 0, x = bD:
    //   L = s(x) (ls(x) - log(1-e)) + s(-x) (ls(-x) - log e)
    //   dL/dx = s(x) s(-x) (x - log(1-e) + log e)      (using ls(x) - ls(-x) = x)
    case LossKind::ExoPair: {
      const double x = b * D;
      const double sx = sigmoid(x), snx = sigmoid(-x);
      loss = sx * (logSigmoid(x) - log1p(-e)) + snx * (logSigmoid(-x) - log(e));
      gw = b * sx * snx * (x - log1p(-e) + log(e));
      gl = -gw;
      break;
    }
    // NCA, pairwise form (Chen 2024, arXiv 2402.05369):
    //   L = -ls(b uw) - ls(-b uw)/2 - ls(-b ul)/2
    //   dL/duw = -b s(-b uw) + b s(b uw)/2;  dL/dul = b s(b ul)/2
    case LossKind::NcaPair: {
      loss = -logSigmoid(b * uw) - 0.5 * logSigmoid(-b * uw) - 0.5 * logSigmoid(-b * ul);
      gw = -b * sigmoid(-b * uw) + 0.5 * b * sigmoid(b * uw);
      gl = 0.5 * b * sigmoid(b * ul);
      break;
    }
    // BCO, pairwise form (Jung 2024, arXiv 2404.04656), reward shift d:
    //   L = -ls(b uw - d) - ls(-(b ul - d));  dL/duw = -b s(-(b uw - d));  dL/dul = b s(b ul - d)
    case LossKind::BcoPair: {
      const double d = p.bcoDelta;
      loss = -logSigmoid(b * uw - d) - logSigmoid(-(b * ul - d));
      gw = -b * sigmoid(-(b * uw - d));
      gl = b * sigmoid(b * ul - d);
      break;
    }
    // SPPO, hard labels (Wu 2024, arXiv 2405.00675):
    //   L = (uw - 1/(2b))^2 + (ul + 1/(2b))^2;  dL/duw = 2 (uw - 1/(2b)); dL/dul = 2 (ul + 1/(2b))
    case LossKind::SppoHard: {
      const double a = uw - 1 / (2 * b), c = ul + 1 / (2 * b);
      loss = a * a + c * c;
      gw = 2 * a;
      gl = 2 * c;
      break;
    }
    // APO-zero (D'Oosterlinck 2024, arXiv 2408.06266): L = (1 - s(b uw)) + s(b ul)
    //   dL/duw = -b s(b uw) s(-b uw);  dL/dul = b s(b ul) s(-b ul)
    case LossKind::ApoZero: {
      const double sw = sigmoid(b * uw), sl = sigmoid(b * ul);
      loss = (1 - sw) + sl;
      gw = -b * sw * sigmoid(-b * uw);
      gl = b * sl * sigmoid(-b * ul);
      break;
    }
    // APO-down (D'Oosterlinck 2024, arXiv 2408.06266): L = s(b uw) + (1 - s(bD))
    //   dL/duw = b s(b uw) s(-b uw) - b s(bD) s(-bD);  dL/dul = b s(bD) s(-bD)
    case LossKind::ApoDown: {
      const double sw = sigmoid(b * uw), sd = sigmoid(b * D);
      const double dd = b * sd * sigmoid(-b * D);
      loss = sw + (1 - sd);
      gw = b * sw * sigmoid(-b * uw) - dd;
      gl = dd;
      break;
    }
    // DiscoPOP (Chris Lu 2024, arXiv 2406.08414), x = bD, k = s(x/tau):
    //   L = (1-k) (-ls(x)) + k e^-x
    //   dL/dx = k' (ls(x) + e^-x) - (1-k) s(-x) - k e^-x,  k' = s(x/tau) s(-x/tau) / tau
    // k e^-x is formed as exp(ls(x/tau) - x), which stays finite where e^-x alone overflows.
    case LossKind::Discopop: {
      const double tau = p.discopopTau, x = b * D;
      const double k = sigmoid(x / tau), oneMinusK = sigmoid(-x / tau);
      const double kExp = exp(logSigmoid(x / tau) - x);  // k e^-x
      loss = oneMinusK * -logSigmoid(x) + kExp;
      const double dx = k * oneMinusK / tau * logSigmoid(x) + kExp * oneMinusK / tau -
                        oneMinusK * sigmoid(-x) - kExp;
      gw = b * dx;
      gl = -gw;
      break;
    }
    // Length-normalized sigmoid (TRL "sigmoid_norm"), u = (p - r)/n:
    //   L = -ls(bD);  dL/dD = -b s(-bD)
    case LossKind::SigmoidNorm: {
      loss = -logSigmoid(b * D);
      gw = -b * sigmoid(-b * D);
      gl = -gw;
      break;
    }
    // DPO-Positive (Pal 2024, Smaug, arXiv 2402.13228): y = b (D - lam max(0, -uw)), L = -ls(y)
    //   dL/dy = -s(-y);  dy/duw = b (1 + lam [-uw > 0]) (torch.relu);  dy/dul = -b
    case LossKind::Dpop: {
      const double lam = p.dpopLambda;
      const double y = b * (D - lam * positivePart(-uw));
      loss = -logSigmoid(y);
      const double dy = -sigmoid(-y);
      gw = dy * b * (1 + (-uw > 0 ? lam : 0.0));
      gl = -dy * b;
      break;
    }
    // SimPO (Meng 2024, arXiv 2405.14734), no reference, u = p/n, margin g:
    //   x = bD - g, L = -ls(x);  dL/dD = -b s(-x)
    case LossKind::Simpo: {
      const double x = b * D - p.simpoGamma;
      loss = -logSigmoid(x);
      gw = -b * sigmoid(-x);
      gl = -gw;
      break;
    }
    // ORPO (Hong 2024, arXiv 2403.07691), no reference, u = p/n (mean token log-prob, <= 0):
    //   L = -lam ls(o(uw) - o(ul)),  o(a) = a - log1p(-e^a)
    //   dL/duw = -lam s(-y) o'(uw);  dL/dul = lam s(-y) o'(ul),  y = o(uw) - o(ul)
    // Each u is clamped to at most kOrpoMaxMeanLogp first (zero gradient past the bound). Its NLL
    // term is the batch's chosen-token mean, added once by batchResult (as TRL and Liger-Kernel).
    case LossKind::Orpo: {
      const double lam = p.orpoLambda;
      const double aw = fmin(uw, kOrpoMaxMeanLogp), al = fmin(ul, kOrpoMaxMeanLogp);
      const double y = orpoLogOdds(aw) - orpoLogOdds(al);
      loss = -lam * logSigmoid(y);
      const double sy = sigmoid(-y);
      gw = uw <= kOrpoMaxMeanLogp ? -lam * sy * orpoLogOddsSlope(aw) : 0.0;
      gl = ul <= kOrpoMaxMeanLogp ? lam * sy * orpoLogOddsSlope(al) : 0.0;
      break;
    }
    // Chi-squared PO (Huang 2024, arXiv 2407.13399): phi(u) = e^u + u (the link z + log z at
    // z = pi/pi_ref), h = b (phi(uw) - phi(ul)), L = -ls(clip(h, -c, c)).
    //   dL/duw = -s(-h) b (1 + e^uw),  dL/dul = s(-h) b (1 + e^ul)  where |h| <= c; 0 where clipped.
    // The clip is decided before any product (0 * inf never happens); e^uw - e^ul is formed as
    // e^m (-expm1(-|uw - ul|)) with m = max(uw, ul), exactly 0 when equal; each coefficient as
    // b exp(ls(-h) + softplus(u)), finite wherever the true value is (s(-h) is tiny exactly where
    // e^u is huge). What still overflows fp32 is reported by firstUnrepresentableCoefficient.
    case LossKind::Chipo: {
      double expGap = 0.0;  // e^uw - e^ul
      if (uw != ul) {
        const double mag = exp(fmax(uw, ul)) * -expm1(-fabs(uw - ul));
        expGap = uw > ul ? mag : -mag;
      }
      const double h = b * (expGap + D);
      const double c = p.chipoClip;
      if (h > c || h < -c) {
        loss = -logSigmoid(h > 0 ? c : -c);
      } else {
        loss = -logSigmoid(h);
        const double lsh = logSigmoid(-h);
        gw = -b * exp(lsh + softplus(uw));
        gl = b * exp(lsh + softplus(ul));
      }
      break;
    }
    // exo over K responses is a loss of a group, not of a pair: exoGroup below.
    case LossKind::Exo:
      break;
  }
  PairTerms t;
  t.loss = loss;
  t.dpw = nw > 0 ? gw * m.kw : 0.0;
  t.dpl = nl > 0 ? gl * m.kl : 0.0;
  return t;
}

// EXO over K responses per prompt (Ji 2024, arXiv 2402.00856), prompt i of G, rows k*G + i:
// u_k = pi_k - r_k (divided by length with averageLogProb), q = softmax_k(b u_k), p the target
// distribution, L = sum_k q_k (log q_k - log p_k), dL/du_j = b q_j ((log q_j - log p_j) - L).
//   p = softmax_k(R_k / br) with rewards R, else (1 - e, e/(K-1), ..., e/(K-1)).
// Every sum over k is a loop over the rows (no array of K): the GPU runs it per thread. With
// K = 2 and no rewards it is exo_pair's loss. Writes the K coefficients (dL/dpi divided by G);
// returns the prompt's loss.
FUSEDPO_HD inline double exoGroup(const LossParams& p, int64_t groups, int64_t i, const double* logps,
                                  const int32_t* tokenCounts, const float* refLogps,
                                  const float* rewards, float* coef) {
  const int64_t K = p.groupSize;
  const double b = p.beta, e = p.labelSmoothing;
  auto u = [&](int64_t k) {
    const int64_t row = k * groups + i;
    const double scale = p.averageLogProb ? inverseOrZero(tokenCounts[row]) : 1.0;
    return (logps[row] - double(refLogps[row])) * scale;
  };
  // log q_k = b u_k - logsumexp(b u); log p_k = R_k/br - logsumexp(R/br), or the smoothed labels.
  double qMax = -HUGE_VAL, rMax = -HUGE_VAL;
  for (int64_t k = 0; k < K; ++k) {
    qMax = fmax(qMax, b * u(k));
    if (rewards != nullptr) rMax = fmax(rMax, double(rewards[k * groups + i]) / p.exoRewardBeta);
  }
  double qSum = 0, rSum = 0;
  for (int64_t k = 0; k < K; ++k) {
    qSum += exp(b * u(k) - qMax);
    if (rewards != nullptr) rSum += exp(double(rewards[k * groups + i]) / p.exoRewardBeta - rMax);
  }
  const double qLse = qMax + log(qSum), rLse = rMax + log(rSum);
  auto logTarget = [&](int64_t k) {
    if (rewards != nullptr) return double(rewards[k * groups + i]) / p.exoRewardBeta - rLse;
    return k == 0 ? log1p(-e) : log(e / double(K - 1));
  };
  double loss = 0;
  for (int64_t k = 0; k < K; ++k) {
    const double logQ = b * u(k) - qLse;
    loss += exp(logQ) * (logQ - logTarget(k));
  }
  for (int64_t k = 0; k < K; ++k) {
    const int64_t row = k * groups + i;
    const double logQ = b * u(k) - qLse;
    const double du = b * exp(logQ) * ((logQ - logTarget(k)) - loss);
    const double scale = p.averageLogProb ? inverseOrZero(tokenCounts[row]) : 1.0;
    coef[row] = tokenCounts[row] > 0 ? float(du * scale / double(groups)) : 0.0f;
  }
  return loss;
}

// The sums over prompts that the batch loss and its metrics are made of: an array, so that the
// GPU folds them with one tree (cuda/preference_loss_coefficients.cu), indexed by the names below.
struct PairSums {
  enum : int { kLoss, kUw, kUl, kWins, kLogpsChosen, kLogpsRejected, kRejectedBelow, kCount };
  double values[kCount] = {0, 0, 0, 0, 0, 0, 0};
};

// The NLL terms of the chosen rows 0..G-1, from the totals of their log-probs and tokens:
//   nllWeight a: a * -(sum pw)/(sum nw) (tokenMean) or a * mean(-pw) (sum);
//   orpo's own: -(sum pw)/(sum nw), once per batch (as TRL's ORPOTrainer and Liger-Kernel).
struct NllTerms {
  double value = 0;   // added to the batch loss
  double metric = 0;  // the nll metric: the weighted term's NLL, else orpo's, else 0
  double slope = 0;   // d value / d pw for every chosen row that has a token
};

FUSEDPO_HD inline NllTerms nllTermsOf(const LossParams& p, int64_t groups, double chosenLogpSum, double chosenTokenSum) {
  NllTerms t;
  const double tokenMean = chosenTokenSum > 0 ? -chosenLogpSum / chosenTokenSum : 0.0;
  const double tokenSlope = chosenTokenSum > 0 ? -1.0 / chosenTokenSum : 0.0;
  if (p.kind == LossKind::Orpo) {
    t.value += tokenMean;
    t.slope += tokenSlope;
    t.metric = tokenMean;
  }
  if (p.nllWeight > 0) {
    const bool sum = p.nllReduction == NllReduction::Sum;
    const double nll = sum ? -chosenLogpSum / double(groups) : tokenMean;
    t.value += p.nllWeight * nll;
    t.slope += p.nllWeight * (sum ? -1.0 / double(groups) : tokenSlope);
    t.metric = nll;
  }
  return t;
}

// Prompt i of a batch of `groups` prompts: its loss and metric terms added to sums, its rows'
// coefficients written (the NLL's slope added to its chosen row). Response 0 (row i) is the
// chosen answer and response 1 (row groups + i) the rejected one, for the metrics too.
FUSEDPO_HD inline void addPrompt(const LossParams& p, int64_t groups, int64_t i, const double* logps,
                                 const int32_t* tokenCounts, const float* refLogps, const float* rewards,
                                 double nllSlope, float* coef, PairSums& sums) {
  const int64_t w = i, l = groups + i;
  const double pw = logps[w], pl = logps[l];
  const double rw = refLogps != nullptr ? double(refLogps[w]) : 0.0;
  const double rl = refLogps != nullptr ? double(refLogps[l]) : 0.0;
  const double nw = tokenCounts[w], nl = tokenCounts[l];
  if (p.kind == LossKind::Exo) {
    sums.values[PairSums::kLoss] += exoGroup(p, groups, i, logps, tokenCounts, refLogps, rewards, coef);
  } else {
    const PairTerms t = pairLoss(p, pw, pl, rw, rl, nw, nl);
    coef[w] = float(t.dpw / double(groups));
    coef[l] = float(t.dpl / double(groups));
    sums.values[PairSums::kLoss] += t.loss;
  }
  if (nw > 0 && nllSlope != 0) coef[w] = float(double(coef[w]) + nllSlope);
  const PairMargins m = metricMargins(p, pw, pl, rw, rl, nw, nl);
  sums.values[PairSums::kUw] += m.uw;
  sums.values[PairSums::kUl] += m.ul;
  sums.values[PairSums::kWins] += m.uw > m.ul ? 1.0 : 0.0;
  sums.values[PairSums::kLogpsChosen] += pw * m.kw;
  sums.values[PairSums::kLogpsRejected] += pl * m.kl;
  sums.values[PairSums::kRejectedBelow] += m.ul < 0 ? 1.0 : 0.0;
}

// The batch loss and metrics from the sums over all its prompts (groups > 0) and the chosen
// rows' totals of log-probs and tokens (for the NLL).
FUSEDPO_HD inline LossResult batchResult(const LossParams& p, int64_t groups, const PairSums& sums,
                                         double chosenLogpSum, double chosenTokenSum) {
  const double* v = sums.values;
  const double inverse = 1.0 / double(groups);
  const double rewardScale = p.kind == LossKind::Orpo ? p.orpoLambda : p.beta;
  LossResult result;
  result.loss = v[PairSums::kLoss] * inverse;
  result.metrics.rewardsChosen = rewardScale * v[PairSums::kUw] * inverse;
  result.metrics.rewardsRejected = rewardScale * v[PairSums::kUl] * inverse;
  result.metrics.rewardsAccuracy = v[PairSums::kWins] * inverse;
  result.metrics.rewardsMargin = rewardScale * (v[PairSums::kUw] - v[PairSums::kUl]) * inverse;
  result.metrics.logpsChosen = v[PairSums::kLogpsChosen] * inverse;
  result.metrics.logpsRejected = v[PairSums::kLogpsRejected] * inverse;
  result.metrics.rejectedBelowReference = v[PairSums::kRejectedBelow] * inverse;
  const NllTerms nll = nllTermsOf(p, groups, chosenLogpSum, chosenTokenSum);
  result.loss += nll.value;
  result.metrics.nll = nll.metric;
  return result;
}

// The batch: loss = mean over prompts of the loss of each (a pair's pairLoss, or exoGroup) plus
// the NLL terms (nllTermsOf); coef[s] = dLoss/dpi[s] (0 for an empty row).
//
// Metrics (TRL's, docs/losses.md) use metricMargins: rewards = b * mean(u), accuracy =
// mean(uw > ul), margin = b * mean(uw - ul), logps = mean of pi (or pi/n where the metrics
// divide), rejectedBelowReference = mean(ul < 0); b is beta, and orpoLambda for orpo (TRL's
// ORPOTrainer calls its lambda beta).
//
// Shapes: logps [R] (fp64), tokenCounts [R], refLogps [R] or nullptr (read as 0), rewards [R] or
// nullptr, coef [R] out. Serial, in prompt order: deterministic. The GPU runs addPrompt and
// batchResult too, with a tree.
FUSEDPO_HD inline LossResult preferenceLossOfBatch(const LossParams& p, int64_t rows,
                                                   const double* logps, const int32_t* tokenCounts,
                                                   const float* refLogps, const float* rewards, float* coef) {
  const int64_t groups = rows / rowsPerPrompt(p);
  if (groups <= 0) return LossResult{};
  double chosenLogpSum = 0, chosenTokenSum = 0;
  for (int64_t i = 0; i < groups; ++i) {
    chosenLogpSum += logps[i];
    chosenTokenSum += tokenCounts[i];
  }
  const double nllSlope = nllTermsOf(p, groups, chosenLogpSum, chosenTokenSum).slope;
  PairSums sums;
  for (int64_t i = 0; i < groups; ++i) {
    addPrompt(p, groups, i, logps, tokenCounts, refLogps, rewards, nllSlope, coef, sums);
  }
  return batchResult(p, groups, sums, chosenLogpSum, chosenTokenSum);
}

// The largest magnitude a gradient coefficient may have for dlogits stored in `dtype`: since
// |onehot - softmax| <= 1, every dlogit is then finite in its dtype (f16 stops at 65504).
FUSEDPO_HD inline double largestStorableGradient(DType dtype) {
  return dtype == DType::F16 ? 65504.0 : 3.4028234663852886e38;
}

// From finite inputs, every loss is finite and so is every coefficient, unless the sequence
// log-ratios are too large for the loss (sppo_hard, ipo: squares; a reference of -3e38). Returns
// the first row whose coefficient cannot be represented (row 0 when only the loss itself is not
// finite), or -1. The callers report it as an error rather than write infinities.
FUSEDPO_HD inline int64_t firstUnrepresentableCoefficient(const float* coef, int64_t rows, DType dtype, double loss) {
  const double largest = largestStorableGradient(dtype);
  for (int64_t s = 0; s < rows; ++s) {
    const double c = coef[s];
    if (!(fabs(c) <= largest)) return s;
  }
  return fabs(loss) <= 1.7976931348623157e308 ? -1 : 0;  // false for NaN and infinities
}

}  // namespace fusedpo
