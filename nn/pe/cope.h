// cope.h — Contextual Position Encoding (Golovneva, Wang, Weston, Sukhbaatar 2024).
//
// CoPE lets the model decide what to count. For query i and key j <= i, per head:
//   1. gate      g_ij = sigmoid(q_i·k_j / sqrt(Dh))        (0 for future keys j > i)
//   2. position  p_ij = sum_{t=j..i} g_it                   (a reverse cumsum along keys)
//                clamped at npos - 1
//   3. logit     z_i[p] = q_i·e[p] for integer p (one table e, npos × Dh, per layer, shared
//                by the heads, zero at init), interpolated at the fractional p_ij:
//                z_i[p_ij] = w·z_i[ceil p_ij] + (1 - w)·z_i[floor p_ij],  w = p_ij - floor p_ij
// and z_i[p_ij] is added to the attention logits; values get no position term.
// Two scalings exist: "appendix" logits = q·k/sqrt(Dh) + z (the paper's code listing) and
// "official" logits = (q·k + z)/sqrt(Dh). The gates use q·k/sqrt(Dh) in both.
//
// Cost: z is q·eᵀ, (B, H, T, npos), then reads at the floor and ceil positions give
// (B, H, T, T): nothing of size T × T × npos is ever made.
//
// Rectangles: the term functions take Tq queries at absolute positions [q_offset,
// q_offset + Tq) over Tk keys at [0, Tk), Tk >= q_offset + Tq; query row r is i = q_offset
// + r (mod Tq, over the leading dims) and everything above holds with that i. By default
// q_offset = Tk - Tq: the queries are the last Tq positions, as with a KV cache. Gates, positions and the
// interpolation run in f32 (f64 when q is f64) whatever the compute dtype.
#pragma once
#include <memory>

#include "nn/linear.h"
#include "nn/pe/position_encoding.h"

namespace copper::nn {

enum class CopeScale { appendix, official };
CopeScale cope_scale_from_name(const std::string& name);  // throws listing the valid names

struct CopeTerm {
  Tensor term;       // (..., Tq, Tk) z_i[p_ij] in q's dtype; z_i[0] where j > i (attention masks those)
  Tensor gates;      // (..., Tq, Tk) g_ij, position dtype
  Tensor positions;  // (..., Tq, Tk) p_ij after the clamp, position dtype
};

// The offset the term functions use when given none: Tk - Tq (queries are the last Tq keys).
inline constexpr int64_t kCopeOffsetAlignEnd = -1;

// Steps 1-3, causal: q (..., Tq, Dh); gate_logits (..., Tq, Tk), already divided by
// sqrt(Dh); e (npos, Dh); q_offset the position of query row 0 (kCopeOffsetAlignEnd:
// Tk - Tq). Future keys (j > i) get gate 0, position 0 and term z_i[0] (attention masks
// them out). One pass per query row each way: the op cope_positions (tensor/ops/cope.cpp).
CopeTerm cope_logit_term(const Tensor& q, const Tensor& gate_logits, const Tensor& e,
                         int64_t q_offset = kCopeOffsetAlignEnd);
// The same, composed from tensor ops (sigmoid, masked_fill, cumsum, clamp, floor, ceil,
// gather): the readable reference the fused op is tested against, ~15 (B, H, Tq, Tk) tensors.
CopeTerm cope_logit_term_reference(const Tensor& q, const Tensor& gate_logits, const Tensor& e,
                                   int64_t q_offset = kCopeOffsetAlignEnd);
// The query offset both use: q_offset, or Tk - Tq for kCopeOffsetAlignEnd; throws unless
// gate_logits is (..., Tq, Tk) with 0 <= offset and offset + Tq <= Tk.
int64_t cope_check_offset(const Tensor& q, const Tensor& gate_logits, int64_t q_offset);

struct CopeAttention {
  Tensor out;        // (..., T, Dh)
  Tensor attention;  // (..., T, T) softmax probabilities
  Tensor positions;  // (..., T, T)
  Tensor gates;      // (..., T, T)
};

// One causal CoPE attention from q, k, v (..., T, Dh) and e (npos, Dh): the function the
// golden test checks by hand. It runs the same code as CausalSelfAttention with CoPE
// (the composed reference instead of the fused op when `reference`).
CopeAttention cope_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& e, CopeScale scale,
                             bool reference = false);

class CoPE : public PositionEncoding {
 public:
  explicit CoPE(const PEConfig& cfg);
  std::string name() const override { return "cope"; }
  // Queries at ctx.q_offset.. over all ctx.k keys. With cope_sep_key the gate keys of
  // earlier calls are kept in ctx.cache (under "cope.gate_k", (B, H, Tk, Dh)); without a
  // cache ctx.x must cover all keys (Tq == Tk).
  void add_logit_terms(const AttentionContext& ctx, LogitTerms& out) override;
  // The whole attention as causal_cope_attention (tensor/ops.h), whose kernel computes the
  // gates, positions and term inside each block of logits; undefined with cope_sep_key (the
  // gates come from other keys) or for half-precision q. Records no gates or terms.
  Tensor fused_attention(const AttentionContext& ctx, const Tensor& v, double scale, double dropout_p) override;
  // Of the last forward, without grad, (B, H, Tq, Tk): with a cache, the new queries over
  // all keys. last_term() is z_i[p_ij] as added to the logits: after the 1/sqrt(Dh) scale
  // with "appendix", before it with "official"; causal_softmax(last_term()) is the
  // "position-only" attention map (which keys CoPE alone would pick).
  Tensor last_gates() const override { return last_gates_; }
  Tensor last_term() const override { return last_term_; }
  Tensor last_positions() const { return last_positions_; }

  int64_t npos() const { return pos_emb.size(0); }
  CopeScale scale() const { return scale_; }

  Tensor pos_emb;                     // (npos, Dh), zeros at init
  std::shared_ptr<Linear> gate_key;   // D -> D, only with cope_sep_key

 private:
  CopeScale scale_;
  int64_t n_heads_;
  Tensor last_gates_, last_positions_, last_term_;  // (B, H, Tq, Tk) of the last forward, no grad
};

// Layer scope, on layers 0, k, 2k, ... for cope_every = k.
std::shared_ptr<PositionEncoding> make_cope_pe(const PEConfig& cfg);

}  // namespace copper::nn
