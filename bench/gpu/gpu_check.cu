// Standalone check of the CUDA kernels (native/cuda) on a GPU machine that has no Node.js:
// correctness against the CPU reference (native/core/reference.cpp), then a benchmark against
// the card's copy bandwidth. Built by build.sh on the development machine, run by gpu-check.sh.
//
//   gpu_check [--out DIR] [--small] [--skip-correctness] [--skip-bench] [--iters N]
//             [--bench-case DTYPE:V[:PROMPT]] [--cpu-selftest]
//
// Correctness (exit 1 on any failure, first mismatches printed):
//   stage 1+2  lse, lp per counted token, logps, tokenCounts, nonFiniteToken vs the reference
//   stage 3    coef and LossResult of every loss of the registry (and variants: cDPO, RPO both
//              reductions, chipo's clip, exo with rewards and K = 3, 5) vs preferenceLossCoefficients
//   stage 4    dlogits vs the reference backward on the same lse and coef; in place and with a
//              misaligned output buffer bit-identical to the aligned out-of-place result
//   repeat     a second run of every stage is bit-identical
// over f32/bf16/f16, V = 1, 2, 123, 2048, 2049, 4097, 9000, 32000, 50257, 70000, 128256,
// T = 1, 3, 47, 64, masks, empty
// rows, an all-empty pair, logits of +-1e4, NaN/inf.
//
// Benchmark: copy bandwidth (cudaMemcpy device to device of 1 GiB, bytes read + written per
// second, as ../../shared/peers/gpu_peers.py measures it), then forward, backward, fwd+bwd and
// fwd+bwd in place for 4 pairs x 1024 tokens x V in {32000, 128256, 256000} in each dtype, with a
// quarter of each row masked as prompt (gpu_peers.py's setting) and without a mask. The floor of
// a measurement is the bytes of its passes over the whole logits at copy bandwidth:
// fwd = 1, bwd = 2, fwd+bwd = 3 passes of N*V*sizeof(dtype) (gpu_peers.py's ideal_logits_fwd_bwd).
// With the prompt masked the kernels skip the masked rows' reads, so a ratio below 1 is possible
// there; the unmasked rows are the honest comparison with the floor.
//
// Exit codes: 0 pass, 1 a check failed, 2 no CUDA device (reported, not a crash), 3 usage.
#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "../../native/core/half.h"
#include "../../native/core/preference_loss.h"
#include "../../native/core/reference.h"
#include "../../native/cuda/preference_loss_cuda.h"

#ifndef FUSEDPO_COMMIT
#define FUSEDPO_COMMIT "unknown"  // build.sh passes the git commit it built
#endif

using fusedpo::DType;
using fusedpo::LogitsShape;
using fusedpo::LossKind;
using fusedpo::LossParams;
using fusedpo::LossResult;
namespace gpu = fusedpo::cuda;

namespace {

// ---- Small utilities ---------------------------------------------------------------------------

struct Options {
  std::string outDir = ".";
  bool small = false;
  bool skipCorrectness = false;
  bool skipBench = false;
  bool cpuSelfTest = false;
  int iters = 20;
  std::string benchCase;  // "DTYPE:V[:PROMPT]" (e.g. bf16:128256:0): only that benchmark case
};

const char* dtypeName(DType d) {
  return d == DType::F32 ? "f32" : d == DType::BF16 ? "bf16" : "f16";
}
size_t dtypeBytes(DType d) { return d == DType::F32 ? 4 : 2; }

using fusedpo::lossName;
using fusedpo::lossNeedsReference;

LossParams defaultParams(LossKind kind) {
  LossParams p;
  p.kind = kind;
  p.beta = kind == LossKind::Simpo ? 2.0 : 0.1;
  if (kind == LossKind::ExoPair || kind == LossKind::Exo) p.labelSmoothing = 1e-3;
  if (kind == LossKind::Robust) p.labelSmoothing = 0.1;
  return p;
}

// Deterministic pseudo-random numbers (splitmix64): the same data on every machine.
struct Rng {
  uint64_t state;
  explicit Rng(uint64_t seed) : state(seed) {}
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
  double gauss() {
    double u = uniform(), v = uniform();
    return std::sqrt(-2.0 * std::log(1.0 - u)) * std::cos(6.283185307179586 * v);
  }
  int64_t below(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }
};

// Logits on the host as raw storage bytes of their dtype.
struct HostLogits {
  DType dtype;
  std::vector<uint8_t> bytes;
  void resize(DType d, size_t count) {
    dtype = d;
    bytes.assign(count * dtypeBytes(d), 0);
  }
  void set(size_t i, float x) {
    switch (dtype) {
      case DType::F32: memcpy(&bytes[i * 4], &x, 4); return;
      case DType::BF16: {
        uint16_t h = fusedpo::floatToBf16(x);
        memcpy(&bytes[i * 2], &h, 2);
        return;
      }
      case DType::F16: {
        uint16_t h = fusedpo::floatToF16(x);
        memcpy(&bytes[i * 2], &h, 2);
        return;
      }
    }
  }
};

float storedValue(const std::vector<uint8_t>& bytes, DType dtype, size_t i) {
  if (dtype == DType::F32) {
    float x;
    memcpy(&x, &bytes[i * 4], 4);
    return x;
  }
  uint16_t h;
  memcpy(&h, &bytes[i * 2], 2);
  return dtype == DType::BF16 ? fusedpo::bf16ToFloat(h) : fusedpo::f16ToFloat(h);
}


// Records failures of one case and prints the first few.
struct Checker {
  std::string caseName;
  int failures = 0;
  int printed = 0;
  void fail(const char* format, ...) __attribute__((format(printf, 2, 3))) {
    ++failures;
    if (printed >= 8) return;
    ++printed;
    va_list args;
    va_start(args, format);
    printf("  MISMATCH [%s] ", caseName.c_str());
    vprintf(format, args);
    printf("\n");
    va_end(args);
  }
  // |a - b| <= tol, NaN equal to NaN only.
  bool close(double got, double want, double tol) {
    if (std::isnan(got) || std::isnan(want)) return std::isnan(got) && std::isnan(want);
    if (std::isinf(got) || std::isinf(want)) return got == want;
    if (!(tol >= 0)) return got == want;  // a NaN tolerance (from a NaN lse): exact only
    return std::fabs(got - want) <= tol;
  }
};

bool statusOk(const gpu::CudaStatus& s, const char* what) {
  if (s.ok()) return true;
  printf("  CUDA ERROR in %s: code %d: %s\n", what, s.code, s.message);
  return false;
}

#define REQUIRE_OK(expr)                                   \
  do {                                                     \
    gpu::CudaStatus status_ = (expr);                      \
    if (!statusOk(status_, #expr)) {                       \
      ++check.failures;                                    \
      finish();                                            \
      return;                                              \
    }                                                      \
  } while (0)

// A device buffer freed on scope exit.
struct DeviceBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;
  gpu::CudaStatus alloc(size_t n) {
    release();
    bytes = n;
    return gpu::deviceAlloc(&ptr, n == 0 ? 1 : n);
  }
  void release() {
    if (ptr) gpu::deviceFree(ptr);
    ptr = nullptr;
    bytes = 0;
  }
  ~DeviceBuffer() { release(); }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr);
  }
};

