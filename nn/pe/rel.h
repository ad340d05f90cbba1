// rel.h — learned relative positions: logit(i, j) gains q_i · e[i - j], one table e per
// layer shared by the heads, added before the 1/sqrt(Dh) scale (as Shaw et al.).
//
// Distances run over 0..context-1. A longer sequence meets distances it never trained;
// with reuse_last they take the last embedding e[context-1], otherwise they add nothing.
#pragma once
#include "nn/pe/position_encoding.h"

namespace copper::nn {

class RelativePE : public PositionEncoding {
 public:
  explicit RelativePE(const PEConfig& cfg);
  std::string name() const override { return "rel"; }
  // term[b, h, r, j] = q[b, h, r]·e[min(i - j, R - 1)], i = ctx.q_offset + r (0 distance
  // for future keys j > i: attention masks them), before the scale.
  void add_logit_terms(const AttentionContext& ctx, LogitTerms& out) override;

  Tensor weight;  // (R, Dh) with R = context, e[r] for distance r; ~ N(0, 0.02²)

 private:
  bool reuse_last_;
  // Buffers "index" (N, N) i64, index[i][j] = min(max(i - j, 0), R - 1), and "valid" (N, N)
  // f32, 1 where i - j < R: square tables over positions 0..N-1, grown (doubling) when a
  // later position is asked; a (Tq, Tk) rectangle is the block of rows q_offset.., keys 0...
  Tensor index_full_;        // the rectangle of index expanded to (B, H, Tq, Tk) (gather wants it), per shape and offset
  int64_t index_full_offset_ = -1;
};

std::shared_ptr<PositionEncoding> make_rel_pe(const PEConfig& cfg);  // Layer scope only

}  // namespace copper::nn
