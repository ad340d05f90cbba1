// tensor.cpp — Tensor's geometry, views, conversions and printing.
//
// Views share the Storage and differ only in shape, strides and offset; each records
// an autograd node whose backward undoes the view on the gradient.
#include "tensor/tensor.h"

#include <algorithm>
#include <numeric>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "tensor/backend.h"
#include "tensor/ops.h"

namespace copper {

namespace {

// A new handle on base's storage with other geometry (no autograd recorded here).
Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.impl()->storage;
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}

// Infer one -1 in a requested shape from the element count.
Shape infer_shape(const Shape& want, int64_t numel, const char* op, const Shape& from) {
  Shape s = want;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      COPPER_CHECK(infer < 0, op, "only one dimension can be -1, got {}", shape_str(want));
      infer = int64_t(i);
    } else {
      COPPER_CHECK(s[i] >= 0, op, "negative size in {}", shape_str(want));
      known *= s[i];
    }
  }
  if (infer >= 0) {
    COPPER_CHECK(known != 0 && numel % known == 0, op, "cannot infer -1 in {} for {} elements of {}", shape_str(want),
                 numel, shape_str(from));
    s[infer] = numel / known;
    known *= s[infer];
  }
  COPPER_CHECK(known == numel, op, "shape {} has {} elements but the tensor {} has {}. HINT: the product of the sizes must stay the same",
               shape_str(s), known, shape_str(from), numel);
  return s;
}

