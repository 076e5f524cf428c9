// Causal multi-head attention (the part between the input and the output projections), forward
// and backward, f32: GPT-2's, whose queries, keys and values lie packed in one qkv row, and the
// Llama family's grouped-query attention (separate q, k, v; several query heads share a key and
// value head; a sliding window for Gemma 3's local layers), through one kernel. Vaswani et al.
// 2017, https://arxiv.org/abs/1706.03762; grouped-query attention, Ainslie et al. 2023,
// https://arxiv.org/abs/2305.13245; the layout of llm.c's train_gpt2.c.
//
// AttentionShape: B batches, T tokens, NH query heads, NKV key/value heads (dividing NH: query
// head h reads key/value head g(h) = h / (NH / NKV)), head dim D, the row strides (floats from
// one token to the next) of q, k, v and out, the scores' scale, and the window W (0: every
// earlier position; W > 0: the positions t2 with t - W < t2 <= t).
//
//   q, dq      [B, T, qStride]      head h at columns [h D, (h+1) D)
//   k, v, dk, dv [B, T, kvStride]   head g at columns [g D, (g+1) D)
//   att        [B, NH, T, T]        saved by forward: the softmax weights, 0 outside the window
//   out, dout  [B, T, outStride]    head h writes columns [h D, (h+1) D)
//
// Forward, per batch b, query head h, query t, over the window's t2:
//   s[t2] = scale q_t . k_t2;  att[t, :] = softmax(s) (0 elsewhere);  out_t = sum_t2 att[t, t2] v_t2
// Backward, with datt[t2] = dout_t . v_t2 and d[t2] = att[t2] (datt[t2] - sum_j att[j] datt[j]):
//   dv_t2 += att[t, t2] dout_t;  dq_t += scale sum_t2 d[t2] k_t2;  dk_t2 += scale d[t2] q_t
// (dk and dv of a key/value head are summed over its group's query heads, in head order).
// Only att is saved (the pre-softmax scores are never needed again); every gradient ACCUMULATES.
// The fast path gives each (b, key/value head) to one thread: a group's query heads and its key
// and value head write columns no other task writes, so no atomics, and the bits do not depend on
// the thread count.
#pragma once

#include <cstdint>

#include "preference_loss.h"  // Impl

namespace fusedpo {

struct AttentionShape {
  int64_t batch;     // B
  int64_t tokens;    // T
  int64_t heads;     // NH, query heads
  int64_t kvHeads;   // NKV, dividing NH (lib/ops validates it)
  int64_t headDim;   // D
  int64_t qStride;   // >= NH D
  int64_t kvStride;  // >= NKV D (k and v share it)
  int64_t outStride; // >= NH D
  float scale;       // usually 1 / sqrt(D)
  int64_t window;    // 0: causal over every earlier position
};

// The first key position query t attends to.
inline int64_t attentionStart(const AttentionShape& s, int64_t t) {
  return s.window > 0 && t - s.window + 1 > 0 ? t - s.window + 1 : 0;
}

void attentionForward(Impl impl, const float* q, const float* k, const float* v, float* att, float* out,
                      const AttentionShape& shape);
void attentionBackward(Impl impl, const float* q, const float* k, const float* v, const float* att,
                       const float* dout, float* dq, float* dk, float* dv, const AttentionShape& shape);

// The plain reference, causal_self_attention.cpp.
void referenceAttentionForward(const float* q, const float* k, const float* v, float* att, float* out,
                               const AttentionShape& shape);
void referenceAttentionBackward(const float* q, const float* k, const float* v, const float* att,
                                const float* dout, float* dq, float* dk, float* dv, const AttentionShape& shape);

// GPT-2's packed form: qkv [B, T, 3C], q in [0, C), k in [C, 2C), v in [2C, 3C) of each token,
// NH heads of C / NH (dividing C), every head its own key/value head, scale 1 / sqrt(C / NH).
struct CausalSelfAttentionShape {
  int64_t batch;     // B
  int64_t tokens;    // T
  int64_t channels;  // C
  int64_t heads;     // NH, dividing C (lib/ops validates it)
};

// The AttentionShape of the packed form.
AttentionShape packedAttentionShape(const CausalSelfAttentionShape& shape);

void causalSelfAttentionForward(Impl impl, const float* qkv, float* att, float* out, CausalSelfAttentionShape shape);
void causalSelfAttentionBackward(Impl impl, const float* qkv, const float* att, const float* dout,
                                 float* dqkv, CausalSelfAttentionShape shape);

}  // namespace fusedpo
