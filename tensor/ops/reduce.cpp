// reduce.cpp — sum, mean, max, min, argmax over dimensions, and sum_to.
//
// A reduction over dimension d views the contiguous input as [outer, n, inner] and
// reduces the middle axis. Several dims are reduced one after another, highest first.
#include <algorithm>

#include "tensor/ops/common.h"

namespace copper {

using namespace detail;

namespace {

// Reduce one dim of x (keepdim), no autograd.
Tensor reduce_dim(ReduceOp op, const Tensor& x, int64_t d) {
  Tensor xc = x.contiguous();
  Split3 s = split_at(xc.shape(), d);
  Shape out_shape = xc.shape();
  if (!out_shape.empty()) out_shape[d] = 1;
  Tensor out = Tensor::empty(out_shape, op == ReduceOp::argmax ? DType::i64 : xc.dtype(), xc.device());
  backend_of(xc).reduce(op, xc, s.outer, s.n, s.inner, out);
  return out;
}

// The sorted, unique, wrapped dims to reduce (all of them when `dims` is empty).
Shape normalize_dims(const Shape& dims, int64_t ndim, const char* op) {
  Shape out;
  if (dims.empty()) {
    for (int64_t d = 0; d < ndim; ++d) out.push_back(d);
  } else {
    for (int64_t d : dims) out.push_back(wrap_dim(d, ndim, op));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Shape reduced_shape(const Shape& s, const Shape& dims, bool keepdim) {
  Shape out;
  for (int64_t d = 0; d < int64_t(s.size()); ++d) {
    bool r = std::find(dims.begin(), dims.end(), d) != dims.end();
    if (!r) out.push_back(s[d]);
    else if (keepdim) out.push_back(1);
  }
  return out;
}

}  // namespace

Tensor sum(const Tensor& x, const Shape& dims, bool keepdim) {
  check_float("sum", x);
  Shape ds = normalize_dims(dims, x.dim(), "sum");
  Tensor out = x.detach();
  for (auto it = ds.rbegin(); it != ds.rend(); ++it) out = reduce_dim(ReduceOp::sum, out, *it);
  if (ds.empty()) out = out.clone();  // nothing to reduce: still a new tensor
  out = out.reshape(reduced_shape(x.shape(), ds, keepdim)).detach();
  Shape in_shape = x.shape(), kept = reduced_shape(x.shape(), ds, true);
  record_op("sum", out, {x}, [in_shape, kept](const Tensor& g) {
    return std::vector<Tensor>{g.reshape(kept).expand(in_shape).contiguous()};
  });
  return out;
}

Tensor mean(const Tensor& x, const Shape& dims, bool keepdim) {
  Shape ds = normalize_dims(dims, x.dim(), "mean");
  int64_t count = 1;
  for (int64_t d : ds) count *= x.shape()[d];
  COPPER_CHECK(count > 0, "mean", "mean over an empty set of elements in {}", shape_str(x.shape()));
  return div(sum(x, ds, keepdim), double(count));
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  const int64_t lead = x.dim() - int64_t(shape.size());
  COPPER_CHECK(lead >= 0, "sum_to", "cannot sum {} down to the larger rank {}", shape_str(x.shape()), shape_str(shape));
  Shape dims;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (d < lead) dims.push_back(d);
    else if (shape[d - lead] == 1 && x.shape()[d] != 1) dims.push_back(d);
    else
      COPPER_CHECK(shape[d - lead] == x.shape()[d], "sum_to", "{} does not broadcast to {}", shape_str(shape),
                   shape_str(x.shape()));
  }
  if (dims.empty()) return x.reshape(shape);
  return sum(x, dims, true).reshape(shape);
}

namespace {
Tensor extremum(ReduceOp op, const char* name, const Tensor& x, int64_t dim, bool keepdim) {
  check_float(name, x);
  COPPER_CHECK(x.numel() > 0, name, "reduction of an empty tensor {}", x.repr_shape());
  int64_t d = wrap_dim(dim, x.dim(), name);
  Tensor values = reduce_dim(op, x, d);
  // the index of the first extreme element, for the backward
  Tensor idx = reduce_dim(ReduceOp::argmax, op == ReduceOp::max ? x.detach() : neg(x.detach()), d);
  Shape kept = values.shape();
  Tensor out = keepdim ? values : values.squeeze(d);
  out = out.detach();
  record_op(name, out, {x}, [in_shape = x.shape(), kept, idx, d](const Tensor& g) {
    Tensor gi = zeros(in_shape, g.dtype(), g.device());
    return std::vector<Tensor>{scatter_add(gi, d, idx, g.reshape(kept))};
  });
  return out;
}
}  // namespace

Tensor max(const Tensor& x, int64_t dim, bool keepdim) { return extremum(ReduceOp::max, "max", x, dim, keepdim); }
Tensor min(const Tensor& x, int64_t dim, bool keepdim) { return extremum(ReduceOp::min, "min", x, dim, keepdim); }
Tensor max(const Tensor& x) { return max(x.reshape({-1}), 0); }
Tensor min(const Tensor& x) { return min(x.reshape({-1}), 0); }

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  check_float("argmax", x);
  COPPER_CHECK(x.numel() > 0, "argmax", "reduction of an empty tensor {}", x.repr_shape());
  int64_t d = wrap_dim(dim, x.dim(), "argmax");
  Tensor idx = reduce_dim(ReduceOp::argmax, x, d);
  return keepdim ? idx : idx.squeeze(d);
}

}  // namespace copper
