// attention.cpp — causal_attention, the fused product-softmax-product of attention without
// position terms in the logits (absolute, RoPE, sinusoidal, no encoding):
//
//   out = dropout(causal_softmax(q kᵀ · scale)) v
//
// causal_rotary_attention, the same over q and k turned by RoPE's tables (nn/pe/rope.h), which
// a backend that rotates (the CPU) turns inside the kernel, and causal_cope_attention, the
// same with CoPE's position term (nn/pe/cope.h) in the logits:
//
//   s = q kᵀ · scale,  term = cope_positions(s, z).term,  z = q·eᵀ (..., Tq, npos)
//   out = dropout(causal_softmax(s + term)) v      ("appendix";  s + term · scale "official")
//
// On a backend with a fused kernel (Backend::attention; the CPU's is tensor/cpu/attention.cpp)
// no (Tq, Tk) tensor is kept for the backward: only the rows' log-sum-exp, from which the
// backward recomputes the probabilities. A backend that reads CoPE's table (the CPU)
// computes z = q·eᵀ block by block inside the kernel, into a (..., Tq, npos) buffer that the
// backward reads back: no matmul, copy of q or dz tensor around it. For one that does not,
// the op computes z with matmul and passes it. causal_attention_reference composes matmul,
// causal_softmax and dropout instead (causal_cope_attention_reference adds cope_positions): it
// is what a backend without the kernel runs, and what the tests compare the kernel with. Both
// draw one number from the generator for dropout and mask the same elements (dropout's Philox
// stream over the (..., Tq, Tk) probabilities). Under an AutocastGuard(bf16) the kernel rounds
// its products' operands where the composition's matmuls would (Backend::attention's
// `products`).
#include <algorithm>
#include <array>

#include "tensor/autocast.h"
#include "tensor/ops/common.h"
#include "tensor/random.h"

