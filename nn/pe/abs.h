// abs.h — learned absolute positions: a table of `context` vectors, row t added to the
// embedding of the token at position t. It cannot represent positions it was not built for.
#pragma once
#include "nn/pe/position_encoding.h"

namespace copper::nn {

class AbsolutePE : public PositionEncoding {
 public:
  explicit AbsolutePE(const PEConfig& cfg);
  std::string name() const override { return "abs"; }
  Tensor embedding_term(int64_t t0, int64_t T, DType dtype) override;  // rows t0..t0+T-1
  bool adds_logit_terms() const override { return false; }

  Tensor weight;  // (context, D) ~ N(0, embed_std²)
};

std::shared_ptr<PositionEncoding> make_abs_pe(const PEConfig& cfg);  // Embedding scope only

}  // namespace copper::nn
