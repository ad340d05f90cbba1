// sinusoidal.h — the fixed sinusoidal encoding of "Attention is all you need", added to
// the token embeddings:  PE(pos, 2i) = sin(pos / n^(2i/d)),  PE(pos, 2i+1) = cos(pos / n^(2i/d)).
#pragma once
#include "nn/pe/position_encoding.h"

namespace copper::nn {

// (L, d) table for positions 0..L-1 (d may be odd: the last column is then a sin).
Tensor sinusoidal_table(int64_t L, int64_t d, double n = 10000, DType dtype = DType::f32);

class SinusoidalPE : public PositionEncoding {
 public:
  explicit SinusoidalPE(const PEConfig& cfg) : d_(cfg.d_model), base_(cfg.base) {}
  std::string name() const override { return "sinusoidal"; }
  Tensor embedding_term(int64_t T, DType dtype) const override;

 private:
  int64_t d_;
  double base_;
  mutable Tensor cache_;  // the last table made, reused while T and dtype stay the same
};

std::shared_ptr<PositionEncoding> make_sinusoidal_pe(const PEConfig& cfg);  // Embedding scope only

}  // namespace copper::nn