// Strides for viewing (shape, strides) as new_shape without a copy, or empty if impossible.
// Walks both shapes in groups of equal element count; each old group must be contiguous.
std::optional<Shape> view_strides(const Shape& shape, const Shape& strides, const Shape& new_shape) {
  Shape out(new_shape.size());
  // empty or single-element tensors (0-d included) can take any shape of that size
  if (shape_numel(shape) <= 1 || shape.empty() || new_shape.empty()) return contiguous_strides(new_shape);
  int64_t view_d = int64_t(new_shape.size()) - 1;
  int64_t chunk_base_stride = strides.empty() ? 1 : strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = int64_t(shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= shape[d];
    if (d == 0 || (shape[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= new_shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base_stride = strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return out;
}

}  // namespace

Tensor as_strided(const Tensor& t, const Shape& shape, const Shape& strides, int64_t offset) {
  return make_view(t, shape, strides, offset);
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) COPPER_CHECK(d >= 0, "empty", "negative size in shape {}", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(size_t(shape_numel(shape)) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

int64_t Tensor::size(int64_t d) const {
  // wrap_dim lets a 0-d tensor name dim 0 or -1 (as reductions do), but it has no size to read
  COPPER_CHECK(dim() > 0, "size", "a 0-d tensor {} has no dimension {}", repr_shape(), d);
  return shape()[wrap_dim(d, dim(), "size")];
}

int64_t Tensor::stride(int64_t d) const {
  COPPER_CHECK(dim() > 0, "stride", "a 0-d tensor {} has no dimension {}", repr_shape(), d);
  return strides()[wrap_dim(d, dim(), "stride")];
}

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int64_t d = dim() - 1; d >= 0; --d) {
    if (shape()[d] == 1) continue;
    if (strides()[d] != expected) return false;
    expected *= shape()[d];
  }
  return true;
}

bool Tensor::is_dense() const {
  std::vector<std::pair<int64_t, int64_t>> dims;  // (stride, size) of the dims that vary
  for (int64_t d = 0; d < dim(); ++d)
    if (shape()[d] > 1) dims.emplace_back(strides()[d], shape()[d]);
  std::sort(dims.begin(), dims.end());
  int64_t expected = 1;  // each stride must be the product of the sizes below it
  for (const auto& [stride, size] : dims) {
    if (stride != expected) return false;
    expected *= size;
  }
  return true;
}

void* Tensor::raw_data() const {
  return static_cast<char*>(checked()->storage->data()) + offset() * int64_t(dtype_size(dtype()));
}

// ---------------- values ----------------

double Tensor::item() const {
  COPPER_CHECK(numel() == 1, "item", "item() needs a one-element tensor, got {}", repr_shape());
  return to_vector<double>()[0];
}

double Tensor::at(std::initializer_list<int64_t> index) const {
  COPPER_CHECK(int64_t(index.size()) == dim(), "at", "{} indices for a {}-d tensor {}", index.size(), dim(),
               repr_shape());
  Tensor v = *this;
  int64_t d = 0;
  for (int64_t i : index) {
    COPPER_CHECK(i >= -size(d) && i < size(d), "at", "index {} out of range for dim {} of size {}", i, d, size(d));
    v = v.select(0, i < 0 ? i + size(d) : i);
    ++d;
  }
  return v.item();
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  NoGradGuard ng;
  Tensor src = device().is_cpu() ? *this : to(kCPU);
  Tensor dst = Tensor::empty(shape(), dtype_of<T>());
  backend_for(kCPU).copy(src, dst);
  const T* p = dst.data<T>();
  return std::vector<T>(p, p + dst.numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;

std::string Tensor::str() const {
  if (!defined()) return "tensor(undefined)";
  std::vector<double> v = to_vector<double>();
  const bool integral = is_integer(dtype());
  const Shape& s = shape();
  const int64_t nd = dim();
  const bool summarize = numel() > 1000;
  auto fmt_value = [&](double x) { return integral ? fmt::format("{}", int64_t(x)) : fmt::format("{:.4f}", x); };
  std::string out = "tensor(";
  // Recursive over dims (one call per dim, so at most dim() deep); the layout mirrors numpy's.
  std::function<void(int64_t, int64_t)> rec = [&](int64_t d, int64_t base) {
    if (d == nd) {
      out += fmt_value(v[base]);
      return;
    }
    int64_t stride = 1;
    for (int64_t k = d + 1; k < nd; ++k) stride *= s[k];
    out += "[";
    for (int64_t i = 0; i < s[d]; ++i) {
      if (summarize && s[d] > 6 && i == 3) {
        out += "..., ";
        i = s[d] - 3;
      }
      rec(d + 1, base + i * stride);
      if (i + 1 < s[d]) out += d + 1 == nd ? ", " : ",\n" + std::string(size_t(8 + d), ' ');
    }
    out += "]";
  };
  rec(0, 0);
  return out + fmt::format(", {}{})", dtype_name(dtype()), shape_str(s));
}

// ---------------- conversion ----------------

Tensor Tensor::to(DType t) const {
  if (t == dtype()) return *this;
  Tensor out = Tensor::empty(shape(), t, device());
  backend_of(*this).copy(*this, out);
  if (is_floating(t) && is_floating(dtype())) {
    const DType from = dtype();
    record_op("to", out, {*this}, [from](const Tensor& g) { return std::vector<Tensor>{g.to(from)}; });
  }
  return out;
}

// The one place that copies between devices. The backend of the non-CPU side does the copy
// (Backend::transfer) on contiguous memory; the gradient goes back the same way.
Tensor Tensor::to(Device d) const {
  if (d == device()) return *this;
  const Device side = d.is_cpu() ? device() : d;
  COPPER_CHECK(has_backend(side.type), "to",
               "copy from {} to {} is not available in this build. HINT: build with CUDA (cmake -DCOPPER_CUDA=ON)",
               device().str(), d.str());
  Tensor src = contiguous();
  Tensor out = Tensor::empty(shape(), dtype(), d);
  backend_for(side).transfer(src, out);
  const Device from = device();
  record_op("to", out, {*this}, [from](const Tensor& g) { return std::vector<Tensor>{g.to(from)}; });
  return out;
}

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

Tensor Tensor::clone() const {
  Tensor out = Tensor::empty(shape(), dtype(), device());
  backend_of(*this).copy(*this, out);
  record_op("clone", out, {*this}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
  return out;
}

// ---------------- views ----------------

Tensor Tensor::view(const Shape& want) const {
  Shape s = infer_shape(want, numel(), "view", shape());
  auto st = view_strides(shape(), strides(), s);
  COPPER_CHECK(st.has_value(), "view", "cannot view {} with strides {} as {} without a copy. HINT: use reshape(), or contiguous() first",
               shape_str(shape()), shape_str(strides()), shape_str(s));
  Tensor out = make_view(*this, s, *st, offset());
  Shape in_shape = shape();
  record_op("view", out, {*this}, [in_shape](const Tensor& g) { return std::vector<Tensor>{g.reshape(in_shape)}; });
  return out;
}

Tensor Tensor::reshape(const Shape& want) const {
  Shape s = infer_shape(want, numel(), "reshape", shape());
  if (view_strides(shape(), strides(), s)) return view(s);
  return contiguous().view(s);
}

Tensor Tensor::flatten(int64_t start, int64_t end) const {
  if (dim() == 0) return reshape({1});
  start = wrap_dim(start, dim(), "flatten");
  end = wrap_dim(end, dim(), "flatten");
  COPPER_CHECK(start <= end, "flatten", "start dim {} after end dim {}", start, end);
  Shape s(shape().begin(), shape().begin() + start);
  int64_t n = 1;
  for (int64_t d = start; d <= end; ++d) n *= shape()[d];
  s.push_back(n);
  s.insert(s.end(), shape().begin() + end + 1, shape().end());
  return reshape(s);
}

Tensor Tensor::permute(const Shape& dims) const {
  COPPER_CHECK(int64_t(dims.size()) == dim(), "permute", "got {} dims {} for a {}-d tensor {}", dims.size(),
               shape_str(dims), dim(), shape_str(shape()));
  Shape s(dims.size()), st(dims.size()), inverse(dims.size());
  std::vector<bool> used(dims.size(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = wrap_dim(dims[i], dim(), "permute");
    COPPER_CHECK(!used[d], "permute", "dimension {} repeated in {}", d, shape_str(dims));
    used[d] = true;
    s[i] = shape()[d];
    st[i] = strides()[d];
    inverse[d] = int64_t(i);
  }
  Tensor out = make_view(*this, s, st, offset());
  record_op("permute", out, {*this}, [inverse](const Tensor& g) { return std::vector<Tensor>{g.permute(inverse)}; });
  return out;
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  d0 = wrap_dim(d0, dim(), "transpose");
  d1 = wrap_dim(d1, dim(), "transpose");
  Shape p(static_cast<size_t>(dim()));
  std::iota(p.begin(), p.end(), 0);
  std::swap(p[d0], p[d1]);
  return permute(p);
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  d = wrap_dim(d, dim(), "slice");
  const int64_t n = shape()[d];
  COPPER_CHECK(step > 0, "slice", "step must be positive, got {}", step);
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape s = shape(), st = strides();
  s[d] = (end - start + step - 1) / step;
  st[d] *= step;
  Tensor out = make_view(*this, s, st, offset() + start * strides()[d]);
  Shape in_shape = shape();
  DType dt = dtype();
  record_op("slice", out, {*this}, [in_shape, dt, d, start, end, step](const Tensor& g) {
    Tensor gi = zeros(in_shape, dt, g.device());
    copy_(gi.slice(d, start, end, step), g);
    return std::vector<Tensor>{gi};
  });
  return out;
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  d = wrap_dim(d, dim(), "narrow");
  COPPER_CHECK(start >= 0 && length >= 0 && start + length <= shape()[d], "narrow",
               "range [{}, {}) out of bounds for dim {} of size {} in {}", start, start + length, d, shape()[d],
               shape_str(shape()));
  return slice(d, start, start + length);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  d = wrap_dim(d, dim(), "select");
  const int64_t n = shape()[d];
  COPPER_CHECK(index >= -n && index < n, "select", "index {} out of range for dim {} of size {}", index, d, n);
  if (index < 0) index += n;
  return narrow(d, index, 1).squeeze(d);
}

Tensor Tensor::expand(const Shape& want) const {
  COPPER_CHECK(int64_t(want.size()) >= dim(), "expand", "cannot expand {} to fewer dims {}", shape_str(shape()),
               shape_str(want));
  const size_t lead = want.size() - size_t(dim());
  Shape s(want.size()), st(want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    if (i < lead) {
      COPPER_CHECK(want[i] >= 0, "expand", "new leading dim cannot be -1 in {}", shape_str(want));
      s[i] = want[i];
      st[i] = 0;
      continue;
    }
    int64_t have = shape()[i - lead];
    int64_t w = want[i] == -1 ? have : want[i];
    COPPER_CHECK(w >= 0, "expand", "negative size {} in {}", want[i], shape_str(want));
    COPPER_CHECK(have == w || have == 1, "expand", "cannot expand {} to {}: dim {} is {}. HINT: only size-1 dims can grow",
                 shape_str(shape()), shape_str(want), i, have);
    s[i] = w;
    st[i] = have == w ? strides()[i - lead] : 0;
  }
  if (s == shape()) return *this;
  Tensor out = make_view(*this, s, st, offset());
  Shape in_shape = shape();
  record_op("expand", out, {*this}, [in_shape](const Tensor& g) { return std::vector<Tensor>{sum_to(g, in_shape)}; });
  return out;
}

Tensor Tensor::squeeze(int64_t d) const {
  d = wrap_dim(d, dim(), "squeeze");
  if (dim() == 0 || shape()[d] != 1) return *this;
  Shape s = shape(), st = strides();
  s.erase(s.begin() + d);
  st.erase(st.begin() + d);
  Tensor out = make_view(*this, s, st, offset());
  record_op("squeeze", out, {*this}, [d](const Tensor& g) { return std::vector<Tensor>{g.unsqueeze(d)}; });
  return out;
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = wrap_dim(d, dim() + 1, "unsqueeze");
  Shape s = shape(), st = strides();
  int64_t stride = d < dim() ? strides()[d] * shape()[d] : 1;
  s.insert(s.begin() + d, 1);
  st.insert(st.begin() + d, stride);
  Tensor out = make_view(*this, s, st, offset());
  record_op("unsqueeze", out, {*this}, [d](const Tensor& g) { return std::vector<Tensor>{g.squeeze(d)}; });
  return out;
}

Tensor Tensor::flip(const Shape& dims) const {
  Shape st = strides();
  int64_t off = offset();
  Shape wrapped;
  for (int64_t d0 : dims) {
    int64_t d = wrap_dim(d0, dim(), "flip");
    COPPER_CHECK(std::find(wrapped.begin(), wrapped.end(), d) == wrapped.end(), "flip", "dimension {} repeated", d);
    wrapped.push_back(d);
    if (shape()[d] > 0) off += (shape()[d] - 1) * st[d];
    st[d] = -st[d];
  }
  Tensor out = make_view(*this, shape(), st, off);
  record_op("flip", out, {*this}, [wrapped](const Tensor& g) { return std::vector<Tensor>{g.flip(wrapped)}; });
  return out;
}

// ---------------- autograd handles ----------------

Tensor& Tensor::requires_grad_(bool on) {
  COPPER_CHECK(!on || is_floating(dtype()), "requires_grad", "only float tensors can require grad, got {}",
               repr_shape());
  COPPER_CHECK(is_leaf(), "requires_grad", "can only set requires_grad on a leaf. HINT: detach() first");
  checked()->requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const { return checked()->grad ? Tensor(checked()->grad) : Tensor(); }

void Tensor::set_grad(const Tensor& g) {
  if (g.defined())
    COPPER_CHECK(g.shape() == shape(), "set_grad", "gradient {} for tensor {}", shape_str(g.shape()),
                 shape_str(shape()));
  checked()->grad = g.defined() ? g.impl_ptr() : nullptr;
}

void Tensor::zero_grad() { checked()->grad = nullptr; }

Tensor Tensor::detach() const { return make_view(*this, shape(), strides(), offset()); }

}  // namespace copper
