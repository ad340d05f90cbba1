// alibi.h — ALiBi (Press et al.): no parameters, each head h penalises a key by its
// distance, logit(i, j) -= m_h · (i - j), after the 1/sqrt(Dh) scale. The slopes m_h form a
// geometric sequence 2^(-8/H), 2^(-16/H), ... (for H not a power of two, the paper's rule).
#pragma once
#include <vector>

#include "nn/pe/position_encoding.h"

namespace copper::nn {

std::vector<double> alibi_slopes(int64_t n_heads);

class ALiBi : public PositionEncoding {
 public:
  explicit ALiBi(const PEConfig& cfg) : slopes_(alibi_slopes(cfg.n_heads)) {}
  std::string name() const override { return "alibi"; }
  void add_logit_terms(const AttentionContext& ctx, LogitTerms& out) override;

 private:
  std::vector<double> slopes_;
  Tensor bias_;  // (H, T, T), remade when T or the dtype changes
};

std::shared_ptr<PositionEncoding> make_alibi_pe(const PEConfig& cfg);  // Layer scope only

}  // namespace copper::nn
