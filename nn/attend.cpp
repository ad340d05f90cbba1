// attend.cpp — the shared tail of causal attention (see attend.h).
#include "nn/attend.h"

#include "tensor/ops.h"

namespace copper::nn {

Tensor attend(const Tensor& scaled_logits, const LogitTerms& terms, double scale, const Tensor& v, double dropout_p,
              bool train, Tensor* probs, Generator* dropout_gen) {
  Tensor att = scaled_logits;                                   // att: (..., Tq, Tk)
  if (terms.before_scale.defined()) att = att + terms.before_scale * scale;
  if (terms.after_scale.defined()) att = att + terms.after_scale;
  // = softmax(masked_fill(att, causal_mask(Tq, Tk), -inf), -1), without the mask pass
  att = causal_softmax(att);
  if (probs) *probs = att;
  if (train && dropout_p > 0) att = dropout(att, dropout_p, true, dropout_gen);
  return matmul(att, v);                                        // (..., Tq, Dh)
}

}  // namespace copper::nn
