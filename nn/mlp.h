// mlp.h — the transformer's feed-forward block: relu, gelu or swiglu.
//
//   relu/gelu: fc2(act(fc1(x)))                 fc1: D -> H, fc2: H -> D
//   swiglu:    fc2(silu(fc1(x)) * gate(x))      fc1, gate: D -> H, fc2: H -> D
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "nn/linear.h"

namespace copper::nn {

class MLP : public Module {
 public:
  // hidden 0 means 4 * dim.
  MLP(int64_t dim, int64_t hidden = 0, const std::string& activation = "gelu", Generator* gen = nullptr);
  std::string type_name() const override { return "MLP"; }
  Tensor forward(const Tensor& x) const;  // (..., D) -> (..., D)
  const std::string& activation() const { return act_; }

  std::shared_ptr<Linear> fc1, gate, fc2;  // gate only for swiglu

 private:
  std::string act_;
};

const std::vector<std::string>& mlp_activations();  // relu, gelu, swiglu

}  // namespace copper::nn
