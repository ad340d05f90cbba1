// alibi.cpp — ALiBi (see alibi.h).
#include "nn/pe/alibi.h"

#include <cmath>

#include "tensor/ops.h"

namespace copper::nn {

std::vector<double> alibi_slopes(int64_t n) {
  auto pow2_slopes = [](int64_t m) {  // 2^(-8/m), 2^(-16/m), ..., 2^(-8)
    std::vector<double> s;
    const double start = std::pow(2.0, -8.0 / double(m));
    for (int64_t i = 0; i < m; ++i) s.push_back(std::pow(start, double(i + 1)));
    return s;
  };
  int64_t p = 1;
  while (p * 2 <= n) p *= 2;  // the largest power of two <= n
  std::vector<double> s = pow2_slopes(p);
  if (p != n) {  // fill with every other slope of the next power of two
    std::vector<double> extra = pow2_slopes(2 * p);
    for (int64_t i = 0; int64_t(s.size()) < n; i += 2) s.push_back(extra[size_t(i)]);
  }
  return s;
}

void ALiBi::add_logit_terms(const AttentionContext& ctx, LogitTerms& out) {
  const int64_t H = ctx.q.size(1), T = ctx.q.size(2);
  COPPER_CHECK(H == int64_t(slopes_.size()), "alibi", "built for {} heads, got q {}", slopes_.size(), ctx.q.repr_shape());
  if (!bias_.defined() || bias_.size(1) != T || bias_.dtype() != ctx.q.dtype()) {
    std::vector<double> b(size_t(H * T * T));
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < T; ++i)
        for (int64_t j = 0; j < T; ++j) b[size_t((h * T + i) * T + j)] = j <= i ? -slopes_[size_t(h)] * double(i - j) : 0;
    bias_ = from_vector(b, {H, T, T}).to(ctx.q.dtype());
  }
  out.add_after(bias_);  // (H, T, T) broadcasts over the batch
}

std::shared_ptr<PositionEncoding> make_alibi_pe(const PEConfig& cfg) {
  if (cfg.scope != PEConfig::Scope::Layer) return nullptr;
  return std::make_shared<ALiBi>(cfg);
}

}  // namespace copper::nn
