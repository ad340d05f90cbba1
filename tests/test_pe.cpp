// test_pe.cpp — position encodings: the CoPE golden values, the sinusoidal table by hand,
// and for every encoding (and the combinations) a gradient check, a causality check and a
// check that the encoding is actually used — on a single attention layer and on the model.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/gradcheck.h"
#include "nn/attention.h"
#include "nn/pe/alibi.h"
#include "nn/pe/cope.h"
#include "nn/pe/position_encoding.h"
#include "nn/pe/rope.h"
#include "nn/pe/sinusoidal.h"
#include "nn/transformer.h"
#include "tensor/ops.h"
#include "tensor/random.h"

using namespace copper;
using namespace copper::nn;

namespace {

Tensor f64(const std::vector<double>& v, const Shape& s) { return from_vector(v, s); }

double max_abs_diff(const Tensor& a, const Tensor& b) {
  auto x = a.to(DType::f64).contiguous().to_vector<double>();
  auto y = b.to(DType::f64).contiguous().to_vector<double>();
  EXPECT_EQ(x.size(), y.size());
  double m = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

// Every encoding name the tests cover, combinations included.
const std::vector<std::string>& all_pes() {
  static const std::vector<std::string> names = {"none", "sinusoidal", "abs",      "rel",      "rope",
                                                 "alibi", "cope",      "cope+rel", "cope+rope"};
  return names;
}

// Encodings that act inside attention (a single attention layer can see them).
bool acts_in_layer(const std::string& pe) { return pe != "none" && pe != "sinusoidal" && pe != "abs"; }

// Give every parameter of m random values (CoPE's table starts at zero, which would hide it).
void randomize(Module& m, uint64_t seed, double scale = 0.5) {
  Generator g(seed);
  NoGradGuard ng;
  for (auto& [n, p] : m.named_parameters()) copy_(p, randn(p.shape(), p.dtype(), &g, 0.0, scale));
}

// ---------------------------------------------------------------- CoPE golden values

struct Golden {
  Tensor q, k, v, e;
};

Golden golden_inputs() {
  Golden g;
  g.q = f64({.5, -.2, .1, .3, -.4, .8, .7, .1}, {4, 2}).requires_grad_();
  g.k = f64({.2, .9, -.6, .4, .3, -.5, .8, .2}, {4, 2});
  g.v = f64({1, 0, 0, 1, 1, 1, -1, 2}, {4, 2});
  // E is given as d × npos (column p is e[p]); our table is npos × d.
  Tensor E = f64({.1, -.3, .5, .2, .4, -.1}, {2, 3});
  g.e = E.t().contiguous().requires_grad_();  // e: (3, 2)
  return g;
}

void expect_row(const Tensor& t, int64_t row, const std::vector<double>& want, double tol, const char* what) {
  for (size_t j = 0; j < want.size(); ++j)
    EXPECT_NEAR(t.at({row, int64_t(j)}), want[j], tol) << what << " row " << row << " col " << j;
}

void check_golden(CopeScale scale, const std::vector<double>& att3, const std::vector<double>& out3, double dE01,
                  double dQ30, bool reference) {
  SCOPED_TRACE(reference ? "composed reference" : "fused op");
  Golden g = golden_inputs();
  CopeAttention r = cope_attention(g.q, g.k, g.v, g.e, scale, reference);
  const std::vector<std::vector<double>> pos = {
      {.485862}, {1.061691, .510605}, {1.618064, 1.006819, .409098}, {2, 1.562597, 1.129371, .601117}};
  for (int64_t i = 0; i < 4; ++i) expect_row(r.positions, i, pos[size_t(i)], 1e-6, "positions");
  expect_row(r.attention, 3, att3, 1e-6, "attention");
  expect_row(r.out, 3, out3, 1e-6, "output");
  sum(r.out).backward();
  // dL/dE[0][1]: row 0, column 1 of the d × npos matrix = e[1][0] in our layout.
  EXPECT_NEAR(g.e.grad().at({1, 0}), dE01, 1e-6);
  EXPECT_NEAR(g.q.grad().at({3, 0}), dQ30, 1e-6);
}

TEST(CopeGolden, Appendix) {
  for (bool ref : {false, true})
    check_golden(CopeScale::appendix, {.335189, .174214, .204625, .285972}, {.253842, .950782}, .084133, -.040383, ref);
}

TEST(CopeGolden, Official) {
  for (bool ref : {false, true})
    check_golden(CopeScale::official, {.311422, .17279, .216519, .299269}, {.228672, .987848}, .059378, -.027268, ref);
}

// ---------------------------------------------------------------- CoPE pieces

// Random (B, H, T, Dh) inputs for the CoPE term, in dtype dt.
struct CopeInputs {
  Tensor q, gl, e;
};
CopeInputs cope_inputs(DType dt, int64_t T, int64_t npos, uint64_t seed) {
  Generator g(seed);
  CopeInputs c;
  c.q = randn({2, 3, T, 4}, DType::f64, &g).to(dt).requires_grad_();
  c.gl = randn({2, 3, T, T}, DType::f64, &g, 0.5, 2.0).to(dt).requires_grad_();
  c.e = randn({npos, 4}, DType::f64, &g).to(dt).requires_grad_();
  return c;
}

// The fused op against the composed reference on two identical copies of the inputs, queries
// at offset t0: term, gates and positions, then the gradients of a random projection.
void expect_fused_matches_reference(CopeInputs a, CopeInputs b, DType dt, int64_t t0) {
  CopeTerm fa = cope_logit_term(a.q, a.gl, a.e, t0), rb = cope_logit_term_reference(b.q, b.gl, b.e, t0);
  const double tol = dt == DType::f64 ? 1e-12 : 1e-4;
  EXPECT_LT(max_abs_diff(fa.term, rb.term), tol);
  EXPECT_LT(max_abs_diff(fa.gates, rb.gates), tol);
  EXPECT_LT(max_abs_diff(fa.positions, rb.positions), tol);
  Generator g(3);
  Tensor w = randn(fa.term.shape(), dt, &g);
  sum(fa.term * w).backward();
  sum(rb.term * w).backward();
  EXPECT_LT(max_abs_diff(a.q.grad(), b.q.grad()), tol * 10);
  EXPECT_LT(max_abs_diff(a.gl.grad(), b.gl.grad()), tol * 10);
  EXPECT_LT(max_abs_diff(a.e.grad(), b.e.grad()), tol * 10);
}

TEST(Cope, FusedMatchesComposedReference) {
  for (DType dt : {DType::f64, DType::f32})
    for (int64_t npos : {3, 12}) {  // 3: many positions clamped; 12: none (T = 9)
      SCOPED_TRACE(fmt::format("{} npos {}", dtype_name(dt), npos));
      expect_fused_matches_reference(cope_inputs(dt, 9, npos, 7), cope_inputs(dt, 9, npos, 7), dt, 0);
    }
}

TEST(Cope, FusedGradcheckWithClamp) {
  for (int64_t npos : {3, 9}) {
    CopeInputs c = cope_inputs(DType::f64, 6, npos, 11);
    auto r = gradcheck([](const std::vector<Tensor>& in) { return cope_logit_term(in[0], in[1], in[2]).term; },
                       {c.q, c.gl, c.e});
    EXPECT_TRUE(r.ok) << r.message;
  }
}

// Rectangles: Tq queries at absolute positions [t0, t0 + Tq) over Tk keys [0, Tk).
struct Rect {
  int64_t tq, tk, t0;
};
const std::vector<Rect>& cope_rects() {
  static const std::vector<Rect> r = {{3, 9, 6}, {4, 9, 2}, {1, 7, 6}, {1, 1, 0}, {5, 8, 0}};
  return r;
}
CopeInputs cope_rect_inputs(DType dt, const Rect& r, int64_t npos, uint64_t seed) {
  Generator g(seed);
  CopeInputs c;
  c.q = randn({2, 3, r.tq, 4}, DType::f64, &g).to(dt).requires_grad_();
  c.gl = randn({2, 3, r.tq, r.tk}, DType::f64, &g, 0.5, 2.0).to(dt).requires_grad_();
  c.e = randn({npos, 4}, DType::f64, &g).to(dt).requires_grad_();
  return c;
}

TEST(Cope, FusedMatchesComposedReferenceOnRectangles) {
  for (DType dt : {DType::f64, DType::f32})
    for (int64_t npos : {3, 12})
      for (const Rect& rc : cope_rects()) {
        SCOPED_TRACE(fmt::format("{} npos {} Tq {} Tk {} t0 {}", dtype_name(dt), npos, rc.tq, rc.tk, rc.t0));
        expect_fused_matches_reference(cope_rect_inputs(dt, rc, npos, 7), cope_rect_inputs(dt, rc, npos, 7), dt, rc.t0);
      }
}

TEST(Cope, FusedGradcheckOnRectangles) {
  for (int64_t npos : {3, 9})
    for (const Rect& rc : {Rect{3, 7, 4}, Rect{2, 6, 1}, Rect{1, 5, 4}}) {
      SCOPED_TRACE(fmt::format("npos {} Tq {} Tk {} t0 {}", npos, rc.tq, rc.tk, rc.t0));
      CopeInputs c = cope_rect_inputs(DType::f64, rc, npos, 11);
      const int64_t t0 = rc.t0;
      auto r = gradcheck(
          [t0](const std::vector<Tensor>& in) { return cope_logit_term(in[0], in[1], in[2], t0).term; },
          {c.q, c.gl, c.e});
      EXPECT_TRUE(r.ok) << r.message;
    }
}

// The rows t0.. of a square computation are the rectangle of those queries over the same
// keys: bit for bit, since each row is computed alone. The default offset is Tk - Tq.
TEST(Cope, RectangleIsTheSquaresRows) {
  const int64_t T = 9;
  CopeInputs c = cope_inputs(DType::f32, T, 5, 13);
  CopeTerm full = cope_logit_term(c.q, c.gl, c.e);
  EXPECT_EQ(max_abs_diff(full.term, cope_logit_term(c.q, c.gl, c.e, 0).term), 0.0);
  for (int64_t t0 : {0, 3, 8})
    for (int64_t tk : {t0 + 1, T}) {
      const int64_t tq = std::min<int64_t>(2, tk - t0);
      Tensor q = c.q.narrow(2, t0, tq), gl = c.gl.narrow(2, t0, tq).narrow(3, 0, tk);
      CopeTerm r = cope_logit_term(q, gl, c.e, t0);
      auto rows = [&](const Tensor& t) { return t.narrow(2, t0, tq).narrow(3, 0, tk); };
      EXPECT_EQ(max_abs_diff(r.term, rows(full.term)), 0.0) << "t0 " << t0 << " tk " << tk;
      EXPECT_EQ(max_abs_diff(r.gates, rows(full.gates)), 0.0);
      EXPECT_EQ(max_abs_diff(r.positions, rows(full.positions)), 0.0);
      if (tk == t0 + tq) {  // the default offset
        EXPECT_EQ(max_abs_diff(cope_logit_term(q, gl, c.e).term, r.term), 0.0);
      }
    }
  EXPECT_THROW(cope_logit_term(c.q.narrow(2, 0, 3), c.gl.narrow(2, 0, 3).narrow(3, 0, 4), c.e, 2), Error);
  EXPECT_THROW(cope_logit_term_reference(c.q, c.gl.narrow(3, 0, 8), c.e), Error);
}

TEST(Cope, GatesPositionsAndMask) {
  CopeInputs c = cope_inputs(DType::f32, 6, 4, 5);
  CopeTerm t = cope_logit_term(c.q, c.gl, c.e);
  EXPECT_EQ(t.gates.dtype(), DType::f32);
  for (int64_t i = 0; i < 6; ++i)
    for (int64_t j = 0; j < 6; ++j) {
      const double gate = t.gates.at({1, 2, i, j}), pos = t.positions.at({1, 2, i, j});
      if (j > i) {
        EXPECT_EQ(gate, 0.0);
        EXPECT_EQ(pos, 0.0);
      } else {
        EXPECT_GT(gate, 0.0);
        EXPECT_LT(gate, 1.0);
        EXPECT_LE(pos, 3.0);  // clamped at npos - 1
      }
    }
}

TEST(Cope, ScalingConventionsDiffer) {
  Golden g = golden_inputs();
  auto a = cope_attention(g.q, g.k, g.v, g.e, CopeScale::appendix);
  auto o = cope_attention(g.q, g.k, g.v, g.e, CopeScale::official);
  EXPECT_GT(max_abs_diff(a.out, o.out), 1e-3);
  EXPECT_LT(max_abs_diff(a.positions, o.positions), 1e-15);  // the gates use q·k/sqrt(d) in both
  EXPECT_THROW(cope_scale_from_name("paper"), Error);
}

// ---------------------------------------------------------------- single encodings

PEConfig layer_pe_config_for_rects() {
  PEConfig cfg;
  cfg.d_model = 8;
  cfg.n_heads = 2;
  cfg.context = 6;
  return cfg;
}

TEST(Sinusoidal, HandComputedTable) {
  // n = 10000, L = 6, d_model = 4: columns sin(p), cos(p), sin(p/100), cos(p/100).
  const std::vector<std::vector<double>> want = {{0.0, 1.0, 0.0, 1.0},
                                                 {0.841471, 0.540302, 0.01, 0.99995},
                                                 {0.909297, -0.416147, 0.019999, 0.9998},
                                                 {0.14112, -0.989992, 0.029996, 0.99955},
                                                 {-0.756802, -0.653644, 0.039989, 0.9992},
                                                 {-0.958924, 0.283662, 0.049979, 0.99875}};
  Tensor t = sinusoidal_table(6, 4, 10000, DType::f64);
  ASSERT_EQ(t.shape(), (Shape{6, 4}));
  for (int64_t p = 0; p < 6; ++p) expect_row(t, p, want[size_t(p)], 1e-6, "sinusoidal");
  PEConfig cfg;
  cfg.scope = PEConfig::Scope::Embedding;
  cfg.d_model = 4;
  cfg.n_heads = 1;
  auto pe = make_position_encoding("sinusoidal", cfg);
  ASSERT_TRUE(pe);
  EXPECT_LT(max_abs_diff(pe->embedding_term(0, 6, DType::f32), t), 1e-6);
  EXPECT_EQ(pe->num_parameters(), 0);
}

TEST(RoPE, DotProductsDependOnDistanceOnly) {
  Generator g(2);
  Tensor q1 = randn({1, 8}, DType::f64, &g), k1 = randn({1, 8}, DType::f64, &g);
  Tensor q = rope_rotate(q1.expand({7, 8}).contiguous()), k = rope_rotate(k1.expand({7, 8}).contiguous());  // (T, Dh)
  Tensor dots = matmul(q, k.t());  // (T, T)
  for (int64_t i = 1; i < 7; ++i)
    for (int64_t j = 1; j < 7; ++j) EXPECT_NEAR(dots.at({i, j}), dots.at({i - 1, j - 1}), 1e-12);
  // Position 0 is not rotated; position 1 turns pair 0 by 1 radian.
  EXPECT_LT(max_abs_diff(q.narrow(0, 0, 1), q1), 1e-15);
  const double c = std::cos(1.0), s = std::sin(1.0);
  EXPECT_NEAR(q.at({1, 0}), q1.at({0, 0}) * c - q1.at({0, 1}) * s, 1e-12);
  EXPECT_NEAR(q.at({1, 1}), q1.at({0, 0}) * s + q1.at({0, 1}) * c, 1e-12);
}

TEST(ALiBi, Slopes) {
  auto s4 = alibi_slopes(4);
  ASSERT_EQ(s4.size(), 4u);
  EXPECT_DOUBLE_EQ(s4[0], 0.25);
  EXPECT_DOUBLE_EQ(s4[3], 1.0 / 256);
  auto s6 = alibi_slopes(6);  // 4 from 2^-2k, then 2^-1 and 2^-3 from the 8-head sequence
  ASSERT_EQ(s6.size(), 6u);
  EXPECT_DOUBLE_EQ(s6[4], 0.5);
  EXPECT_DOUBLE_EQ(s6[5], 0.125);
}

// q·e[min(i-j, R-1)] with reuse_last, 0 beyond the range without.
TEST(Rel, DistancesBeyondTheTable) {
  for (bool reuse : {true, false}) {
    PEConfig cfg;
    cfg.d_model = 4;
    cfg.n_heads = 1;
    cfg.context = 3;
    cfg.rel_reuse_last = reuse;
    auto pe = make_position_encoding("rel", cfg);
    ASSERT_TRUE(pe);
    pe->to(DType::f64);
    randomize(*pe, 4);
    Tensor e = pe->named_parameters()[0].second;  // (3, 4)
    Generator g(9);
    Tensor q = randn({1, 1, 5, 4}, DType::f64, &g);
    LogitTerms terms;
    pe->add_logit_terms(AttentionContext{Tensor(), q, q, Tensor()}, terms);
    ASSERT_TRUE(terms.before_scale.defined());
    for (int64_t i = 0; i < 5; ++i)
      for (int64_t j = 0; j <= i; ++j) {
        const int64_t d = i - j;
        double want = 0;
        if (d < 3 || reuse)
          for (int64_t c = 0; c < 4; ++c) want += q.at({0, 0, i, c}) * e.at({std::min<int64_t>(d, 2), c});
        EXPECT_NEAR(terms.before_scale.at({0, 0, i, j}), want, 1e-12) << "i " << i << " j " << j;
      }
  }
}

// The one-pass kernel (rope_apply, rotate_pairs) against the composed reference: values and
// the gradient it sends back, in f64 and f32, on a non-contiguous input.
TEST(RoPE, FusedKernelMatchesTheComposedReference) {
  for (DType dt : {DType::f64, DType::f32}) {
    Generator g(5);
    Tensor base = randn({2, 3, 16, 8}, dt, &g);
    auto [cs, sn] = rope_tables(3, 16, 8, 10000, dt);
    Tensor x1 = base.transpose(0, 1).detach(), x2 = base.transpose(0, 1).detach();  // (3, 2, 16, 8), strided
    x1.requires_grad_();
    x2.requires_grad_();
    Tensor fast = rope_apply(x1, cs, sn), ref = rope_apply_reference(x2, cs, sn);
    const double tol = dt == DType::f64 ? 1e-14 : 1e-6;
    EXPECT_LT(max_abs_diff(fast, ref), tol);
    Tensor w = randn(fast.shape(), dt, &g);
    sum(mul(fast, w)).backward();
    sum(mul(ref, w)).backward();
    EXPECT_LT(max_abs_diff(x1.grad(), x2.grad()), tol);
  }
  // no positions: an empty result, not a division by zero
  auto [cs0, sn0] = rope_tables(0, 0, 8, 10000, DType::f32);
  EXPECT_EQ(rope_apply(zeros({2, 0, 8}, DType::f32), cs0, sn0).shape(), (Shape{2, 0, 8}));
}

// Heads viewed out of a packed (B, T, H·Dh) projection: the kernel reads them in place and
// keeps their layout, so the result joins back into (B, T, H·Dh) as a view; values and
// gradient are the composed reference's. (Attention's q and k, split from a (B, T, 3·H·Dh)
// product, have rows further apart and are copied to contiguous heads first.)
TEST(RoPE, HeadViewsKeepTheirLayout) {
  for (DType dt : {DType::f64, DType::f32}) {
    Generator g(6);
    const int64_t B = 2, T = 16, H = 3, Dh = 8;
    Tensor proj = randn({B, T, H * Dh}, dt, &g);
    auto [cs, sn] = rope_tables(2, T, Dh, 10000, dt);
    Tensor p1 = proj.clone().requires_grad_(), p2 = proj.clone().requires_grad_();
    auto heads = [&](const Tensor& p) { return p.view({B, T, H, Dh}).transpose(1, 2); };  // (B, H, T, Dh)
    Tensor fast = rope_apply(heads(p1), cs, sn), ref = rope_apply_reference(heads(p2), cs, sn);
    EXPECT_TRUE(fast.transpose(1, 2).is_contiguous()) << "the result is not laid out as (B, T, H, Dh)";
    const double tol = dt == DType::f64 ? 1e-14 : 1e-6;
    EXPECT_LT(max_abs_diff(fast, ref), tol);
    Tensor w = randn(fast.shape(), dt, &g);
    sum(mul(fast, w)).backward();
    sum(mul(ref, w)).backward();
    EXPECT_LT(max_abs_diff(p1.grad(), p2.grad()), tol);
  }
}

// transform_qk at offsets: q rotated from t0, k from 0, equal to rows of one rotation.
TEST(RoPE, OffsetsMatchTheFullRotation) {
  auto pe = make_position_encoding("rope", layer_pe_config_for_rects());
  ASSERT_TRUE(pe);
  Generator g(12);
  Tensor q = randn({1, 2, 40, 4}, DType::f64, &g), k = randn({1, 2, 40, 4}, DType::f64, &g);  // past the context 6
  Tensor qf = rope_rotate(q), kf = rope_rotate(k);
  for (int64_t t0 : {0, 5, 37}) {
    Tensor qr = q.narrow(2, t0, 3), kr = k;
    pe->transform_qk(qr, kr, t0, 0);
    EXPECT_EQ(max_abs_diff(qr, qf.narrow(2, t0, 3)), 0.0) << "t0 " << t0;
    EXPECT_EQ(max_abs_diff(kr, kf), 0.0);
    EXPECT_EQ(max_abs_diff(rope_rotate(q.narrow(2, t0, 3), 10000, t0), qf.narrow(2, t0, 3)), 0.0);
  }
  EXPECT_FALSE(pe->named_buffers().empty());   // the cos/sin tables are buffers...
  EXPECT_TRUE(pe->state_dict().empty());       // ...that are not saved
  EXPECT_EQ(pe->named_buffers()[0].second.size(0), 40);  // grown to the furthest position asked
}

// rel, alibi, cope and a combination: the terms for queries [t0, t0 + Tq) over keys [0, Tk)
// are that block of the terms of the whole square.
TEST(Rectangles, LogitTermsAreSubBlocksOfTheSquare) {
  for (const char* name : {"rel", "alibi", "cope", "cope+rel"})
    for (bool reuse : {true, false}) {
      PEConfig pc = layer_pe_config_for_rects();
      pc.rel_reuse_last = reuse;
      pc.npos = 4;
      auto pe = make_position_encoding(name, pc);
      ASSERT_TRUE(pe);
      pe->to(DType::f64);
      randomize(*pe, 14);
      Generator g(15);
      const int64_t T = 9;  // > context 6: rel's distances run past its table
      Tensor q = randn({2, 2, T, 4}, DType::f64, &g), k = randn({2, 2, T, 4}, DType::f64, &g);
      Tensor scaled = matmul(q * 0.5, k.transpose(-2, -1));  // (2, 2, T, T)
      LogitTerms full;
      pe->add_logit_terms(AttentionContext{Tensor(), q, k, scaled, 0, nullptr}, full);
      for (auto [t0, tq, tk] : {std::tuple<int64_t, int64_t, int64_t>{6, 3, 9}, {2, 3, 9}, {4, 1, 5}, {0, 9, 9}}) {
        SCOPED_TRACE(fmt::format("{} reuse {} t0 {} Tq {} Tk {}", name, reuse, t0, tq, tk));
        LogitTerms r;
        Tensor qr = q.narrow(2, t0, tq), kr = k.narrow(2, 0, tk);
        pe->add_logit_terms(AttentionContext{Tensor(), qr, kr, scaled.narrow(2, t0, tq).narrow(3, 0, tk), t0, nullptr},
                            r);
        for (auto [a, b] : {std::pair{&full.before_scale, &r.before_scale}, {&full.after_scale, &r.after_scale}}) {
          ASSERT_EQ(a->defined(), b->defined());
          if (!a->defined()) continue;
          Tensor whole = a->expand({2, 2, T, T}), part = b->expand({2, 2, tq, tk});
          Tensor block = whole.narrow(2, t0, tq).narrow(3, 0, tk);
          // compare the visible keys only (future keys are masked by attention)
          Tensor vis = causal_mask(tk, tk, DType::f64).narrow(0, t0, tq);  // 1 for j > i
          EXPECT_LT(max_abs_diff(part * (1.0 - vis), block * (1.0 - vis)), 1e-12);
        }
        if (pe->last_gates().defined()) {
          EXPECT_EQ(pe->last_gates().shape(), (Shape{2, 2, tq, tk}));
        }
      }
      if (std::string(name) == "alibi" && !reuse) break;
    }
}

// ---------------------------------------------------------------- registry

TEST(Registry, NamesAndErrors) {
  auto names = position_encoding_names();
  for (const char* n : {"none", "sinusoidal", "abs", "rel", "rope", "alibi", "cope"})
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
  try {
    make_position_encoding("yarn", PEConfig{});
    FAIL() << "no throw";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("unknown position encoding 'yarn'"), std::string::npos) << m;
    EXPECT_NE(m.find("cope"), std::string::npos) << m;
    EXPECT_NE(m.find("alibi"), std::string::npos) << m;
  }
  EXPECT_THROW(make_position_encoding("cope+xx", PEConfig{}), Error);
  EXPECT_THROW(make_position_encoding("cope+cope", PEConfig{}), Error);
  // Scopes: abs lives at the embeddings, rope in the layers, none nowhere.
  PEConfig emb;
  emb.scope = PEConfig::Scope::Embedding;
  EXPECT_TRUE(make_position_encoding("abs", emb));
  EXPECT_FALSE(make_position_encoding("rope", emb));
  EXPECT_FALSE(make_position_encoding("abs", PEConfig{}));
  EXPECT_FALSE(make_position_encoding("none", PEConfig{}));
  EXPECT_FALSE(make_position_encoding("none", emb));
}

// A new encoding in a few lines, as docs/05 shows: a constant bias favouring the key
// right before the query.
class PreviousTokenBias : public PositionEncoding {
 public:
  std::string name() const override { return "prevbias"; }
  void add_logit_terms(const AttentionContext& ctx, LogitTerms& out) override {
    const int64_t T = ctx.q.size(2);
    std::vector<double> b(size_t(T * T), 0.0);
    for (int64_t i = 1; i < T; ++i) b[size_t(i * T + i - 1)] = 2.0;
    out.add_after(from_vector(b, {T, T}).to(ctx.q.dtype()));
  }
};

TEST(Registry, RegisterACustomEncoding) {
  register_position_encoding(
      "prevbias",
      [](const PEConfig& c) -> std::shared_ptr<PositionEncoding> {
        if (c.scope != PEConfig::Scope::Layer) return nullptr;
        return std::make_shared<PreviousTokenBias>();
      },
      "test: favour the previous token");
  EXPECT_THROW(register_position_encoding("prevbias", nullptr), Error);
  TransformerConfig cfg;
  cfg.vocab = 5;
  cfg.d_model = 8;
  cfg.n_heads = 2;
  cfg.context = 6;
  cfg.pe = "prevbias+rope";
  TransformerLM m(cfg);
  EXPECT_EQ(m.forward(from_vector(std::vector<int64_t>{1, 2, 3}, {1, 3})).shape(), (Shape{1, 3, 5}));
}

// ---------------------------------------------------------------- every encoding, layer and model

TransformerConfig tiny_config(const std::string& pe, int64_t layers = 2) {
  TransformerConfig cfg;
  cfg.vocab = 7;
  cfg.d_model = 8;
  cfg.n_layers = layers;
  cfg.n_heads = 2;
  cfg.context = 6;
  cfg.d_ff = 8;
  cfg.pe = pe;
  return cfg;
}

PEConfig layer_pe_config() {
  PEConfig cfg;
  cfg.d_model = 8;
  cfg.n_heads = 2;
  cfg.context = 6;
  return cfg;
}

// A single attention layer with encoding `pe` (f64, random parameters), and the same
// layer without it.
struct LayerPair {
  std::shared_ptr<CausalSelfAttention> with, without;
};
LayerPair layer_pair(const std::string& pe, const PEConfig& pc = layer_pe_config()) {
  Generator g(1);
  LayerPair p;
  p.with = std::make_shared<CausalSelfAttention>(8, 2, 0.0, make_position_encoding(pe, pc), &g);
  p.without = std::make_shared<CausalSelfAttention>(8, 2, 0.0, nullptr, &g);
  p.with->to(DType::f64);
  p.without->to(DType::f64);
  randomize(*p.with, 2);
  p.without->load_state_dict(p.with->state_dict(), /*strict=*/false);
  return p;
}

class EveryPE : public ::testing::TestWithParam<std::string> {};

// (For none, abs and sinusoidal the layer has no encoding: this checks plain attention.)
TEST_P(EveryPE, LayerGradcheck) {
  auto layer = layer_pair(GetParam()).with;
  Generator g(3);
  std::vector<Tensor> inputs = {randn({2, 5, 8}, DType::f64, &g).requires_grad_()};
  for (auto& p : layer->parameters()) inputs.push_back(p);
  auto r = gradcheck([&](const std::vector<Tensor>& in) { return layer->forward(in[0]); }, inputs);
  EXPECT_TRUE(r.ok) << r.message;
}

TEST_P(EveryPE, LayerCausality) {
  auto layer = layer_pair(GetParam()).with;
  Generator g(4);
  Tensor x = randn({2, 6, 8}, DType::f64, &g);
  Tensor y = layer->forward(x);
  for (int64_t t = 1; t < 6; ++t) {
    Tensor x2 = x.clone();
    NoGradGuard ng;
    copy_(x2.narrow(1, t, 6 - t), randn({2, 6 - t, 8}, DType::f64, &g));
    Tensor y2 = layer->forward(x2);
    EXPECT_LT(max_abs_diff(y.narrow(1, 0, t), y2.narrow(1, 0, t)), 1e-12) << "t " << t;
    EXPECT_GT(max_abs_diff(y.narrow(1, t, 6 - t), y2.narrow(1, t, 6 - t)), 1e-6) << "t " << t;
  }
}

// Without positions one attention layer sees its prefix as a set: swapping tokens 0 and 1
// leaves the later outputs as they were. An encoding in use must change them.
// Encodings that act on the embeddings leave the layer without one (ModelUsesPositions
// covers them): then the swap must not show, as for NoPE.
TEST_P(EveryPE, LayerUsesPositions) {
  auto pair = layer_pair(GetParam());
  EXPECT_EQ(pair.with->pe() != nullptr, acts_in_layer(GetParam()));
  Generator g(5);
  Tensor x = randn({1, 6, 8}, DType::f64, &g);
  Tensor xs = cat({x.narrow(1, 1, 1), x.narrow(1, 0, 1), x.narrow(1, 2, 4)}, 1);  // tokens 0 and 1 swapped
  auto later = [](const Tensor& y) { return y.narrow(1, 2, 4); };
  EXPECT_LT(max_abs_diff(later(pair.without->forward(x)), later(pair.without->forward(xs))), 1e-12);
  const double swap = max_abs_diff(later(pair.with->forward(x)), later(pair.with->forward(xs)));
  const double vs_nope = max_abs_diff(pair.with->forward(x), pair.without->forward(x));
  if (acts_in_layer(GetParam())) {
    EXPECT_GT(swap, 1e-4);
    EXPECT_GT(vs_nope, 1e-4);
  } else {
    EXPECT_LT(swap, 1e-12);
    EXPECT_LT(vs_nope, 1e-12);
  }
}

TEST_P(EveryPE, ModelGradcheck) {
  TransformerLM m(tiny_config(GetParam()));
  m.to(DType::f64);
  randomize(m, 6, 0.4);
  Tensor ids = from_vector(std::vector<int64_t>{1, 4, 2, 6, 0, 3, 5, 5, 1, 2}, {2, 5});
  auto params = m.parameters();
  auto r = gradcheck([&](const std::vector<Tensor>&) { return m.forward(ids); }, params);
  EXPECT_TRUE(r.ok) << r.message;
}

TEST_P(EveryPE, ModelCausality) {
  TransformerLM m(tiny_config(GetParam()));
  m.to(DType::f64);
  randomize(m, 7, 0.4);
  Tensor ids = from_vector(std::vector<int64_t>{1, 4, 2, 6, 0, 3}, {1, 6});
  Tensor y = m.forward(ids);
  for (int64_t t = 1; t < 6; ++t) {
    auto v = ids.to_vector<int64_t>();
    for (int64_t s = t; s < 6; ++s) v[size_t(s)] = (v[size_t(s)] + 3) % 7;
    Tensor y2 = m.forward(from_vector(v, {1, 6}));
    EXPECT_LT(max_abs_diff(y.narrow(1, 0, t), y2.narrow(1, 0, t)), 1e-12) << "t " << t;
    EXPECT_GT(max_abs_diff(y.narrow(1, t, 6 - t), y2.narrow(1, t, 6 - t)), 1e-6) << "t " << t;
  }
}

// The one-layer model version of LayerUsesPositions (embedding-level encodings included),
// and the full model differs from the same weights without the encoding.
TEST_P(EveryPE, ModelUsesPositions) {
  Tensor ids = from_vector(std::vector<int64_t>{1, 4, 2, 6, 0, 3}, {1, 6});
  Tensor swapped = from_vector(std::vector<int64_t>{4, 1, 2, 6, 0, 3}, {1, 6});
  auto later = [](const Tensor& y) { return y.narrow(1, 2, 4); };
  TransformerLM one(tiny_config(GetParam(), 1)), nope(tiny_config("none", 1));
  for (TransformerLM* m : {&one, &nope}) m->to(DType::f64);
  randomize(one, 8, 0.5);
  nope.load_state_dict(one.state_dict(), /*strict=*/false);
  const double d_nope = max_abs_diff(later(nope.forward(ids)), later(nope.forward(swapped)));
  const double d_pe = max_abs_diff(later(one.forward(ids)), later(one.forward(swapped)));
  EXPECT_LT(d_nope, 1e-12);
  if (GetParam() == "none") EXPECT_LT(d_pe, 1e-12);
  else EXPECT_GT(d_pe, 1e-4);

  TransformerLM full(tiny_config(GetParam())), full_nope(tiny_config("none"));
  for (TransformerLM* m : {&full, &full_nope}) m->to(DType::f64);
  randomize(full, 9, 0.5);
  full_nope.load_state_dict(full.state_dict(), /*strict=*/false);
  const double d = max_abs_diff(full.forward(ids), full_nope.forward(ids));
  if (GetParam() == "none") EXPECT_LT(d, 1e-12);
  else EXPECT_GT(d, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(PE, EveryPE, ::testing::ValuesIn(all_pes()), [](const auto& info) {
  std::string n = info.param;
  for (char& c : n)
    if (c == '+') c = '_';
  return n;
});

// ---------------------------------------------------------------- CoPE in the model

TEST(CopeModel, OptionsNamesAndGates) {
  TransformerConfig cfg = tiny_config("cope", 3);
  cfg.cope_every = 2;
  cfg.cope_sep_key = true;
  cfg.npos = 4;
  TransformerLM m(cfg);
  auto sd = m.state_dict();
  EXPECT_TRUE(sd.contains("blocks.0.attn.pe.pos_emb"));
  EXPECT_TRUE(sd.contains("blocks.0.attn.pe.gate_key.weight"));
  EXPECT_FALSE(sd.contains("blocks.1.attn.pe.pos_emb"));  // cope_every = 2: layers 0 and 2
  EXPECT_TRUE(sd.contains("blocks.2.attn.pe.pos_emb"));
  EXPECT_EQ(sd.at("blocks.0.attn.pe.pos_emb").shape(), (Shape{4, 4}));  // npos × d_head
  EXPECT_EQ(sd.at("blocks.0.attn.pe.pos_emb").to_vector<float>(), std::vector<float>(16, 0.0f));  // zero init
  EXPECT_TRUE(m.cope_gates().empty());
  m.set_record_attention(true);  // gates are kept only while recording
  m.forward(from_vector(std::vector<int64_t>{1, 2, 3, 4, 5, 6, 0, 1, 2, 3}, {2, 5}));
  auto gates = m.cope_gates();
  ASSERT_EQ(gates.size(), 2u);
  for (auto& gt : gates) {
    EXPECT_EQ(gt.shape(), (Shape{2, 2, 5, 5}));
    EXPECT_FALSE(gt.requires_grad());
    EXPECT_EQ(gt.at({1, 1, 1, 3}), 0.0);
    EXPECT_GT(gt.at({1, 1, 3, 1}), 0.0);
  }
  // default npos = context + 1
  TransformerLM d(tiny_config("cope"));
  EXPECT_EQ(d.state_dict().at("blocks.1.attn.pe.pos_emb").shape(), (Shape{7, 4}));
  // combinations name their parts
  TransformerLM c(tiny_config("cope+rel"));
  EXPECT_TRUE(c.state_dict().contains("blocks.0.attn.pe.cope.pos_emb"));
  EXPECT_TRUE(c.state_dict().contains("blocks.0.attn.pe.rel.weight"));
  c.set_record_attention(true);
  c.forward(from_vector(std::vector<int64_t>{1, 2, 3}, {1, 3}));
  EXPECT_EQ(c.cope_gates().size(), 2u);
}

TEST(CopeModel, SeparateKeyGradcheckAndOfficialScale) {
  TransformerConfig cfg = tiny_config("cope", 1);
  cfg.cope_sep_key = true;
  cfg.cope_scale = "official";
  TransformerLM m(cfg);
  m.to(DType::f64);
  randomize(m, 10, 0.4);
  Tensor ids = from_vector(std::vector<int64_t>{1, 4, 2, 6, 0, 3}, {1, 6});
  auto r = gradcheck([&](const std::vector<Tensor>&) { return m.forward(ids); }, m.parameters());
  EXPECT_TRUE(r.ok) << r.message;
}

// A model's loss mean(y²) on ids and the gradients of its parameters, with attention maps
// recorded or not, the generator seeded for dropout.
std::vector<Tensor> loss_and_gradients(TransformerLM& m, const Tensor& ids, bool record, uint64_t seed) {
  m.set_record_attention(record);
  m.zero_grad();
  manual_seed(seed);
  Tensor y = m.forward(ids);
  Tensor loss = mean(y * y);
  loss.backward();
  std::vector<Tensor> out{loss.detach()};
  for (auto& p : m.parameters()) out.push_back(p.grad().clone());
  return out;
}

// Attention with CoPE runs the fused causal_cope_attention unless it records maps, when it
// composes the logits, CoPE's term and the softmax: both give one loss and one gradient, for
// CoPE alone (both scalings) and combined with RoPE, with dropout drawing the same masks.
// CoPE with a separate gate key and cope+rel always compose.
TEST(CopeModel, FusedAttentionIsTheComposedPath) {
  for (const char* pe : {"cope", "cope+rope", "cope+rel"})
    for (const char* scale : {"appendix", "official"}) {
      TransformerConfig cfg = tiny_config(pe, 2);
      cfg.context = 70;  // two of the CPU kernel's query blocks
      cfg.npos = 9;
      cfg.dropout = 0.1;
      cfg.cope_scale = scale;
      TransformerLM m(cfg);
      m.to(DType::f64);
      randomize(m, 12, 0.5);
      Generator data(4);
      Tensor ids = randint(0, 7, {2, 70}, DType::i64, &data);
      const bool fuses = std::string(pe) != "cope+rel";
      auto run = [&](bool record) {
        std::vector<Tensor> out = loss_and_gradients(m, ids, record, 21);
        EXPECT_EQ(!m.cope_gates().empty(), record || !fuses) << pe << ": gates are kept only while composing";
        return out;
      };
      const auto fused = run(false), composed = run(true);
      for (size_t i = 0; i < fused.size(); ++i)
        EXPECT_LT(max_abs_diff(fused[i], composed[i]), 1e-11) << pe << " " << scale << ", tensor " << i;
    }
}

// Attention with RoPE hands its tables to the fused causal_rotary_attention unless it records
// maps, when RoPE turns q and k first and attention composes the logits and the softmax: one
// loss and one gradient either way, with dropout drawing the same masks.
TEST(RoPE, RotationInsideTheFusedAttentionIsTheComposedPath) {
  TransformerConfig cfg = tiny_config("rope", 2);
  cfg.context = 70;  // two of the CPU kernel's query blocks
  cfg.dropout = 0.1;
  TransformerLM m(cfg);
  m.to(DType::f64);
  randomize(m, 13, 0.5);
  Generator data(5);
  Tensor ids = randint(0, 7, {2, 70}, DType::i64, &data);
  const auto fused = loss_and_gradients(m, ids, false, 22), composed = loss_and_gradients(m, ids, true, 22);
  for (size_t i = 0; i < fused.size(); ++i) EXPECT_LT(max_abs_diff(fused[i], composed[i]), 1e-11) << "tensor " << i;
}

// Beyond the trained length CoPE clamps its positions, so a model runs on longer inputs.
TEST(CopeModel, LongerThanContext) {
  TransformerLM m(tiny_config("cope"));
  Generator g(1);
  Tensor ids = randint(0, 7, {1, 20}, DType::i64, &g);
  Tensor y = m.forward(ids);
  EXPECT_EQ(y.shape(), (Shape{1, 20, 7}));
  TransformerLM a(tiny_config("abs"));
  EXPECT_THROW(a.forward(ids), Error);
}

}  // namespace