template <typename T>
bool download(std::vector<T>& out, const void* src, size_t count, void* stream) {
  out.resize(count);
  gpu::CudaStatus s = gpu::copyToHost(out.data(), src, count * sizeof(T), stream);
  if (s.ok()) s = gpu::streamSynchronize(stream);
  return statusOk(s, "download");
}

// ---- Correctness cases -------------------------------------------------------------------------

struct CaseSpec {
  std::string name;
  DType dtype;
  int64_t rows, tokens, vocab;
  double promptFraction = 0.0;   // leading tokens of each row not counted
  double dropFraction = 0.0;     // further random tokens not counted
  std::vector<int64_t> emptyRows;
  bool extreme = false;          // logits of +-1e4
  bool nonFinite = false;        // NaN / inf injected
  bool allLosses = false;        // all 16 losses and the parameter variants, else dpo/minordpo/orpo
  bool misalignedOutput = false; // also a dlogits buffer one element off 16-byte alignment
};

struct CaseData {
  LogitsShape shape;
  HostLogits logits;
  std::vector<int32_t> labels;
  int32_t ignoreIndex = -100;
};

CaseData makeCase(const CaseSpec& spec, uint64_t seed) {
  CaseData d;
  d.shape = LogitsShape{spec.rows, spec.tokens, spec.vocab};
  const int64_t R = spec.rows, T = spec.tokens, V = spec.vocab;
  Rng rng(seed);
  d.logits.resize(spec.dtype, static_cast<size_t>(R * T * V));
  d.labels.resize(static_cast<size_t>(R * T));
  const int64_t prompt = static_cast<int64_t>(spec.promptFraction * T);
  for (int64_t s = 0; s < R; ++s) {
    bool empty = std::find(spec.emptyRows.begin(), spec.emptyRows.end(), s) != spec.emptyRows.end();
    for (int64_t t = 0; t < T; ++t) {
      const int64_t token = s * T + t;
      bool counted = !empty && t >= prompt && rng.uniform() >= spec.dropFraction;
      d.labels[token] = counted ? static_cast<int32_t>(rng.below(V)) : d.ignoreIndex;
      const int mode = spec.extreme ? static_cast<int>(token % 3) : 0;
      for (int64_t v = 0; v < V; ++v) {
        float x = static_cast<float>(2.0 * rng.gauss());
        if (mode == 1) x = 1e4f + x;                                 // a large common offset
        if (mode == 2 && rng.uniform() < 0.05) x = rng.uniform() < 0.5 ? 1e4f : -1e4f;
        d.logits.set(static_cast<size_t>(token * V + v), x);
      }
      // make the label sometimes the most likely class, as a trained model would
      if (counted && rng.uniform() < 0.3) d.logits.set(static_cast<size_t>(token * V + d.labels[token]), 8.0f);
    }
  }
  if (spec.nonFinite) {
    // counted tokens where possible; one NaN in an uncounted token that must not be flagged
    auto inject = [&](int64_t s, int64_t t, int64_t v, float x) {
      if (s >= R || t >= T) return;
      d.logits.set(static_cast<size_t>((s * T + t) * V + std::min(v, V - 1)), x);
    };
    const float inf = INFINITY, nan = NAN;
    for (int64_t s = 0; s < R; ++s) {
      for (int64_t t = 0; t < T; ++t) {
        if (d.labels[s * T + t] == d.ignoreIndex && s == 1) {
          inject(s, t, V / 2, nan);
          break;
        }
      }
    }
    inject(0, T / 2, V - 1, nan);
    inject(0, T - 1, 0, inf);
    inject(2, T - 1, V / 3, -inf);
    inject(3, 0, V / 7, inf);
    // counted: give those tokens a label
    if (R > 0 && T > 0) d.labels[0 * T + T / 2] = 0;
    if (R > 3) d.labels[3 * T + 0] = static_cast<int32_t>(V - 1);
    if (R > 2) d.labels[2 * T + T - 1] = 0;
  }
  return d;
}

// Expected error of a token's lse (and so of log p): __expf and fp32 sums vs the fp64 reference,
// plus the rounding of lse itself, which grows with |lse| (logits of 1e4).
double lseTolerance(double lse) { return 1e-4 + 4e-7 * std::fabs(lse); }

struct StorageTolerance {
  double rel, abs;
};
StorageTolerance storageTolerance(DType d) {
  switch (d) {
    case DType::F32: return {2e-6, 1e-38};
    case DType::BF16: return {1.0 / 128, 1e-38};  // one bf16 ulp (the two sides may round apart)
    case DType::F16: return {1.0 / 1024, 6.0e-8};  // one f16 ulp; f16 subnormal spacing
  }
  return {0, 0};
}

// Runs the whole GPU pipeline for one loss: forward, coefficients, backward into dlogitsOut.
struct GpuRun {
  std::vector<float> lse, lp, coef;
  std::vector<double> logps;
  std::vector<int32_t> counts;
  std::vector<int64_t> nonFiniteToken;
  LossResult result;
  std::vector<uint8_t> dlogits;
};

struct DeviceCase {
  DeviceBuffer logits, labels, lse, lp, logps, counts, nonFinite, workspace, ref, coef, result,
      dlogits, scratch;
  size_t logitsBytes = 0;
};

