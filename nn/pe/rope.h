// rope.h — rotary position embedding (Su et al.): q and k are rotated, pair by pair, by an
// angle proportional to their position, so q_i·k_j depends on i - j only through the angles.
// Pairs are interleaved: (x[2m], x[2m+1]) turns by pos · base^(-2m/Dh).
#pragma once
#include <utility>

#include "nn/pe/position_encoding.h"

namespace copper::nn {

// cos and sin of the angles for positions offset..offset+n-1: two (n, Dh/2) tables,
// angle(t, m) = t · base^(-2m/Dh), computed in f64 and cast to dtype.
std::pair<Tensor, Tensor> rope_tables(int64_t offset, int64_t n, int64_t Dh, double base, DType dtype);
// x (..., T, Dh) rotated by the tables cs, sn (T, Dh/2) (row t for x's row t): one pass of
// the rotate_pairs kernel (tensor/ops.h), forward and backward.
Tensor rope_apply(const Tensor& x, const Tensor& cs, const Tensor& sn);
// The same, composed of elementwise ops over the even and odd features (x0 cs - x1 sn,
// x0 sn + x1 cs, stacked back into pairs): the readable reference rope_apply is tested against.
Tensor rope_apply_reference(const Tensor& x, const Tensor& cs, const Tensor& sn);
// The readable reference: x (..., T, Dh) with Dh even, row t at position offset + t.
Tensor rope_rotate(const Tensor& x, double base = 10000, int64_t offset = 0);

class RoPE : public PositionEncoding {
 public:
  explicit RoPE(const PEConfig& cfg);
  std::string name() const override { return "rope"; }
  // q rotated from position q_offset, k from k_offset; the same values as rope_rotate.
  void transform_qk(Tensor& q, Tensor& k, int64_t q_offset, int64_t k_offset) override;
  // The cached tables' rows 0..n-1 (the same values as rope_tables(0, n, ...)).
  std::pair<Tensor, Tensor> qk_rotation_tables(int64_t n, const Tensor& like) override;
  bool adds_logit_terms() const override { return false; }

 private:
  // Rows offset..offset+n-1 of the cached tables for head size Dh, in like's dtype and device.
  std::pair<Tensor, Tensor> tables(int64_t offset, int64_t n, int64_t Dh, const Tensor& like);
  // x (..., T, Dh) at positions offset.., rotated with the cached tables.
  Tensor rotate(const Tensor& x, int64_t offset);

  double base_;
  int64_t context_;
  // Buffers "cos", "sin": (N, Dh/2) for positions 0..N-1 in the last dtype used, N at least
  // the context; grown (doubling) when a later position is asked, rebuilt for another dtype.
};

std::shared_ptr<PositionEncoding> make_rope_pe(const PEConfig& cfg);  // Layer scope only

}  // namespace copper::nn
