// linear.cpp — Linear (see linear.h).
#include "nn/linear.h"

#include <cmath>

#include "tensor/ops.h"

namespace copper::nn {

Linear::Linear(int64_t in, int64_t out, bool with_bias, Generator* gen) : in_(in), out_(out) {
  COPPER_CHECK(in > 0 && out > 0, "Linear", "sizes must be positive, got in={} out={}", in, out);
  // PyTorch's default (kaiming_uniform with a=sqrt(5)) reduces to this bound for both.
  const double bound = 1.0 / std::sqrt(double(in));
  weight = register_parameter("weight", rand({out, in}, DType::f32, gen, -bound, bound));
  if (with_bias) bias = register_parameter("bias", rand({out}, DType::f32, gen, -bound, bound));
}

namespace {
void check_input(const Tensor& x, int64_t in, int64_t out) {
  COPPER_CHECK(x.dim() >= 1 && x.size(-1) == in, "Linear", "input {} does not end in {} features. HINT: this "
               "layer maps {} -> {}", x.repr_shape(), in, in, out);
}
}  // namespace

Tensor Linear::forward(const Tensor& x) const {
  check_input(x, in_, out_);
  return linear(x, weight, bias);
}

Tensor Linear::product(const Tensor& x) const {
  check_input(x, in_, out_);
  return linear(x, weight, Tensor());
}

}  // namespace copper::nn
