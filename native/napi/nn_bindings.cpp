// Node-API bindings of the models' ops (GPT-2's and the Llama family's): positional arguments (impl first, then buffers, then sizes
// and scalars), unpacked and passed straight to the kernels. No arithmetic here beyond extents.
//
// lib/ops validates every argument first (kinds, lengths, ranges, indices, aliasing) and gives
// the clearer message. This file checks again what the kernel will touch, so that no caller can
// make a kernel read or write outside its buffers: every size is an integer in range and their
// products do not overflow, every buffer (a typed array, or a tensor's NativeStorage) holds the
// elements the sizes imply, indices are copied and checked against the table they index, and an
// output shares no memory with another buffer of the call unless the kernel allows in place.
#include "napi/nn_bindings.h"

#include <cmath>
#include <cstdint>
#include <new>
#include <string>
#include <vector>

#include "core/adamw.h"
#include "core/causal_self_attention.h"
#include "core/elementwise.h"
#include "core/embedding.h"
#include "core/gelu.h"
#include "core/glu.h"
#include "core/layer_norm.h"
#include "core/rms_norm.h"
#include "core/rope.h"
#include "core/softmax.h"
#include "napi/buffers.h"

namespace fusedpo {
namespace {

constexpr int64_t kMaxDim = 2147483647;

// Reads the arguments of one call, each once, naming the function in its errors.
class PositionalArgs {
 public:
  PositionalArgs(const Napi::CallbackInfo& info, const char* op, size_t count) : info_(info), op_(op) {
    if (info.Length() != count) fail("expected " + std::to_string(count) + " arguments");
  }

  Impl impl(size_t i) const { return integer(i, "impl", 0, 1) == 0 ? Impl::Reference : Impl::Fast; }

  // A size: an integer in [min, 2^31 - 1].
  int64_t size(size_t i, const char* name, int64_t min = 1) const { return integer(i, name, min, kMaxDim); }

  int64_t integer(size_t i, const char* name, int64_t min, int64_t max) const {
    const double value = number(i, name);
    if (!(value >= static_cast<double>(min) && value <= static_cast<double>(max)) ||
        value != static_cast<double>(static_cast<int64_t>(value))) {
      range(std::string("expected an integer in [") + std::to_string(min) + ", " + std::to_string(max) + "] for " +
            name + " but received " + describeValue(info_[i]));
    }
    return static_cast<int64_t>(value);
  }

  // A finite number.
  double number(size_t i, const char* name) const {
    if (!info_[i].IsNumber()) fail(std::string("expected a number for ") + name + " but received " + describeValue(info_[i]));
    const double value = info_[i].As<Napi::Number>().DoubleValue();
    if (!std::isfinite(value)) range(std::string("expected a finite number for ") + name);
    return value;
  }

  const float* input(size_t i, const char* name, int64_t count) {
    auto* data = reinterpret_cast<const float*>(buffer(i, Element::F32, count, name));
    overlaps_.input(name, data, static_cast<size_t>(count) * 4);
    return data;
  }

  // An output; `inPlaceOf`: an input it may be exactly (in place).
  float* output(size_t i, const char* name, int64_t count, const float* inPlaceOf = nullptr) {
    auto* data = reinterpret_cast<float*>(buffer(i, Element::F32, count, name));
    overlaps_.output(name, data, static_cast<size_t>(count) * 4, inPlaceOf);
    return data;
  }

  // An output that may be absent (null or undefined: that operand needs no gradient).
  float* optionalOutput(size_t i, const char* name, int64_t count) {
    if (info_[i].IsNull() || info_[i].IsUndefined()) return nullptr;
    return output(i, name, count);
  }

  // A copy of `count` indices, each in [0, bound).
  std::vector<int32_t> indices(size_t i, const char* name, int64_t count, int64_t bound) const {
    return indicesArgument(info_[i], static_cast<size_t>(count), bound, false, 0, op_, name);
  }

  int64_t product(std::initializer_list<int64_t> factors) const { return checkedProduct(info_.Env(), op_, factors); }

  // Called once every buffer is read.
  void checkOverlaps() const { overlaps_.check(info_.Env(), op_); }

