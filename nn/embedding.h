// embedding.h — Embedding: a table of vectors looked up by integer ids.
#pragma once
#include "nn/module.h"
#include "tensor/random.h"

namespace copper::nn {

class Embedding : public Module {
 public:
  // weight [num, dim] ~ N(0, std²) (std 1 as PyTorch's nn.Embedding).
  Embedding(int64_t num, int64_t dim, double std = 1.0, Generator* gen = nullptr);
  std::string type_name() const override { return "Embedding"; }

  // ids (...) integer -> (..., dim)
  Tensor forward(const Tensor& ids) const;

  int64_t num_embeddings() const { return num_; }
  int64_t dim() const { return dim_; }

  Tensor weight;  // (num, dim)

 private:
  int64_t num_, dim_;
};

}  // namespace copper::nn
