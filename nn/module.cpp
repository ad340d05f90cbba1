// module.cpp — Module and StateDict (see module.h).
#include "nn/module.h"

#include <algorithm>

#include "autograd/grad_mode.h"
#include "tensor/ops.h"

namespace copper::nn {

// ---------------------------------------------------------------- StateDict

StateDict::StateDict(const std::map<std::string, Tensor>& m) {
  for (auto& [k, v] : m) insert(k, v);
}

void StateDict::insert(const std::string& name, const Tensor& t) {
  COPPER_CHECK(!contains(name), "state_dict", "duplicate key '{}'", name);
  index_[name] = items_.size();
  items_.emplace_back(name, t);
}

const Tensor* StateDict::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &items_[it->second].second;
}

const Tensor& StateDict::at(const std::string& name) const {
  if (const Tensor* t = find(name)) return *t;
  std::string some;
  for (size_t i = 0; i < items_.size() && i < 8; ++i) some += (i ? ", " : "") + items_[i].first;
  COPPER_THROW("state_dict", "no key '{}' among {} keys ({}{}). HINT: names are dotted paths such as "
               "blocks.0.attn.qkv.weight",
               name, items_.size(), some, items_.size() > 8 ? ", ..." : "");
}

std::vector<std::string> StateDict::keys() const {
  std::vector<std::string> k;
  for (auto& [n, t] : items_) k.push_back(n);
  return k;
}

// ---------------------------------------------------------------- Module

void Module::check_new_name(const std::string& name) const {
  COPPER_CHECK(!name.empty() && name.find('.') == std::string::npos, "module",
               "invalid name '{}'. HINT: names are non-empty and have no dots (dots join the path)", name);
  auto taken = [&](const auto& v) {
    return std::any_of(v.begin(), v.end(), [&](const auto& p) { return p.first == name; });
  };
  const bool buffer_taken =
      std::any_of(buffers_.begin(), buffers_.end(), [&](const Buffer& b) { return b.name == name; });
  COPPER_CHECK(!taken(params_) && !taken(children_) && !buffer_taken, "module", "name '{}' is already registered in this {}", name,
               type_name());
}

Tensor Module::register_parameter(const std::string& name, Tensor t, bool requires_grad) {
  check_new_name(name);
  COPPER_CHECK(t.defined(), "module", "parameter '{}' is an undefined tensor", name);
  if (!t.is_leaf()) t = t.detach();
  t.requires_grad_(requires_grad);
  params_.emplace_back(name, t);
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t, bool persistent) {
  check_new_name(name);
  if (t.defined()) t = t.detach();  // a buffer never takes part in autograd
  buffers_.push_back(Buffer{name, t, persistent});
  return t;
}

Tensor Module::set_buffer(const std::string& name, Tensor t) {
  for (auto& b : buffers_)
    if (b.name == name) {
      b.tensor = t.defined() ? t.detach() : t;
      return b.tensor;
    }
  COPPER_THROW("module", "no buffer '{}' in this {}. HINT: register_buffer it in the constructor first", name,
               type_name());
}

const Tensor& Module::buffer(const std::string& name) const {
  for (auto& b : buffers_)
    if (b.name == name) return b.tensor;
  COPPER_THROW("module", "no buffer '{}' in this {}. HINT: register_buffer it in the constructor first", name,
               type_name());
}

bool Module::has_buffer(const std::string& name) const {
  return std::any_of(buffers_.begin(), buffers_.end(), [&](const Buffer& b) { return b.name == name; });
}