namespace copper {

using namespace detail;

namespace {

// Leading dims of q and k, v equal; Tq <= Tk; Dh equal. Returns (bh, Tq, Tk, Dh). op names the
// caller in the errors.
std::array<int64_t, 4> check_attention(const char* op, const Tensor& q, const Tensor& k, const Tensor& v, double p) {
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

// e (npos, Dh), npos >= 1: CoPE's position table, in q's dtype and device.
void check_cope_table(const Tensor& q, const Tensor& e) {
  const char* op = "causal_cope_attention";
  check_same(op, q, e);
  COPPER_CHECK(e.dim() == 2 && e.size(0) >= 1 && e.size(1) == q.size(-1), op,
               "position table e {} must be (npos, {}) with npos >= 1 for q {}", e.repr_shape(), q.size(-1),
               q.repr_shape());
}

// cs, sn (Tk, Dh/2), without gradients: RoPE's tables for the keys' positions, in q's dtype
// and device. Returns the queries' rows of them (the last Tq). op names the caller in the errors.
std::pair<Tensor, Tensor> check_rotation_tables(const char* op, const Tensor& q, const Tensor& k, const Tensor& cs,
                                                const Tensor& sn) {
  check_same(op, q, cs);
  check_same(op, q, sn);
  const int64_t Tq = q.size(-2), Tk = k.size(-2), Dh = q.size(-1);
  COPPER_CHECK(Dh % 2 == 0, op, "head size {} is odd: the rotation turns pairs of features", Dh);
  COPPER_CHECK(cs.shape() == (Shape{Tk, Dh / 2}) && sn.shape() == cs.shape(), op,
               "tables {} and {} must be ({}, {}): a row per key position, a column per pair, for k {}",
               cs.repr_shape(), sn.repr_shape(), Tk, Dh / 2, k.repr_shape());
  COPPER_CHECK(!cs.requires_grad() && !sn.requires_grad(), op,
               "the cos/sin tables take no gradient here. HINT: pass them detached (.detach())");
  return {cs.narrow(0, Tk - Tq, Tq), sn.narrow(0, Tk - Tq, Tq)};
}

// A fresh tensor of t's shape whose memory runs in the order of t's strides (the dims by
// falling stride, the last one innermost): for heads viewed out of a (B, T, H·Dh) projection,
// (B, H, T, Dh) laid out as (B, T, H, Dh), so that the output and the gradients merge back
// into (B, T, H·Dh) as views. Contiguous when t has a broadcast (stride 0) or strided last dim.
Tensor empty_in_layout_of(const Tensor& t) {
  const int64_t n = t.dim();
  const Shape& st = t.strides();
  if (n == 0 || st.back() != 1 || std::find(st.begin(), st.end(), 0) != st.end())
    return Tensor::empty(t.shape(), t.dtype(), t.device());
  Shape order(static_cast<size_t>(n));
  for (int64_t d = 0; d < n; ++d) order[size_t(d)] = d;
  std::stable_sort(order.begin(), order.end() - 1, [&](int64_t a, int64_t b) { return st[size_t(a)] > st[size_t(b)]; });
  Shape dense_shape, back(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    dense_shape.push_back(t.size(order[size_t(i)]));
    back[size_t(order[size_t(i)])] = i;
  }
  return Tensor::empty(dense_shape, t.dtype(), t.device()).permute(back);
}

// What the fused kernel reads: t itself when the backend takes views and t's rows are ones
// BLAS can read in place (unit last stride, rows at least Dh apart), else a contiguous copy.
Tensor kernel_operand(const Backend& be, const Tensor& t) {
  const bool readable = t.stride(-1) == 1 && (t.size(-2) <= 1 || t.stride(-2) >= t.size(-1));
  return be.attention_takes_views() && readable ? t : t.contiguous();
}

// Where the kernel writes out (like q) and the gradients (like their inputs): in the operand's
// layout, or contiguous when the backend takes no views.
Tensor kernel_result_like(const Backend& be, const Tensor& t) {
  return be.attention_takes_views() ? empty_in_layout_of(t) : Tensor::empty(t.shape(), t.dtype(), t.device());
}

// Where the backward writes dq, dk and dv. When q, k and v are views side by side in one
// buffer (the heads of q, k and v split from one (B, T, 3·H·Dh) projection: equal strides,
// offsets a fixed step apart, densely filling their span), the gradients get the same
// arrangement in one new buffer, so that split's backward takes that buffer as the
// projection's gradient without copying (tensor/ops/join.cpp). Otherwise each is like its
// operand (kernel_result_like).
std::array<Tensor, 3> attention_gradients(const Backend& be, const Tensor& q, const Tensor& k, const Tensor& v) {
  const int64_t step = k.offset() - q.offset();
  const bool side_by_side = be.attention_takes_views() && step > 0 && k.impl()->storage == q.impl()->storage &&
                            v.impl()->storage == q.impl()->storage && v.offset() - k.offset() == step &&
                            k.shape() == q.shape() && v.shape() == q.shape() && k.strides() == q.strides() &&
                            v.strides() == q.strides();
  if (side_by_side) {
    Shape shape = q.shape(), strides = q.strides();  // q, k and v as one view with a last dim of 3
    shape.push_back(3);
    strides.push_back(step);
    if (as_strided(q, shape, strides, q.offset()).is_dense()) {
      const Tensor buffer = Tensor::empty({3 * q.numel()}, q.dtype(), q.device());
      return {as_strided(buffer, q.shape(), q.strides(), 0), as_strided(buffer, q.shape(), q.strides(), step),
              as_strided(buffer, q.shape(), q.strides(), 2 * step)};
    }
  }
  return {kernel_result_like(be, q), kernel_result_like(be, k), kernel_result_like(be, v)};
}

}  // namespace

Tensor causal_attention_reference(const Tensor& q, const Tensor& k, const Tensor& v, double scale, double dropout_p,
                                  Generator* gen) {
  check_attention("causal_attention_reference", q, k, v, dropout_p);
  Tensor att = causal_softmax(mul(matmul(q, k.transpose(-2, -1)), scale));  // att: (..., Tq, Tk)
  if (dropout_p > 0) att = dropout(att, dropout_p, true, gen);
  return matmul(att, v);                                                      // (..., Tq, Dh)
}

Tensor causal_cope_attention_reference(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& e,
                                       double scale, bool official, double dropout_p, Generator* gen) {
  const auto [bh, Tq, Tk, Dh] = check_attention("causal_cope_attention_reference", q, k, v, dropout_p);
  check_cope_table(q, e);
  Tensor z = matmul(q, e.t());                                     // z: (..., Tq, npos), z[r][p] = q_r·e[p]
  Tensor s = mul(matmul(q, k.transpose(-2, -1)), scale);         // s: (..., Tq, Tk), also the gates' logits
  Tensor term = cope_positions(s, z, Tk - Tq).term;                // term: (..., Tq, Tk)
  Tensor att = causal_softmax(official ? add(s, mul(term, scale)) : add(s, term));
  if (dropout_p > 0) att = dropout(att, dropout_p, true, gen);
  return matmul(att, v);                                           // (..., Tq, Dh)
}

Tensor causal_rotary_attention_reference(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cs,
                                         const Tensor& sn, double scale, double dropout_p, Generator* gen) {
  const char* op = "causal_rotary_attention_reference";
  check_attention(op, q, k, v, dropout_p);
  const auto [cq, sq] = check_rotation_tables(op, q, k, cs, sn);
  return causal_attention_reference(rotate_pairs(q, cq, sq), rotate_pairs(k, cs, sn), v, scale, dropout_p, gen);
}

namespace {

// The narrowest head for which the fused CoPE attention keeps z = q·eᵀ from the forward for the
// backward (fused_attention). Keeping z costs 8 bytes of memory traffic per entry (written, then
// read back), computing it again in the backward 2·Dh flops: narrow heads with long tables
// (the paper's tasks: heads of 16, a table as long as the context) compute it again, the LM
// models' heads of 64 keep it. The measurements are in docs/PERF.md ("On an AMD EPYC with
// AVX-512 (Zen 4) ...").
constexpr int64_t kKeepCopeZFromHeadWidth = 32;

// The fused kernel for the three ops: plain attention (neither z nor e), CoPE given z or, on
// a backend that reads it, the table e, or plain attention over q and k turned by RoPE's
// tables rot (on a backend that rotates).
Tensor fused_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& z, const Tensor& e,
                       double scale, bool official, double dropout_p, Generator* gen,
                       const std::array<int64_t, 4>& dims, const AttentionRotation& rot = {}) {
  const auto [bh, Tq, Tk, Dh] = dims;
  Backend& be = backend_of(q);
  const uint64_t key = dropout_p > 0 ? (gen ? *gen : default_generator()).next_u64() : 0;
  const Tensor qc = kernel_operand(be, q), kc = kernel_operand(be, k), vc = kernel_operand(be, v);
  const Tensor ec = e.defined() ? e.contiguous() : Tensor();
  Tensor zc = z.defined() ? z.contiguous() : Tensor();
  // With the table, z is either kept, a buffer the forward fills and the backward reads back,
  // or each block's z stays in the kernel's scratch and the backward computes it again. It is
  // kept for heads of kKeepCopeZFromHeadWidth and wider, and only where a backward follows (a
  // graph is recorded: not in evaluation).
  if (e.defined() && Dh >= kKeepCopeZFromHeadWidth && any_requires_grad({q, k, v, e})) {
    Shape z_shape(q.shape().begin(), q.shape().end() - 1);  // (..., Tq, npos)
    z_shape.push_back(e.size(0));
    zc = Tensor::empty(z_shape, q.dtype(), q.device());
  }
  Shape lse_shape(q.shape().begin(), q.shape().end() - 1);  // (..., Tq)
  Tensor out = kernel_result_like(be, qc);
  Tensor lse = Tensor::empty(lse_shape, q.dtype(), q.device());
  const AttentionRotation rc{rot.cs.defined() ? rot.cs.contiguous() : Tensor(),
                            rot.sn.defined() ? rot.sn.contiguous() : Tensor()};
  // Under an AutocastGuard(bf16) the kernel rounds its products' operands as matmul would.
  const DType products = q.dtype() == DType::f32 ? autocast_dtype() : q.dtype();
  be.attention(qc, kc, vc, out, lse, bh, Tq, Tk, Dh, scale, dropout_p, key,
               AttentionCope{zc, Tensor(), official, ec, Tensor()}, rc, products);
  std::vector<Tensor> inputs{q, k, v};
  if (z.defined()) inputs.push_back(z);
  if (e.defined()) inputs.push_back(e);
  const char* name = z.defined() || e.defined() ? "causal_cope_attention"
                     : rc.cs.defined()            ? "causal_rotary_attention"
                                                  : "causal_attention";
  record_op(name, out, inputs,
            [qc = qc.detach(), kc = kc.detach(), vc = vc.detach(), zc = zc.defined() ? zc.detach() : Tensor(),
             ec = ec.defined() ? ec.detach() : Tensor(), o = out.detach(), lse, bh, Tq, Tk, Dh, scale, official,
             dropout_p, key, rc, products](const Tensor& g) {
              Backend& be = backend_of(qc);
              auto [dq, dk, dv] = attention_gradients(be, qc, kc, vc);
              auto like = [](const Tensor& t) { return t.defined() ? Tensor::empty(t.shape(), t.dtype(), t.device()) : Tensor(); };
              Tensor dz = ec.defined() ? Tensor() : like(zc), de = like(ec);
              be.attention_backward(qc, kc, vc, o, lse, kernel_operand(be, g), dq, dk, dv, bh, Tq, Tk, Dh, scale,
                                    dropout_p, key, AttentionCope{zc, dz, official, ec, de}, rc, products);
              std::vector<Tensor> grads{dq, dk, dv};
              if (dz.defined()) grads.push_back(dz);
              if (de.defined()) grads.push_back(de);
              return grads;
            });
  return out;
}

}  // namespace

Tensor causal_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale, double dropout_p,
                        Generator* gen) {
  const auto dims = check_attention("causal_attention", q, k, v, dropout_p);
  if (!backend_of(q).has_fused_attention() || dims[1] == 0 || dims[3] == 0)
    return causal_attention_reference(q, k, v, scale, dropout_p, gen);
  return fused_attention(q, k, v, Tensor(), Tensor(), scale, false, dropout_p, gen, dims);
}

