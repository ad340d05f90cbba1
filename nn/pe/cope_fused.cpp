// cope_fused.cpp — CoPE's gates → positions → interpolated logits as one fused op with a
// hand-written backward (see cope.h). It computes exactly what the composed reference
// (cope_logit_term_reference: sigmoid, masked_fill, cumsum, clamp, floor/ceil, gather) does,
// but in one pass per query row instead of about fifteen (B, H, T, T) tensors each way,
// which makes CoPE's training step cost about what attention itself costs.
//
// Rows are the queries of all leading dims, Tq per sequence; row r has absolute position
// i = t0 + r % Tq and a row of Tk keys (Tk >= t0 + Tq). Per row i of query q_i (g, p, z as
// in cope.h; C = npos - 1):
//   forward   g_j = sigmoid(l_ij) (j <= i, else 0);  p_j = sum_{t=j..i} g_t;  c_j = min(p_j, C)
//             term_j = z[lo] + w (z[hi] - z[lo]),  lo = floor c_j, hi = ceil c_j, w = c_j - lo
//   backward  dz[lo] += (1 - w) dterm_j;  dz[hi] += w dterm_j
//             dp_j = dterm_j (z[hi] - z[lo]) if p_j <= C else 0          (clamp, then w = c - floor c)
//             dg_t = sum_{j <= t} dp_j                                   (the adjoint of a suffix sum)
//             dl_t = dg_t g_t (1 - g_t) for t <= i, else 0               (sigmoid, masked_fill)
// Saved for the backward: z, the gates and the clamped positions c.
#include <cmath>

#include "autograd/node.h"
#include "nn/pe/cope.h"
#include "tensor/ops.h"
#include "tensor/profile.h"

namespace copper::nn {

namespace {

// The interpolation's two table indices for a clamped position c >= 0: lo = floor c (a cast,
// since c >= 0) and hi = ceil c = lo + (c > lo), with the weight w = c - lo.
template <class F>
struct Interp {
  int64_t lo, hi;
  F w;
  explicit Interp(F c) : lo(int64_t(c)), hi(lo + (c > F(lo))), w(c - F(lo)) {}
};

// Only keys j <= i do work; future keys get gate 0, position 0 and term z[0], exactly what
// the composed reference gives them. The suffix sum is a serial chain per row; the
// interpolation rides along in the same loop so that its loads overlap the chain's additions.
// The gates keep libm's exp, one call per element: exp_fast (tensor/cpu/fast_math.h) made
// this op 10 % faster (2–5 % of a training step), but one of five Flip-Flop runs trained with
// it was far worse on the dense split (docs/PERF.md, "CoPE's fused rows"), so the
// better-tested libm path stays until more seeds say the rounding is harmless.
template <class F>
void forward_rows(const F* lg, const F* z, F* term, F* gates, F* pos, int64_t rows, int64_t Tq, int64_t Tk, int64_t t0,
                  int64_t npos) {
  const F cap = F(npos - 1);
#pragma omp parallel for schedule(static) if (rows * Tk >= 16384)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = t0 + r % Tq;  // the query's absolute position: it sees keys 0..i
    const F* l = lg + r * Tk;
    const F* zr = z + r * npos;
    F* tr = term + r * Tk;
    F* gr = gates + r * Tk;
    F* pr = pos + r * Tk;
#pragma omp simd
    for (int64_t j = 0; j <= i; ++j) gr[j] = F(1) / (F(1) + std::exp(-l[j]));
    F acc = 0;
    for (int64_t j = i; j >= 0; --j) {
      acc += gr[j];
      const F c = std::min(acc, cap);  // clamped (see backward_rows for why that is enough)
      pr[j] = c;
      const Interp<F> ip(c);
      tr[j] = zr[ip.lo] + ip.w * (zr[ip.hi] - zr[ip.lo]);
    }
    for (int64_t j = i + 1; j < Tk; ++j) {
      gr[j] = 0;
      pr[j] = 0;
      tr[j] = zr[0];
    }
  }
}

template <class F>
void backward_rows(const F* dterm, const F* z, const F* gates, const F* pos, F* dlg, F* dz, int64_t rows, int64_t Tq,
                   int64_t Tk, int64_t t0, int64_t npos) {
  const F cap = F(npos - 1);
#pragma omp parallel for schedule(static) if (rows * Tk >= 16384)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = t0 + r % Tq;
    const F* dt = dterm + r * Tk;
    const F* zr = z + r * npos;
    const F* gr = gates + r * Tk;
    const F* pr = pos + r * Tk;
    F* dl = dlg + r * Tk;
    F* dzr = dz + r * npos;
    for (int64_t p = 0; p < npos; ++p) dzr[p] = 0;
    F prefix = 0;  // sum_{j <= t} dp_j as t runs forward
    for (int64_t t = 0; t <= i; ++t) {
      const F c = pr[t];
      const Interp<F> ip(c);
      dzr[ip.lo] += (F(1) - ip.w) * dt[t];
      dzr[ip.hi] += ip.w * dt[t];
      // The clamp passes the gradient for p <= cap and stops it above. Only the clamped
      // value is stored: c < cap means p < cap; c == cap is an integer, where ceil = floor
      // and dp is 0 whichever side p was on — so the test c < cap loses nothing.
      const F dp = c < cap ? dt[t] * (zr[ip.hi] - zr[ip.lo]) : F(0);
      prefix += dp;
      dl[t] = prefix * gr[t] * (F(1) - gr[t]);
    }
    for (int64_t t = i + 1; t < Tk; ++t) {  // future keys read z[0] with weight 1 and have no gate
      dzr[0] += dt[t];
      dl[t] = 0;
    }
  }
}

}  // namespace

