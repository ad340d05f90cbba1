// rel.cpp — learned relative positions (see rel.h).
#include "nn/pe/rel.h"

#include <algorithm>
#include <vector>

#include "autograd/grad_mode.h"
#include "tensor/ops.h"

namespace copper::nn {

RelativePE::RelativePE(const PEConfig& cfg) : reuse_last_(cfg.rel_reuse_last) {
  weight = register_parameter("weight", randn({cfg.context, cfg.d_head()}, DType::f32, cfg.init_gen, 0.0, 0.02));
  register_buffer("index", Tensor());
  register_buffer("valid", Tensor());
}

void RelativePE::add_logit_terms(const AttentionContext& ctx, LogitTerms& out) {
  const Tensor& q = ctx.q;  // q: (B, H, Tq, Dh)
  const int64_t B = q.size(0), H = q.size(1), Tq = ctx.tq(), Tk = ctx.tk(), t0 = ctx.q_offset, R = weight.size(0);
  COPPER_CHECK(t0 >= 0 && t0 + Tq <= Tk, "rel", "queries at [{}, {}) over {} keys: need 0 <= q_offset and "
               "q_offset + Tq <= Tk. HINT: with a KV cache Tk = cache length + Tq", t0, t0 + Tq, Tk);
  const int64_t need = std::max(t0 + Tq, Tk);  // rows t0..t0+Tq-1, columns 0..Tk-1 of the square
  if (!buffer("index").defined() || buffer("index").size(0) < need || buffer("index").device() != q.device()) {
    const int64_t N = std::max(need, buffer("index").defined() ? 2 * buffer("index").size(0) : int64_t(0));
    std::vector<int64_t> idx(size_t(N * N));
    std::vector<double> valid(size_t(N * N));
    for (int64_t i = 0; i < N; ++i)
      for (int64_t j = 0; j < N; ++j) {
        const int64_t d = std::max<int64_t>(i - j, 0);
        idx[size_t(i * N + j)] = std::min(d, R - 1);
        valid[size_t(i * N + j)] = d < R ? 1.0 : 0.0;
      }
    set_buffer("index", from_vector(idx, {N, N}).to(q.device()));
    set_buffer("valid", from_vector(valid, {N, N}).to(DType::f32).to(q.device()));
    index_full_ = Tensor();
  }
  Tensor e = weight.dtype() == q.dtype() ? weight : weight.to(q.dtype());
  Tensor z = matmul(q, e.t());                                             // z: (B, H, Tq, R), z[.., r, d] = q_r·e[d]
  if (!index_full_.defined() || index_full_.shape() != Shape{B, H, Tq, Tk} || index_full_offset_ != t0) {
    Tensor rect = buffer("index").narrow(0, t0, Tq).narrow(1, 0, Tk);        // rect: (Tq, Tk)
    index_full_ = rect.expand({B, H, Tq, Tk}).contiguous();                 // gather wants the full index shape
    index_full_offset_ = t0;
  }
  Tensor term = gather(z, -1, index_full_);                                 // term: (B, H, Tq, Tk)
  if (!reuse_last_ && t0 + Tq > R)                                          // some distance reaches past the table
    term = term * buffer("valid").narrow(0, t0, Tq).narrow(1, 0, Tk).to(q.dtype());
  out.add_before(term);
}

std::shared_ptr<PositionEncoding> make_rel_pe(const PEConfig& cfg) {
  if (cfg.scope != PEConfig::Scope::Layer) return nullptr;
  return std::make_shared<RelativePE>(cfg);
}

}  // namespace copper::nn
