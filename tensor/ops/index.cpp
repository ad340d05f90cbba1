// index.cpp — index_select, embedding, gather and scatter_add.
// The backward of a read by index is an add by the same index (scatter-add), so that
// repeated indices sum their gradients.
#include "tensor/ops/common.h"

namespace copper {

using namespace detail;

namespace {

// zeros(shape) with src[:, j, :] added at rows index[j] of dim d.
Tensor index_add_into_zeros(const Shape& shape, int64_t d, const Tensor& idx64, const Tensor& src) {
  Tensor out = zeros(shape, src.dtype(), src.device());
  Split3 s = split_at(shape, d);
  backend_of(out).index_add(out, idx64, src.contiguous(), s.outer, s.n, s.inner);
  return out;
}

}  // namespace

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  check_defined("index_select", x);
  const int64_t d = wrap_dim(dim, x.dim(), "index_select");
  Tensor idx = as_index("index_select", index, x);
  COPPER_CHECK(idx.dim() == 1, "index_select", "index must be 1-d, got {}", shape_str(idx.shape()));
  check_index_range("index_select", idx, x.size(d), x.shape());
  Tensor xc = x.contiguous();
  Split3 s = split_at(xc.shape(), d);
  Shape out_shape = xc.shape();
  out_shape[d] = idx.numel();
  Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
  backend_of(x).index_select(xc, idx, out, s.outer, s.n, s.inner);
  record_op("index_select", out, {x}, [in_shape = x.shape(), d, idx](const Tensor& g) {
    return std::vector<Tensor>{index_add_into_zeros(in_shape, d, idx, g)};
  });
  return out;
}

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  COPPER_CHECK(weight.dim() == 2, "embedding", "weight must be [vocab, dim], got {}", shape_str(weight.shape()));
  Shape out_shape = ids.shape();
  out_shape.push_back(weight.size(1));
  return index_select(weight, 0, ids.reshape({-1})).view(out_shape);
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  check_defined("gather", x);
  const int64_t d = wrap_dim(dim, x.dim(), "gather");
  Tensor idx = as_index("gather", index, x);
  COPPER_CHECK(idx.dim() == x.dim(), "gather", "index {} must have the rank of the input {}", shape_str(idx.shape()),
               shape_str(x.shape()));
  for (int64_t k = 0; k < x.dim(); ++k)
    COPPER_CHECK(k == d || idx.size(k) == x.size(k), "gather",
                 "index {} and input {} differ in dim {}. HINT: only dim {} may differ", shape_str(idx.shape()),
                 shape_str(x.shape()), k, d);
  check_index_range("gather", idx, x.size(d), x.shape());
  Tensor xc = x.contiguous();
  Split3 s = split_at(xc.shape(), d);
  Tensor out = Tensor::empty(idx.shape(), x.dtype(), x.device());
  backend_of(x).gather(xc, idx, out, s.outer, s.n, idx.size(d), s.inner);
  record_op("gather", out, {x}, [in_shape = x.shape(), d, idx](const Tensor& g) {
    Tensor gi = zeros(in_shape, g.dtype(), g.device());
    Split3 s = split_at(in_shape, d);
    backend_of(gi).scatter_add(gi, idx, g.contiguous(), s.outer, s.n, idx.size(d), s.inner);
    return std::vector<Tensor>{gi};
  });
  return out;
}

Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  check_same("scatter_add", x, src);
  check_float("scatter_add", x);
  const int64_t d = wrap_dim(dim, x.dim(), "scatter_add");
  Tensor idx = as_index("scatter_add", index, x);
  COPPER_CHECK(idx.shape() == src.shape(), "scatter_add", "index {} and src {} must have the same shape",
               shape_str(idx.shape()), shape_str(src.shape()));
  COPPER_CHECK(idx.dim() == x.dim(), "scatter_add", "index {} must have the rank of the input {}",
               shape_str(idx.shape()), shape_str(x.shape()));
  for (int64_t k = 0; k < x.dim(); ++k)
    COPPER_CHECK(k == d || idx.size(k) == x.size(k), "scatter_add", "index {} and input {} differ in dim {}",
                 shape_str(idx.shape()), shape_str(x.shape()), k);
  check_index_range("scatter_add", idx, x.size(d), x.shape());
  Tensor out = x.detach().clone();
  Split3 s = split_at(out.shape(), d);
  backend_of(out).scatter_add(out, idx, src.contiguous(), s.outer, s.n, idx.size(d), s.inner);
  record_op("scatter_add", out, {x, src}, [d, idx](const Tensor& g) {
    return std::vector<Tensor>{g, gather(g, d, idx)};
  });
  return out;
}

}  // namespace copper
