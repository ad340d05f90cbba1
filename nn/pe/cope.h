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
// (B, H, T, T): nothing of size T × T × npos is ever made. Gates, positions and the
// interpolation run in f32 (f64 when q is f64) whatever the compute dtype.
#pragma once
#include <memory>

#include "nn/linear.h"
#include "nn/pe/position_encoding.h"

namespace copper::nn {

enum class CopeScale { appendix, official };
CopeScale cope_scale_from_name(const std::string& name);  // throws listing the valid names

struct CopeTerm {
  Tensor term;       // (..., T, T) z_i[p_ij] in q's dtype; z_i[0] where j > i (attention masks those)
  Tensor gates;      // (..., T, T) g_ij, position dtype
  Tensor positions;  // (..., T, T) p_ij after the clamp, position dtype
};

// Steps 1-3, causal: q (..., T, Dh); gate_logits (..., T, T), already divided by sqrt(Dh);
// e (npos, Dh). Future keys (j > i) get gate 0, position 0 and term z_i[0] (attention masks
// them out). This is the fused op of cope_fused.cpp: one pass per query row each way.
CopeTerm cope_logit_term(const Tensor& q, const Tensor& gate_logits, const Tensor& e);
// The same, composed from tensor ops (sigmoid, masked_fill, cumsum, clamp, floor, ceil,
// gather): the readable reference the fused op is tested against, ~15 (B, H, T, T) tensors.
CopeTerm cope_logit_term_reference(const Tensor& q, const Tensor& gate_logits, const Tensor& e);

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
  void add_logit_terms(const AttentionContext& ctx, LogitTerms& out) override;
  Tensor last_gates() const override { return last_gates_; }
  Tensor last_positions() const { return last_positions_; }

  int64_t npos() const { return pos_emb.size(0); }
  CopeScale scale() const { return scale_; }

  Tensor pos_emb;                     // (npos, Dh), zeros at init
  std::shared_ptr<Linear> gate_key;   // D -> D, only with cope_sep_key

 private:
  CopeScale scale_;
  int64_t n_heads_;
  Tensor last_gates_, last_positions_;  // (B, H, T, T) of the last forward, no grad
};

// Layer scope, on layers 0, k, 2k, ... for cope_every = k.
std::shared_ptr<PositionEncoding> make_cope_pe(const PEConfig& cfg);

}  // namespace copper::nn
