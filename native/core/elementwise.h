// Elementwise ops and reductions of the GPT, forward and backward, f32, row-major, contiguous.
//
// Broadcasting: the second operand b is broadcast over the leading dims of a, so every binary
// op sees a as [rows, cols] and b as [cols]:
//   [..., C] op [C]          rows = prod(leading dims), cols = C      (a bias)
//   [B, ...] op [...]        rows = B, cols = prod(trailing dims)     (positional embeddings)
//   same shapes              rows = 1
//   a, out, dout, da  [rows, cols]     b, db  [cols]
// Sums over all elements are sums over the last dim with rows = 1.
//   a, da [rows, cols]     out, dout [rows]
//
// Every backward ACCUMULATES (+=) into its gradients, as llm.c and micrograd do: the caller
// zeroes them once per step. A gradient pointer of a binary op may be nullptr (that operand
// needs none). Reductions over rows (db) run over the rows in order, one column at a time, so
// the fast path gives the same bits as this reference whatever the thread count; the sums of
// the last dim accumulate in fp64.
#pragma once

#include <cstdint>

#include "preference_loss.h"  // Impl

namespace fusedpo {

// out[r,c] = a[r,c] + b[c]                 da[r,c] += dout[r,c]; db[c] += sum_r dout[r,c]
void addForward(Impl impl, const float* a, const float* b, float* out, int64_t rows, int64_t cols);
void addBackward(Impl impl, const float* dout, float* da, float* db, int64_t rows, int64_t cols);
// out[r,c] = a[r,c] * b[c]                 da[r,c] += dout[r,c] b[c]; db[c] += sum_r dout[r,c] a[r,c]
void mulForward(Impl impl, const float* a, const float* b, float* out, int64_t rows, int64_t cols);
void mulBackward(Impl impl, const float* a, const float* b, const float* dout, float* da,
                 float* db, int64_t rows, int64_t cols);
// out[i] = s a[i]                          da[i] += s dout[i]
void scaleForward(Impl impl, const float* a, float s, float* out, int64_t count);
void scaleBackward(Impl impl, const float* dout, float s, float* da, int64_t count);
// out[r] = sum_c a[r,c] (mean: / cols)     da[r,c] += dout[r] (mean: dout[r] / cols)
void sumForward(Impl impl, const float* a, float* out, int64_t rows, int64_t cols);
void sumBackward(Impl impl, const float* dout, float* da, int64_t rows, int64_t cols);
void meanForward(Impl impl, const float* a, float* out, int64_t rows, int64_t cols);
void meanBackward(Impl impl, const float* dout, float* da, int64_t rows, int64_t cols);

// ---- the plain reference (Impl::Reference), elementwise.cpp --------------------------------
void referenceAddForward(const float* a, const float* b, float* out, int64_t rows, int64_t cols);
void referenceAddBackward(const float* dout, float* da, float* db, int64_t rows, int64_t cols);
void referenceMulForward(const float* a, const float* b, float* out, int64_t rows, int64_t cols);
void referenceMulBackward(const float* a, const float* b, const float* dout, float* da, float* db,
                          int64_t rows, int64_t cols);
void referenceScaleForward(const float* a, float s, float* out, int64_t count);
void referenceScaleBackward(const float* dout, float s, float* da, int64_t count);
// mean = false: sums; mean = true: means.
void referenceReduceLastDimForward(const float* a, float* out, int64_t rows, int64_t cols, bool mean);
void referenceReduceLastDimBackward(const float* dout, float* da, int64_t rows, int64_t cols, bool mean);

}  // namespace fusedpo
