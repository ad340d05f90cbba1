// module.h — Module, the base of every layer: named parameters, child modules, train/eval
// mode and state dicts, in the style of the libtorch C++ frontend.
//
// A module owns its parameters (leaf tensors that require grad), its buffers (state that
// is not trained: tables, caches) and its children under names. named_parameters() walks the tree depth first in registration order and joins the
// names with dots ("blocks.0.attn.qkv.weight"), so the order is deterministic and the same
// for every instance built from the same config. A parameter shared by two modules (tied
// weights) is listed once, under the first name it was reached by.
//
// Buffers never require grad and are not in parameters() (so no optimizer sees them).
// A persistent buffer is part of state_dict() and load_state_dict(); a non-persistent one
// (the default) is a cache its owner rebuilds when needed (RoPE's cos/sin tables, ALiBi's
// bias) and is saved nowhere. set_buffer replaces a buffer's tensor (a cache that grew).
//
//   class Affine : public Module {
//    public:
//     Affine(int64_t n) { w = register_parameter("w", ones({n})); }
//     Tensor forward(const Tensor& x) { return x * w; }
//     Tensor w;
//   };
#pragma once
#include <cstdint>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace copper::nn {

// Name → tensor in insertion order (the order of named_parameters()); iterating gives
// (name, tensor) pairs. Lookups are by name.
class StateDict {
 public:
  using Item = std::pair<std::string, Tensor>;
  StateDict() = default;
  StateDict(const std::map<std::string, Tensor>& m);  // NOLINT: implicit on purpose, a map works where a StateDict is asked

  // Adds a new entry; throws copper::Error if the name is already there.
  void insert(const std::string& name, const Tensor& t);
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  const Tensor& at(const std::string& name) const;  // throws listing a few names if absent
  const Tensor* find(const std::string& name) const;  // nullptr if absent
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  std::vector<std::string> keys() const;

  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }

 private:
  std::vector<Item> items_;
  std::map<std::string, size_t> index_;
};

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // A short type name for summaries ("Linear", "CausalSelfAttention", ...).
  virtual std::string type_name() const { return "Module"; }

  // ---- building ----
  // Registers `t` as a parameter (made a leaf that requires grad) and returns the same handle.
  // Names: non-empty, no dots, unique among this module's parameters and children.
  Tensor register_parameter(const std::string& name, Tensor t, bool requires_grad = true);
  // Registers `t` (detached, no grad) as a buffer and returns it; same naming rules.
  Tensor register_buffer(const std::string& name, Tensor t, bool persistent = false);
  // Replaces the tensor of the registered buffer `name` (throws if there is none); returns it.
  Tensor set_buffer(const std::string& name, Tensor t);
  // The buffer `name` of this module (undefined tensor if registered undefined); throws if absent.
  const Tensor& buffer(const std::string& name) const;
  bool has_buffer(const std::string& name) const;
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }

  // ---- walking ----
  std::vector<std::pair<std::string, Tensor>> named_parameters(bool recurse = true) const;
  std::vector<Tensor> parameters(bool recurse = true) const;
  // Buffers with dotted names ("blocks.0.attn.pe.cos"), depth first; undefined ones skipped.
  std::vector<std::pair<std::string, Tensor>> named_buffers(bool recurse = true) const;
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& named_children() const { return children_; }
  // This module ("" name) and every descendant, depth first, with dotted names.
  std::vector<std::pair<std::string, std::shared_ptr<const Module>>> named_modules() const;
  int64_t num_parameters() const;  // total elements

  // ---- modes ----
  virtual void train(bool on = true);  // recursive
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // ---- gradients and state ----
  void zero_grad();  // drops every parameter's accumulated gradient
  // The parameters and persistent buffers themselves (shared handles, not copies).
  StateDict state_dict() const;
  // The same entries as a list of (name, tensor), in state_dict order: what checkpoint
  // files read and write (nn/checkpoint.h).
  std::vector<std::pair<std::string, Tensor>> named_state() const;
  // Copies the values of `sd` into the parameters and persistent buffers (cast to their
  // dtype). On a shape mismatch throws "[load_state_dict] name: checkpoint [..] vs model [..]". With strict,
  // missing and unexpected keys are errors too (all of them listed); without, they are skipped.
  void load_state_dict(const StateDict& sd, bool strict = true);
  // Converts every parameter and floating persistent buffer to `dtype` in place: handles
  // held by layers stay valid. Drops accumulated gradients. (f64 for gradient checks of
  // whole models.) Non-persistent buffers are caches: their owners rebuild them per dtype.
  void to(DType dtype);
  // Moves every parameter and buffer (caches too) to `device` in place, as to(DType) does:
  // handles held by layers and optimizers created afterwards see the moved tensors. Drops
  // accumulated gradients. Create the optimizer after this call: its state lives where the
  // parameters are when it is made.
  void to(Device device);
  // Where to(Device) last put this module (the CPU until then). Modules that build tables
  // lazily (RoPE, ALiBi, sinusoidal) build them here.
  Device device() const { return device_; }

 protected:
  bool training_ = true;
  Device device_ = kCPU;

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> m);
  void set_device_recursive(Device device);
  void check_new_name(const std::string& name) const;
  void collect(const std::string& prefix, std::vector<std::pair<std::string, Tensor>>& out,
               std::set<const TensorImpl*>& seen) const;

  // The named tensors state_dict() holds: parameters, then persistent buffers.
  std::vector<std::pair<std::string, Tensor>> state_tensors() const;
  void collect_buffers(const std::string& prefix, bool persistent_only,
                       std::vector<std::pair<std::string, Tensor>>& out) const;
  struct Buffer {
    std::string name;
    Tensor tensor;
    bool persistent;
  };

  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<Buffer> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

// An indexed list of modules; its children are named "0", "1", ... ("blocks.0.attn...").
class ModuleList : public Module {
 public:
  std::string type_name() const override { return "ModuleList"; }
  template <class M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> m) {
    items_.push_back(m);
    return register_module(std::to_string(items_.size() - 1), std::move(m));
  }
  size_t size() const { return items_.size(); }
  const std::shared_ptr<Module>& operator[](size_t i) const { return items_.at(i); }

 private:
  std::vector<std::shared_ptr<Module>> items_;
};

}  // namespace copper::nn
