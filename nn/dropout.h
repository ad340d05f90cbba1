// dropout.h — Dropout: zero each element with probability p in training, identity in eval.
#pragma once
#include "nn/module.h"
#include "tensor/random.h"

namespace copper::nn {

class Dropout : public Module {
 public:
  // Draws from `gen`, or from the calling thread's default generator when null (so that
  // seeding it with manual_seed makes a run repeatable).
  explicit Dropout(double p, Generator* gen = nullptr);
  std::string type_name() const override { return "Dropout"; }
  Tensor forward(const Tensor& x) const;  // any shape
  double p() const { return p_; }

 private:
  double p_;
  Generator* gen_;
};

}  // namespace copper::nn
