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
  void add_logit_terms(const AttentionContext& ctx, LogitTerms& out) override;

  Tensor weight;  // (R, Dh) with R = context, e[r] for distance r; ~ N(0, 0.02²)

 private:
  bool reuse_last_;
  Tensor index_, valid_;  // (T, T) distance index and (T, T) 1/0 in-range, per T
  Tensor index_full_;     // index_ expanded to (B, H, T, T), per (B, T)
};

std::shared_ptr<PositionEncoding> make_rel_pe(const PEConfig& cfg);  // Layer scope only

}  // namespace copper::nn
