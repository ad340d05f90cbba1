// attention.h — multi-head causal self-attention with a pluggable position encoding.
//
//   x (B, Tq, D) -> q, k, v = x·Wᵀ + b for the three (D, D) blocks of Wqkv (B, Tq, D) -> heads (B, H, Tq, Dh)
//   -> [pe: transform q, k at positions t0..] -> [cache: k, v = cached ++ new (B, H, Tk, Dh)]
//   -> logits = (q·kᵀ + before) / sqrt(Dh) + after   (B, H, Tq, Tk)
//   -> causal mask -> softmax -> dropout -> · v (B, H, Tq, Dh) -> heads joined (B, Tq, D) -> out proj
// `before` and `after` are whatever the position encoding adds (position_encoding.h). When it
// adds nothing (absolute, RoPE, sinusoidal, none) and no attention map is recorded, the steps
// from logits to · v are one fused op, causal_attention, which keeps no (Tq, Tk) tensor.
// Without a cache t0 = 0 and Tk = Tq = T; with one, t0 = the cache length and Tk = t0 + Tq.
#pragma once
#include <memory>

#include "nn/attend.h"
#include "nn/dropout.h"
#include "nn/kv_cache.h"
#include "nn/linear.h"
#include "nn/pe/position_encoding.h"

namespace copper::nn {

class CausalSelfAttention : public Module {
 public:
  // pe may be null (no position terms). It becomes the child "pe".
  CausalSelfAttention(int64_t d_model, int64_t n_heads, double dropout = 0,
                      std::shared_ptr<PositionEncoding> pe = nullptr, Generator* init_gen = nullptr);
  std::string type_name() const override { return "CausalSelfAttention"; }

  // x (B, Tq, D) -> (B, Tq, D). With a cache (which needs NoGradGuard) the Tq tokens are at
  // positions [cache->length(), cache->length() + Tq), attend to every cached key and to
  // themselves, and are appended to the cache.
  Tensor forward(const Tensor& x, KVCache::Layer* cache = nullptr);

  // Attention maps: while on, each forward keeps its probabilities (B, H, Tq, Tk), without
  // grad (before dropout), as last_attention(), and CoPE keeps its gates and terms (its
  // last_gates()); off by default (they hold B·H·Tq·Tk values, and the fused kernels, which
  // make none of them, run only while it is off).
  void set_record_attention(bool on) { record_attention_ = on; }
  bool record_attention() const { return record_attention_; }
  const Tensor& last_attention() const { return last_attention_; }

  const std::shared_ptr<PositionEncoding>& pe() const { return pe_; }
  int64_t n_heads() const { return n_heads_; }
  int64_t d_head() const { return d_head_; }

  std::shared_ptr<Linear> qkv;   // D -> 3D
  std::shared_ptr<Linear> proj;  // D -> D

 private:
  int64_t d_model_, n_heads_, d_head_;
  double dropout_;
  std::shared_ptr<PositionEncoding> pe_;
  bool record_attention_ = false;
  Tensor last_attention_;  // (B, H, Tq, Tk) of the last forward while recording
};

}  // namespace copper::nn