Tensor causal_cope_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& e, double scale,
                             bool official, double dropout_p, Generator* gen) {
  const auto dims = check_attention("causal_cope_attention", q, k, v, dropout_p);
  check_cope_table(q, e);
  const Backend& be = backend_of(q);
  if (!be.has_fused_attention() || dims[1] == 0 || dims[3] == 0)
    return causal_cope_attention_reference(q, k, v, e, scale, official, dropout_p, gen);
  if (be.attention_reads_cope_table()) return fused_attention(q, k, v, Tensor(), e, scale, official, dropout_p, gen, dims);
  return fused_attention(q, k, v, matmul(q, e.t()), Tensor(), scale, official, dropout_p, gen, dims);
}

Tensor causal_rotary_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cs, const Tensor& sn,
                               double scale, double dropout_p, Generator* gen) {
  const char* op = "causal_rotary_attention";
  const auto dims = check_attention(op, q, k, v, dropout_p);
  const auto [cq, sq] = check_rotation_tables(op, q, k, cs, sn);
  const Backend& be = backend_of(q);
  if (be.has_fused_attention() && be.attention_rotates() && dims[1] > 0 && dims[3] > 0)
    return fused_attention(q, k, v, Tensor(), Tensor(), scale, false, dropout_p, gen, dims,
                           AttentionRotation{cs.detach(), sn.detach()});
  return causal_attention(rotate_pairs(q, cq, sq), rotate_pairs(k, cs, sn), v, scale, dropout_p, gen);
}

}  // namespace copper