void checkCase(const CaseSpec& spec, uint64_t seed, void* stream, int& totalFailures,
               int& totalCases) {
  Checker check;
  check.caseName = spec.name + " " + dtypeName(spec.dtype);
  ++totalCases;
  printf("case %-44s [%lld, %lld, %lld] ", check.caseName.c_str(),
         static_cast<long long>(spec.rows), static_cast<long long>(spec.tokens),
         static_cast<long long>(spec.vocab));
  fflush(stdout);
  const CaseData data = makeCase(spec, seed);
  const LogitsShape shape = data.shape;
  const int64_t R = shape.rows, T = shape.tokens, V = shape.vocab, N = R * T;
  const DType dtype = spec.dtype;
  const size_t elem = dtypeBytes(dtype);
  const size_t logitsBytes = static_cast<size_t>(N * V) * elem;
  const auto finish = [&]() {
    printf("%s\n", check.failures == 0 ? "ok" : "FAILED");
    totalFailures += check.failures;
  };

  // CPU reference, stages 1 and 2
  std::vector<float> refLse(N), refLp(N);
  std::vector<int64_t> refNonFinite(R);
  std::vector<double> refLogps(R);
  std::vector<int32_t> refCounts(R);
  fusedpo::referencePreferenceLossForward(data.logits.bytes.data(), dtype, shape,
                                            data.labels.data(), data.ignoreIndex, refLse.data(),
                                            refLp.data(), refNonFinite.data());
  fusedpo::sequenceSums(data.logits.bytes.data(), dtype, shape, data.labels.data(),
                        data.ignoreIndex, refLse.data(), refLogps.data(), refCounts.data());
  // The frozen reference model: the policy's own log-probs, moved a little (finite for NaN rows).
  Rng rng(seed ^ 0x5eedull);
  std::vector<float> refModel(R);
  for (int64_t s = 0; s < R; ++s) {
    double base = std::isfinite(refLogps[s]) ? refLogps[s] : -10.0 * T;
    refModel[s] = static_cast<float>(base + 2.0 * rng.gauss());
  }

  DeviceCase dev;
  REQUIRE_OK(dev.logits.alloc(logitsBytes));
  REQUIRE_OK(dev.labels.alloc(N * sizeof(int32_t)));
  REQUIRE_OK(dev.lse.alloc(N * sizeof(float)));
  REQUIRE_OK(dev.lp.alloc(N * sizeof(float)));
  REQUIRE_OK(dev.logps.alloc(R * sizeof(double)));
  REQUIRE_OK(dev.counts.alloc(R * sizeof(int32_t)));
  REQUIRE_OK(dev.nonFinite.alloc(R * sizeof(int64_t)));
  REQUIRE_OK(dev.workspace.alloc(gpu::forwardWorkspaceBytes(shape)));
  REQUIRE_OK(dev.ref.alloc(R * sizeof(float)));
  REQUIRE_OK(dev.coef.alloc(R * sizeof(float)));
  REQUIRE_OK(dev.result.alloc(sizeof(LossResult)));
  REQUIRE_OK(dev.dlogits.alloc(logitsBytes + 64));
  REQUIRE_OK(dev.scratch.alloc(logitsBytes + 64));
  REQUIRE_OK(gpu::copyToDevice(dev.logits.ptr, data.logits.bytes.data(), logitsBytes, stream));
  REQUIRE_OK(gpu::copyToDevice(dev.labels.ptr, data.labels.data(), N * sizeof(int32_t), stream));
  REQUIRE_OK(gpu::copyToDevice(dev.ref.ptr, refModel.data(), R * sizeof(float), stream));

  // ---- stages 1 + 2 ----
  auto forward = [&](GpuRun& run) -> bool {
    gpu::CudaStatus s = gpu::preferenceLossForward(
        dev.logits.ptr, dtype, shape, dev.labels.as<int32_t>(), data.ignoreIndex,
        dev.lse.as<float>(), dev.lp.as<float>(), dev.logps.as<double>(),
        dev.counts.as<int32_t>(), dev.nonFinite.as<int64_t>(), dev.workspace.ptr,
        dev.workspace.bytes, stream);
    if (!statusOk(s, "preferenceLossForward")) return false;
    if (!statusOk(gpu::streamSynchronize(stream), "forward synchronize")) return false;
    return download(run.lse, dev.lse.ptr, N, stream) && download(run.lp, dev.lp.ptr, N, stream) &&
           download(run.logps, dev.logps.ptr, R, stream) &&
           download(run.counts, dev.counts.ptr, R, stream) &&
           download(run.nonFiniteToken, dev.nonFinite.ptr, R, stream);
  };
  GpuRun first;
  if (!forward(first)) {
    ++check.failures;
    finish();
    return;
  }
  for (int64_t s = 0; s < R; ++s) {
    if (first.counts[s] != refCounts[s]) {
      check.fail("tokenCounts[%lld] = %d, reference %d", (long long)s, first.counts[s], refCounts[s]);
    }
    if (first.nonFiniteToken[s] != refNonFinite[s]) {
      check.fail("nonFiniteToken[%lld] = %lld, reference %lld", (long long)s,
                 (long long)first.nonFiniteToken[s], (long long)refNonFinite[s]);
    }
    double absSum = 0;
    for (int64_t t = 0; t < T; ++t) absSum += std::fabs(refLp[s * T + t]);
    const double tol = 1e-4 * refCounts[s] + 1e-6 * absSum + 1e-6;
    if (!check.close(first.logps[s], refLogps[s], tol)) {
      check.fail("logps[%lld] = %.9g, reference %.9g (tol %.3g)", (long long)s, first.logps[s],
                 refLogps[s], tol);
    }
  }
  for (int64_t i = 0; i < N; ++i) {
    const bool counted = data.labels[i] != data.ignoreIndex;
    if (!counted) {
      if (first.lse[i] != 0.f || first.lp[i] != 0.f) {
        check.fail("uncounted token %lld: lse %g lp %g, expected 0", (long long)i, first.lse[i],
                   first.lp[i]);
      }
      continue;
    }
    const double tol = lseTolerance(refLse[i]);
    if (!check.close(first.lse[i], refLse[i], tol)) {
      check.fail("lse[row %lld, t %lld] = %.9g, reference %.9g", (long long)(i / T),
                 (long long)(i % T), first.lse[i], refLse[i]);
    }
    if (!check.close(first.lp[i], refLp[i], tol)) {
      check.fail("lp[row %lld, t %lld] = %.9g, reference %.9g", (long long)(i / T),
                 (long long)(i % T), first.lp[i], refLp[i]);
    }
  }
  // the first non-finite vocabulary index of each flagged row
  for (int64_t s = 0; s < R; ++s) {
    if (first.nonFiniteToken[s] < 0) continue;
    int64_t got = -2;
    REQUIRE_OK(gpu::firstNonFiniteVocab(dev.logits.ptr, dtype, shape, s, first.nonFiniteToken[s],
                                        dev.result.as<int64_t>(), &got, stream));
    const int64_t want = fusedpo::firstNonFiniteVocab(data.logits.bytes.data(), dtype, shape, s,
                                                      first.nonFiniteToken[s]);
    if (got != want) {
      check.fail("firstNonFiniteVocab(row %lld, t %lld) = %lld, reference %lld", (long long)s,
                 (long long)first.nonFiniteToken[s], (long long)got, (long long)want);
    }
  }

  // ---- stage 3 for each loss, stage 4 for the first few ----
  std::vector<LossParams> losses;
  if (spec.allLosses) {
    for (int k = 0; k < fusedpo::kLossKindCount; ++k) losses.push_back(defaultParams(static_cast<LossKind>(k)));
    LossParams smooth = defaultParams(LossKind::Dpo);
    smooth.labelSmoothing = 0.1;
    losses.push_back(smooth);
    LossParams averaged = defaultParams(LossKind::MinorDpo);
    averaged.averageLogProb = true;
    losses.push_back(averaged);
    LossParams rpo = defaultParams(LossKind::Dpo);
    rpo.nllWeight = 0.5;
    losses.push_back(rpo);
    LossParams bco = defaultParams(LossKind::BcoPair);
    bco.bcoDelta = 0.3;
    losses.push_back(bco);
    LossParams rpoSum = rpo;
    rpoSum.nllReduction = fusedpo::NllReduction::Sum;
    losses.push_back(rpoSum);
    LossParams orpoRpo = defaultParams(LossKind::Orpo);
    orpoRpo.nllWeight = 0.25;
    losses.push_back(orpoRpo);
    LossParams clipped = defaultParams(LossKind::Chipo);
    clipped.chipoClip = 0.05;  // some pairs on each side of the clip
    losses.push_back(clipped);
    LossParams rewarded = defaultParams(LossKind::Exo);  // rewards: the reference's log-probs
    losses.push_back(rewarded);
    for (int64_t k = 3; k <= 5; k += 2) {
      if (R % k != 0) continue;
      LossParams group = defaultParams(LossKind::Exo);
      group.groupSize = static_cast<int32_t>(k);
      losses.push_back(group);
    }
  } else {
    losses.push_back(defaultParams(LossKind::Dpo));
    losses.push_back(defaultParams(LossKind::MinorDpo));
    losses.push_back(defaultParams(LossKind::Orpo));
  }
  const StorageTolerance storage = storageTolerance(dtype);
  for (size_t li = 0; li < losses.size(); ++li) {
    const LossParams& params = losses[li];
    const float* refPtr = lossNeedsReference(params.kind) ? dev.ref.as<float>() : nullptr;
    // the variant of exo after the default one takes rewards (the reference's own values)
    const bool rewarded = params.kind == LossKind::Exo && li > 0 && losses[li - 1].kind == LossKind::Exo &&
                          params.groupSize == 2;
    const float* rewardsPtr = rewarded ? dev.ref.as<float>() : nullptr;
    LossResult gpuResult;
    REQUIRE_OK(gpu::preferenceLossCoefficients(params, R, dev.logps.as<double>(),
                                               dev.counts.as<int32_t>(), refPtr, rewardsPtr,
                                               dev.coef.as<float>(), dev.result.as<LossResult>(),
                                               &gpuResult, stream));
    std::vector<float> gpuCoef;
    if (!download(gpuCoef, dev.coef.ptr, R, stream)) {
      ++check.failures;
      break;
    }
    // The same stage on the CPU from the GPU's logps: the same formulas, the sums in another
    // order.
    std::vector<float> cpuCoef(R);
    const LossResult cpuResult = fusedpo::preferenceLossCoefficients(
        params, R, first.logps.data(), first.counts.data(),
        refPtr ? refModel.data() : nullptr, rewarded ? refModel.data() : nullptr, cpuCoef.data());
    const char* name = lossName(params.kind);
    for (int64_t s = 0; s < R; ++s) {
      if (!check.close(gpuCoef[s], cpuCoef[s], 1e-6 * std::fabs(cpuCoef[s]) + 1e-12)) {
        check.fail("%s (variant %zu): coef[%lld] = %.9g, cpu %.9g", name, li, (long long)s,
                   gpuCoef[s], cpuCoef[s]);
      }
    }
    const double gotValues[] = {gpuResult.loss,
                                gpuResult.metrics.rewardsChosen,
                                gpuResult.metrics.rewardsRejected,
                                gpuResult.metrics.rewardsAccuracy,
                                gpuResult.metrics.rewardsMargin,
                                gpuResult.metrics.logpsChosen,
                                gpuResult.metrics.logpsRejected,
                                gpuResult.metrics.nll,
                                gpuResult.metrics.rejectedBelowReference};
    const double wantValues[] = {cpuResult.loss,
                                 cpuResult.metrics.rewardsChosen,
                                 cpuResult.metrics.rewardsRejected,
                                 cpuResult.metrics.rewardsAccuracy,
                                 cpuResult.metrics.rewardsMargin,
                                 cpuResult.metrics.logpsChosen,
                                 cpuResult.metrics.logpsRejected,
                                 cpuResult.metrics.nll,
                                 cpuResult.metrics.rejectedBelowReference};
    const char* valueNames[] = {"loss", "rewardsChosen", "rewardsRejected", "rewardsAccuracy",
                                "rewardsMargin", "logpsChosen", "logpsRejected", "nll",
                                "rejectedBelowReference"};
    for (int k = 0; k < 9; ++k) {
      if (!check.close(gotValues[k], wantValues[k], 1e-9 * (1.0 + std::fabs(wantValues[k])))) {
        check.fail("%s (variant %zu): %s = %.12g, cpu %.12g", name, li, valueNames[k],
                   gotValues[k], wantValues[k]);
      }
    }
    // End to end against the CPU's own fp64 logps: loose, catches gross errors only.
    {
      std::vector<float> e2eCoef(R);
      const LossResult e2e = fusedpo::preferenceLossCoefficients(
          params, R, refLogps.data(), refCounts.data(), refPtr ? refModel.data() : nullptr,
          rewarded ? refModel.data() : nullptr, e2eCoef.data());
      if (!spec.nonFinite && !check.close(gpuResult.loss, e2e.loss,
                                          1e-2 * std::fabs(e2e.loss) + 1e-2)) {
        check.fail("%s (variant %zu): end-to-end loss %.9g, cpu pipeline %.9g", name, li,
                   gpuResult.loss, e2e.loss);
      }
    }

    if (li >= 3 && !(spec.allLosses && li == 15)) continue;  // backward: dpo, minordpo, ipo/orpo, orpo
    // ---- stage 4: out of place, against the reference on the same lse and coef ----
    REQUIRE_OK(gpu::preferenceLossBackward(dev.logits.ptr, dtype, shape, dev.labels.as<int32_t>(),
                                           data.ignoreIndex, dev.lse.as<float>(),
                                           dev.coef.as<float>(), dev.dlogits.ptr, stream));
    std::vector<uint8_t> gpuGrad;
    if (!download(gpuGrad, dev.dlogits.ptr, logitsBytes, stream)) {
      ++check.failures;
      break;
    }
    std::vector<uint8_t> refGrad(logitsBytes);
    fusedpo::referencePreferenceLossBackward(data.logits.bytes.data(), dtype, shape,
                                               data.labels.data(), data.ignoreIndex,
                                               first.lse.data(), gpuCoef.data(), refGrad.data());
    int64_t bad = 0;
    for (int64_t token = 0; token < N; ++token) {
      const double c = gpuCoef[token / T];
      const double eps = lseTolerance(first.lse[token]);
      for (int64_t v = 0; v < V; ++v) {
        const size_t i = static_cast<size_t>(token * V + v);
        const double got = storedValue(gpuGrad, dtype, i), want = storedValue(refGrad, dtype, i);
        const double tol = std::fabs(want) * (eps + storage.rel) +
                           (v == data.labels[token] ? std::fabs(c) * eps : 0.0) + storage.abs;
        if (!check.close(got, want, tol)) {
          if (++bad <= 5) {
            check.fail("%s: dlogits[row %lld, t %lld, v %lld] = %.9g, reference %.9g (coef %.6g)",
                       name, (long long)(token / T), (long long)(token % T), (long long)v, got,
                       want, c);
          } else {
            ++check.failures;
          }
        }
        // uncounted tokens and zero-coef rows must be +0 exactly
        if (data.labels[token] == data.ignoreIndex && (got != 0.0 || std::signbit(got))) {
          check.fail("%s: uncounted token (row %lld, t %lld) v %lld holds %g, not +0", name,
                     (long long)(token / T), (long long)(token % T), (long long)v, got);
        }
      }
    }
    // ---- in place: the same bits ----
    REQUIRE_OK(gpu::copyDeviceToDevice(dev.scratch.ptr, dev.logits.ptr, logitsBytes, stream));
    REQUIRE_OK(gpu::preferenceLossBackward(dev.scratch.ptr, dtype, shape,
                                           dev.labels.as<int32_t>(), data.ignoreIndex,
                                           dev.lse.as<float>(), dev.coef.as<float>(),
                                           dev.scratch.ptr, stream));
    std::vector<uint8_t> inPlace;
    if (!download(inPlace, dev.scratch.ptr, logitsBytes, stream)) {
      ++check.failures;
      break;
    }
    if (memcmp(inPlace.data(), gpuGrad.data(), logitsBytes) != 0) {
      check.fail("%s: in-place dlogits differ from out-of-place dlogits", name);
    }
    // ---- misaligned output (scalar path): the same bits ----
    if (spec.misalignedOutput) {
      uint8_t* shifted = dev.scratch.as<uint8_t>() + elem;
      REQUIRE_OK(gpu::preferenceLossBackward(dev.logits.ptr, dtype, shape,
                                             dev.labels.as<int32_t>(), data.ignoreIndex,
                                             dev.lse.as<float>(), dev.coef.as<float>(), shifted,
                                             stream));
      std::vector<uint8_t> misaligned;
      if (!download(misaligned, shifted, logitsBytes, stream)) {
        ++check.failures;
        break;
      }
      if (memcmp(misaligned.data(), gpuGrad.data(), logitsBytes) != 0) {
        check.fail("%s: dlogits written to a misaligned buffer differ", name);
      }
    }
    // ---- repeat: bit-identical ----
    if (li == 0) {
      GpuRun second;
      if (!forward(second)) {
        ++check.failures;
        break;
      }
      LossResult again;
      REQUIRE_OK(gpu::preferenceLossCoefficients(params, R, dev.logps.as<double>(),
                                                 dev.counts.as<int32_t>(), refPtr, rewardsPtr,
                                                 dev.coef.as<float>(),
                                                 dev.result.as<LossResult>(), &again, stream));
      std::vector<float> coefAgain;
      REQUIRE_OK(gpu::preferenceLossBackward(dev.logits.ptr, dtype, shape,
                                             dev.labels.as<int32_t>(), data.ignoreIndex,
                                             dev.lse.as<float>(), dev.coef.as<float>(),
                                             dev.dlogits.ptr, stream));
      std::vector<uint8_t> gradAgain;
      if (!download(coefAgain, dev.coef.ptr, R, stream) ||
          !download(gradAgain, dev.dlogits.ptr, logitsBytes, stream)) {
        ++check.failures;
        break;
      }
      if (memcmp(second.lse.data(), first.lse.data(), N * sizeof(float)) != 0 ||
          memcmp(second.lp.data(), first.lp.data(), N * sizeof(float)) != 0 ||
          memcmp(second.logps.data(), first.logps.data(), R * sizeof(double)) != 0) {
        check.fail("repeat: forward results are not bit-identical");
      }
      if (memcmp(coefAgain.data(), gpuCoef.data(), R * sizeof(float)) != 0 ||
          memcmp(&again, &gpuResult, sizeof(LossResult)) != 0) {
        check.fail("repeat: coefficients or loss are not bit-identical");
      }
      if (memcmp(gradAgain.data(), gpuGrad.data(), logitsBytes) != 0) {
        check.fail("repeat: dlogits are not bit-identical");
      }
    }
  }
  finish();
}

