// rotate.cpp — rotate_pairs, the rotation behind rotary position embeddings (RoPE).
// A rotation's transpose is the rotation by minus the angle, so the gradient of
// out = R(angle) x is dx = R(-angle) g: the backward is the same kernel with `inverse`.
// The tables take no gradient (RoPE's are fixed buffers).
#include "tensor/ops/common.h"

namespace copper {

using namespace detail;

Tensor rotate_pairs(const Tensor& x, const Tensor& cs, const Tensor& sn, bool inverse) {
  const char* op = "rotate_pairs";
  check_float(op, x);
  check_same(op, x, cs);
  check_same(op, x, sn);
  COPPER_CHECK(x.dim() >= 2 && x.size(-1) % 2 == 0, op,
               "x must be [..., t, 2p] with an even last dim, got {}. HINT: the features are turned in pairs",
               x.repr_shape());
  const int64_t t = x.size(-2), p = x.size(-1) / 2;
  COPPER_CHECK(cs.shape() == (Shape{t, p}) && sn.shape() == (Shape{t, p}), op,
               "tables {} and {} must be [{}, {}] for x {}", cs.repr_shape(), sn.repr_shape(), t, p, x.repr_shape());
  COPPER_CHECK(!cs.requires_grad() && !sn.requires_grad(), op,
               "the cos/sin tables take no gradient here. HINT: pass them detached (.detach())");
  // Heads viewed out of a packed (..., t, H·2p) projection: x (..., H, t, 2p) whose memory runs
  // (..., t, H, 2p) with nothing between rows. The same rotation over that memory, rows of
  // H·2p with the tables repeated for each head, reads x in place, and its result (and, by
  // this same path, its gradient) keeps the layout, so that it joins back into (..., t, H·2p)
  // as a view. (Attention's q and k, split from a (..., t, 3·H·2p) product, have rows further
  // apart and take the copy below; in training on the CPU they do not come here at all: the
  // fused attention turns them as it reads them, causal_rotary_attention.)
  if (x.dim() >= 3 && x.size(-3) > 1 && x.transpose(-3, -2).is_contiguous()) {
    const int64_t H = x.size(-3);
    const Tensor rows = x.transpose(-3, -2);  // (..., t, H, 2p), contiguous
    Shape flat(rows.shape().begin(), rows.shape().end() - 2);
    flat.push_back(H * 2 * p);
    auto tiled = [&](const Tensor& table) { return table.detach().unsqueeze(1).expand({t, H, p}).reshape({t, H * p}); };
    return rotate_pairs(rows.view(flat), tiled(cs), tiled(sn), inverse).view(rows.shape()).transpose(-3, -2);
  }
  Tensor xc = x.contiguous();
  const Tensor c = cs.contiguous(), s = sn.contiguous();
  Tensor out = Tensor::empty(xc.shape(), xc.dtype(), xc.device());
  int64_t outer = 1;  // the dims before [t, 2p]
  for (int64_t d = 0; d + 2 < xc.dim(); ++d) outer *= xc.size(d);
  backend_of(xc).rotate_pairs(xc, c, s, out, outer, t, p, inverse);
  record_op("rotate_pairs", out, {x},
            [c, s, inverse](const Tensor& g) { return std::vector<Tensor>{rotate_pairs(g, c, s, !inverse)}; });
  return out;
}

}  // namespace copper
