// rope.cpp — rotary position embedding (see rope.h).
#include "nn/pe/rope.h"

#include <cmath>
#include <vector>

#include "tensor/ops.h"

namespace copper::nn {

Tensor rope_rotate(const Tensor& x, double base) {
  const int64_t T = x.size(-2), Dh = x.size(-1), P = Dh / 2;
  COPPER_CHECK(Dh % 2 == 0, "rope", "head dim {} is odd: rope turns pairs of features. HINT: pick d_model / n_heads "
               "even", Dh);
  // cos, sin: (T, P), angle(t, m) = t * base^(-2m/Dh)
  std::vector<double> c(size_t(T * P)), s(size_t(T * P));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t m = 0; m < P; ++m) {
      const double a = double(t) * std::pow(base, -2.0 * double(m) / double(Dh));
      c[size_t(t * P + m)] = std::cos(a);
      s[size_t(t * P + m)] = std::sin(a);
    }
  Tensor cs = from_vector(c, {T, P}).to(x.dtype()), sn = from_vector(s, {T, P}).to(x.dtype());
  Shape pairs(x.shape().begin(), x.shape().end() - 1);
  pairs.push_back(P);
  pairs.push_back(2);
  Tensor xp = x.reshape(pairs);       // xp: (..., T, P, 2)
  Tensor x0 = xp.select(-1, 0);       // x0: (..., T, P) the even features
  Tensor x1 = xp.select(-1, 1);       // x1: (..., T, P) the odd features
  Tensor r0 = x0 * cs - x1 * sn;
  Tensor r1 = x0 * sn + x1 * cs;
  return stack({r0, r1}, -1).reshape(x.shape());  // back to (..., T, Dh), pairs interleaved
}

RoPE::RoPE(const PEConfig& cfg) : base_(cfg.base) {
  COPPER_CHECK(cfg.d_head() % 2 == 0, "rope", "head dim {} is odd. HINT: pick d_model / n_heads even", cfg.d_head());
}

void RoPE::transform_qk(Tensor& q, Tensor& k) const {
  q = rope_rotate(q, base_);
  k = rope_rotate(k, base_);
}

std::shared_ptr<PositionEncoding> make_rope_pe(const PEConfig& cfg) {
  if (cfg.scope != PEConfig::Scope::Layer) return nullptr;
  return std::make_shared<RoPE>(cfg);
}

}  // namespace copper::nn