std::vector<CaseSpec> correctnessCases(bool small) {
  std::vector<CaseSpec> cases;
  const DType dtypes[] = {DType::F32, DType::BF16, DType::F16};
  for (DType d : dtypes) {
    auto add = [&](CaseSpec c) {
      c.dtype = d;
      cases.push_back(c);
    };
    CaseSpec c;
    c = CaseSpec{"V=1", d, 2, 5, 1};
    add(c);
    c = CaseSpec{"V=2 T=1", d, 2, 1, 2};
    add(c);
    c = CaseSpec{"V=123 T=47 masks, all losses", d, 4, 47, 123};
    c.promptFraction = 0.2;
    c.dropFraction = 0.2;
    c.allLosses = true;
    c.misalignedOutput = true;
    add(c);
    c = CaseSpec{"V=123 T=47 empty row, empty pair", d, 6, 47, 123};
    c.emptyRows = {1, 2, 5};  // row 1 alone, and pair 2 = rows 2 and 5
    c.allLosses = true;
    add(c);
    c = CaseSpec{"V=2048 (warp rows)", d, 2, 9, 2048};
    c.dropFraction = 0.3;
    add(c);
    c = CaseSpec{"V=2049 (block rows)", d, 2, 9, 2049};
    c.misalignedOutput = true;
    add(c);
    c = CaseSpec{"V=4097", d, 2, 3, 4097};
    add(c);
    c = CaseSpec{"extreme +-1e4", d, 4, 12, 1000};
    c.extreme = true;
    c.allLosses = true;
    add(c);
    c = CaseSpec{"non-finite", d, 4, 6, 300};
    c.nonFinite = true;
    c.dropFraction = 0.3;
    add(c);
    c = CaseSpec{"non-finite, split rows", d, 4, 6, 9000};
    c.nonFinite = true;
    c.dropFraction = 0.3;
    add(c);
    if (small) continue;
    c = CaseSpec{"V=50257 T=47 prompt, split rows", d, 4, 47, 50257};
    c.promptFraction = 0.25;
    c.emptyRows = {3};
    c.allLosses = true;
    add(c);
    c = CaseSpec{"V=50257 T=1 (few rows)", d, 2, 1, 50257};
    c.misalignedOutput = true;
    add(c);
    c = CaseSpec{"V=70000 T=16 extreme, split", d, 2, 16, 70000};
    c.extreme = true;
    add(c);
    c = CaseSpec{"V=32000 T=64", d, 8, 64, 32000};
    c.promptFraction = 0.25;
    add(c);
    c = CaseSpec{"V=128256 T=3", d, 2, 3, 128256};
    add(c);
  }
  return cases;
}

