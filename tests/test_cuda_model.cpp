// test_cuda_model.cpp — whole models on cuda:0 against the same models on the CPU.
//
// test_cuda.cpp checks the backend kernel by kernel; this file checks what a user runs: a
// TransformerLM moved with Module::to(device), for every position encoding, gives the CPU's
// loss and gradients (relative error 1e-4: a chain of f32 kernels, each within about 1e-6),
// takes the same AdamW step, and generates the same greedy tokens with and without a KV cache.
// Without a GPU each test prints "no CUDA device: <reason>" and skips.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "lm/generate.h"
#include "nn/optim.h"
#include "nn/transformer.h"
#include "tensor/autocast.h"
#include "tensor/ops.h"
#include "tensor/random.h"

#include "tests/gpu_skip.h"

namespace copper {
namespace {

using test::kGPU;
constexpr double kRelModel = 1e-4;

nn::TransformerConfig small_config(const std::string& pe) {
  nn::TransformerConfig c;
  c.vocab = 40;
  c.d_model = 32;
  c.n_layers = 2;
  c.n_heads = 4;
  c.context = 24;
  c.npos = 8;  // small enough that CoPE's clamp bites
  c.pe = pe;
  return c;
}

// The largest |a - b| over the largest |a|: both tensors brought to the host in f64.
double rel_diff(const Tensor& want, const Tensor& got) {
  const auto a = want.to(DType::f64).to_vector<double>(), b = got.to(kCPU).to(DType::f64).to_vector<double>();
  double scale = 1e-30, diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    scale = std::max(scale, std::abs(a[i]));
    diff = std::max(diff, std::abs(a[i] - b[i]));
  }
  return diff / scale;
}

class ModelParity : public ::testing::TestWithParam<std::string> {};

// One training step of `m`: the loss, every parameter's gradient, then one AdamW step.
struct Step {
  Tensor loss;
  std::vector<std::pair<std::string, Tensor>> grads;
};
// With `step_with`, the AdamW step takes that step's gradients instead of m's own (which are
// still returned). Parity of the update needs the same gradients on both devices: where a
// gradient is zero in exact arithmetic (the key bias: softmax ignores what is added to every
// logit of a row), each device computes rounding noise of about 1e-12, and Adam's first step,
// g / (|g| + eps), turns that noise into moves of up to lr whose size and sign are the noise's.
Step train_step(nn::TransformerLM& m, const Tensor& ids, const Tensor& targets, const Step* step_with = nullptr) {
  auto opt = nn::make_optimizer(nn::OptimConfig{}, m.named_parameters());
  const int64_t V = m.config().vocab;
  Tensor logits = m.forward(ids);  // ids stay on the host: forward copies them to the model's device
  Tensor loss = cross_entropy(logits.reshape({-1, V}), targets.reshape({-1}).to(logits.device()));
  loss.backward();
  Step s;
  s.loss = loss.detach();
  for (const auto& [name, p] : m.named_parameters()) s.grads.emplace_back(name, p.grad().detach().clone());
  if (step_with) {
    const auto params = m.named_parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      Tensor p = params[i].second;  // a handle on the parameter itself
      p.set_grad(step_with->grads.at(i).second.to(m.device()));
    }
  }
  opt->step();
  return s;
}

TEST_P(ModelParity, LossGradientsAndAnAdamWStepMatchTheCpu) {
  SKIP_WITHOUT_GPU();
  const auto cfg = small_config(GetParam());
  Generator g1(7), g2(7);  // the same seed: the same initial weights
  nn::TransformerLM cpu_model(cfg, &g1), gpu_model(cfg, &g2);
  gpu_model.to(kGPU);
  ASSERT_TRUE(gpu_model.device() == kGPU);
  for (const auto& [name, p] : gpu_model.named_parameters()) ASSERT_TRUE(p.device() == kGPU) << name;
  Generator data(11);
  const Tensor ids = randint(0, cfg.vocab, {2, cfg.context}, DType::i64, &data);
  const Tensor targets = randint(0, cfg.vocab, {2, cfg.context}, DType::i64, &data);
  const Step want = train_step(cpu_model, ids, targets), got = train_step(gpu_model, ids, targets, &want);
  EXPECT_TRUE(got.loss.device() == kGPU);
  EXPECT_LT(rel_diff(want.loss, got.loss), kRelModel) << "loss";
  ASSERT_EQ(want.grads.size(), got.grads.size());
  for (size_t i = 0; i < want.grads.size(); ++i)
    EXPECT_LT(rel_diff(want.grads[i].second, got.grads[i].second), kRelModel) << "gradient of " << want.grads[i].first;
  const auto pw = cpu_model.named_parameters(), pg = gpu_model.named_parameters();
  for (size_t i = 0; i < pw.size(); ++i)
    EXPECT_LT(rel_diff(pw[i].second, pg[i].second), kRelModel)
        << "after the AdamW step (same gradients): " << pw[i].first;
}

