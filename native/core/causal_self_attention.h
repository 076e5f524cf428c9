// Causal multi-head self-attention of GPT-2 (the part between the qkv and the output
// projections), forward and backward, f32. Vaswani et al. 2017, https://arxiv.org/abs/1706.03762;
// the layout of llm.c's train_gpt2.c.
//
//   qkv, dqkv  [B, T, 3C]       per token: q in [0, C), k in [C, 2C), v in [2C, 3C);
//                               head h owns columns [h hs, (h+1) hs) of each, hs = C / NH
//   att        [B, NH, T, T]    saved by forward: the softmax weights, 0 above the diagonal
//   out, dout  [B, T, C]        head h writes columns [h hs, (h+1) hs)
//
// Forward, per batch b, head h, query t (scale = 1 / sqrt(hs)):
//   s[t2] = scale q_t . k_t2 for t2 <= t;  att[t, :] = softmax(s) (0 for t2 > t)
//   out_t = sum_{t2 <= t} att[t, t2] v_t2
// Backward, with datt[t2] = dout_t . v_t2 and d[t2] = att[t2] (datt[t2] - sum_j att[j] datt[j]):
//   dv_t2 += att[t, t2] dout_t;  dq_t += scale sum_t2 d[t2] k_t2;  dk_t2 += scale d[t2] q_t
// Only att is saved (the pre-softmax scores are never needed again); dqkv ACCUMULATES (+=).
// The fast path gives each (b, h) to one thread: heads write disjoint columns of dqkv, so the
// scatter-adds of dk and dv need no atomics and the bits do not depend on the thread count.
#pragma once

#include <cstdint>

#include "preference_loss.h"  // Impl

namespace fusedpo {

struct CausalSelfAttentionShape {
  int64_t batch;     // B
  int64_t tokens;    // T
  int64_t channels;  // C
  int64_t heads;     // NH, dividing C (lib/ops validates it)
};

void causalSelfAttentionForward(Impl impl, const float* qkv, float* att, float* out, CausalSelfAttentionShape shape);
void causalSelfAttentionBackward(Impl impl, const float* qkv, const float* att, const float* dout,
                       float* dqkv, CausalSelfAttentionShape shape);

// The plain reference, causal_self_attention.cpp.
void referenceCausalSelfAttentionForward(const float* qkv, float* att, float* out, CausalSelfAttentionShape shape);
void referenceCausalSelfAttentionBackward(const float* qkv, const float* att, const float* dout, float* dqkv,
                                CausalSelfAttentionShape shape);

}  // namespace fusedpo
