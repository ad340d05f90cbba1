// test_kernels.cpp — the vectorised f32 fast paths of tensor/cpu/ against their references.
//
// tests/test_ops.cpp checks every op's f32 forward against a double reference on small
// shapes; this file adds what it does not reach: exp_fast over the whole float range, and
// the f32 softmax backward (the harness gradchecks in f64, which takes the reference path).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "tensor/cpu/fast_math.h"
#include "tensor/ops.h"
#include "tensor/random.h"

using namespace copper;

TEST(FastMath, ExpFastMatchesStdExp) {
  double worst = 0;
  for (float x = -86.5f; x < 88.7f; x += 0.001953125f) {  // 2^-9 steps: ~90k points
    const double ref = std::exp(double(x));
    worst = std::max(worst, std::abs(double(cpu::exp_fast(x)) - ref) / ref);
  }
  EXPECT_LT(worst, 3e-7);  // about 2 ulp of float
}

TEST(FastMath, ExpFastEdges) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(cpu::exp_fast(0.0f), 1.0f);
  EXPECT_EQ(cpu::exp_fast(-inf), 0.0f);
  EXPECT_EQ(cpu::exp_fast(-100.0f), 0.0f);
  EXPECT_EQ(cpu::exp_fast(inf), inf);
  EXPECT_EQ(cpu::exp_fast(100.0f), inf);
  EXPECT_TRUE(std::isnan(cpu::exp_fast(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(std::isfinite(cpu::exp_fast(88.7f)));
  EXPECT_NEAR(cpu::exp_fast(88.7f) / std::exp(double(88.7f)), 1.0, 1e-6);
}

namespace {
// max |a - b| / (1 + |b|) over all elements
double max_rel_diff(const Tensor& a, const Tensor& b) {
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]) / (1 + std::abs(y[i])));
  return m;
}
}  // namespace

TEST(FastKernels, SoftmaxF32MatchesF64OnLongRows) {
  Generator g(3);
  for (bool log : {false, true}) {
    Tensor x = mul(randn({7, 1000}, DType::f64, &g), 5.0);  // wide logits
    Tensor y64 = log ? log_softmax(x, -1) : softmax(x, -1);
    Tensor y32 = log ? log_softmax(x.to(DType::f32), -1) : softmax(x.to(DType::f32), -1);
    EXPECT_LT(max_rel_diff(y32, y64), 2e-6) << (log ? "log_softmax" : "softmax");
  }
}

TEST(FastKernels, SoftmaxF32MaskedRow) {
  const float inf = std::numeric_limits<float>::infinity();
  Tensor x = from_vector(std::vector<float>{-inf, -inf, -inf, 1, -inf, 1}, {2, 3});
  std::vector<float> y = softmax(x, -1).to_vector<float>();
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(std::isnan(y[size_t(i)]) || y[size_t(i)] == 0 || y[size_t(i)] == 1.0f / 3);
  EXPECT_FLOAT_EQ(y[3], 0.5f);
  EXPECT_FLOAT_EQ(y[4], 0.0f);
  EXPECT_FLOAT_EQ(y[5], 0.5f);
}

TEST(FastKernels, SoftmaxBackwardF32MatchesF64) {
  Generator g(5);
  for (bool log : {false, true}) {
    Tensor x64 = randn({5, 300}, DType::f64, &g).requires_grad_();
    Tensor x32 = x64.detach().to(DType::f32).requires_grad_();
    Tensor r = randn({5, 300}, DType::f64, &g);
    Tensor y64 = log ? log_softmax(x64, -1) : softmax(x64, -1);
    Tensor y32 = log ? log_softmax(x32, -1) : softmax(x32, -1);
    sum(mul(y64, r)).backward();
    sum(mul(y32, r.to(DType::f32))).backward();
    EXPECT_LT(max_rel_diff(x32.grad(), x64.grad()), 1e-5) << (log ? "log_softmax" : "softmax");
  }
}

TEST(FastKernels, LayerNormF32MatchesF64) {
  Generator g(9);
  Tensor x = add(randn({6, 777}, DType::f64, &g), 3.0);  // an offset mean: cancellation matters
  Tensor w = randn({777}, DType::f64, &g), b = randn({777}, DType::f64, &g);
  Tensor y64 = layer_norm(x, w, b);
  Tensor y32 = layer_norm(x.to(DType::f32), w.to(DType::f32), b.to(DType::f32));
  EXPECT_LT(max_rel_diff(y32, y64), 1e-5);
}
