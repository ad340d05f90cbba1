// norm.h — LayerNorm and RMSNorm over the last dimension, and make_norm to pick one by name.
#pragma once
#include <memory>
#include <string>

#include "nn/module.h"

namespace copper::nn {

// (x - mean) / sqrt(var + eps) * weight + bias; weight starts at 1, bias at 0.
class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t dim, double eps = 1e-5, bool bias = true);
  std::string type_name() const override { return "LayerNorm"; }
  Tensor forward(const Tensor& x) const;  // (..., dim) -> (..., dim)
  Tensor weight, bias;

 private:
  int64_t dim_;
  double eps_;
};

// x / sqrt(mean(x²) + eps) * weight; weight starts at 1.
class RMSNorm : public Module {
 public:
  explicit RMSNorm(int64_t dim, double eps = 1e-6);
  std::string type_name() const override { return "RMSNorm"; }
  Tensor forward(const Tensor& x) const;  // (..., dim) -> (..., dim)
  Tensor weight;

 private:
  int64_t dim_;
  double eps_;
};

// A norm chosen by name, behind one call: "layernorm" or "rmsnorm".
class Norm : public Module {
 public:
  Norm(const std::string& kind, int64_t dim);
  std::string type_name() const override { return "Norm"; }
  Tensor forward(const Tensor& x) const;

 private:
  std::shared_ptr<LayerNorm> ln_;
  std::shared_ptr<RMSNorm> rms_;
};

// The names Norm accepts.
const std::vector<std::string>& norm_names();

}  // namespace copper::nn
