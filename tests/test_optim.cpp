// test_optim.cpp — optimizers, schedules and clipping against steps computed by hand.
#include <gtest/gtest.h>

#include <omp.h>

#include <cmath>

#include "autograd/grad_mode.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "tensor/backend.h"
#include "tensor/ops.h"
#include "tensor/random.h"

using namespace copper;
using namespace copper::nn;

namespace {
// A parameter p (f64) with gradient g set directly.
Tensor param(std::vector<double> v) { return from_vector(v).requires_grad_(); }
void set_grad(Tensor& p, std::vector<double> g) { p.set_grad(from_vector(g)); }
}  // namespace

TEST(Optim, SgdPlainAndMomentum) {
  Tensor p = param({1.0, -2.0});
  SGD opt({{"p", p}}, {.lr = 0.1, .momentum = 0.9});
  set_grad(p, {0.5, 1.0});
  opt.step();  // buf = g; p -= 0.1 g
  EXPECT_NEAR(p.at({0}), 1.0 - 0.05, 1e-15);
  EXPECT_NEAR(p.at({1}), -2.0 - 0.1, 1e-15);
  set_grad(p, {0.5, 1.0});
  opt.step();  // buf = 0.9 g + g = 1.9 g
  EXPECT_NEAR(p.at({0}), 0.95 - 0.1 * 1.9 * 0.5, 1e-15);
  EXPECT_NEAR(p.at({1}), -2.1 - 0.1 * 1.9 * 1.0, 1e-15);
  EXPECT_EQ(opt.steps_taken(), 2);
}

TEST(Optim, SgdNesterovAndWeightDecay) {
  Tensor p = param({2.0});
  SGD opt({{"p", p}}, {.lr = 0.5, .momentum = 0.5, .weight_decay = 0.1, .nesterov = true});
  set_grad(p, {1.0});
  opt.step();  // g = 1 + 0.1*2 = 1.2; buf = 1.2; g' = 1.2 + 0.5*1.2 = 1.8; p = 2 - 0.9
  EXPECT_NEAR(p.item(), 1.1, 1e-15);
}

TEST(Optim, AdamTwoStepsByHand) {
  Tensor p = param({1.0, -1.0});
  Adam opt({{"p", p}}, {.lr = 0.01, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8});
  const double g1[2] = {0.2, -0.4}, g2[2] = {0.1, 0.3};
  double ref[2] = {1.0, -1.0}, m[2] = {0, 0}, v[2] = {0, 0};
  for (int t = 1; t <= 2; ++t) {
    const double* g = t == 1 ? g1 : g2;
    set_grad(p, {g[0], g[1]});
    opt.step();
    for (int i = 0; i < 2; ++i) {
      m[i] = 0.9 * m[i] + 0.1 * g[i];
      v[i] = 0.99 * v[i] + 0.01 * g[i] * g[i];
      const double mh = m[i] / (1 - std::pow(0.9, t)), vh = v[i] / (1 - std::pow(0.99, t));
      ref[i] -= 0.01 * mh / (std::sqrt(vh) + 1e-8);
    }
  }
  EXPECT_NEAR(p.at({0}), ref[0], 1e-12);
  EXPECT_NEAR(p.at({1}), ref[1], 1e-12);
  // The first Adam step moves each coordinate by about lr * sign(g).
  Tensor q = param({0.0});
  Adam a2({{"q", q}}, {.lr = 0.01});
  set_grad(q, {123.0});
  a2.step();
  EXPECT_NEAR(q.item(), -0.01, 1e-9);
}