  const Napi::CallbackInfo& info() const { return info_; }
  const char* op() const { return op_; }

  [[noreturn]] void fail(const std::string& what) const {
    throw Napi::TypeError::New(info_.Env(), std::string(op_) + ": " + what);
  }
  [[noreturn]] void range(const std::string& what) const {
    throw Napi::RangeError::New(info_.Env(), std::string(op_) + ": " + what);
  }

 private:
  uint8_t* buffer(size_t i, Element kind, int64_t count, const char* name) const {
    return bufferArgument(info_[i], kind, static_cast<size_t>(count), 0, op_, name);
  }

  const Napi::CallbackInfo& info_;
  const char* op_;
  OverlapCheck overlaps_;
};

// Runs a kernel; a failed allocation of its scratch is a RangeError naming the op, not an abort.
template <typename Kernel>
Napi::Value run(const PositionalArgs& a, Kernel kernel) {
  a.checkOverlaps();
  try {
    kernel();
  } catch (const std::bad_alloc&) {
    throw outOfMemory(a.info().Env(), a.op(), 0, "kernel scratch");
  }
  return a.info().Env().Undefined();
}

// ---- elementwise -----------------------------------------------------------------------------

Napi::Value AddForward(const Napi::CallbackInfo& info) {
  PositionalArgs a(info, "addForward", 6);  // impl, a, b, out, rows, cols
  const int64_t rows = a.size(4, "rows"), cols = a.size(5, "cols"), n = a.product({rows, cols});
  const float* x = a.input(1, "a", n);
  const float* b = a.input(2, "b", cols);
  float* out = a.output(3, "out", n, x);
  return run(a, [&] { addForward(a.impl(0), x, b, out, rows, cols); });
}

Napi::Value AddBackward(const Napi::CallbackInfo& info) {
  PositionalArgs a(info, "addBackward", 6);  // impl, dout, da | null, db | null, rows, cols
  const int64_t rows = a.size(4, "rows"), cols = a.size(5, "cols"), n = a.product({rows, cols});
  const float* dout = a.input(1, "dout", n);
  float* da = a.optionalOutput(2, "da", n);
  float* db = a.optionalOutput(3, "db", cols);
  return run(a, [&] { addBackward(a.impl(0), dout, da, db, rows, cols); });
}

Napi::Value MulForward(const Napi::CallbackInfo& info) {
  PositionalArgs a(info, "mulForward", 6);  // impl, a, b, out, rows, cols
  const int64_t rows = a.size(4, "rows"), cols = a.size(5, "cols"), n = a.product({rows, cols});
  const float* x = a.input(1, "a", n);
  const float* b = a.input(2, "b", cols);
  float* out = a.output(3, "out", n, x);
  return run(a, [&] { mulForward(a.impl(0), x, b, out, rows, cols); });
}

Napi::Value MulBackward(const Napi::CallbackInfo& info) {
  PositionalArgs a(info, "mulBackward", 8);  // impl, a, b, dout, da | null, db | null, rows, cols
  const int64_t rows = a.size(6, "rows"), cols = a.size(7, "cols"), n = a.product({rows, cols});
  const float* x = a.input(1, "a", n);
  const float* b = a.input(2, "b", cols);
  const float* dout = a.input(3, "dout", n);
  float* da = a.optionalOutput(4, "da", n);
  float* db = a.optionalOutput(5, "db", cols);
  return run(a, [&] { mulBackward(a.impl(0), x, b, dout, da, db, rows, cols); });
}

Napi::Value ScaleForward(const Napi::CallbackInfo& info) {
  PositionalArgs a(info, "scaleForward", 5);  // impl, a, s, out, count
  const int64_t count = a.size(4, "count");
  const float* x = a.input(1, "a", count);
  const float s = static_cast<float>(a.number(2, "s"));
  float* out = a.output(3, "out", count, x);
  return run(a, [&] { scaleForward(a.impl(0), x, s, out, count); });
}

Napi::Value ScaleBackward(const Napi::CallbackInfo& info) {
  PositionalArgs a(info, "scaleBackward", 5);  // impl, dout, s, da, count
  const int64_t count = a.size(4, "count");
  const float* dout = a.input(1, "dout", count);
  const float s = static_cast<float>(a.number(2, "s"));
  float* da = a.output(3, "da", count);
  return run(a, [&] { scaleBackward(a.impl(0), dout, s, da, count); });
}

// sum / mean over the last dim: forward (a [rows, cols] -> out [rows]) and backward
// (dout [rows] -> da [rows, cols]): impl, x, y, rows, cols
template <void (*Kernel)(Impl, const float*, float*, int64_t, int64_t), bool kForward>
Napi::Value ReduceLastDim(const Napi::CallbackInfo& info) {
  PositionalArgs a(info, kForward ? "sum/mean forward" : "sum/mean backward", 5);
  const int64_t rows = a.size(3, "rows"), cols = a.size(4, "cols"), n = a.product({rows, cols});
  const float* x = a.input(1, kForward ? "a" : "dout", kForward ? n : rows);
  float* y = a.output(2, kForward ? "out" : "da", kForward ? rows : n);
  return run(a, [&] { Kernel(a.impl(0), x, y, rows, cols); });
}

// ---- embedding, layerNorm, gelu, softmax, causalSelfAttention --------------------------------

Napi::Value EmbeddingForward(const Napi::CallbackInfo& info) {
  PositionalArgs a(info, "embeddingForward", 7);  // impl, idx, table, out, count, channels, vocab
  const int64_t count = a.size(4, "count"), channels = a.size(5, "channels"), vocab = a.size(6, "vocab");
  const std::vector<int32_t> idx = a.indices(1, "idx", count, vocab);
  const float* table = a.input(2, "table", a.product({vocab, channels}));
  float* out = a.output(3, "out", a.product({count, channels}));
  return run(a, [&] { embeddingForward(a.impl(0), idx.data(), table, out, count, channels); });
}

Napi::Value EmbeddingBackward(const Napi::CallbackInfo& info) {
  PositionalArgs a(info, "embeddingBackward", 7);  // impl, idx, dout, dtable, count, channels, vocab
  const int64_t count = a.size(4, "count"), channels = a.size(5, "channels"), vocab = a.size(6, "vocab");
  const std::vector<int32_t> idx = a.indices(1, "idx", count, vocab);
  const float* dout = a.input(2, "dout", a.product({count, channels}));
  float* dtable = a.output(3, "dtable", a.product({vocab, channels}));
  return run(a, [&] { embeddingBackward(a.impl(0), idx.data(), dout, dtable, count, channels); });
}

Napi::Value LayerNormForward(const Napi::CallbackInfo& info) {
  PositionalArgs a(info, "layerNormForward", 9);  // impl, inp, weight, bias, out, mean, rstd, rows, channels
  const int64_t rows = a.size(7, "rows"), channels = a.size(8, "channels"), n = a.product({rows, channels});
  const float* inp = a.input(1, "inp", n);
  const float* weight = a.input(2, "weight", channels);
  const float* bias = a.input(3, "bias", channels);
  float* out = a.output(4, "out", n);
  float* mean = a.output(5, "mean", rows);
  float* rstd = a.output(6, "rstd", rows);
  return run(a, [&] { layerNormForward(a.impl(0), inp, weight, bias, out, mean, rstd, rows, channels); });
}

Napi::Value LayerNormBackward(const Napi::CallbackInfo& info) {
  // impl, dout, inp, weight, mean, rstd, dinp, dweight, dbias, rows, channels
  PositionalArgs a(info, "layerNormBackward", 11);
  const int64_t rows = a.size(9, "rows"), channels = a.size(10, "channels"), n = a.product({rows, channels});
  const float* dout = a.input(1, "dout", n);
  const float* inp = a.input(2, "inp", n);
  const float* weight = a.input(3, "weight", channels);
  const float* mean = a.input(4, "mean", rows);
  const float* rstd = a.input(5, "rstd", rows);
  float* dinp = a.output(6, "dinp", n);
  float* dweight = a.output(7, "dweight", channels);
  float* dbias = a.output(8, "dbias", channels);
  return run(a, [&] {
    layerNormBackward(a.impl(0), dout, inp, weight, mean, rstd, dinp, dweight, dbias, rows, channels);
  });
}

Napi::Value GeluForward(const Napi::CallbackInfo& info) {
  PositionalArgs a(info, "geluForward", 4);  // impl, inp, out, count
  const int64_t count = a.size(3, "count");
  const float* inp = a.input(1, "inp", count);
  float* out = a.output(2, "out", count);
  return run(a, [&] { geluForward(a.impl(0), inp, out, count); });
}

Napi::Value GeluBackward(const Napi::CallbackInfo& info) {
  PositionalArgs a(info, "geluBackward", 5);  // impl, inp, dout, dinp, count
  const int64_t count = a.size(4, "count");
  const float* inp = a.input(1, "inp", count);
  const float* dout = a.input(2, "dout", count);
  float* dinp = a.output(3, "dinp", count);
  return run(a, [&] { geluBackward(a.impl(0), inp, dout, dinp, count); });
}

Napi::Value SoftmaxForward(const Napi::CallbackInfo& info) {
  PositionalArgs a(info, "softmaxForward", 5);  // impl, inp, out, rows, cols
  const int64_t rows = a.size(3, "rows"), cols = a.size(4, "cols"), n = a.product({rows, cols});
  const float* inp = a.input(1, "inp", n);
  float* out = a.output(2, "out", n);
  return run(a, [&] { softmaxForward(a.impl(0), inp, out, rows, cols); });
}

Napi::Value SoftmaxBackward(const Napi::CallbackInfo& info) {
  PositionalArgs a(info, "softmaxBackward", 6);  // impl, out, dout, dinp, rows, cols
  const int64_t rows = a.size(4, "rows"), cols = a.size(5, "cols"), n = a.product({rows, cols});
  const float* out = a.input(1, "out", n);
  const float* dout = a.input(2, "dout", n);
  float* dinp = a.output(3, "dinp", n);
  return run(a, [&] { softmaxBackward(a.impl(0), out, dout, dinp, rows, cols); });
}

// The shape of causal self-attention: B, T, C, NH from four positions, NH dividing C.
CausalSelfAttentionShape attentionShape(const PositionalArgs& a, size_t first) {
  const CausalSelfAttentionShape shape{a.size(first, "batch"), a.size(first + 1, "tokens"),
                                       a.size(first + 2, "channels"), a.size(first + 3, "heads")};
  if (shape.channels % shape.heads != 0) a.range("expected heads dividing channels");
  a.product({shape.batch, shape.heads, shape.tokens, shape.tokens});
  a.product({shape.batch, shape.tokens, 3, shape.channels});
  return shape;
}

Napi::Value CausalSelfAttentionForward(const Napi::CallbackInfo& info) {
  PositionalArgs a(info, "causalSelfAttentionForward", 8);  // impl, qkv, att, out, B, T, C, NH
  const CausalSelfAttentionShape s = attentionShape(a, 4);
  const float* qkv = a.input(1, "qkv", s.batch * s.tokens * 3 * s.channels);
  float* att = a.output(2, "att", s.batch * s.heads * s.tokens * s.tokens);
  float* out = a.output(3, "out", s.batch * s.tokens * s.channels);
  return run(a, [&] { causalSelfAttentionForward(a.impl(0), qkv, att, out, s); });
}

Napi::Value CausalSelfAttentionBackward(const Napi::CallbackInfo& info) {
  PositionalArgs a(info, "causalSelfAttentionBackward", 9);  // impl, qkv, att, dout, dqkv, B, T, C, NH
  const CausalSelfAttentionShape s = attentionShape(a, 5);
  const float* qkv = a.input(1, "qkv", s.batch * s.tokens * 3 * s.channels);
  const float* att = a.input(2, "att", s.batch * s.heads * s.tokens * s.tokens);
  const float* dout = a.input(3, "dout", s.batch * s.tokens * s.channels);
  float* dqkv = a.output(4, "dqkv", s.batch * s.tokens * 3 * s.channels);
  return run(a, [&] { causalSelfAttentionBackward(a.impl(0), qkv, att, dout, dqkv, s); });
}

// ---- the Llama family: rmsNorm, rope, glu, attention (grouped-query, windowed) -------------------

// A float parameter of a kernel: finite (eps > 0 is lib/ops's check; here, what the kernel needs).
float floatArgument(const PositionalArgs& a, size_t i, const char* name) { return static_cast<float>(a.number(i, name)); }

Napi::Value RmsNormForward(const Napi::CallbackInfo& info) {
  PositionalArgs a(info, "rmsNormForward", 9);  // impl, inp, weight, out, rstd, rows, channels, eps, offset
  const int64_t rows = a.size(5, "rows"), channels = a.size(6, "channels"), n = a.product({rows, channels});
  const float eps = floatArgument(a, 7, "eps"), offset = floatArgument(a, 8, "offset");
  if (!(eps > 0.0f)) a.range("expected eps > 0");
  const float* inp = a.input(1, "inp", n);
  const float* weight = a.input(2, "weight", channels);
  float* out = a.output(3, "out", n);
  float* rstd = a.output(4, "rstd", rows);
  return run(a, [&] { rmsNormForward(a.impl(0), inp, weight, out, rstd, rows, channels, eps, offset); });
}

Napi::Value RmsNormBackward(const Napi::CallbackInfo& info) {
  // impl, dout, inp, weight, rstd, dinp, dweight, rows, channels, offset
  PositionalArgs a(info, "rmsNormBackward", 10);
  const int64_t rows = a.size(7, "rows"), channels = a.size(8, "channels"), n = a.product({rows, channels});
  const float offset = floatArgument(a, 9, "offset");
  const float* dout = a.input(1, "dout", n);
  const float* inp = a.input(2, "inp", n);
  const float* weight = a.input(3, "weight", channels);
  const float* rstd = a.input(4, "rstd", rows);
  float* dinp = a.output(5, "dinp", n);
  float* dweight = a.output(6, "dweight", channels);
  return run(a, [&] { rmsNormBackward(a.impl(0), dout, inp, weight, rstd, dinp, dweight, rows, channels, offset); });
}

// The shape of rope: B, T, H, D from four positions, D even.
RopeShape ropeShape(const PositionalArgs& a, size_t first) {
  const RopeShape shape{a.size(first, "batch"), a.size(first + 1, "tokens"), a.size(first + 2, "heads"), a.size(first + 3, "headDim")};
  if (shape.headDim % 2 != 0) a.range("expected an even headDim");
  a.product({shape.batch, shape.tokens, shape.heads, shape.headDim});
  return shape;
}

Napi::Value RopeForward(const Napi::CallbackInfo& info) {
  PositionalArgs a(info, "ropeForward", 9);  // impl, inp, cos, sin, out, B, T, H, D
  const RopeShape s = ropeShape(a, 5);
  const int64_t n = s.batch * s.tokens * s.heads * s.headDim, table = s.tokens * (s.headDim / 2);
  const float* inp = a.input(1, "inp", n);
  const float* cos = a.input(2, "cos", table);
  const float* sin = a.input(3, "sin", table);
  float* out = a.output(4, "out", n);
  return run(a, [&] { ropeForward(a.impl(0), inp, cos, sin, out, s); });
}

Napi::Value RopeBackward(const Napi::CallbackInfo& info) {
  PositionalArgs a(info, "ropeBackward", 9);  // impl, dout, cos, sin, dinp, B, T, H, D
  const RopeShape s = ropeShape(a, 5);
  const int64_t n = s.batch * s.tokens * s.heads * s.headDim, table = s.tokens * (s.headDim / 2);
  const float* dout = a.input(1, "dout", n);
  const float* cos = a.input(2, "cos", table);
  const float* sin = a.input(3, "sin", table);
  float* dinp = a.output(4, "dinp", n);
  return run(a, [&] { ropeBackward(a.impl(0), dout, cos, sin, dinp, s); });
}

GluActivation gluActivation(const PositionalArgs& a, size_t i) {
  return a.integer(i, "activation", 0, 1) == 0 ? GluActivation::Silu : GluActivation::GeluTanh;
}

Napi::Value GluForward(const Napi::CallbackInfo& info) {
  PositionalArgs a(info, "gluForward", 6);  // impl, gate, up, out, count, activation
  const int64_t count = a.size(4, "count");
  const GluActivation activation = gluActivation(a, 5);
  const float* gate = a.input(1, "gate", count);
  const float* up = a.input(2, "up", count);
  float* out = a.output(3, "out", count);
  return run(a, [&] { gluForward(a.impl(0), gate, up, out, count, activation); });
}

Napi::Value GluBackward(const Napi::CallbackInfo& info) {
  PositionalArgs a(info, "gluBackward", 8);  // impl, gate, up, dout, dgate, dup, count, activation
  const int64_t count = a.size(6, "count");
  const GluActivation activation = gluActivation(a, 7);
  const float* gate = a.input(1, "gate", count);
  const float* up = a.input(2, "up", count);
  const float* dout = a.input(3, "dout", count);
  float* dgate = a.optionalOutput(4, "dgate", count);
  float* dup = a.optionalOutput(5, "dup", count);
  return run(a, [&] { gluBackward(a.impl(0), gate, up, dout, dgate, dup, count, activation); });
}

// The shape of grouped-query attention from positions first..first+6: B, T, NH, NKV (dividing NH),
// D, scale (finite, > 0), window (0: none). q and out are [B, T, NH D], k and v [B, T, NKV D].
AttentionShape groupedAttentionShape(const PositionalArgs& a, size_t first) {
  const int64_t B = a.size(first, "batch"), T = a.size(first + 1, "tokens"), NH = a.size(first + 2, "heads");
  const int64_t NKV = a.size(first + 3, "kvHeads"), D = a.size(first + 4, "headDim");
  const float scale = floatArgument(a, first + 5, "scale");
  const int64_t window = a.integer(first + 6, "window", 0, kMaxDim);
  if (NH % NKV != 0) a.range("expected kvHeads dividing heads");
  if (!(scale > 0.0f)) a.range("expected scale > 0");
  a.product({B, NH, T, T});
  a.product({B, T, NH, D});
  return AttentionShape{B, T, NH, NKV, D, NH * D, NKV * D, NH * D, scale, window};
}

Napi::Value AttentionForward(const Napi::CallbackInfo& info) {
  // impl, q, k, v, att, out, B, T, NH, NKV, D, scale, window
  PositionalArgs a(info, "attentionForward", 13);
  const AttentionShape s = groupedAttentionShape(a, 6);
  const float* q = a.input(1, "q", s.batch * s.tokens * s.qStride);
  const float* k = a.input(2, "k", s.batch * s.tokens * s.kvStride);
  const float* v = a.input(3, "v", s.batch * s.tokens * s.kvStride);
  float* att = a.output(4, "att", s.batch * s.heads * s.tokens * s.tokens);
  float* out = a.output(5, "out", s.batch * s.tokens * s.outStride);
  return run(a, [&] { attentionForward(a.impl(0), q, k, v, att, out, s); });
}

Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  // impl, q, k, v, att, dout, dq, dk, dv, B, T, NH, NKV, D, scale, window
  PositionalArgs a(info, "attentionBackward", 16);
  const AttentionShape s = groupedAttentionShape(a, 9);
  const float* q = a.input(1, "q", s.batch * s.tokens * s.qStride);
  const float* k = a.input(2, "k", s.batch * s.tokens * s.kvStride);
  const float* v = a.input(3, "v", s.batch * s.tokens * s.kvStride);
  const float* att = a.input(4, "att", s.batch * s.heads * s.tokens * s.tokens);
  const float* dout = a.input(5, "dout", s.batch * s.tokens * s.outStride);
  float* dq = a.output(6, "dq", s.batch * s.tokens * s.qStride);
  float* dk = a.output(7, "dk", s.batch * s.tokens * s.kvStride);
  float* dv = a.output(8, "dv", s.batch * s.tokens * s.kvStride);
  return run(a, [&] { attentionBackward(a.impl(0), q, k, v, att, dout, dq, dk, dv, s); });
}

// ---- optimizer -------------------------------------------------------------------------------

Napi::Value AdamwUpdate(const Napi::CallbackInfo& info) {
  // impl, param, grad, m, v, count, lr, beta1, beta2, eps, weightDecay, step
  PositionalArgs a(info, "adamwUpdate", 12);
  const int64_t count = a.size(5, "count");
  float* param = a.output(1, "param", count);
  const float* grad = a.input(2, "grad", count);
  float* m = a.output(3, "m", count);
  float* v = a.output(4, "v", count);
  const AdamWParams params{static_cast<float>(a.number(6, "lr")), static_cast<float>(a.number(7, "beta1")),
                           static_cast<float>(a.number(8, "beta2")), static_cast<float>(a.number(9, "eps")),
                           static_cast<float>(a.number(10, "weightDecay")),
                           a.integer(11, "step", 1, 9007199254740991)};
  return run(a, [&] { adamwUpdate(a.impl(0), param, grad, m, v, count, params); });
}

Napi::Value GlobalGradNorm(const Napi::CallbackInfo& info) {
  PositionalArgs a(info, "globalGradNorm", 3);  // impl, grads (buffers), counts (numbers)
  if (!info[1].IsArray() || !info[2].IsArray()) a.fail("expected an array of gradients and an array of their counts");
  Napi::Array list = info[1].As<Napi::Array>();
  Napi::Array countList = info[2].As<Napi::Array>();
  const uint32_t tensors = list.Length();
  if (countList.Length() != tensors) a.fail("expected as many counts as gradients");
  std::vector<const float*> grads;
  std::vector<int64_t> counts;
  for (uint32_t k = 0; k < tensors; ++k) {
    Napi::Value countValue = countList.Get(k);
    const double count = countValue.IsNumber() ? countValue.As<Napi::Number>().DoubleValue() : -1;
    if (!(count >= 1 && count <= 9007199254740991.0) || count != static_cast<double>(static_cast<int64_t>(count))) {
      a.range("expected a positive integer count for gradient " + std::to_string(k));
    }
    const std::string name = "grads[" + std::to_string(k) + "]";
    grads.push_back(reinterpret_cast<const float*>(
        bufferArgument(list.Get(k), Element::F32, static_cast<size_t>(count), 0, a.op(), name)));
    counts.push_back(static_cast<int64_t>(count));
  }
  double norm = 0;
  try {
    norm = globalGradNorm(a.impl(0), grads.data(), counts.data(), static_cast<int64_t>(grads.size()));
  } catch (const std::bad_alloc&) {
    throw outOfMemory(info.Env(), "globalGradNorm", 0, "partial sums");
  }
  return Napi::Number::New(info.Env(), norm);
}

}  // namespace

