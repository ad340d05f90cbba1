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
  explicit ALiBi(const PEConfig& cfg);
  std::string name() const override { return "alibi"; }
  // after_scale += -m_h · (i - j) for query row r at i = ctx.q_offset + r and key j <= i
  // (0 for future keys): a (H, Tq, Tk) block that broadcasts over the batch.
  void add_logit_terms(const AttentionContext& ctx, LogitTerms& out) override;

 private:
  std::vector<double> slopes_;
  // Buffer "bias" (H, N, N) over positions 0..N-1 in the last dtype used; grown (doubling)
  // when a later position is asked, rebuilt for another dtype.
};

std::shared_ptr<PositionEncoding> make_alibi_pe(const PEConfig& cfg);  // Layer scope only

}  // namespace copper::nn
