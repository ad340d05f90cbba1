// dropout.cpp — Dropout (see dropout.h).
#include "nn/dropout.h"

#include "tensor/ops.h"

namespace copper::nn {

Dropout::Dropout(double p, Generator* gen) : p_(p), gen_(gen) {
  COPPER_CHECK(p >= 0 && p < 1, "Dropout", "p must be in [0, 1), got {}", p);
}

Tensor Dropout::forward(const Tensor& x) const {
  if (!is_training() || p_ == 0) return x;
  return dropout(x, p_, true, gen_);
}

}  // namespace copper::nn