// ---- Benchmark ---------------------------------------------------------------------------------

__global__ void fillLogitsKernel(void* logits, int dtype, int64_t count, uint64_t seed) {
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < count;
       i += int64_t{gridDim.x} * blockDim.x) {
    uint64_t z = seed + static_cast<uint64_t>(i) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    // sum of four uniforms: roughly normal, mean 0, sd about 2
    float x = 0.f;
    for (int k = 0; k < 4; ++k) x += static_cast<float>((z >> (16 * k)) & 0xffff) / 65536.f;
    x = (x - 2.f) * 3.46f;
    if (dtype == 0) static_cast<float*>(logits)[i] = x;
    else if (dtype == 1) static_cast<__nv_bfloat16*>(logits)[i] = __float2bfloat16_rn(x);
    else static_cast<__half*>(logits)[i] = __float2half_rn(x);
  }
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

struct BenchRow {
  std::string name;
  std::string dtype;
  int64_t vocab;
  double promptFraction;
  double ms, msMin, floorMs, gbPerS;
};

// Times fn with CUDA events on the stream: warmup runs, then `iters` runs; median and min ms.
template <typename Fn>
bool timeIt(Fn fn, int iters, void* stream, double& medianMs, double& minMs) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  for (int i = 0; i < 3; ++i) {
    if (!fn()) return false;
  }
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  std::vector<double> times;
  for (int i = 0; i < iters; ++i) {
    cudaEventRecord(a, s);
    if (!fn()) return false;
    cudaEventRecord(b, s);
    cudaEventSynchronize(b);
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    times.push_back(ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    printf("  CUDA error while timing: %s\n", cudaGetErrorString(err));
    return false;
  }
  medianMs = median(times);
  minMs = *std::min_element(times.begin(), times.end());
  return true;
}