void addNnBindings(Napi::Env env, Napi::Object exports) {
  const auto add = [&](const char* name, Napi::Function::Callback callback) {
    exports.Set(name, Napi::Function::New(env, callback, name));
  };
  add("addForward", AddForward);
  add("addBackward", AddBackward);
  add("mulForward", MulForward);
  add("mulBackward", MulBackward);
  add("scaleForward", ScaleForward);
  add("scaleBackward", ScaleBackward);
  add("sumForward", ReduceLastDim<sumForward, true>);
  add("sumBackward", ReduceLastDim<sumBackward, false>);
  add("meanForward", ReduceLastDim<meanForward, true>);
  add("meanBackward", ReduceLastDim<meanBackward, false>);
  add("embeddingForward", EmbeddingForward);
  add("embeddingBackward", EmbeddingBackward);
  add("layerNormForward", LayerNormForward);
  add("layerNormBackward", LayerNormBackward);
  add("geluForward", GeluForward);
  add("geluBackward", GeluBackward);
  add("softmaxForward", SoftmaxForward);
  add("softmaxBackward", SoftmaxBackward);
  add("causalSelfAttentionForward", CausalSelfAttentionForward);
  add("causalSelfAttentionBackward", CausalSelfAttentionBackward);
  add("rmsNormForward", RmsNormForward);
  add("rmsNormBackward", RmsNormBackward);
  add("ropeForward", RopeForward);
  add("ropeBackward", RopeBackward);
  add("gluForward", GluForward);
  add("gluBackward", GluBackward);
  add("attentionForward", AttentionForward);
  add("attentionBackward", AttentionBackward);
  add("adamwUpdate", AdamwUpdate);
  add("globalGradNorm", GlobalGradNorm);
}

}  // namespace fusedpo
