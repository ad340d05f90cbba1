// optim.cpp — SGD, Adam, AdamW, their saved state, and clipping by global norm.
#include "nn/optim.h"

#include <algorithm>
#include <cmath>

#include "autograd/grad_mode.h"
#include "nn/config.h"
#include "tensor/backend.h"
#include "tensor/ops.h"

namespace copper::nn {

// ---------------------------------------------------------------- Optimizer

Optimizer::Optimizer(NamedTensors params) : params_(std::move(params)) {
  for (auto& [name, p] : params_) {
    COPPER_CHECK(p.defined(), "optim", "parameter '{}' is an undefined tensor. HINT: build the model before the optimizer",
                 name);
    COPPER_CHECK(p.dtype() == DType::f32 || p.dtype() == DType::f64, "optim",
                 "parameter '{}' is {}{}; the optimizers update f32 or f64 parameters. HINT: keep master weights in "
                 "f32",
                 name, dtype_name(p.dtype()), shape_str(p.shape()));
    COPPER_CHECK(p.is_contiguous(), "optim",
                 "parameter '{}' {} is not contiguous. HINT: register a contiguous tensor as the parameter", name,
                 shape_str(p.shape()));
  }
}

void Optimizer::zero_grad() {
  for (auto& [name, p] : params_) p.zero_grad();
}

Tensor Optimizer::grad_of(size_t i) const {
  const auto& [name, p] = params_[i];
  Tensor g = p.grad();
  if (!g.defined()) return g;
  COPPER_CHECK(g.shape() == p.shape(), "optim", "gradient of '{}' has shape {} but the parameter has {}", name,
               shape_str(g.shape()), shape_str(p.shape()));
  if (g.dtype() != p.dtype()) g = g.to(p.dtype());
  return g.contiguous();
}

nlohmann::json Optimizer::state_json() const { return {{"optimizer", name()}, {"step", step_}, {"lr", lr_}}; }

void Optimizer::load_state(const std::map<std::string, Tensor>&, const nlohmann::json& js) {
  COPPER_CHECK(js.is_object() && js.contains("optimizer") && js.contains("step"), "optim",
               "optimizer state is missing 'optimizer' or 'step': {}. HINT: pass what state_json() wrote",
               js.dump().substr(0, 200));
  const std::string kind = js.at("optimizer").get<std::string>();
  COPPER_CHECK(kind == name(), "optim", "saved optimizer state is for '{}', this optimizer is '{}'", kind, name());
  step_ = js.at("step").get<int64_t>();
  if (js.contains("lr")) lr_ = js.at("lr").get<double>();
}

void Optimizer::restore_into(const std::map<std::string, Tensor>& tensors, const std::string& key, const Tensor& dst) {
  auto it = tensors.find(key);
  COPPER_CHECK(it != tensors.end(), "optim", "saved optimizer state has no tensor '{}'. HINT: the checkpoint was "
               "written for another model or optimizer", key);
  const Tensor& src = it->second;
  COPPER_CHECK(src.shape() == dst.shape(), "optim", "saved optimizer tensor '{}' has shape {} but the parameter has {}",
               key, shape_str(src.shape()), shape_str(dst.shape()));
  NoGradGuard ng;
  copy_(dst, src);
}

// ---------------------------------------------------------------- SGD

SGD::SGD(NamedTensors params, SGDOptions opt) : Optimizer(std::move(params)), opt_(opt) {
  COPPER_CHECK(opt.lr >= 0 && opt.momentum >= 0 && opt.weight_decay >= 0, "sgd",
               "lr, momentum and weight_decay must be >= 0, got {}, {}, {}", opt.lr, opt.momentum, opt.weight_decay);
  COPPER_CHECK(!opt.nesterov || (opt.momentum > 0 && opt.dampening == 0), "sgd",
               "nesterov needs momentum > 0 and dampening 0");
  lr_ = opt.lr;
  buf_.resize(params_.size());
  has_buf_.assign(params_.size(), false);
}

void SGD::step() {
  NoGradGuard ng;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor g = grad_of(i);
    if (!g.defined()) continue;
    const Tensor& p = params_[i].second;
    if (opt_.weight_decay != 0) g = add(g, mul(p.detach(), opt_.weight_decay));
    if (opt_.momentum != 0) {
      if (!has_buf_[i]) {
        buf_[i] = g.clone();
        has_buf_[i] = true;
      } else {
        mul_(buf_[i], opt_.momentum);
        add_(buf_[i], g, 1 - opt_.dampening);
      }
      g = opt_.nesterov ? add(g, mul(buf_[i], opt_.momentum)) : buf_[i];
    }
    add_(p, g, -lr_);
  }
  ++step_;
}

