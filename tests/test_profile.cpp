// test_profile.cpp — the per-op profiler (tensor/profile.h): which rows a training step
// produces and that the totals add up. Times are never compared with a bound.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "nn/optim.h"
#include "nn/transformer.h"
#include "tensor/ops.h"
#include "tensor/profile.h"
#include "tensor/random.h"

namespace copper {
namespace {

// Turns the profiler on for one test and off after it, with a fresh table.
struct ProfileOn {
  ProfileOn() {
    profile::enable(true);
    profile::reset();
  }
  ~ProfileOn() { profile::enable(false); }
};

const profile::Row* find_row(const std::vector<profile::Row>& rows, profile::Phase phase, const std::string& name) {
  for (const profile::Row& r : rows)
    if (r.phase == phase && r.name == name) return &r;
  return nullptr;
}

// A tiny transformer: forward, backward and an AdamW step under the profiler.
void tiny_step(const std::string& pe) {
  nn::TransformerConfig cfg;
  cfg.vocab = 11;
  cfg.d_model = 16;
  cfg.n_heads = 2;
  cfg.n_layers = 1;
  cfg.context = 8;
  cfg.pe = pe;
  nn::TransformerLM model(cfg);
  nn::AdamW optim(model.named_parameters());
  Generator gen(7);
  const Tensor ids = randint(0, cfg.vocab, {2, cfg.context}, DType::i64, &gen);
  const Tensor targets = randint(0, cfg.vocab, {2 * cfg.context}, DType::i64, &gen);
  Tensor loss = cross_entropy(model.forward(ids).reshape({2 * cfg.context, cfg.vocab}), targets);
  loss.backward();
  profile::PhaseScope phase(profile::Phase::optimizer);
  optim.step();
}

TEST(Profile, OffRecordsNothing) {
  profile::enable(false);
  profile::reset();
  Tensor a = randn({4, 4}, DType::f32);
  Tensor c = matmul(a, a);
  EXPECT_TRUE(profile::rows().empty());
}

TEST(Profile, TransformerStepHasMatmulForwardAndBackward) {
  ProfileOn on;
  tiny_step("cope");
  const auto rows = profile::rows();
  const profile::Row* fwd = find_row(rows, profile::Phase::forward, "matmul");
  const profile::Row* bwd = find_row(rows, profile::Phase::backward, "matmul");
  ASSERT_NE(fwd, nullptr) << "no forward matmul row";
  ASSERT_NE(bwd, nullptr) << "no backward matmul row";
  EXPECT_GT(fwd->calls, 0);
  EXPECT_GT(bwd->calls, 0);
  EXPECT_GT(fwd->flops, 0);
  // The backward of a matmul is two matmuls of the same size: its kernels' FLOPs land in the
  // node's row, twice the forward's for the same products.
  EXPECT_GT(bwd->flops, 0);
  EXPECT_NE(find_row(rows, profile::Phase::backward, "causal_cope_attention"), nullptr);  // the fused CoPE attention
  EXPECT_NE(find_row(rows, profile::Phase::forward, "layer_norm"), nullptr);
  const profile::Row* adam = find_row(rows, profile::Phase::optimizer, "adamw_step");
  ASSERT_NE(adam, nullptr);
  EXPECT_GT(adam->bytes, 0);
}

TEST(Profile, MatmulFlopsAndCallsAreExact) {
  ProfileOn on;
  constexpr int64_t kM = 6, kK = 5, kN = 7;
  Tensor a = randn({kM, kK}, DType::f32).requires_grad_();
  Tensor b = randn({kK, kN}, DType::f32).requires_grad_();
  Tensor y = matmul(a, b);
  sum(y).backward();
  const auto rows = profile::rows();
  const profile::Row* fwd = find_row(rows, profile::Phase::forward, "matmul");
  const profile::Row* bwd = find_row(rows, profile::Phase::backward, "matmul");
  ASSERT_NE(fwd, nullptr);
  ASSERT_NE(bwd, nullptr);
  EXPECT_EQ(fwd->calls, 1);
  EXPECT_DOUBLE_EQ(fwd->flops, 2.0 * kM * kK * kN);
  EXPECT_EQ(bwd->calls, 1);                              // one node, one backward closure
  EXPECT_DOUBLE_EQ(bwd->flops, 2 * 2.0 * kM * kK * kN);  // dA = dY Bᵀ and dB = Aᵀ dY
}

TEST(Profile, TotalsAreConsistent) {
  ProfileOn on;
  tiny_step("abs");
  const double wall = profile::wall_seconds();
  const auto rows = profile::rows();
  ASSERT_FALSE(rows.empty());
  double sum_s = 0;
  int last_phase = -1;
  for (const profile::Row& r : rows) {
    EXPECT_GT(r.calls, 0) << r.name;
    EXPECT_GE(r.seconds, 0) << r.name;
    EXPECT_GE(int(r.phase), last_phase) << "rows are grouped by phase";
    last_phase = int(r.phase);
    sum_s += r.seconds;
  }
  // Rows never overlap (a Scope inside a Scope is timed into the outer one), so together
  // they cannot exceed the wall time they were measured in.
  EXPECT_LE(sum_s, wall);

  // The printed table names every row and the remainder.
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  profile::report(f, 0, 1);
  std::rewind(f);
  std::string text;
  char buf[512];
  while (std::fgets(buf, sizeof buf, f)) text += buf;
  std::fclose(f);
  EXPECT_NE(text.find("matmul"), std::string::npos);
  EXPECT_NE(text.find("not in any row"), std::string::npos);
  EXPECT_NE(text.find("subtotal"), std::string::npos);
}

// The table printed at exit (report with no step count) divides by the steps the training
// loop counted, and leaves the per-step column empty when there were none.
std::string report_text(double total_s, int64_t steps) {
  std::FILE* f = std::tmpfile();
  if (f == nullptr) return {};
  profile::report(f, total_s, steps);
  std::rewind(f);
  std::string text;
  char buf[512];
  while (std::fgets(buf, sizeof buf, f)) text += buf;
  std::fclose(f);
  return text;
}

TEST(Profile, PerStepColumnUsesTheCountedSteps) {
  ProfileOn on;
  { profile::Scope s("work"); }
  const std::string none = report_text(0, 0);
  EXPECT_NE(none.find("(no training steps)"), std::string::npos) << none;
  for (int i = 0; i < 3; ++i) profile::count_step();
  EXPECT_EQ(profile::counted_steps(), 3);
  const std::string three = report_text(0, 0);
  EXPECT_NE(three.find("3 training step(s)"), std::string::npos) << three;
  profile::reset();
  EXPECT_EQ(profile::counted_steps(), 0);
  profile::enable(false);
  profile::count_step();
  EXPECT_EQ(profile::counted_steps(), 0) << "steps are counted only while the profiler is on";
}

// The fused attention writes dq, dk and dv side by side, so split's backward passes them on
// as the qkv product's gradient and moves no bytes: RoPE's rotation happens inside the kernel
// too. With "cope+rope", q and k are turned into new tensors before CoPE's attention, so split
// copies the three gradients into one.
TEST(Profile, AttentionGradientsReachTheProjectionUncopied) {
  for (const std::string pe : {"none", "rope", "cope+rope"}) {
    SCOPED_TRACE(pe);
    ProfileOn on;
    tiny_step(pe);
    const auto rows = profile::rows();
    const profile::Row* split = find_row(rows, profile::Phase::backward, "split");
    ASSERT_NE(split, nullptr);
    EXPECT_EQ(split->calls, 1);
    if (pe == "cope+rope") EXPECT_GT(split->bytes, 0);
    else EXPECT_EQ(split->bytes, 0);
  }
}

TEST(Profile, NestedScopesCountOnceInTheOuterRow) {
  ProfileOn on;
  {
    profile::Scope outer("outer", 10, 0);
    profile::Scope inner("inner", 5, 3);
  }
  const auto rows = profile::rows();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].name, "outer");
  EXPECT_EQ(rows[0].calls, 1);
  EXPECT_DOUBLE_EQ(rows[0].flops, 15);
  EXPECT_DOUBLE_EQ(rows[0].bytes, 3);
}

}  // namespace
}  // namespace copper
