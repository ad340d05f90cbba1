// xor_mlp.h — a two-layer perceptron learns XOR: copper's tensors and autograd, nothing else.
//
// XOR is the classic problem a single linear layer cannot solve: the four points
// (0,0)->0, (0,1)->1, (1,0)->1, (1,1)->0 are not separable by one line. One hidden layer
// with a nonlinearity bends the plane enough. Everything is written out: the parameters
// are plain tensors with requires_grad, the forward pass is a few ops, loss.backward()
// fills each parameter's .grad, and SGD is one add_ per parameter under NoGradGuard.
//
// Used by examples/xor_mlp.cpp (a standalone program) and `copper demo --xor`.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include <fmt/format.h>

#include "autograd/grad_mode.h"
#include "tensor/ops.h"
#include "tensor/random.h"

namespace copper::examples {

struct XorConfig {
  int64_t hidden = 8;     // width of the hidden layer
  int64_t steps = 2000;   // full-batch SGD steps (the batch is all four points)
  double lr = 0.5;        // SGD learning rate
  int64_t log_every = 200;
  uint64_t seed = 7;
};

struct XorResult {
  std::vector<double> losses;       // one per logged step
  std::vector<double> predictions;  // P(label = 1) for the four inputs, in order
  double final_loss = 0;
  bool solved = false;              // every prediction on the right side of 0.5
};

// Trains and returns the result; prints progress to `out` (nullptr: silent).
inline XorResult train_xor_mlp(const XorConfig& cfg, std::FILE* out = stdout) {
  Generator gen(cfg.seed);
  // x: [4, 2] the four corners; y: [4, 1] their XOR
  const Tensor x = from_vector(std::vector<float>{0, 0, 0, 1, 1, 0, 1, 1}, {4, 2});
  const Tensor y = from_vector(std::vector<float>{0, 1, 1, 0}, {4, 1});

  // Parameters, initialised like nn.Linear: uniform in +-1/sqrt(fan_in).
  auto param = [&](Shape shape, int64_t fan_in) {
    const double bound = 1.0 / std::sqrt(double(fan_in));
    Tensor p = rand(shape, DType::f32, &gen, -bound, bound);
    p.requires_grad_();
    return p;
  };
  Tensor w1 = param({cfg.hidden, 2}, 2);           // [H, 2]
  Tensor b1 = param({cfg.hidden}, 2);              // [H]
  Tensor w2 = param({1, cfg.hidden}, cfg.hidden);  // [1, H]
  Tensor b2 = param({1}, cfg.hidden);              // [1]
  std::vector<Tensor> params{w1, b1, w2, b2};

  // logits: [4, 1]. linear(x, w, b) = x @ w^T + b.
  auto forward = [&](const Tensor& in) { return linear(tanh(linear(in, w1, b1)), w2, b2); };

  // Binary cross-entropy on logits z: mean(log(1 + e^z) - y z). The logits stay small
  // here, so the plain form is accurate; a large-logit version would use softplus.
  auto bce = [&](const Tensor& z) { return mean(sub(log(add(exp(z), 1.0)), mul(y, z))); };

  XorResult r;
  for (int64_t step = 1; step <= cfg.steps; ++step) {
    Tensor loss = bce(forward(x));
    loss.backward();  // fills w1.grad(), b1.grad(), ...
    {
      NoGradGuard no_grad;  // the update itself must not be recorded
      for (Tensor& p : params) {
        add_(p, p.grad(), -cfg.lr);  // p -= lr * grad
        p.zero_grad();               // gradients accumulate; start the next step from zero
      }
    }
    r.final_loss = loss.item();
    if (cfg.log_every > 0 && (step % cfg.log_every == 0 || step == 1)) {
      r.losses.push_back(r.final_loss);
      if (out) fmt::print(out, "step {:5d}  loss {:.6f}\n", step, r.final_loss);
    }
  }

  NoGradGuard no_grad;
  r.predictions = sigmoid(forward(x)).to_vector<double>();
  const std::vector<float> want = y.to_vector<float>();
  r.solved = true;
  for (size_t i = 0; i < 4; ++i) r.solved = r.solved && ((r.predictions[i] > 0.5) == (want[i] > 0.5f));
  if (out) {
    const std::vector<float> xs = x.to_vector<float>();
    for (size_t i = 0; i < 4; ++i)
      fmt::print(out, "  {} xor {} = {}   predicted {:.4f}\n", int(xs[2 * i]), int(xs[2 * i + 1]), int(want[i]),
                 r.predictions[i]);
    fmt::print(out, "{}\n", r.solved ? "solved: every prediction is on the right side of 0.5"
                                     : "not solved: try more --steps or another --seed");
  }
  return r;
}

}  // namespace copper::examples
