// alibi.cpp — ALiBi (see alibi.h).
#include "nn/pe/alibi.h"

#include <algorithm>
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

ALiBi::ALiBi(const PEConfig& cfg) : slopes_(alibi_slopes(cfg.n_heads)) { register_buffer("bias", Tensor()); }

void ALiBi::add_logit_terms(const AttentionContext& ctx, LogitTerms& out) {
  const int64_t H = ctx.q.size(1), Tq = ctx.tq(), Tk = ctx.tk(), t0 = ctx.q_offset;
  COPPER_CHECK(H == int64_t(slopes_.size()), "alibi", "built for {} heads, got q {}", slopes_.size(), ctx.q.repr_shape());
  COPPER_CHECK(t0 >= 0 && t0 + Tq <= Tk, "alibi", "queries at [{}, {}) over {} keys: need 0 <= q_offset and "
               "q_offset + Tq <= Tk. HINT: with a KV cache Tk = cache length + Tq", t0, t0 + Tq, Tk);
  const int64_t need = std::max(t0 + Tq, Tk);
  const Tensor& cached = buffer("bias");  // cached: (H, N, N)
  if (!cached.defined() || cached.size(1) < need || cached.dtype() != ctx.q.dtype() ||
      cached.device() != ctx.q.device()) {
    int64_t N = cached.defined() ? cached.size(1) : 0;
    if (N < need) N = std::max(need, 2 * N);
    std::vector<double> b(size_t(H * N * N));
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < N; ++i)
        for (int64_t j = 0; j < N; ++j) b[size_t((h * N + i) * N + j)] = j <= i ? -slopes_[size_t(h)] * double(i - j) : 0;
    set_buffer("bias", from_vector(b, {H, N, N}).to(ctx.q.dtype()).to(ctx.q.device()));
  }
  out.add_after(buffer("bias").narrow(1, t0, Tq).narrow(2, 0, Tk));  // (H, Tq, Tk) broadcasts over the batch
}

std::shared_ptr<PositionEncoding> make_alibi_pe(const PEConfig& cfg) {
  if (cfg.scope != PEConfig::Scope::Layer) return nullptr;
  return std::make_shared<ALiBi>(cfg);
}

}  // namespace copper::nn
