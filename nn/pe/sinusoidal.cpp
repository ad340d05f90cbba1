// sinusoidal.cpp — the sinusoidal encoding (see sinusoidal.h).
#include "nn/pe/sinusoidal.h"

#include <algorithm>
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

SinusoidalPE::SinusoidalPE(const PEConfig& cfg) : d_(cfg.d_model), base_(cfg.base) {
  register_buffer("table", Tensor());
}

Tensor SinusoidalPE::embedding_term(int64_t t0, int64_t T, DType dtype) {
  COPPER_CHECK(t0 >= 0 && T >= 0, "sinusoidal", "bad position range [{}, {})", t0, t0 + T);
  const Tensor& table = buffer("table");  // table: (N, D)
  if (!table.defined() || table.size(0) < t0 + T || table.dtype() != dtype || table.device() != device()) {
    int64_t n = table.defined() ? table.size(0) : 0;
    if (n < t0 + T) n = std::max(t0 + T, 2 * n);  // doubling: decoding token by token rebuilds O(log n) times
    set_buffer("table", sinusoidal_table(n, d_, base_, dtype).to(device()));
  }
  return buffer("table").narrow(0, t0, T);  // (T, D), no gradient
}

std::shared_ptr<PositionEncoding> make_sinusoidal_pe(const PEConfig& cfg) {
  if (cfg.scope != PEConfig::Scope::Embedding) return nullptr;
  return std::make_shared<SinusoidalPE>(cfg);
}

}  // namespace copper::nn