std::map<std::string, Tensor> SGD::state_tensors() const {
  std::map<std::string, Tensor> out;
  for (size_t i = 0; i < params_.size(); ++i)
    if (has_buf_[i]) out["momentum_buffer." + params_[i].first] = buf_[i];
  return out;
}

nlohmann::json SGD::state_json() const {
  auto js = Optimizer::state_json();
  js["momentum"] = opt_.momentum;
  js["dampening"] = opt_.dampening;
  js["weight_decay"] = opt_.weight_decay;
  js["nesterov"] = opt_.nesterov;
  return js;
}

void SGD::load_state(const std::map<std::string, Tensor>& tensors, const nlohmann::json& js) {
  Optimizer::load_state(tensors, js);
  for (size_t i = 0; i < params_.size(); ++i) {
    const std::string key = "momentum_buffer." + params_[i].first;
    has_buf_[i] = tensors.count(key) > 0;
    if (has_buf_[i]) {
      buf_[i] = zeros_like(params_[i].second);
      restore_into(tensors, key, buf_[i]);
    } else {
      buf_[i] = Tensor();
    }
  }
}

// ---------------------------------------------------------------- Adam / AdamW

Adam::Adam(NamedTensors params, AdamOptions opt, bool decoupled)
    : Optimizer(std::move(params)), opt_(opt), decoupled_(decoupled) {
  COPPER_CHECK(opt.lr >= 0 && opt.eps >= 0 && opt.weight_decay >= 0, "adam",
               "lr, eps and weight_decay must be >= 0, got {}, {}, {}", opt.lr, opt.eps, opt.weight_decay);
  COPPER_CHECK(opt.beta1 >= 0 && opt.beta1 < 1 && opt.beta2 >= 0 && opt.beta2 < 1, "adam",
               "betas must lie in [0, 1), got ({}, {})", opt.beta1, opt.beta2);
  lr_ = opt.lr;
  for (auto& [name, p] : params_) {
    m_.push_back(zeros_like(p));
    v_.push_back(zeros_like(p));
  }
  param_step_.assign(params_.size(), 0);
}

void Adam::step() {
  NoGradGuard ng;
  // Every parameter with a gradient, with its own bias corrections (a parameter that got no
  // gradient in some step is a step behind), handed to its device's backend in one call: one
  // kernel launch on a GPU (Backend::adamw_steps).
  std::vector<Backend::AdamWParam> todo;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor g = grad_of(i);
    if (!g.defined()) continue;
    const Tensor& p = params_[i].second;
    double wd = opt_.weight_decay;
    if (!decoupled_ && wd != 0) {  // Adam: L2 penalty folded into the gradient
      g = add(g, mul(p.detach(), wd));
      wd = 0;
    }
    const int64_t t = ++param_step_[i];
    const double bc1 = 1 - std::pow(opt_.beta1, double(t));
    const double bc2 = 1 - std::pow(opt_.beta2, double(t));
    todo.push_back({p, g, m_[i], v_[i], wd, bc1, bc2});
  }
  // Grouped by device, in parameter order within each.
  while (!todo.empty()) {
    const Device d = todo.front().p.device();
    std::vector<Backend::AdamWParam> here, rest;
    for (auto& a : todo) (a.p.device() == d ? here : rest).push_back(std::move(a));
    backend_for(d).adamw_steps(here, lr_, opt_.beta1, opt_.beta2, opt_.eps);
    todo = std::move(rest);
  }
  ++step_;
}