double copyBandwidth(void* stream) {
  const size_t bytes = size_t{1} << 30;
  DeviceBuffer x, y;
  if (!statusOk(x.alloc(bytes), "copy bandwidth alloc") ||
      !statusOk(y.alloc(bytes), "copy bandwidth alloc")) {
    return 0;
  }
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  cudaMemsetAsync(x.ptr, 1, bytes, s);
  for (int i = 0; i < 3; ++i) cudaMemcpyAsync(y.ptr, x.ptr, bytes, cudaMemcpyDeviceToDevice, s);
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  cudaEventRecord(a, s);
  const int reps = 20;
  for (int i = 0; i < reps; ++i) cudaMemcpyAsync(y.ptr, x.ptr, bytes, cudaMemcpyDeviceToDevice, s);
  cudaEventRecord(b, s);
  cudaEventSynchronize(b);
  float ms = 0;
  cudaEventElapsedTime(&ms, a, b);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return 2.0 * reps * static_cast<double>(bytes) / (ms / 1e3);  // bytes read + written per second
}

void runBenchmark(const Options& opt, void* stream, double copyBw, std::vector<BenchRow>& rows,
                  int64_t freeBytes) {
  const int64_t pairs = 4, R = 2 * pairs, T = 1024, N = R * T;
  const int64_t vocabs[] = {128256, 32000, 256000};
  const DType dtypes[] = {DType::BF16, DType::F32, DType::F16};
  std::vector<int32_t> labelsMasked(N), labelsFull(N);
  Rng rng(1234);
  for (int64_t i = 0; i < N; ++i) labelsFull[i] = 0;  // set per V below
  std::vector<float> refModel(R);
  for (int64_t s = 0; s < R; ++s) refModel[s] = static_cast<float>(rng.gauss() * 5 - 3000.0);

  // --bench-case DTYPE:V[:PROMPT]: one case alone (for a profiler)
  auto wanted = [&](DType dtype, int64_t V, double prompt) {
    if (opt.benchCase.empty()) return true;
    char name[32];
    snprintf(name, sizeof(name), "%s:%lld", dtypeName(dtype), static_cast<long long>(V));
    const std::string c = opt.benchCase;
    if (c == name) return true;
    return c.rfind(std::string(name) + ":", 0) == 0 && std::stod(c.substr(strlen(name) + 1)) == prompt;
  };
  for (int64_t V : vocabs) {
    for (DType dtype : dtypes) {
      if (!wanted(dtype, V, 0.0) && !wanted(dtype, V, 0.25)) continue;
      const size_t elem = dtypeBytes(dtype);
      const size_t logitsBytes = static_cast<size_t>(N * V) * elem;
      // logits + dlogits + slack
      if (static_cast<int64_t>(2 * logitsBytes + (256ll << 20)) > freeBytes) {
        printf("bench %s V=%lld: skipped, needs %.1f GiB\n", dtypeName(dtype), (long long)V,
               2.0 * logitsBytes / (1 << 30));
        continue;
      }
      const LogitsShape shape{R, T, V};
      Rng labelRng(static_cast<uint64_t>(V));
      for (int64_t s = 0; s < R; ++s) {
        for (int64_t t = 0; t < T; ++t) {
          const int32_t y = static_cast<int32_t>(labelRng.below(V));
          labelsFull[s * T + t] = y;
          labelsMasked[s * T + t] = t < T / 4 ? -100 : y;
        }
      }
      DeviceBuffer logits, dlogits, labelsDev[2], lse, lp, logps, counts, nonFinite, workspace,
          ref, coef, result;
      bool ok = statusOk(logits.alloc(logitsBytes), "bench alloc logits") &&
                statusOk(dlogits.alloc(logitsBytes), "bench alloc dlogits") &&
                statusOk(labelsDev[0].alloc(N * 4), "alloc") &&
                statusOk(labelsDev[1].alloc(N * 4), "alloc") &&
                statusOk(lse.alloc(N * 4), "alloc") && statusOk(lp.alloc(N * 4), "alloc") &&
                statusOk(logps.alloc(R * 8), "alloc") && statusOk(counts.alloc(R * 4), "alloc") &&
                statusOk(nonFinite.alloc(R * 8), "alloc") &&
                statusOk(workspace.alloc(gpu::forwardWorkspaceBytes(shape)), "alloc") &&
                statusOk(ref.alloc(R * 4), "alloc") && statusOk(coef.alloc(R * 4), "alloc") &&
                statusOk(result.alloc(sizeof(LossResult)), "alloc");
      if (!ok) continue;
      gpu::copyToDevice(labelsDev[0].ptr, labelsMasked.data(), N * 4, stream);
      gpu::copyToDevice(labelsDev[1].ptr, labelsFull.data(), N * 4, stream);
      gpu::copyToDevice(ref.ptr, refModel.data(), R * 4, stream);
      const int dtypeCode = dtype == DType::F32 ? 0 : dtype == DType::BF16 ? 1 : 2;
      auto refill = [&]() {
        fillLogitsKernel<<<4096, 256, 0, static_cast<cudaStream_t>(stream)>>>(
            logits.ptr, dtypeCode, N * V, 42);
        return cudaGetLastError() == cudaSuccess;
      };
      if (!refill()) continue;
      LossParams params = defaultParams(LossKind::Dpo);
      const double passBytes = static_cast<double>(N) * V * elem;
      const double passMs = passBytes / copyBw * 1e3;

      for (int masked = 1; masked >= 0; --masked) {
        const int32_t* labels = labelsDev[masked ? 0 : 1].as<int32_t>();
        const double promptFraction = masked ? 0.25 : 0.0;
        if (!wanted(dtype, V, promptFraction)) continue;
        auto fwd = [&]() {
          return statusOk(gpu::preferenceLossForward(logits.ptr, dtype, shape, labels, -100,
                                                     lse.as<float>(), lp.as<float>(),
                                                     logps.as<double>(), counts.as<int32_t>(),
                                                     nonFinite.as<int64_t>(), workspace.ptr,
                                                     workspace.bytes, stream),
                          "forward");
        };
        auto coefs = [&]() {
          return statusOk(gpu::preferenceLossCoefficients(params, R, logps.as<double>(),
                                                          counts.as<int32_t>(), ref.as<float>(),
                                                          nullptr, coef.as<float>(),
                                                          result.as<LossResult>(), nullptr,
                                                          stream),
                          "coefficients");
        };
        auto bwd = [&](void* out) {
          return statusOk(gpu::preferenceLossBackward(logits.ptr, dtype, shape, labels, -100,
                                                      lse.as<float>(), coef.as<float>(), out,
                                                      stream),
                          "backward");
        };
        struct Item {
          const char* name;
          double passes;
          std::function<bool()> fn;
        };
        // fwd + coef first so that lse and coef hold real values for the backward alone
        if (!fwd() || !coefs()) break;
        std::vector<Item> items;
        items.push_back({"forward", 1, [&]() { return fwd(); }});
        items.push_back({"backward", 2, [&]() { return bwd(dlogits.ptr); }});
        items.push_back({"fwd+bwd", 3, [&]() { return fwd() && coefs() && bwd(dlogits.ptr); }});
        items.push_back({"fwd+bwd in place", 3, [&]() { return fwd() && coefs() && bwd(logits.ptr); }});
        for (const Item& item : items) {
          if (std::string(item.name) == "fwd+bwd in place" && !refill()) break;
          double ms = 0, msMin = 0;
          if (!timeIt(item.fn, opt.iters, stream, ms, msMin)) continue;
          BenchRow row;
          row.name = item.name;
          row.dtype = dtypeName(dtype);
          row.vocab = V;
          row.promptFraction = promptFraction;
          row.ms = ms;
          row.msMin = msMin;
          row.floorMs = item.passes * passMs;
          row.gbPerS = item.passes * passBytes / (ms / 1e3) / 1e9;
          rows.push_back(row);
          printf("bench %-18s %-4s V=%-6lld prompt %.2f: %8.3f ms (min %.3f), floor %.3f ms, "
                 "ratio %.2f, %.0f GB/s nominal\n",
                 item.name, row.dtype.c_str(), (long long)V, promptFraction, ms, msMin,
                 row.floorMs, ms / row.floorMs, row.gbPerS);
          fflush(stdout);
        }
        if (!refill()) break;  // in place wrote gradients over the logits
      }
    }
  }
}

