// sinusoidal.h — the fixed sinusoidal encoding of "Attention is all you need", added to
// the token embeddings:  PE(pos, 2i) = sin(pos / n^(2i/d)),  PE(pos, 2i+1) = cos(pos / n^(2i/d)).
#pragma once
#include "nn/pe/position_encoding.h"

namespace copper::nn {

// (L, d) table for positions 0..L-1 (d may be odd: the last column is then a sin).
Tensor sinusoidal_table(int64_t L, int64_t d, double n = 10000, DType dtype = DType::f32);

class SinusoidalPE : public PositionEncoding {
 public:
  explicit SinusoidalPE(const PEConfig& cfg);
  std::string name() const override { return "sinusoidal"; }
  Tensor embedding_term(int64_t t0, int64_t T, DType dtype) override;  // rows t0..t0+T-1, no grad
  bool adds_logit_terms() const override { return false; }

 private:
  int64_t d_;
  double base_;
  // Buffer "table" (N, D), N >= every t0 + T asked so far, in the last dtype asked; rebuilt
  // (grown) when a longer range or another dtype is asked. Row t does not depend on N.
};

std::shared_ptr<PositionEncoding> make_sinusoidal_pe(const PEConfig& cfg);  // Embedding scope only

}  // namespace copper::nn
