// The contract of the fused preference-loss kernels (docs/losses.md). Plain C++17: no Node-API
// here.
//
// Shapes (R = 2P rows, chosen rows 0..P-1, rejected rows P..2P-1; N = R*T tokens):
//   logits  [R, T, V]  f32, or bf16/f16 as uint16 bits, row-major, contiguous
//   labels  [R, T]     int32; ignoreIndex marks an uncounted token. Callers validate the
//                      range [0, V) before calling: kernels trust it.
//   lse, lp [N]        float; per-token log-sum-exp and log-softmax at the label
//                      (0 for uncounted tokens, which are never read)
//   logps   [R]        double; masked sums of lp per row, fixed order (fp64)
//   coef    [R]        float; c[s] = dLoss/dpi[s]
//   dlogits [R, T, V]  same dtype as logits; may be the logits buffer itself (in place)
//
// Nothing proportional to N*V is ever allocated: forward reads the logits once, backward reads
// them once more and writes dlogits once.
#pragma once

#include <cstdint>

#include "loss_registry.h"

namespace fusedpo {

enum class DType : int32_t { F32 = 0, BF16 = 1, F16 = 2 };

// How the NLL term of the chosen rows is reduced (docs/losses.md, nllReduction).
enum class NllReduction : int32_t {
  TokenMean = 0,  // -(sum_i pw_i) / (sum_i nw_i): TRL's sft term
  Sum = 1,        // mean_i(-pw_i): the summed log-prob per pair, as arXiv 2405.16436's code
};

// The loss and its parameters. The number parameters, their defaults and the losses that take
// them come from the registry (loss_registry.h, generated from lib/losses/registry.ts).
struct LossParams {
  LossKind kind = LossKind::Dpo;
  bool averageLogProb = false;
  double nllWeight = 0.0;
  NllReduction nllReduction = NllReduction::TokenMean;
#define FUSEDPO_LOSS_PARAMETER_FIELD(type, name, value, ...) type name = value;
  FUSEDPO_LOSS_PARAMETERS(FUSEDPO_LOSS_PARAMETER_FIELD)
#undef FUSEDPO_LOSS_PARAMETER_FIELD
};

// Rows per prompt: groupSize for exo (rows k*P + i), 2 (a pair: rows i and P+i) for every other loss.
FUSEDPO_HD inline int64_t rowsPerPrompt(const LossParams& p) {
  return p.kind == LossKind::Exo ? int64_t(p.groupSize) : 2;
}

struct LogitsShape {
  int64_t rows;    // R = 2P
  int64_t tokens;  // T
  int64_t vocab;   // V
};

// TRL's metric names, camelCase (docs/losses.md, Metrics). nll is the NLL term's value (0 when
// the loss has none); rejectedBelowReference the fraction of pairs with ul < 0.
struct PreferenceMetrics {
  double rewardsChosen = 0, rewardsRejected = 0, rewardsAccuracy = 0, rewardsMargin = 0;
  double logpsChosen = 0, logpsRejected = 0, nll = 0, rejectedBelowReference = 0;
};

struct LossResult {
  double loss = 0;
  PreferenceMetrics metrics;
};

// Which implementation runs. Reference is the plain scalar spec; Fast picks the best SIMD
// path this CPU has at run time (AVX-512, AVX2 or plain) and uses the thread pool.
enum class Impl : int32_t { Reference = 0, Fast = 1 };

// The op is preferenceLoss in every layer: preferenceLossForward (stages 1 and 2),
// preferenceLossCoefficients (stage 3) and preferenceLossBackward (stage 4) here and in
// ../cuda/preference_loss_cuda.h, the bindings preferenceLoss / preferenceLossBackward, and
// preferenceLoss in lib/losses.
//
// ---- Stages 1 and 2: per-token log-softmax at the label, then per-row sums -------------------
// Reads every counted token's row of V logits once (stage 1: lse, lp), then sums each row
// (stage 2, sequenceSums below: logps, tokenCounts). nonFiniteToken[s] receives the first token
// index t of row s whose logits hold a NaN or an infinity (-1 when none); such a token's lse and
// lp are NaN, and so is its row's sum.
void preferenceLossForward(Impl impl, const void* logits, DType dtype, LogitsShape shape,
                           const int32_t* labels, int32_t ignoreIndex, float* lse, float* lp,
                           double* logps, int32_t* tokenCounts, int64_t* nonFiniteToken);

// For a row flagged by preferenceLossForward: the first vocabulary index v of token t whose
// logit is not finite (-1 when none).
int64_t firstNonFiniteVocab(const void* logits, DType dtype, LogitsShape shape, int64_t row,
                            int64_t token);

// Stage 2 alone: masked per-row sums, fp64, fixed order (deterministic).
// pi[s] = sum_t m[s,t] (z[s,t,y] - lse[s,t]), each term formed in fp64 from the stored label
// logit and lse (the fp32 lp can overflow for bf16 logits near their largest finite value).
void sequenceSums(const void* logits, DType dtype, LogitsShape shape, const int32_t* labels,
                  int32_t ignoreIndex, const float* lse, double* logps, int32_t* tokenCounts);

// ---- Stage 3: the loss of every pair, its metrics and the per-row coefficients ---------------
// logps [R], tokenCounts [R], refLogps [R] (nullptr for the reference-free losses), rewards [R]
// (exo's optional rewards, else nullptr), coef [R] out. R = groupSize * prompts (2P for every
// loss but exo). Rows with tokenCounts = 0 count as pi = 0 and get coef = 0.
LossResult preferenceLossCoefficients(const LossParams& params, int64_t rows, const double* logps,
                                      const int32_t* tokenCounts, const float* refLogps,
                                      const float* rewards, float* coef);

// ---- Stage 4: gradient with respect to the logits --------------------------------------------
// dlogits[s,t,v] = coef[s] * m[s,t] * ([v == y[s,t]] - exp(z[s,t,v] - lse[s,t])); rows of
// uncounted tokens are written as zeros. dlogits may equal logits (in place).
void preferenceLossBackward(Impl impl, const void* logits, DType dtype, LogitsShape shape,
                              const int32_t* labels, int32_t ignoreIndex, const float* lse,
                              const float* coef, void* dlogits);

// ---- Threads and CPU features ----------------------------------------------------------------
void setThreadCount(int threads);  // >= 1; the pool of the package's own
int threadCount();
// "avx512", "avx2" or "generic": the path Impl::Fast takes on this CPU. FUSEDPO_SIMD
// (avx512|avx2|generic) caps it, for tests and benchmarks.
const char* simdLevel();
// The features detected, e.g. "sse4.2 avx avx2 fma f16c avx512f avx512bw".
const char* cpuFeatures();

}  // namespace fusedpo