// ---- Output ------------------------------------------------------------------------------------

void writeJson(const Options& opt, const gpu::DeviceInfo& info, double copyBw,
               int correctnessCases, int correctnessFailures, bool ranCorrectness,
               const std::vector<BenchRow>& rows) {
  const std::string path = opt.outDir + "/gpu_check.json";
  FILE* f = fopen(path.c_str(), "w");
  if (!f) {
    printf("cannot write %s\n", path.c_str());
    return;
  }
  char date[64];
  time_t now = time(nullptr);
  strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
  fprintf(f, "{\n  \"date\": \"%s\",\n  \"commit\": \"%s\",\n", date, FUSEDPO_COMMIT);
  fprintf(f, "  \"device\": \"%s\",\n", info.deviceCount > 0 ? info.devices[0].name : "");
  fprintf(f, "  \"computeCapability\": \"%d.%d\",\n",
          info.deviceCount > 0 ? info.devices[0].computeMajor : 0,
          info.deviceCount > 0 ? info.devices[0].computeMinor : 0);
  fprintf(f, "  \"driverVersion\": %d,\n  \"runtimeVersion\": %d,\n", info.driverVersion,
          info.runtimeVersion);
  fprintf(f, "  \"copyBandwidthTBps\": %.4f,\n", copyBw / 1e12);
  fprintf(f, "  \"floorDefinition\": \"passes * N*V*sizeof(dtype) / copy bandwidth (read+write bytes per second of a 1 GiB device-to-device copy); fwd 1 pass, bwd 2, fwd+bwd 3\",\n");
  if (ranCorrectness) {
    fprintf(f, "  \"correctness\": {\"cases\": %d, \"failures\": %d},\n", correctnessCases,
            correctnessFailures);
  } else {
    fprintf(f, "  \"correctness\": null,\n");
  }
  fprintf(f, "  \"bench\": [");
  for (size_t i = 0; i < rows.size(); ++i) {
    const BenchRow& r = rows[i];
    fprintf(f,
            "%s\n    {\"name\": \"%s\", \"dtype\": \"%s\", \"pairs\": 4, \"T\": 1024, \"V\": %lld, "
            "\"promptFraction\": %.2f, \"msMedian\": %.4f, \"msMin\": %.4f, \"floorMs\": %.4f, "
            "\"ratioToFloor\": %.3f, \"nominalGBps\": %.1f}",
            i ? "," : "", r.name.c_str(), r.dtype.c_str(), (long long)r.vocab, r.promptFraction,
            r.ms, r.msMin, r.floorMs, r.ms / r.floorMs, r.gbPerS);
  }
  fprintf(f, "\n  ]\n}\n");
  fclose(f);
  printf("wrote %s\n", path.c_str());
}

