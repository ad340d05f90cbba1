// rope.h — rotary position embedding (Su et al.): q and k are rotated, pair by pair, by an
// angle proportional to their position, so q_i·k_j depends on i - j only through the angles.
// Pairs are interleaved: (x[2m], x[2m+1]) turns by pos · base^(-2m/Dh).
#pragma once
#include "nn/pe/position_encoding.h"

namespace copper::nn {

// x (..., T, Dh) with Dh even, position t = its index along dim -2.
Tensor rope_rotate(const Tensor& x, double base = 10000);

class RoPE : public PositionEncoding {
 public:
  explicit RoPE(const PEConfig& cfg);
  std::string name() const override { return "rope"; }
  void transform_qk(Tensor& q, Tensor& k) const override;

 private:
  double base_;
};

std::shared_ptr<PositionEncoding> make_rope_pe(const PEConfig& cfg);  // Layer scope only

}  // namespace copper::nn