void Module::collect_buffers(const std::string& prefix, bool persistent_only,
                             std::vector<std::pair<std::string, Tensor>>& out) const {
  for (auto& b : buffers_)
    if (b.tensor.defined() && (b.persistent || !persistent_only)) out.emplace_back(prefix + b.name, b.tensor);
  for (auto& [n, c] : children_) c->collect_buffers(prefix + n + ".", persistent_only, out);
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers(bool recurse) const {
  std::vector<std::pair<std::string, Tensor>> out;
  if (recurse) {
    collect_buffers("", false, out);
  } else {
    for (auto& b : buffers_)
      if (b.tensor.defined()) out.emplace_back(b.name, b.tensor);
  }
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::state_tensors() const {
  auto out = named_parameters();
  collect_buffers("", true, out);
  return out;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
  check_new_name(name);
  COPPER_CHECK(m != nullptr, "module", "child '{}' is null", name);
  children_.emplace_back(name, std::move(m));
}

void Module::collect(const std::string& prefix, std::vector<std::pair<std::string, Tensor>>& out,
                     std::set<const TensorImpl*>& seen) const {
  for (auto& [n, t] : params_)
    if (seen.insert(t.impl()).second) out.emplace_back(prefix + n, t);
  for (auto& [n, c] : children_) c->collect(prefix + n + ".", out, seen);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters(bool recurse) const {
  std::vector<std::pair<std::string, Tensor>> out;
  std::set<const TensorImpl*> seen;
  if (recurse) {
    collect("", out, seen);
  } else {
    for (auto& [n, t] : params_)
      if (seen.insert(t.impl()).second) out.emplace_back(n, t);
  }
  return out;
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters(recurse)) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<const Module>>> Module::named_modules() const {
  std::vector<std::pair<std::string, std::shared_ptr<const Module>>> out;
  // The root is not owned by a shared_ptr we know of: give it a non-owning one.
  out.emplace_back("", std::shared_ptr<const Module>(std::shared_ptr<const Module>(), this));
  for (auto& [n, c] : children_)
    for (auto& [sub, m] : c->named_modules()) out.emplace_back(sub.empty() ? n : n + "." + sub, m);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, c] : children_) c->train(on);
}

void Module::zero_grad() {
  for (auto& [n, t] : named_parameters()) t.zero_grad();
}

StateDict Module::state_dict() const {
  StateDict sd;
  for (auto& [n, t] : state_tensors()) sd.insert(n, t);
  return sd;
}

std::vector<std::pair<std::string, Tensor>> Module::named_state() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& [name, t] : state_dict()) out.emplace_back(name, t);
  return out;
}

void Module::load_state_dict(const StateDict& sd, bool strict) {
  const auto params = state_tensors();
  // Check everything first, so that a failed load leaves the model untouched.
  std::vector<std::string> missing, unexpected;
  for (auto& [n, t] : params) {
    const Tensor* src = sd.find(n);
    if (!src) {
      missing.push_back(n);
      continue;
    }
    COPPER_CHECK(src->shape() == t.shape(), "load_state_dict",
                 "{}: checkpoint {} vs model {}. HINT: the checkpoint was made by a model with another config",
                 n, shape_str(src->shape()), shape_str(t.shape()));
  }
  for (auto& [n, t] : sd) {
    bool known = std::any_of(params.begin(), params.end(), [&](const auto& p) { return p.first == n; });
    if (!known) unexpected.push_back(n);
  }
  if (strict && (!missing.empty() || !unexpected.empty())) {
    auto join = [](const std::vector<std::string>& v) {
      std::string s;
      for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
      return s.empty() ? std::string("none") : s;
    };
    COPPER_THROW("load_state_dict",
                 "keys differ: missing in checkpoint: {}; unexpected in checkpoint: {}. HINT: load with "
                 "strict=false to skip them, or check that the checkpoint matches this model's config",
                 join(missing), join(unexpected));
  }
  NoGradGuard ng;
  for (auto& [n, t] : params)
    if (const Tensor* src = sd.find(n)) copy_(t, *src);
}

void Module::to(DType dtype) {
  COPPER_CHECK(is_floating(dtype), "module", "parameters must stay floating point, asked for {}", dtype_name(dtype));
  NoGradGuard ng;
  for (auto& [n, t] : state_tensors()) {
    if (t.dtype() == dtype || !is_floating(t.dtype())) continue;
    Tensor c = t.detach().to(dtype).contiguous();
    TensorImpl* p = t.impl();  // rewrite the shared impl so every handle sees the new tensor
    p->storage = c.impl()->storage;
    p->shape = c.shape();
    p->strides = c.strides();
    p->offset = c.offset();
    p->dtype = dtype;
    p->grad.reset();
  }
}

void Module::to(Device device) {
  NoGradGuard ng;
  auto move = [&](const Tensor& t) {
    if (!t.defined() || t.device() == device) return;
    Tensor c = t.detach().to(device);  // contiguous
    TensorImpl* p = t.impl();          // rewrite the shared impl so every handle sees the moved tensor
    p->storage = c.impl()->storage;
    p->strides = c.strides();
    p->offset = c.offset();
    p->grad.reset();
  };
  for (auto& [n, t] : named_parameters()) move(t);
  for (auto& [n, t] : named_buffers()) move(t);
  set_device_recursive(device);
}

void Module::set_device_recursive(Device device) {
  device_ = device;
  for (auto& [n, c] : children_) c->set_device_recursive(device);
}

}  // namespace copper::nn