// Host-only self test (no GPU needed): data generation and the CPU reference agree with a
// direct fp64 computation on a small case.
int cpuSelfTest() {
  CaseSpec spec{"selftest", DType::BF16, 4, 7, 33};
  spec.promptFraction = 0.3;
  spec.emptyRows = {2};
  const CaseData d = makeCase(spec, 7);
  const int64_t R = 4, T = 7, V = 33, N = R * T;
  std::vector<float> lse(N), lp(N);
  std::vector<int64_t> nonFinite(R);
  std::vector<double> logps(R);
  std::vector<int32_t> counts(R);
  fusedpo::referencePreferenceLossForward(d.logits.bytes.data(), spec.dtype, d.shape,
                                            d.labels.data(), d.ignoreIndex, lse.data(), lp.data(),
                                            nonFinite.data());
  fusedpo::sequenceSums(d.logits.bytes.data(), spec.dtype, d.shape, d.labels.data(), d.ignoreIndex,
                        lse.data(), logps.data(), counts.data());
  int failures = 0;
  for (int64_t s = 0; s < R; ++s) {
    double sum = 0;
    int count = 0;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t token = s * T + t;
      if (d.labels[token] == d.ignoreIndex) continue;
      double m = -INFINITY, z = 0;
      for (int64_t v = 0; v < V; ++v) m = std::max(m, (double)storedValue(d.logits.bytes, spec.dtype, token * V + v));
      for (int64_t v = 0; v < V; ++v) z += std::exp(storedValue(d.logits.bytes, spec.dtype, token * V + v) - m);
      sum += storedValue(d.logits.bytes, spec.dtype, token * V + d.labels[token]) - (m + std::log(z));
      ++count;
    }
    if (count != counts[s] || std::fabs(sum - logps[s]) > 1e-4 * (1 + std::fabs(sum))) {
      printf("selftest row %lld: reference %g (%d tokens), direct %g (%d tokens)\n", (long long)s,
             logps[s], counts[s], sum, count);
      ++failures;
    }
  }
  if (counts[2] != 0) ++failures;
  std::vector<float> coef(R);
  LossParams p = defaultParams(LossKind::MinorDpo);
  std::vector<float> ref(logps.begin(), logps.end());
  const LossResult r = fusedpo::preferenceLossCoefficients(p, R, logps.data(), counts.data(),
                                                           ref.data(), nullptr, coef.data());
  // policy == reference: MinorDPO's loss is log 2 and its gradient DPO's
  if (std::fabs(r.loss - std::log(2.0)) > 1e-5) ++failures;
  printf("cpu selftest: logps %g %g %g %g, minordpo loss at policy == reference %.12f: %s\n",
         logps[0], logps[1], logps[2], logps[3], r.loss, failures ? "FAILED" : "ok");
  return failures ? 1 : 0;
}

int usage(const char* argv0) {
  fprintf(stderr,
          "usage: %s [--out DIR] [--small] [--skip-correctness] [--skip-bench] [--iters N] [--bench-case DTYPE:V[:PROMPT]] "
          "[--cpu-selftest]\n",
          argv0);
  return 3;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--out" && i + 1 < argc) {
      opt.outDir = argv[++i];
    } else if (a == "--small") {
      opt.small = true;
    } else if (a == "--skip-correctness") {
      opt.skipCorrectness = true;
    } else if (a == "--skip-bench") {
      opt.skipBench = true;
    } else if (a == "--iters" && i + 1 < argc) {
      opt.iters = std::max(1, atoi(argv[++i]));
    } else if (a == "--cpu-selftest") {
      opt.cpuSelfTest = true;
    } else if (a == "--bench-case" && i + 1 < argc) {
      opt.benchCase = argv[++i];
    } else {
      return usage(argv[0]);
    }
  }
  setvbuf(stdout, nullptr, _IOLBF, 0);
  if (opt.cpuSelfTest) {
    const int rc = cpuSelfTest();
    if (rc != 0) return rc;
  }

  gpu::DeviceInfo info;
  gpu::CudaStatus status = gpu::deviceInfo(&info);
  printf("gpu_check built from %s; CUDA driver %d, runtime %d\n", FUSEDPO_COMMIT,
         info.driverVersion, info.runtimeVersion);
  if (!status.ok() || info.deviceCount == 0) {
    printf("no CUDA device: %s\n", status.ok() ? "device count is 0" : status.message);
    return 2;
  }
  for (int d = 0; d < info.deviceCount; ++d) {
    const gpu::DeviceProperties& p = info.devices[d];
    printf("device %d: %s, sm_%d%d, %d SMs, %.1f GiB (%.1f GiB free), %d-bit bus\n", d, p.name,
           p.computeMajor, p.computeMinor, p.multiProcessorCount, p.totalMemoryBytes / 1073741824.0,
           p.freeMemoryBytes / 1073741824.0, p.memoryBusWidthBits);
  }
  if (!statusOk(gpu::setDevice(0), "setDevice(0)")) return 1;
  void* stream = nullptr;
  if (!statusOk(gpu::streamCreate(&stream), "streamCreate")) return 1;

  int cases = 0, failures = 0;
  if (!opt.skipCorrectness) {
    const auto start = std::chrono::steady_clock::now();
    uint64_t seed = 1;
    for (const CaseSpec& spec : correctnessCases(opt.small)) {
      checkCase(spec, seed++, stream, failures, cases);
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    printf("correctness: %d cases, %d failures (%.1f s)\n", cases, failures, seconds);
  }

  double copyBw = 0;
  std::vector<BenchRow> rows;
  if (!opt.skipBench) {
    copyBw = copyBandwidth(stream);
    printf("copy bandwidth: %.3f TB/s (read + write bytes per second, 1 GiB device-to-device)\n",
           copyBw / 1e12);
    gpu::DeviceInfo now;
    gpu::deviceInfo(&now);
    if (copyBw > 0) runBenchmark(opt, stream, copyBw, rows, now.devices[0].freeMemoryBytes);
  }
  writeJson(opt, info, copyBw, cases, failures, !opt.skipCorrectness, rows);
  gpu::streamDestroy(stream);
  if (failures > 0) {
    printf("FAILED: %d mismatches\n", failures);
    return 1;
  }
  printf("PASSED\n");
  return 0;
}
