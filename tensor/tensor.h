// tensor.h — the Tensor handle: shared storage + shape + strides + offset + dtype.
//
// A Tensor is a cheap handle (one shared_ptr) to a TensorImpl. Views (reshape, permute,
// narrow, expand, ...) make a new TensorImpl over the same Storage with other strides, so
// they copy nothing. Element (i0, i1, ...) lives at
//     storage + (offset + i0*strides[0] + i1*strides[1] + ...) * dtype_size
// docs/01-tensors.md walks through it with pictures.
#pragma once
#include <functional>
#include <initializer_list>
#include <optional>
#include <memory>
#include <string>
#include <vector>

#include "tensor/dtype.h"
#include "tensor/error.h"
#include "tensor/shape.h"
#include "tensor/storage.h"

namespace copper {

struct Node;  // autograd/node.h

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;       // in elements, not bytes
  int64_t offset = 0;  // in elements
  DType dtype = DType::f32;

  // autograd
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;        // the node that made this tensor (null for leaves)
  int64_t grad_fn_output = 0;           // which of grad_fn's outputs this tensor is
  std::shared_ptr<TensorImpl> grad;     // accumulated gradient of a leaf
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // A fresh contiguous tensor (uninitialised memory).
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = kCPU);

  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

  // ---- geometry ----
  const Shape& shape() const { return checked()->shape; }
  const Shape& strides() const { return checked()->strides; }
  int64_t offset() const { return checked()->offset; }
  int64_t dim() const { return int64_t(shape().size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t stride(int64_t d) const;  // likewise
  int64_t numel() const { return shape_numel(shape()); }
  DType dtype() const { return checked()->dtype; }
  Device device() const { return checked()->storage->device(); }
  bool is_contiguous() const;
  // Every element has a place of its own and together they fill one block of memory, in some
  // order of the dims (contiguous, or a permutation of contiguous); false for a broadcast view.
  bool is_dense() const;
  bool same_storage(const Tensor& o) const { return checked()->storage == o.checked()->storage; }

  // Pointer to element 0 of this view. data<T>() checks that T matches the dtype.
  void* raw_data() const;
  template <class T>
  T* data() const;

  // ---- values (slow paths for tests, printing and small scalars) ----
  double item() const;                                      // a one-element tensor's value
  double at(std::initializer_list<int64_t> index) const;    // one element by index
  template <class T>
  std::vector<T> to_vector() const;                         // all elements in row-major order
  std::string str() const;                                  // numpy-like text
  std::string repr_shape() const { return fmt::format("{}{}", dtype_name(dtype()), shape_str(shape())); }

  // ---- conversion ----
  Tensor to(DType t) const;          // cast (differentiable between float types)
  Tensor to(Device d) const;         // copy to another device
  Tensor contiguous() const;         // this if already contiguous, else a copy
  Tensor clone() const;              // always a copy (differentiable)

  // ---- views (all differentiable, none copies) ----
  Tensor view(const Shape& shape) const;       // needs compatible strides; -1 infers one dim
  Tensor reshape(const Shape& shape) const;    // view if possible, else copy
  Tensor flatten(int64_t start = 0, int64_t end = -1) const;
  Tensor permute(const Shape& dims) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const { return transpose(-2, -1); }
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;  // removes dim
  Tensor expand(const Shape& shape) const;          // -1 keeps a dim; new dims in front
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor flip(const Shape& dims) const;             // negative strides, no copy

  // ---- autograd ----
  bool requires_grad() const { return checked()->requires_grad; }
  Tensor& requires_grad_(bool on = true);
  bool is_leaf() const { return checked()->grad_fn == nullptr; }
  const std::shared_ptr<Node>& grad_fn() const { return checked()->grad_fn; }
  int64_t grad_fn_output() const { return checked()->grad_fn_output; }
  Tensor grad() const;                   // undefined if none accumulated yet
  void set_grad(const Tensor& g);        // replace the accumulated gradient
  void zero_grad();                      // drop the accumulated gradient
  // Backpropagate from this tensor. With no gradient given it must hold one element (seed 1).
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;
  // Same data, cut from the graph (shares storage; requires_grad false).
  Tensor detach() const;

 private:
  TensorImpl* checked() const {
    if (!impl_) throw Error("[tensor] use of an undefined tensor. HINT: initialise it from a factory (zeros, randn, ...) or an op");
    return impl_.get();
  }
  std::shared_ptr<TensorImpl> impl_;
};

// A raw view on t's storage with the given geometry; no checks, no autograd. For kernels
// and ops that know their strides are valid; users want view/permute/narrow instead.
Tensor as_strided(const Tensor& t, const Shape& shape, const Shape& strides, int64_t offset);

template <class T>
constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::i64; }
template <> constexpr DType dtype_of<bf16>() { return DType::bf16; }
template <> constexpr DType dtype_of<f16>() { return DType::f16; }

template <class T>
T* Tensor::data() const {
  COPPER_CHECK(dtype() == dtype_of<T>(), "data", "asked for {} data from a {} tensor {}", dtype_name(dtype_of<T>()),
               dtype_name(dtype()), shape_str(shape()));
  return static_cast<T*>(raw_data());
}

}  // namespace copper

// fmt support: fmt::print("{}", t) prints the numpy-like text.
template <>
struct fmt::formatter<copper::Tensor> : fmt::formatter<std::string> {
  template <class Ctx>
  auto format(const copper::Tensor& t, Ctx& ctx) const {
    return fmt::formatter<std::string>::format(t.str(), ctx);
  }
};
