// rope.cpp — rotary position embedding (see rope.h).
#include "nn/pe/rope.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "tensor/ops.h"

namespace copper::nn {

namespace {
void check_even(int64_t Dh) {
  COPPER_CHECK(Dh % 2 == 0, "rope", "head dim {} is odd: rope turns pairs of features. HINT: pick d_model / n_heads "
               "even", Dh);
}
}  // namespace

std::pair<Tensor, Tensor> rope_tables(int64_t offset, int64_t n, int64_t Dh, double base, DType dtype) {
  check_even(Dh);
  COPPER_CHECK(offset >= 0 && n >= 0, "rope", "bad position range [{}, {})", offset, offset + n);
  const int64_t P = Dh / 2;
  // cos, sin: (n, P), angle(t, m) = t * base^(-2m/Dh)
  std::vector<double> c(size_t(n * P)), s(size_t(n * P));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t m = 0; m < P; ++m) {
      const double a = double(offset + r) * std::pow(base, -2.0 * double(m) / double(Dh));
      c[size_t(r * P + m)] = std::cos(a);
      s[size_t(r * P + m)] = std::sin(a);
    }
  return {from_vector(c, {n, P}).to(dtype), from_vector(s, {n, P}).to(dtype)};
}

Tensor rope_apply(const Tensor& x, const Tensor& cs, const Tensor& sn) {
  check_even(x.size(-1));
  return rotate_pairs(x, cs, sn);
}

Tensor rope_apply_reference(const Tensor& x, const Tensor& cs, const Tensor& sn) {
  const int64_t T = x.size(-2), Dh = x.size(-1), P = Dh / 2;
  check_even(Dh);
  COPPER_CHECK(cs.shape() == (Shape{T, P}) && sn.shape() == (Shape{T, P}), "rope",
               "tables {} and {} must be ({}, {}) for x {}", cs.repr_shape(), sn.repr_shape(), T, P, x.repr_shape());
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

Tensor rope_rotate(const Tensor& x, double base, int64_t offset) {
  auto [cs, sn] = rope_tables(offset, x.size(-2), x.size(-1), base, x.dtype());  // cs, sn: (T, Dh/2)
  return rope_apply(x, cs.to(x.device()), sn.to(x.device()));
}

RoPE::RoPE(const PEConfig& cfg) : base_(cfg.base), context_(cfg.context) {
  check_even(cfg.d_head());
  register_buffer("cos", Tensor());
  register_buffer("sin", Tensor());
}

std::pair<Tensor, Tensor> RoPE::tables(int64_t offset, int64_t n, int64_t Dh, const Tensor& like) {
  COPPER_CHECK(offset >= 0, "rope", "negative position offset {}", offset);
  check_even(Dh);
  const Tensor& cs = buffer("cos");  // cs: (N, Dh/2)
  if (!cs.defined() || cs.size(0) < offset + n || cs.size(1) != Dh / 2 || cs.dtype() != like.dtype() ||
      cs.device() != like.device()) {
    int64_t rows = cs.defined() && cs.size(1) == Dh / 2 ? cs.size(0) : 0;
    if (rows < offset + n) rows = std::max({offset + n, 2 * rows, context_});
    auto [c, s] = rope_tables(0, rows, Dh, base_, like.dtype());  // row t depends on t alone, not on rows
    set_buffer("cos", c.to(like.device()));
    set_buffer("sin", s.to(like.device()));
  }
  return {buffer("cos").narrow(0, offset, n), buffer("sin").narrow(0, offset, n)};
}

Tensor RoPE::rotate(const Tensor& x, int64_t offset) {
  auto [cs, sn] = tables(offset, x.size(-2), x.size(-1), x);
  return rope_apply(x, cs, sn);
}

std::pair<Tensor, Tensor> RoPE::qk_rotation_tables(int64_t n, const Tensor& like) {
  return tables(0, n, like.size(-1), like);
}

void RoPE::transform_qk(Tensor& q, Tensor& k, int64_t q_offset, int64_t k_offset) {
  q = rotate(q, q_offset);
  k = rotate(k, k_offset);
}

std::shared_ptr<PositionEncoding> make_rope_pe(const PEConfig& cfg) {
  if (cfg.scope != PEConfig::Scope::Layer) return nullptr;
  return std::make_shared<RoPE>(cfg);
}

}  // namespace copper::nn