// Mixed precision (tensor/autocast.h) on both devices: the same bf16-rounded products, so the
// GPU follows the CPU to bf16's tolerance (an f32 sum that lands on the other side of a bf16
// rounding boundary moves that element by one bf16 step); and it stays near the f32 loss.
TEST_P(ModelParity, MixedPrecisionStepMatchesTheCpusMixedPrecision) {
  SKIP_WITHOUT_GPU();
  constexpr double kRelBf16 = 2e-2;
  const auto cfg = small_config(GetParam());
  Generator g1(7), g2(7), g3(7);
  nn::TransformerLM cpu_model(cfg, &g1), gpu_model(cfg, &g2), gpu_f32(cfg, &g3);
  gpu_model.to(kGPU);
  gpu_f32.to(kGPU);
  Generator data(11);
  const Tensor ids = randint(0, cfg.vocab, {2, cfg.context}, DType::i64, &data);
  const Tensor targets = randint(0, cfg.vocab, {2, cfg.context}, DType::i64, &data);
  const Step exact = train_step(gpu_f32, ids, targets);
  AutocastGuard ag(DType::bf16);
  const Step want = train_step(cpu_model, ids, targets), got = train_step(gpu_model, ids, targets);
  EXPECT_LT(rel_diff(want.loss, got.loss), kRelBf16) << "loss";
  EXPECT_LT(rel_diff(exact.loss, got.loss), kRelBf16) << "bf16 loss against f32";
  for (size_t i = 0; i < want.grads.size(); ++i) {
    EXPECT_EQ(got.grads[i].second.dtype(), DType::f32) << got.grads[i].first;
    EXPECT_LT(rel_diff(want.grads[i].second, got.grads[i].second), kRelBf16) << "gradient of " << want.grads[i].first;
  }
}

TEST_P(ModelParity, GreedyGenerationMatchesTheCpuWithAndWithoutTheCache) {
  SKIP_WITHOUT_GPU();
  const auto cfg = small_config(GetParam());
  Generator g1(3), g2(3);
  nn::TransformerLM cpu_model(cfg, &g1), gpu_model(cfg, &g2);
  cpu_model.eval();
  gpu_model.eval();
  gpu_model.to(kGPU);
  lm::SampleOptions s;
  s.tokens = 12;
  s.temperature = 0;
  const std::vector<int64_t> prompt{1, 5, 9, 2};
  for (bool cache : {true, false}) {
    s.use_cache = cache;
    EXPECT_EQ(lm::generate(cpu_model, prompt, s), lm::generate(gpu_model, prompt, s)) << "use_cache=" << cache;
  }
}

INSTANTIATE_TEST_SUITE_P(Encodings, ModelParity,
                         ::testing::Values("none", "sinusoidal", "abs", "rel", "rope", "alibi", "cope", "cope+rel",
                                           "cope+rope"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '+', '_');
                           return n;
                         });

// Always runs: moving a model to the device it is on changes nothing.
TEST(ModuleDevice, ToTheSameDeviceKeepsEveryTensor) {
  Generator g(1);
  nn::TransformerLM m(small_config("cope+rope"), &g);
  EXPECT_TRUE(m.device() == kCPU);
  std::vector<const void*> before;
  for (const auto& [n, p] : m.named_parameters()) before.push_back(p.raw_data());
  m.to(kCPU);
  size_t i = 0;
  for (const auto& [n, p] : m.named_parameters()) EXPECT_EQ(p.raw_data(), before[i++]) << n;
}

}  // namespace
}  // namespace copper