TEST(Optim, AdamCoupledVsAdamWDecoupledDecay) {
  // Adam adds wd*p to g before the moments; AdamW shrinks p by lr*wd*p outside them.
  Tensor p1 = param({2.0}), p2 = param({2.0});
  Adam adam({{"p", p1}}, {.lr = 0.1, .weight_decay = 0.5});
  AdamW adamw({{"p", p2}}, {.lr = 0.1, .weight_decay = 0.5});
  set_grad(p1, {1.0});
  set_grad(p2, {1.0});
  adam.step();
  adamw.step();
  EXPECT_NEAR(p1.item(), 2.0 - 0.1, 1e-7);              // first step: lr * sign(g + wd p)
  EXPECT_NEAR(p2.item(), 2.0 - 0.1 * (1 + 0.5 * 2.0), 1e-7);  // lr * (1 + wd p)
}

TEST(Optim, SkipsParametersWithoutGradient) {
  Tensor a = param({1.0}), b = param({1.0});
  AdamW opt({{"a", a}, {"b", b}}, {.lr = 0.1});
  set_grad(a, {1.0});
  opt.step();
  EXPECT_NE(a.item(), 1.0);
  EXPECT_EQ(b.item(), 1.0);
  opt.zero_grad();
  EXPECT_FALSE(a.grad().defined());
}

TEST(Optim, StateRoundTripContinuesIdentically) {
  auto run = [](Tensor& p, Adam& opt, int steps, int offset) {
    for (int s = 0; s < steps; ++s) {
      set_grad(p, {std::sin(double(s + offset)), std::cos(double(s + offset))});
      opt.step();
    }
  };
  Tensor p = from_vector(std::vector<float>{0.5f, -0.25f}).requires_grad_();
  AdamW opt({{"w", p}}, {.lr = 0.01});
  run(p, opt, 3, 0);
  auto tensors = opt.state_tensors();
  auto js = opt.state_json();
  EXPECT_EQ(js["step"], 3);
  ASSERT_TRUE(tensors.count("exp_avg.w") && tensors.count("exp_avg_sq.w"));
  Tensor q = p.detach().clone().requires_grad_();
  AdamW opt2({{"w", q}}, {.lr = 0.01});
  std::map<std::string, Tensor> copy;
  for (auto& [k, t] : tensors) copy[k] = t.clone();
  opt2.load_state(copy, js);
  run(p, opt, 3, 3);
  run(q, opt2, 3, 3);
  EXPECT_EQ(p.to_vector<float>(), q.to_vector<float>());
  // A wrong shape is reported with the name and both shapes.
  Tensor r = from_vector(std::vector<float>{1, 2, 3}).requires_grad_();
  AdamW opt3({{"w", r}});
  try {
    opt3.load_state(copy, js);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("exp_avg"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[2]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[3]"), std::string::npos) << e.what();
  }
  SGD sgd({{"w", r}});
  EXPECT_THROW(sgd.load_state(copy, js), Error);  // saved for adamw
}

TEST(Optim, ClipGradNorm) {
  Tensor a = param({3.0}), b = param({0.0, 4.0});
  set_grad(a, {3.0});
  set_grad(b, {0.0, 4.0});
  NamedTensors ps{{"a", a}, {"b", b}};
  EXPECT_NEAR(clip_grad_norm(ps, 10.0), 5.0, 1e-12);  // below the limit: unchanged
  EXPECT_EQ(a.grad().item(), 3.0);
  EXPECT_NEAR(clip_grad_norm(ps, 1.0), 5.0, 1e-12);
  EXPECT_NEAR(a.grad().item(), 3.0 / (5.0 + 1e-6), 1e-12);
  EXPECT_NEAR(b.grad().at({1}), 4.0 / (5.0 + 1e-6), 1e-12);
}

// Backend::sum_squares, behind clipping: the f64 sum of squares of many tensors, chunk sizes
// straddled, f32 and f64 mixed, the same bits at any thread count.
TEST(Optim, SumSquaresIsTheF64SumAtAnyThreadCount) {
  Generator gen(5);
  const int64_t c = Backend::kSumSquaresChunk;
  std::vector<Tensor> xs;
  double want = 0;
  for (int64_t n : {int64_t(0), int64_t(1), c - 1, c, c + 1, 3 * c + 7, int64_t(100)}) {
    Tensor x = randn({n}, n % 2 ? DType::f64 : DType::f32, &gen);
    for (double v : x.to_vector<double>()) want += v * v;
    xs.push_back(x);
  }
  auto run = [&](int threads) {
    const int before = omp_get_max_threads();
    omp_set_num_threads(threads);
    Tensor out = Tensor::empty({}, DType::f64);
    backend_for(kCPU).sum_squares(xs, out);
    omp_set_num_threads(before);
    return out.item();
  };
  const double one = run(1);
  EXPECT_NEAR(one, want, 1e-12 * want);
  EXPECT_EQ(run(2), one);
  Tensor none = Tensor::empty({}, DType::f64);
  backend_for(kCPU).sum_squares({}, none);
  EXPECT_EQ(none.item(), 0.0);
}

TEST(Optim, FactoryRejectsUnknownName) {
  Tensor a = param({1.0});
  OptimConfig c;
  c.name = "lion";
  try {
    make_optimizer(c, {{"a", a}});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("adamw"), std::string::npos);
  }
  c.name = "sgd";
  EXPECT_STREQ(make_optimizer(c, {{"a", a}})->name(), "sgd");
}