std::map<std::string, Tensor> Adam::state_tensors() const {
  std::map<std::string, Tensor> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out["exp_avg." + params_[i].first] = m_[i];
    out["exp_avg_sq." + params_[i].first] = v_[i];
  }
  return out;
}

nlohmann::json Adam::state_json() const {
  auto js = Optimizer::state_json();
  js["beta1"] = opt_.beta1;
  js["beta2"] = opt_.beta2;
  js["eps"] = opt_.eps;
  js["weight_decay"] = opt_.weight_decay;
  nlohmann::json steps = nlohmann::json::object();
  for (size_t i = 0; i < params_.size(); ++i) steps[params_[i].first] = param_step_[i];
  js["param_steps"] = steps;
  return js;
}

void Adam::load_state(const std::map<std::string, Tensor>& tensors, const nlohmann::json& js) {
  Optimizer::load_state(tensors, js);
  const nlohmann::json steps = js.value("param_steps", nlohmann::json::object());
  for (size_t i = 0; i < params_.size(); ++i) {
    restore_into(tensors, "exp_avg." + params_[i].first, m_[i]);
    restore_into(tensors, "exp_avg_sq." + params_[i].first, v_[i]);
    param_step_[i] = steps.contains(params_[i].first) ? steps.at(params_[i].first).get<int64_t>() : step_;
  }
}

// ---------------------------------------------------------------- factory, clipping

nlohmann::json OptimConfig::to_json() const { return config::to_json(*this); }

OptimConfig OptimConfig::from_json(const nlohmann::json& js) {
  OptimConfig c;
  config::from_json(c, js, "OptimConfig");
  return c;
}

std::unique_ptr<Optimizer> make_optimizer(const OptimConfig& c, NamedTensors params) {
  AdamOptions a{c.lr, c.beta1, c.beta2, c.eps, c.weight_decay};
  if (c.name == "adamw") return std::make_unique<AdamW>(std::move(params), a);
  if (c.name == "adam") return std::make_unique<Adam>(std::move(params), a);
  if (c.name == "sgd") {
    SGDOptions s;
    s.lr = c.lr;
    s.momentum = c.momentum;
    s.weight_decay = c.weight_decay;
    return std::make_unique<SGD>(std::move(params), s);
  }
  COPPER_THROW("optim", "unknown optimizer '{}'. HINT: valid names are sgd, adam, adamw", c.name);
}

double clip_grad_norm(const NamedTensors& params, double max_norm) {
  NoGradGuard ng;
  // The squares of every gradient of a device summed in f64 by one backend call
  // (Backend::sum_squares: one launch on a GPU) and read once: one host synchronisation per
  // device and call, not one per parameter.
  std::vector<std::pair<Device, std::vector<Tensor>>> by_device;
  for (const auto& [name, p] : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    if (!g.is_contiguous()) g = g.contiguous();
    if (g.dtype() != DType::f32 && g.dtype() != DType::f64) g = g.to(DType::f64);
    auto it = std::find_if(by_device.begin(), by_device.end(), [&](const auto& e) { return e.first == g.device(); });
    if (it == by_device.end()) it = by_device.insert(by_device.end(), {g.device(), {}});
    it->second.push_back(g);
  }
  double squares = 0;
  for (const auto& [device, grads] : by_device) {
    Tensor out = Tensor::empty({}, DType::f64, device);
    backend_for(device).sum_squares(grads, out);
    squares += out.item();
  }
  const double norm = std::sqrt(squares);
  if (max_norm > 0 && norm > max_norm) {
    const double scale = max_norm / (norm + 1e-6);
    for (const auto& [name, p] : params) {
      Tensor g = p.grad();
      // A new tensor rather than mul_ in place: the engine may have stored a gradient that
      // is a broadcast view or shares memory with another one.
      Tensor handle = p;
      if (g.defined()) handle.set_grad(mul(g, scale));
    }
  }
  return norm;
}

}  // namespace copper::nn
