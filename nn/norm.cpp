// norm.cpp — LayerNorm, RMSNorm and Norm (see norm.h).
#include "nn/norm.h"

#include "tensor/ops.h"

namespace copper::nn {

namespace {
void check_last_dim(const char* op, const Tensor& x, int64_t dim) {
  COPPER_CHECK(x.dim() >= 1 && x.size(-1) == dim, op, "input {} does not end in {}. HINT: the norm was built for "
               "{} features", x.repr_shape(), dim, dim);
}
}  // namespace

LayerNorm::LayerNorm(int64_t dim, double eps, bool with_bias) : dim_(dim), eps_(eps) {
  weight = register_parameter("weight", ones({dim}));
  if (with_bias) bias = register_parameter("bias", zeros({dim}));
}

Tensor LayerNorm::forward(const Tensor& x) const {
  check_last_dim("LayerNorm", x, dim_);
  return layer_norm(x, weight, bias, eps_);
}

RMSNorm::RMSNorm(int64_t dim, double eps) : dim_(dim), eps_(eps) { weight = register_parameter("weight", ones({dim})); }

Tensor RMSNorm::forward(const Tensor& x) const {
  check_last_dim("RMSNorm", x, dim_);
  return rms_norm(x, weight, eps_);
}

const std::vector<std::string>& norm_names() {
  static const std::vector<std::string> names = {"layernorm", "rmsnorm"};
  return names;
}

// The norm's parameters sit directly in this module ("ln1.weight", not "ln1.ln.weight"):
// Norm registers the inner layer's tensors as its own.
Norm::Norm(const std::string& kind, int64_t dim) {
  if (kind == "layernorm") {
    ln_ = std::make_shared<LayerNorm>(dim);
    register_parameter("weight", ln_->weight);
    register_parameter("bias", ln_->bias);
  } else if (kind == "rmsnorm") {
    rms_ = std::make_shared<RMSNorm>(dim);
    register_parameter("weight", rms_->weight);
  } else {
    COPPER_THROW("Norm", "unknown norm '{}'. HINT: valid names are layernorm, rmsnorm", kind);
  }
}

Tensor Norm::forward(const Tensor& x) const { return ln_ ? ln_->forward(x) : rms_->forward(x); }

}  // namespace copper::nn
