// cope.cpp — Contextual Position Encoding (see cope.h).
#include "nn/pe/cope.h"

#include <cmath>

#include "nn/attention.h"
#include "tensor/ops.h"

namespace copper::nn {

CopeScale cope_scale_from_name(const std::string& name) {
  if (name == "appendix") return CopeScale::appendix;
  if (name == "official") return CopeScale::official;
  COPPER_THROW("cope", "unknown scaling convention '{}'. HINT: valid names are appendix (q·k/sqrt(d) + z), "
               "official ((q·k + z)/sqrt(d))", name);
}

CopeTerm cope_logit_term_reference(const Tensor& q, const Tensor& gate_logits, const Tensor& e) {
  const int64_t T = q.size(-2), Dh = q.size(-1), npos = e.size(0);
  COPPER_CHECK(e.dim() == 2 && e.size(1) == Dh, "cope", "position table {} must be (npos, {}) for q {}",
               e.repr_shape(), Dh, q.repr_shape());
  COPPER_CHECK(gate_logits.size(-1) == T && gate_logits.size(-2) == T, "cope", "gate logits {} for q {}",
               gate_logits.repr_shape(), q.repr_shape());
  // Positions are sums of up to T gates, and their fractional part picks the interpolation:
  // half precision would lose both, so they run in f32 (f64 for f64 inputs).
  const DType pd = q.dtype() == DType::f64 ? DType::f64 : DType::f32;
  auto in_pd = [&](const Tensor& t) { return t.dtype() == pd ? t : t.to(pd); };
  Tensor qp = in_pd(q), ep = in_pd(e);
  Tensor mask = causal_mask(T, T, pd);                              // mask: (T, T), 1 for j > i
  CopeTerm r;
  r.gates = masked_fill(sigmoid(in_pd(gate_logits)), mask, 0.0);   // gates: (..., T, T), 0 for j > i
  Tensor pos = cumsum(r.gates, -1, /*reverse=*/true);              // pos[i][j] = sum_{t>=j} g_it = sum_{t=j..i} g_it
  pos = clamp(pos, std::nullopt, double(npos - 1));
  r.positions = pos;
  Tensor z = matmul(qp, ep.t());                                   // z: (..., T, npos), z[i][p] = q_i·e[p]
  Tensor lo = floor(pos), hi = ceil(pos);                          // no gradient through either
  Tensor z_lo = gather(z, -1, lo.to(DType::i64));                  // z_lo: (..., T, T) = z_i[floor p_ij]
  Tensor z_hi = gather(z, -1, hi.to(DType::i64));                  // z_hi: (..., T, T) = z_i[ceil p_ij]
  Tensor w = pos - lo;                                             // w: (..., T, T), gradient flows to pos
  Tensor term = z_lo + w * (z_hi - z_lo);                          // = w·z_hi + (1 - w)·z_lo
  r.term = term.dtype() == q.dtype() ? term : term.to(q.dtype());
  return r;
}

CopeAttention cope_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& e, CopeScale scale,
                             bool reference) {
  const double s = 1.0 / std::sqrt(double(q.size(-1)));
  Tensor scaled = matmul(q * s, k.transpose(-2, -1));       // scaled: (..., T, T)
  CopeTerm c = reference ? cope_logit_term_reference(q, scaled, e) : cope_logit_term(q, scaled, e);
  LogitTerms terms;
  if (scale == CopeScale::official) terms.add_before(c.term);
  else terms.add_after(c.term);
  CopeAttention r;
  r.out = attend(scaled, terms, s, v, 0.0, false, &r.attention);
  r.positions = c.positions;
  r.gates = c.gates;
  return r;
}

CoPE::CoPE(const PEConfig& cfg) : scale_(cope_scale_from_name(cfg.cope_scale)), n_heads_(cfg.n_heads) {
  const int64_t npos = cfg.npos > 0 ? cfg.npos : cfg.context + 1;
  COPPER_CHECK(npos >= 1, "cope", "npos must be >= 1, got {}", npos);
  pos_emb = register_parameter("pos_emb", zeros({npos, cfg.d_head()}));
  if (cfg.cope_sep_key)
    gate_key = register_module("gate_key", std::make_shared<Linear>(cfg.d_model, cfg.d_model, true, cfg.init_gen));
}

void CoPE::add_logit_terms(const AttentionContext& ctx, LogitTerms& out) {
  Tensor gate_logits = ctx.scaled_logits;  // (B, H, T, T)
  if (gate_key) {
    const int64_t B = ctx.x.size(0), T = ctx.x.size(1), Dh = ctx.q.size(-1);
    Tensor kg = gate_key->forward(ctx.x).view({B, T, n_heads_, Dh}).transpose(1, 2);  // kg: (B, H, T, Dh)
    gate_logits = matmul(ctx.q, kg.transpose(-2, -1)) * (1.0 / std::sqrt(double(Dh)));
  }
  CopeTerm c = cope_logit_term(ctx.q, gate_logits, pos_emb);
  last_gates_ = c.gates.detach();
  last_positions_ = c.positions.detach();
  if (scale_ == CopeScale::official) out.add_before(c.term);
  else out.add_after(c.term);
}

std::shared_ptr<PositionEncoding> make_cope_pe(const PEConfig& cfg) {
  if (cfg.scope != PEConfig::Scope::Layer) return nullptr;
  COPPER_CHECK(cfg.cope_every >= 1, "cope", "cope_every must be >= 1, got {}", cfg.cope_every);
  if (cfg.layer % cfg.cope_every != 0) return nullptr;
  return std::make_shared<CoPE>(cfg);
}

}  // namespace copper::nn
