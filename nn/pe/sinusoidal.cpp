// sinusoidal.cpp — the sinusoidal encoding (see sinusoidal.h).
#include "nn/pe/sinusoidal.h"

#include <cmath>
#include <vector>

#include "tensor/ops.h"

namespace copper::nn {

Tensor sinusoidal_table(int64_t L, int64_t d, double n, DType dtype) {
  COPPER_CHECK(L >= 0 && d > 0 && n > 0, "sinusoidal", "need L >= 0, d > 0, n > 0; got L={} d={} n={}", L, d, n);
  std::vector<double> v(size_t(L * d));
  for (int64_t pos = 0; pos < L; ++pos)
    for (int64_t c = 0; c < d; ++c) {
      const int64_t two_i = c - c % 2;  // columns 2i and 2i+1 share a frequency
      const double angle = double(pos) / std::pow(n, double(two_i) / double(d));
      v[size_t(pos * d + c)] = c % 2 == 0 ? std::sin(angle) : std::cos(angle);
    }
  return from_vector(v, {L, d}).to(dtype);
}

Tensor SinusoidalPE::embedding_term(int64_t T, DType dtype) const {
  if (!cache_.defined() || cache_.size(0) != T || cache_.dtype() != dtype) cache_ = sinusoidal_table(T, d_, base_, dtype);
  return cache_;  // (T, D), no gradient
}

std::shared_ptr<PositionEncoding> make_sinusoidal_pe(const PEConfig& cfg) {
  if (cfg.scope != PEConfig::Scope::Embedding) return nullptr;
  return std::make_shared<SinusoidalPE>(cfg);
}

}  // namespace copper::nn