CopeTerm cope_logit_term(const Tensor& q, const Tensor& gate_logits, const Tensor& e, int64_t q_offset) {
  const int64_t Tq = q.size(-2), Dh = q.size(-1), npos = e.size(0), Tk = gate_logits.size(-1);
  COPPER_CHECK(e.dim() == 2 && e.size(1) == Dh, "cope", "position table {} must be (npos, {}) for q {}",
               e.repr_shape(), Dh, q.repr_shape());
  const int64_t t0 = cope_check_offset(q, gate_logits, q_offset);
  Shape lead(q.shape().begin(), q.shape().end() - 2);
  Shape want = lead;
  want.push_back(Tq);
  want.push_back(Tk);
  COPPER_CHECK(gate_logits.shape() == want, "cope", "gate logits {} must be {} for q {}", gate_logits.repr_shape(),
               shape_str(want), q.repr_shape());
  // f32 positions whatever the compute dtype (f64 for f64 inputs): see cope_logit_term_reference.
  const DType pd = q.dtype() == DType::f64 ? DType::f64 : DType::f32;
  auto in_pd = [&](const Tensor& t) { return t.dtype() == pd ? t : t.to(pd); };
  Tensor z = matmul(in_pd(q), in_pd(e).t());                     // z: (..., Tq, npos), z[r][p] = q_r·e[p]
  Tensor lg = in_pd(gate_logits).contiguous();                    // lg: (..., Tq, Tk)
  Tensor zc = z.contiguous();
  const int64_t rows = shape_numel(lead) * Tq;
  Tensor term = Tensor::empty(want, pd), gates = Tensor::empty(want, pd), pos = Tensor::empty(want, pd);
  // The profiler's row for these loops (they bypass the Backend): the logits read, the
  // term, gates and positions written, about 10 flops per visible (query, key) pair.
  profile::Scope prof("cope", 10.0 * double(rows) * double(Tk) / 2,
                      double(rows) * double(Tk) * double(dtype_size(pd)) * 4);
  if (pd == DType::f64)
    forward_rows(lg.data<double>(), zc.data<double>(), term.data<double>(), gates.data<double>(), pos.data<double>(),
                 rows, Tq, Tk, t0, npos);
  else
    forward_rows(lg.data<float>(), zc.data<float>(), term.data<float>(), gates.data<float>(), pos.data<float>(), rows,
                 Tq, Tk, t0, npos);
  record_op("cope", term, {lg, zc},
            [zs = zc.detach(), gates, pos, want, zshape = zc.shape(), rows, Tq, Tk, t0, npos, pd](const Tensor& g) {
              Tensor dt = g.to(pd).contiguous();
              Tensor dl = Tensor::empty(want, pd), dz = Tensor::empty(zshape, pd);
              if (pd == DType::f64)
                backward_rows(dt.data<double>(), zs.data<double>(), gates.data<double>(), pos.data<double>(),
                              dl.data<double>(), dz.data<double>(), rows, Tq, Tk, t0, npos);
              else
                backward_rows(dt.data<float>(), zs.data<float>(), gates.data<float>(), pos.data<float>(),
                              dl.data<float>(), dz.data<float>(), rows, Tq, Tk, t0, npos);
              return std::vector<Tensor>{dl, dz};
            });
  CopeTerm r;
  r.term = term.dtype() == q.dtype() ? term : term.to(q.dtype());
  r.gates = gates;
  r.positions = pos;  // already clamped
  return r;
}

}  // namespace copper::nn
