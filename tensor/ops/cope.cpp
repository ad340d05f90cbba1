// cope.cpp — cope_positions, the core of Contextual Position Encoding (nn/pe/cope.h) as one op:
// gates -> counted positions -> the position logits interpolated at them, in one pass per query
// row each way (Backend::cope_positions). The same computation composed of about fifteen
// (..., Tq, Tk) tensors (sigmoid, masked_fill, cumsum, clamp, floor, ceil, gather) is
// nn::cope_logit_term_reference, which the tests compare this op with.
//
// Per row (query i = t0 + r % Tq, C = npos - 1), with l the gate logits and z the row's table:
//   forward   g_j = sigmoid(l_j) (j <= i, else 0);  p_j = sum_{t=j..i} g_t;  c_j = min(p_j, C)
//             term_j = z[lo] + w (z[hi] - z[lo]),  lo = floor c_j, hi = ceil c_j, w = c_j - lo
//   backward  dz[lo] += (1 - w) dterm_j;  dz[hi] += w dterm_j
//             dp_j = dterm_j (z[hi] - z[lo]) if p_j < C else 0             (the clamp)
//             dg_t = sum_{j <= t} dp_j                                     (adjoint of a suffix sum)
//             dl_t = dg_t g_t (1 - g_t) for t <= i, else 0                 (sigmoid, the mask)
// Only the clamped c is kept for the backward. c < C means p < C; c == C is an integer, where
// ceil = floor and dp is 0 on either side of the clamp, so testing c < C loses nothing.
#include "tensor/ops/common.h"

namespace copper {

using namespace detail;

CopePositions cope_positions(const Tensor& gate_logits, const Tensor& z, int64_t t0) {
  const char* op = "cope_positions";
  check_float(op, gate_logits);
  check_same(op, gate_logits, z);
  COPPER_CHECK(gate_logits.dim() >= 2 && z.dim() == gate_logits.dim(), op,
               "gate logits {} must be [..., Tq, Tk] and z {} [..., Tq, npos] with the same leading dims",
               gate_logits.repr_shape(), z.repr_shape());
  const int64_t Tq = gate_logits.size(-2), Tk = gate_logits.size(-1), npos = z.size(-1);
  Shape zshape = gate_logits.shape();
  zshape.back() = npos;
  COPPER_CHECK(z.shape() == zshape && npos >= 1, op, "z {} must be {} (npos >= 1) for gate logits {}",
               z.repr_shape(), shape_str(zshape), gate_logits.repr_shape());
  COPPER_CHECK(t0 >= 0 && t0 + Tq <= Tk, op,
               "queries at [{}, {}) over {} keys: need 0 <= t0 and t0 + Tq <= Tk. HINT: with a KV cache, Tk is the "
               "cache length + Tq and t0 the cache length", t0, t0 + Tq, Tk);
  const Tensor lg = gate_logits.contiguous(), zc = z.contiguous();
  const int64_t rows = Tk == 0 ? 0 : lg.numel() / Tk;  // Tk == 0 forces Tq == 0
  CopePositions r;
  r.term = Tensor::empty(lg.shape(), lg.dtype(), lg.device());
  r.gates = Tensor::empty(lg.shape(), lg.dtype(), lg.device());
  r.positions = Tensor::empty(lg.shape(), lg.dtype(), lg.device());
  if (rows > 0) backend_of(lg).cope_positions(lg, zc, r.term, r.gates, r.positions, rows, Tq, Tk, t0, npos);
  record_op(op, r.term, {gate_logits, z},
            [zs = zc.detach(), gates = r.gates, pos = r.positions, rows, Tq, Tk, t0, npos](const Tensor& g) {
              Tensor dl = Tensor::empty(gates.shape(), gates.dtype(), gates.device());
              Tensor dz = Tensor::empty(zs.shape(), zs.dtype(), zs.device());
              if (rows > 0)
                backend_of(dl).cope_positions_backward(g.contiguous(), zs, gates, pos, dl, dz, rows, Tq, Tk, t0, npos);
              return std::vector<Tensor>{dl, dz};
            });
  return r;
}

}  // namespace copper
