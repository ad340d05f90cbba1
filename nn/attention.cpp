// attention.cpp — causal self-attention (see attention.h).
#include "nn/attention.h"

#include <cmath>
#include <tuple>

#include "tensor/ops.h"

namespace copper::nn {

CausalSelfAttention::CausalSelfAttention(int64_t d_model, int64_t n_heads, double dropout,
                                         std::shared_ptr<PositionEncoding> pe, Generator* init_gen)
    : d_model_(d_model), n_heads_(n_heads), d_head_(n_heads > 0 ? d_model / n_heads : 0), dropout_(dropout),
      pe_(std::move(pe)) {
  COPPER_CHECK(n_heads > 0 && d_model > 0 && d_model % n_heads == 0, "attention",
               "d_model {} must be a positive multiple of n_heads {}", d_model, n_heads);
  COPPER_CHECK(dropout >= 0 && dropout < 1, "attention", "dropout must be in [0, 1), got {}", dropout);
  qkv = register_module("qkv", std::make_shared<Linear>(d_model, 3 * d_model, true, init_gen));
  proj = register_module("proj", std::make_shared<Linear>(d_model, d_model, true, init_gen));
  if (pe_) register_module("pe", pe_);
}

Tensor CausalSelfAttention::forward(const Tensor& x, KVCache::Layer* cache) {
  COPPER_CHECK(x.dim() == 3 && x.size(2) == d_model_, "attention", "input {} must be (B, T, {})", x.repr_shape(),
               d_model_);
  const int64_t B = x.size(0), Tq = x.size(1), H = n_heads_, Dh = d_head_;
  const int64_t t0 = cache ? cache->length() : 0;                              // position of the first new token
  const double scale = 1.0 / std::sqrt(double(Dh));
  // q, k and v come from one product with the whole qkv weight, (B, Tq, 3D), split into three
  // views, and their heads are views too: (B, Tq, D) seen as (B, H, Tq, Dh). Nothing is
  // copied. In the backward, the fused attention writes dq, dk and dv side by side, which
  // split hands on as the product's gradient as it stands: one product for dx and one for
  // the weight, rather than three of each and a sum.
  const std::vector<Tensor> parts = split(qkv->forward(x), d_model_, -1);
  auto heads = [&](const Tensor& t) { return t.view({B, Tq, H, Dh}).transpose(1, 2); };
  Tensor q = heads(parts[0]);                                                // q: (B, H, Tq, Dh)
  Tensor k = heads(parts[1]);                                                // k: (B, H, Tq, Dh), the new keys
  Tensor v = heads(parts[2]);                                                // v: (B, H, Tq, Dh)
  // An encoding that turns q and k as RoPE does may hand attention its tables instead, and
  // the fused kernel turns each block's rows as it reads them: q and k stay views of the
  // product. With a cache (which keeps its keys turned) or maps to record, they are turned here.
  std::pair<Tensor, Tensor> rotation;                                        // cos, sin: (Tq, Dh/2)
  if (pe_ && !cache && !record_attention_ && !pe_->adds_logit_terms()) rotation = pe_->qk_rotation_tables(Tq, q);
  if (pe_ && !rotation.first.defined()) pe_->transform_qk(q, k, t0, t0);
  if (cache) std::tie(k, v) = cache->append(k, v);                           // k, v: (B, H, Tk, Dh), Tk = t0 + Tq
  const double p = is_training() ? dropout_ : 0.0;
  if (!record_attention_) {
    // No map to keep: a fused kernel, which keeps no (Tq, Tk) tensor (tensor/ops/attention.cpp),
    // when there is nothing to add to the logits, or when the encoding fuses its own term.
    Tensor y;                                                                 // y: (B, H, Tq, Dh)
    if (rotation.first.defined()) y = causal_rotary_attention(q, k, v, rotation.first, rotation.second, scale, p);
    else if (!(pe_ && pe_->adds_logit_terms())) y = causal_attention(q, k, v, scale, p);
    else y = pe_->fused_attention(AttentionContext{x, q, k, Tensor(), t0, cache ? &cache->pe_state : nullptr}, v,
                                  scale, p);
    if (y.defined()) {
      last_attention_ = Tensor();
      return proj->forward(y.transpose(1, 2).reshape({B, Tq, d_model_}));
    }
  }
  // scaling q is cheaper than scaling the Tq×Tk product
  Tensor scaled = matmul(q * scale, k.transpose(-2, -1));                    // scaled: (B, H, Tq, Tk)
  LogitTerms terms;
  if (pe_) pe_->add_logit_terms(AttentionContext{x, q, k, scaled, t0, cache ? &cache->pe_state : nullptr}, terms);
  Tensor probs;
  Tensor y = attend(scaled, terms, scale, v, dropout_, is_training(),
                    record_attention_ ? &probs : nullptr);                   // y: (B, H, Tq, Dh)
  last_attention_ = record_attention_ ? probs.detach() : Tensor();
  y = y.transpose(1, 2).reshape({B, Tq, d_model_});                         // y: (B, Tq, D), heads side by side
  return proj->forward(y);
}

}  // namespace copper::nn
