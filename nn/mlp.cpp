// mlp.cpp — MLP (see mlp.h).
#include "nn/mlp.h"

#include <algorithm>

#include "tensor/ops.h"

namespace copper::nn {

const std::vector<std::string>& mlp_activations() {
  static const std::vector<std::string> names = {"relu", "gelu", "swiglu"};
  return names;
}

MLP::MLP(int64_t dim, int64_t hidden, const std::string& activation, Generator* gen) : act_(activation) {
  const auto& ok = mlp_activations();
  COPPER_CHECK(std::find(ok.begin(), ok.end(), activation) != ok.end(), "MLP",
               "unknown activation '{}'. HINT: valid names are relu, gelu, swiglu", activation);
  if (hidden <= 0) hidden = 4 * dim;
  fc1 = register_module("fc1", std::make_shared<Linear>(dim, hidden, true, gen));
  if (act_ == "swiglu") gate = register_module("gate", std::make_shared<Linear>(dim, hidden, true, gen));
  fc2 = register_module("fc2", std::make_shared<Linear>(hidden, dim, true, gen));
}

Tensor MLP::forward(const Tensor& x) const {
  Tensor h;  // h: (..., H)
  if (act_ == "gelu" && fc1->bias.defined()) {
    h = bias_gelu(fc1->product(x), fc1->bias);  // fc1's bias and the GELU in one pass
  } else {
    h = fc1->forward(x);
    if (act_ == "relu") h = relu(h);
    else if (act_ == "gelu") h = gelu(h);
    else h = silu(h) * gate->forward(x);
  }
  return fc2->forward(h);
}

}  // namespace copper::nn
