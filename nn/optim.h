// optim.h — optimizers (SGD with momentum, Adam, AdamW) and gradient clipping.
//
// An optimizer holds a list of (name, parameter) pairs — the names are the model's dotted
// parameter names, so its state can be saved beside the weights and checked against them —
// and, per parameter, its moments. step() reads each parameter's accumulated .grad() and
// updates the parameter in place under NoGradGuard; parameters without a gradient are
// skipped (their moments do not move), as in PyTorch.
//
// State for checkpoints: state_tensors() gives the moments under names such as
// "exp_avg.blocks.0.attn.qkv.weight"; state_json() gives the step count and the
// hyper-parameters. load_state() takes both back and checks every name and shape.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "tensor/tensor.h"

namespace copper::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Optimizer {
 public:
  explicit Optimizer(NamedTensors params);
  virtual ~Optimizer() = default;

  virtual const char* name() const = 0;
  // One update of every parameter that has a gradient.
  virtual void step() = 0;
  // Drop every parameter's accumulated gradient.
  void zero_grad();

  double lr() const { return lr_; }
  void set_lr(double lr) { lr_ = lr; }
  int64_t steps_taken() const { return step_; }
  const NamedTensors& params() const { return params_; }

  // Moments by name ("exp_avg.<param>", ...), in a fixed order.
  virtual std::map<std::string, Tensor> state_tensors() const = 0;
  // {"optimizer": name, "step": n, "lr": lr, ...hyper-parameters}
  virtual nlohmann::json state_json() const;
  // Restore from what state_tensors()/state_json() gave; throws copper::Error naming the
  // tensor and both shapes on a mismatch, or the optimizer kind if it differs.
  virtual void load_state(const std::map<std::string, Tensor>& tensors, const nlohmann::json& js);

 protected:
  // Parameter i's gradient as a contiguous tensor of the parameter's dtype (its shape
  // checked), or an undefined tensor if it has none. (The constructor checked that every
  // parameter is a contiguous f32/f64 tensor.)
  Tensor grad_of(size_t i) const;
  // Copy a saved moment into `dst` after checking its shape and dtype.
  static void restore_into(const std::map<std::string, Tensor>& tensors, const std::string& key, const Tensor& dst);

  NamedTensors params_;
  double lr_ = 1e-3;
  int64_t step_ = 0;
};

// SGD with momentum (PyTorch semantics): buf = mu buf + (1 - dampening) g (buf = g on the
// first step); g' = nesterov ? g + mu buf : buf; p -= lr (g' + wd p) — weight decay added
// to the gradient before the momentum.
struct SGDOptions {
  double lr = 1e-2;
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;
  bool nesterov = false;
};
class SGD : public Optimizer {
 public:
  SGD(NamedTensors params, SGDOptions opt = {});
  const char* name() const override { return "sgd"; }
  void step() override;
  std::map<std::string, Tensor> state_tensors() const override;
  nlohmann::json state_json() const override;
  void load_state(const std::map<std::string, Tensor>& tensors, const nlohmann::json& js) override;
  const SGDOptions& options() const { return opt_; }

 private:
  SGDOptions opt_;
  std::vector<Tensor> buf_;      // momentum buffers (allocated on the first step of each param)
  std::vector<bool> has_buf_;
};

// Adam (coupled L2: g += wd p) and AdamW (decoupled: p -= lr wd p). Both run the fused
// backend kernel for all parameters of a device at once (Backend::adamw_steps); Adam passes
// wd = 0 after folding it into g.
struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;
};
class Adam : public Optimizer {
 public:
  Adam(NamedTensors params, AdamOptions opt = {}, bool decoupled = false);
  const char* name() const override { return decoupled_ ? "adamw" : "adam"; }
  void step() override;
  std::map<std::string, Tensor> state_tensors() const override;
  nlohmann::json state_json() const override;
  void load_state(const std::map<std::string, Tensor>& tensors, const nlohmann::json& js) override;
  const AdamOptions& options() const { return opt_; }

 private:
  AdamOptions opt_;
  bool decoupled_;
  std::vector<Tensor> m_, v_;        // first and second moments, zeros at the start
  std::vector<int64_t> param_step_;  // steps taken by each parameter (bias correction)
};

class AdamW : public Adam {
 public:
  AdamW(NamedTensors params, AdamOptions opt = {}) : Adam(std::move(params), opt, true) {}
};

// Build by name: "sgd", "adam" or "adamw"; throws listing the valid names.
struct OptimConfig {
  std::string name = "adamw";
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0;
  double momentum = 0.9;  // sgd only

  template <class Self, class Visit>
  static void fields(Self& c, Visit&& visit) {  // the one list of fields (nn/config.h)
    visit("name", c.name, "optimizer: sgd, adam or adamw");
    visit("lr", c.lr, "learning rate");
    visit("beta1", c.beta1, "Adam's first-moment decay");
    visit("beta2", c.beta2, "Adam's second-moment decay");
    visit("eps", c.eps, "Adam's epsilon");
    visit("weight_decay", c.weight_decay, "weight decay (decoupled for adamw)");
    visit("momentum", c.momentum, "SGD momentum");
  }
  nlohmann::json to_json() const;
  static OptimConfig from_json(const nlohmann::json& js);
};
std::unique_ptr<Optimizer> make_optimizer(const OptimConfig& cfg, NamedTensors params);

// Global L2 norm of all gradients (accumulated in f64, in parameter order, so the result
// does not depend on the thread count). If it exceeds max_norm (> 0), every gradient is
// scaled by max_norm / (norm + 1e-6). Returns the norm before clipping.
double clip_grad_norm(const NamedTensors& params, double max_norm);

}  // namespace copper::nn
