// cope.cpp — Contextual Position Encoding (see cope.h).
#include "nn/pe/cope.h"

#include <cmath>

#include "nn/attend.h"
#include "tensor/ops.h"

namespace copper::nn {

CopeScale cope_scale_from_name(const std::string& name) {
  if (name == "appendix") return CopeScale::appendix;
  if (name == "official") return CopeScale::official;
  COPPER_THROW("cope", "unknown scaling convention '{}'. HINT: valid names are appendix (q·k/sqrt(d) + z), "
               "official ((q·k + z)/sqrt(d))", name);
}

int64_t cope_check_offset(const Tensor& q, const Tensor& gate_logits, int64_t q_offset) {
  const int64_t Tq = q.size(-2), Tk = gate_logits.size(-1);
  COPPER_CHECK(gate_logits.dim() >= 2 && gate_logits.size(-2) == Tq, "cope", "gate logits {} must be (..., {}, Tk) "
               "for q {}", gate_logits.repr_shape(), Tq, q.repr_shape());
  const int64_t t0 = q_offset == kCopeOffsetAlignEnd ? Tk - Tq : q_offset;
  COPPER_CHECK(t0 >= 0 && t0 + Tq <= Tk, "cope", "queries at [{}, {}) over {} keys (gate logits {}, q {}): need "
               "0 <= q_offset and q_offset + Tq <= Tk. HINT: with a KV cache Tk = cache length + Tq",
               t0, t0 + Tq, Tk, gate_logits.repr_shape(), q.repr_shape());
  return t0;
}

CopeTerm cope_logit_term(const Tensor& q, const Tensor& gate_logits, const Tensor& e, int64_t q_offset) {
  const int64_t Dh = q.size(-1);
  COPPER_CHECK(e.dim() == 2 && e.size(1) == Dh, "cope", "position table {} must be (npos, {}) for q {}",
               e.repr_shape(), Dh, q.repr_shape());
  const int64_t t0 = cope_check_offset(q, gate_logits, q_offset);
  // f32 positions whatever the compute dtype (f64 for f64 inputs): see cope_logit_term_reference.
  const DType pd = q.dtype() == DType::f64 ? DType::f64 : DType::f32;
  auto in_pd = [&](const Tensor& t) { return t.dtype() == pd ? t : t.to(pd); };
  Tensor z = matmul(in_pd(q), in_pd(e).t());  // z: (..., Tq, npos), z[r][p] = q_r·e[p]
  CopePositions c = cope_positions(in_pd(gate_logits), z, t0);
  CopeTerm r;
  r.term = c.term.dtype() == q.dtype() ? c.term : c.term.to(q.dtype());
  r.gates = c.gates;
  r.positions = c.positions;  // already clamped
  return r;
}

CopeTerm cope_logit_term_reference(const Tensor& q, const Tensor& gate_logits, const Tensor& e, int64_t q_offset) {
  const int64_t Tq = q.size(-2), Dh = q.size(-1), npos = e.size(0), Tk = gate_logits.size(-1);
  COPPER_CHECK(e.dim() == 2 && e.size(1) == Dh, "cope", "position table {} must be (npos, {}) for q {}",
               e.repr_shape(), Dh, q.repr_shape());
  const int64_t t0 = cope_check_offset(q, gate_logits, q_offset);
  // Positions are sums of up to T gates, and their fractional part picks the interpolation:
  // half precision would lose both, so they run in f32 (f64 for f64 inputs).
  const DType pd = q.dtype() == DType::f64 ? DType::f64 : DType::f32;
  auto in_pd = [&](const Tensor& t) { return t.dtype() == pd ? t : t.to(pd); };
  Tensor qp = in_pd(q), ep = in_pd(e);
  // Rows t0..t0+Tq-1 of the square (Tk, Tk) mask: 1 for key j > i = t0 + r.
  Tensor mask = causal_mask(Tk, Tk, pd).to(q.device()).narrow(0, t0, Tq);         // mask: (Tq, Tk)
  CopeTerm r;
  r.gates = masked_fill(sigmoid(in_pd(gate_logits)), mask, 0.0);   // gates: (..., Tq, Tk), 0 for j > i
  Tensor pos = cumsum(r.gates, -1, /*reverse=*/true);              // pos[r][j] = sum_{t>=j} g_rt = sum_{t=j..i} g_rt
  pos = clamp(pos, std::nullopt, double(npos - 1));
  r.positions = pos;
  Tensor z = matmul(qp, ep.t());                                   // z: (..., Tq, npos), z[r][p] = q_r·e[p]
  Tensor lo = floor(pos), hi = ceil(pos);                          // no gradient through either
  Tensor z_lo = gather(z, -1, lo.to(DType::i64));                  // z_lo: (..., Tq, Tk) = z_i[floor p_ij]
  Tensor z_hi = gather(z, -1, hi.to(DType::i64));                  // z_hi: (..., Tq, Tk) = z_i[ceil p_ij]
  Tensor w = pos - lo;                                             // w: (..., Tq, Tk), gradient flows to pos
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
  Tensor gate_logits = ctx.scaled_logits;  // (B, H, Tq, Tk)
  if (gate_key) {
    const int64_t B = ctx.x.size(0), Tq = ctx.x.size(1), Dh = ctx.q.size(-1);
    Tensor kg = gate_key->forward(ctx.x).view({B, Tq, n_heads_, Dh}).transpose(1, 2);  // kg: (B, H, Tq, Dh), new keys
    if (ctx.cache) {
      Tensor& kept = (*ctx.cache)["cope.gate_k"];                                      // kept: (B, H, t0, Dh)
      kg = kept.defined() ? cat({kept, kg}, 2) : kg.contiguous();                     // kg: (B, H, Tk, Dh)
      kept = kg.detach();
    }
    COPPER_CHECK(kg.size(2) == ctx.tk(), "cope", "separate gate keys for {} tokens but {} keys. HINT: with "
                 "cope_sep_key, pass the KV cache's encoding state (AttentionContext::cache) or x for every key",
                 kg.size(2), ctx.tk());
    gate_logits = matmul(ctx.q, kg.transpose(-2, -1)) * (1.0 / std::sqrt(double(Dh)));  // (B, H, Tq, Tk)
  }
  CopeTerm c = cope_logit_term(ctx.q, gate_logits, pos_emb, ctx.q_offset);
  last_gates_ = c.gates.detach();
  last_positions_ = c.positions.detach();
  last_term_ = c.term.detach();
  if (scale_ == CopeScale::official) out.add_before(c.term);
  else out.add_after(c.term);
}

Tensor CoPE::fused_attention(const AttentionContext& ctx, const Tensor& v, double scale, double dropout_p) {
  const DType dt = ctx.q.dtype();
  if (gate_key || (dt != DType::f32 && dt != DType::f64)) return Tensor();
  Tensor e = pos_emb.dtype() == dt ? pos_emb : pos_emb.to(dt);
  last_gates_ = last_positions_ = last_term_ = Tensor();
  return causal_cope_attention(ctx.q, ctx.k, v, e, scale, scale_ == CopeScale::official, dropout_p);
}

std::shared_ptr<PositionEncoding> make_cope_pe(const PEConfig& cfg) {
  if (cfg.scope != PEConfig::Scope::Layer) return nullptr;
  COPPER_CHECK(cfg.cope_every >= 1, "cope", "cope_every must be >= 1, got {}", cfg.cope_every);
  if (cfg.layer % cfg.cope_every != 0) return nullptr;
  return std::make_shared<CoPE>(cfg);
}

}  // namespace copper::nn
