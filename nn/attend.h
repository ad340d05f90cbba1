// attend.h — the shared tail of causal attention, from logits to the weighted sum of values.
// It depends only on the position-encoding interface (for LogitTerms), so encodings that
// run a whole attention themselves (cope.cpp's cope_attention) use it without attention.h.
#pragma once
#include "nn/pe/position_encoding.h"
#include "tensor/random.h"

namespace copper::nn {

// logits = scaled_logits + before·scale + after, softmax over the visible keys only
// (causal_softmax: query row r of Tq sees keys j <= r + (Tk - Tq), i.e. the queries are the
// last Tq positions of the Tk keys; future keys get probability 0), dropout (when train and
// p > 0), then the weighted sum of v.
//   scaled_logits (..., Tq, Tk) = q·kᵀ·scale with Tq <= Tk; v (..., Tk, Dh)
// Returns (..., Tq, Dh); `probs`, if given, receives the attention probabilities (..., Tq, Tk).
Tensor attend(const Tensor& scaled_logits, const LogitTerms& terms, double scale, const Tensor& v, double dropout_p,
              bool train, Tensor* probs = nullptr, Generator* dropout_gen = nullptr);

}  // namespace copper::nn
