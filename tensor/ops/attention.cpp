// attention.cpp — causal_attention, the fused product-softmax-product of attention without
// position terms in the logits (absolute, RoPE, sinusoidal, no encoding):
//
//   out = dropout(causal_softmax(q kᵀ · scale)) v
//
// On a backend with a fused kernel (Backend::attention; the CPU's is tensor/cpu/attention.cpp)
// no (Tq, Tk) tensor is kept for the backward: only the rows' log-sum-exp, from which the
// backward recomputes the probabilities. causal_attention_reference composes matmul,
// causal_softmax and dropout instead: it is what a backend without the kernel runs, and what
// the tests compare the kernel with. Both draw one number from the generator for dropout and
// mask the same elements (dropout's Philox stream over the (..., Tq, Tk) probabilities).
#include "tensor/ops/common.h"
#include "tensor/random.h"

namespace copper {

using namespace detail;

namespace {

// Leading dims of q and k, v equal; Tq <= Tk; Dh equal. Returns (bh, Tq, Tk, Dh).
std::array<int64_t, 4> check_attention(const Tensor& q, const Tensor& k, const Tensor& v, double p) {
  const char* op = "causal_attention";
  check_float(op, q);
  check_same(op, q, k);
  check_same(op, q, v);
  COPPER_CHECK(p >= 0 && p < 1, op, "dropout probability must be in [0, 1), got {}", p);
  COPPER_CHECK(q.dim() >= 2 && k.dim() == q.dim() && v.dim() == q.dim(), op,
               "q {}, k {}, v {} must be (..., T, Dh) with the same number of dims", q.repr_shape(), k.repr_shape(),
               v.repr_shape());
  const Shape lead(q.shape().begin(), q.shape().end() - 2);
  const int64_t Tq = q.size(-2), Tk = k.size(-2), Dh = q.size(-1);
  COPPER_CHECK(Shape(k.shape().begin(), k.shape().end() - 2) == lead && k.shape() == v.shape() && k.size(-1) == Dh,
               op, "k {} and v {} must have one shape, with q {}'s leading dims and head size {}", k.repr_shape(),
               v.repr_shape(), q.repr_shape(), Dh);
  COPPER_CHECK(Tq <= Tk, op, "{} queries over {} keys: the queries are the last Tq positions, so Tq <= Tk. HINT: "
               "with a KV cache, pass the cached keys too", Tq, Tk);
  return {shape_numel(lead), Tq, Tk, Dh};
}

}  // namespace

Tensor causal_attention_reference(const Tensor& q, const Tensor& k, const Tensor& v, double scale, double dropout_p,
                                  Generator* gen) {
  check_attention(q, k, v, dropout_p);
  Tensor att = causal_softmax(mul(matmul(q, k.transpose(-2, -1)), scale));  // att: (..., Tq, Tk)
  if (dropout_p > 0) att = dropout(att, dropout_p, true, gen);
  return matmul(att, v);                                                      // (..., Tq, Dh)
}

Tensor causal_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale, double dropout_p,
                        Generator* gen) {
  const auto [bh, Tq, Tk, Dh] = check_attention(q, k, v, dropout_p);
  Backend& be = backend_of(q);
  if (!be.has_fused_attention() || Tq == 0 || Dh == 0)
    return causal_attention_reference(q, k, v, scale, dropout_p, gen);
  const uint64_t key = dropout_p > 0 ? (gen ? *gen : default_generator()).next_u64() : 0;
  const Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
  Shape lse_shape(q.shape().begin(), q.shape().end() - 1);  // (..., Tq)
  Tensor out = Tensor::empty(q.shape(), q.dtype(), q.device());
  Tensor lse = Tensor::empty(lse_shape, q.dtype(), q.device());
  be.attention(qc, kc, vc, out, lse, bh, Tq, Tk, Dh, scale, dropout_p, key);
  record_op("causal_attention", out, {q, k, v},
            [qc = qc.detach(), kc = kc.detach(), vc = vc.detach(), o = out.detach(), lse, bh, Tq, Tk, Dh, scale,
             dropout_p, key](const Tensor& g) {
              Tensor dq = Tensor::empty(qc.shape(), qc.dtype(), qc.device());
              Tensor dk = Tensor::empty(kc.shape(), kc.dtype(), kc.device());
              Tensor dv = Tensor::empty(vc.shape(), vc.dtype(), vc.device());
              backend_of(qc).attention_backward(qc, kc, vc, o, lse, g.contiguous(), dq, dk, dv, bh, Tq, Tk, Dh, scale,
                                                dropout_p, key);
              return std::vector<Tensor>{dq, dk, dv};
            });
  return out;
}

}  // namespace copper
