// attention.cpp — causal self-attention (see attention.h).
#include "nn/attention.h"

#include <cmath>

#include "tensor/ops.h"

namespace copper::nn {

Tensor attend(const Tensor& scaled_logits, const LogitTerms& terms, double scale, const Tensor& v, double dropout_p,
              bool train, Tensor* probs, Generator* dropout_gen) {
  Tensor att = scaled_logits;                                   // att: (..., T, T)
  if (terms.before_scale.defined()) att = att + terms.before_scale * scale;
  if (terms.after_scale.defined()) att = att + terms.after_scale;
  // = softmax(masked_fill(att, causal_mask(T, T), -inf), -1), without the mask pass
  att = causal_softmax(att);
  if (probs) *probs = att;
  if (train && dropout_p > 0) att = dropout(att, dropout_p, true, dropout_gen);
  return matmul(att, v);                                        // (..., T, Dh)
}

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

Tensor CausalSelfAttention::forward(const Tensor& x) {
  COPPER_CHECK(x.dim() == 3 && x.size(2) == d_model_, "attention", "input {} must be (B, T, {})", x.repr_shape(),
               d_model_);
  const int64_t B = x.size(0), T = x.size(1), H = n_heads_, Dh = d_head_;
  const double scale = 1.0 / std::sqrt(double(Dh));
  Tensor qkv_out = qkv->forward(x);                                          // qkv_out: (B, T, 3D)
  Tensor heads = qkv_out.view({B, T, 3, H, Dh}).permute({2, 0, 3, 1, 4});    // heads: (3, B, H, T, Dh)
  Tensor q = heads.select(0, 0).contiguous();                                // q: (B, H, T, Dh)
  Tensor k = heads.select(0, 1).contiguous();                                // k: (B, H, T, Dh)
  Tensor v = heads.select(0, 2).contiguous();                                // v: (B, H, T, Dh)
  if (pe_) pe_->transform_qk(q, k);
  Tensor scaled = matmul(q * scale, k.transpose(-2, -1));                    // scaled: (B, H, T, T); scaling q is cheaper than T×T
  LogitTerms terms;
  if (pe_) pe_->add_logit_terms(AttentionContext{x, q, k, scaled}, terms);
  Tensor y = attend(scaled, terms, scale, v, dropout_, is_training());  // y: (B, H, T, Dh)
  y = y.transpose(1, 2).reshape({B, T, d_model_});                          // y: (B, T, D), heads side by side
  return proj->forward(y);
}

}  // namespace copper::nn
