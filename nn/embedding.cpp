// embedding.cpp — Embedding (see embedding.h).
#include "nn/embedding.h"

#include "tensor/ops.h"

namespace copper::nn {

Embedding::Embedding(int64_t num, int64_t dim, double std, Generator* gen) : num_(num), dim_(dim) {
  COPPER_CHECK(num > 0 && dim > 0, "Embedding", "sizes must be positive, got num={} dim={}", num, dim);
  weight = register_parameter("weight", randn({num, dim}, DType::f32, gen, 0.0, std));
}

Tensor Embedding::forward(const Tensor& ids) const {
  COPPER_CHECK(ids.defined() && is_integer(ids.dtype()), "Embedding", "ids must be an integer tensor, got {}",
               ids.defined() ? ids.repr_shape() : std::string("undefined"));
  return embedding(weight, ids);
}

}  // namespace copper::nn
