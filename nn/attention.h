// attention.h — multi-head causal self-attention with a pluggable position encoding.
//
//   x (B, T, D) -> qkv = x·Wqkvᵀ + b (B, T, 3D) -> q, k, v (B, H, T, Dh)
//   -> [pe: transform q, k] -> logits = (q·kᵀ + before) / sqrt(Dh) + after   (B, H, T, T)
//   -> causal mask -> softmax -> dropout -> · v (B, H, T, Dh) -> heads joined (B, T, D) -> out proj
// `before` and `after` are whatever the position encoding adds (position_encoding.h).
#pragma once
#include <memory>

#include "nn/dropout.h"
#include "nn/linear.h"
#include "nn/pe/position_encoding.h"

namespace copper::nn {

// The shared tail of attention: logits = scaled_logits + before·scale + after, softmax over
// the past and present keys only (causal_softmax: future keys get probability 0), dropout
// (when train and p > 0), then the weighted sum of v.
//   scaled_logits (..., T, T) = q·kᵀ·scale; v (..., T, Dh)
// Returns (..., T, Dh); `probs`, if given, receives the attention probabilities (..., T, T).
Tensor attend(const Tensor& scaled_logits, const LogitTerms& terms, double scale, const Tensor& v, double dropout_p,
              bool train, Tensor* probs = nullptr, Generator* dropout_gen = nullptr);

class CausalSelfAttention : public Module {
 public:
  // pe may be null (no position terms). It becomes the child "pe".
  CausalSelfAttention(int64_t d_model, int64_t n_heads, double dropout = 0,
                      std::shared_ptr<PositionEncoding> pe = nullptr, Generator* init_gen = nullptr);
  std::string type_name() const override { return "CausalSelfAttention"; }

  Tensor forward(const Tensor& x);  // (B, T, D) -> (B, T, D)

  const std::shared_ptr<PositionEncoding>& pe() const { return pe_; }
  int64_t n_heads() const { return n_heads_; }
  int64_t d_head() const { return d_head_; }

  std::shared_ptr<Linear> qkv;   // D -> 3D
  std::shared_ptr<Linear> proj;  // D -> D

 private:
  int64_t d_model_, n_heads_, d_head_;
  double dropout_;
  std::shared_ptr<PositionEncoding> pe_;
};

}  // namespace copper::nn