TEST(Schedule, ConstantCosineLinear) {
  Schedule c{.kind = "constant", .lr = 1.0, .warmup = 4, .total = 20};
  EXPECT_DOUBLE_EQ(c.lr_at(0), 0.25);
  EXPECT_DOUBLE_EQ(c.lr_at(3), 1.0);
  EXPECT_DOUBLE_EQ(c.lr_at(19), 1.0);
  Schedule cos{.kind = "cosine", .lr = 1.0, .warmup = 0, .total = 10, .min_lr_ratio = 0.1};
  EXPECT_DOUBLE_EQ(cos.lr_at(0), 1.0);
  EXPECT_NEAR(cos.lr_at(5), 0.1 + 0.9 * 0.5, 1e-15);
  EXPECT_NEAR(cos.lr_at(10), 0.1, 1e-15);
  EXPECT_NEAR(cos.lr_at(100), 0.1, 1e-15);
  Schedule lin{.kind = "linear", .lr = 2.0, .warmup = 2, .total = 12};
  EXPECT_DOUBLE_EQ(lin.lr_at(0), 1.0);
  EXPECT_DOUBLE_EQ(lin.lr_at(2), 2.0);
  EXPECT_DOUBLE_EQ(lin.lr_at(7), 1.0);
  EXPECT_DOUBLE_EQ(lin.lr_at(12), 0.0);
  EXPECT_EQ(Schedule::from_json(lin.to_json()).to_json(), lin.to_json());
  Schedule bad{.kind = "step"};
  EXPECT_THROW(bad.validate(), Error);
}

// Time-budget runs follow the same curve by fraction of the run instead of by step.
TEST(Schedule, FractionFollowsTheStepCurve) {
  Schedule cos{.kind = "cosine", .lr = 3.0, .warmup = 5, .total = 100, .min_lr_ratio = 0.1};
  for (int64_t s : {0, 2, 4, 5, 30, 77, 100}) EXPECT_DOUBLE_EQ(cos.lr_at_fraction(double(s) / 100), cos.lr_at(s)) << s;
  EXPECT_DOUBLE_EQ(cos.lr_at_fraction(-1), cos.lr_at(0));
  EXPECT_NEAR(cos.lr_at_fraction(2), 0.3, 1e-15);
  // between warmup steps the rate rises smoothly and never passes the peak
  EXPECT_GT(cos.lr_at_fraction(0.025), cos.lr_at(2));
  EXPECT_LT(cos.lr_at_fraction(0.025), cos.lr_at(3));
  EXPECT_LE(cos.lr_at_fraction(0.0499), 3.0);
}
