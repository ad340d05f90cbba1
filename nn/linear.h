// linear.h — Linear: y = x · Wᵀ + b, initialised as PyTorch does.
#pragma once
#include <memory>

#include "nn/module.h"
#include "tensor/random.h"

namespace copper::nn {

class Linear : public Module {
 public:
  // weight [out, in] and bias [out] drawn from U(-1/sqrt(in), 1/sqrt(in)) with `gen`
  // (the thread's default generator when null).
  Linear(int64_t in, int64_t out, bool bias = true, Generator* gen = nullptr);
  std::string type_name() const override { return "Linear"; }

  // x (..., in) -> (..., out)
  Tensor forward(const Tensor& x) const;
  // x · Wᵀ alone, for a caller that fuses the bias into what follows (MLP: bias_gelu)
  Tensor product(const Tensor& x) const;

  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }

  Tensor weight;  // (out, in)
  Tensor bias;    // (out) or undefined

 private:
  int64_t in_, out_;
};

}  // namespace copper::nn
