// rel.cpp — learned relative positions (see rel.h).
#include "nn/pe/rel.h"

#include <algorithm>
#include <vector>

#include "autograd/grad_mode.h"
#include "tensor/ops.h"

namespace copper::nn {

RelativePE::RelativePE(const PEConfig& cfg) : reuse_last_(cfg.rel_reuse_last) {
  weight = register_parameter("weight", randn({cfg.context, cfg.d_head()}, DType::f32, cfg.init_gen, 0.0, 0.02));
}

void RelativePE::add_logit_terms(const AttentionContext& ctx, LogitTerms& out) {
  const Tensor& q = ctx.q;  // q: (B, H, T, Dh)
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), R = weight.size(0);
  if (!index_.defined() || index_.size(0) != T) {
    // index[i][j] = min(i - j, R - 1) for j <= i (0 for future keys: masked anyway)
    std::vector<int64_t> idx(size_t(T * T));
    std::vector<double> valid(size_t(T * T));
    for (int64_t i = 0; i < T; ++i)
      for (int64_t j = 0; j < T; ++j) {
        const int64_t d = std::max<int64_t>(i - j, 0);
        idx[size_t(i * T + j)] = std::min(d, R - 1);
        valid[size_t(i * T + j)] = d < R ? 1.0 : 0.0;
      }
    index_ = from_vector(idx, {T, T});
    valid_ = from_vector(valid, {T, T});
  }
  Tensor e = weight.dtype() == q.dtype() ? weight : weight.to(q.dtype());
  Tensor z = matmul(q, e.t());                                             // z: (B, H, T, R), z[.., i, r] = q_i·e[r]
  if (!index_full_.defined() || index_full_.shape() != Shape{B, H, T, T})
    index_full_ = index_.expand({B, H, T, T}).contiguous();               // gather wants the full index shape
  Tensor term = gather(z, -1, index_full_);                                 // term: (B, H, T, T)
  if (!reuse_last_ && T > R) term = term * valid_.to(q.dtype());
  out.add_before(term);
}

std::shared_ptr<PositionEncoding> make_rel_pe(const PEConfig& cfg) {
  if (cfg.scope != PEConfig::Scope::Layer) return nullptr;
  return std::make_shared<RelativePE>(cfg);
}

}  // namespace copper::nn
