// join.cpp — cat, stack, split, chunk.
// cat copies each input into its slice of the output; its backward hands each input
// its slice of the gradient. split and chunk return narrow() views (no copy) under one
// autograd node, whose backward joins the pieces' gradients into the input's.
#include <algorithm>

#include "tensor/ops/common.h"

namespace copper {

using namespace detail;

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  COPPER_CHECK(!xs.empty(), "cat", "needs at least one tensor");
  const Tensor& first = xs[0];
  check_defined("cat", first);
  COPPER_CHECK(first.dim() > 0, "cat", "a 0-d tensor {} cannot be joined. HINT: use stack(), or unsqueeze(0) first",
               first.repr_shape());
  const int64_t d = wrap_dim(dim, first.dim(), "cat");
  Shape out_shape = first.shape();
  out_shape[d] = 0;
  std::vector<int64_t> sizes;
  for (size_t i = 0; i < xs.size(); ++i) {
    check_same("cat", first, xs[i]);
    COPPER_CHECK(xs[i].dim() == first.dim(), "cat", "tensor {} has {} dims, tensor 0 has {}: {} vs {}", i,
                 xs[i].dim(), first.dim(), shape_str(xs[i].shape()), shape_str(first.shape()));
    for (int64_t k = 0; k < first.dim(); ++k)
      COPPER_CHECK(k == d || xs[i].size(k) == first.size(k), "cat",
                   "sizes differ outside dim {}: {} vs {}. HINT: all dims but the joined one must match", d,
                   shape_str(xs[i].shape()), shape_str(first.shape()));
    sizes.push_back(xs[i].size(d));
    out_shape[d] += xs[i].size(d);
  }
  Tensor out = Tensor::empty(out_shape, first.dtype(), first.device());
  int64_t at = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    backend_of(out).copy(xs[i], out.detach().narrow(d, at, sizes[i]));
    at += sizes[i];
  }
  record_op("cat", out, xs, [sizes, d](const Tensor& g) {
    std::vector<Tensor> gs;
    int64_t at = 0;
    for (int64_t s : sizes) {
      gs.push_back(g.narrow(d, at, s).contiguous());
      at += s;
    }
    return gs;
  });
  return out;
}

Tensor stack(const std::vector<Tensor>& xs, int64_t dim) {
  COPPER_CHECK(!xs.empty(), "stack", "needs at least one tensor");
  const int64_t d = wrap_dim(dim, xs[0].dim() + 1, "stack");
  std::vector<Tensor> us;
  for (size_t i = 0; i < xs.size(); ++i) {
    COPPER_CHECK(xs[i].shape() == xs[0].shape(), "stack", "all shapes must be equal: tensor {} is {}, tensor 0 is {}",
                 i, shape_str(xs[i].shape()), shape_str(xs[0].shape()));
    us.push_back(xs[i].unsqueeze(d));
  }
  return cat(us, d);
}

namespace {

// The buffer that the pieces' gradients gs are slices of, seen as a tensor of x's shape, when
// there is one: all of them views of one storage with the same strides, each where split put
// its piece, together covering the buffer densely. An op that writes its inputs' gradients
// side by side (the fused attention, for q, k and v split from one projection) makes them so;
// then the input's gradient costs nothing. Undefined otherwise.
Tensor joined_gradient(const std::vector<Tensor>& gs, const Shape& x_shape, int64_t d,
                       const std::vector<int64_t>& sizes) {
  const Tensor& g0 = gs[0];
  if (!g0.defined() || g0.dim() != int64_t(x_shape.size())) return Tensor();
  int64_t at = 0;
  for (size_t i = 0; i < gs.size(); ++i) {
    const Tensor& g = gs[i];
    if (!g.defined() || g.numel() == 0 || g.impl()->storage != g0.impl()->storage || g.dtype() != g0.dtype() ||
        g.strides() != g0.strides() || g.offset() != g0.offset() + at * g0.stride(d))
      return Tensor();
    at += sizes[i];
  }
  Tensor whole = as_strided(g0, x_shape, g0.strides(), g0.offset());
  return whole.is_dense() ? whole : Tensor();
}

}  // namespace

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  const int64_t d = wrap_dim(dim, x.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) {
    COPPER_CHECK(s >= 0, "split", "negative size in split sizes");
    total += s;
  }
  COPPER_CHECK(total == x.size(d), "split", "sizes add up to {} but dim {} of {} is {}", total, d,
               shape_str(x.shape()), x.size(d));
  std::vector<Tensor> out;
  const Tensor xd = x.detach();
  int64_t at = 0;
  for (int64_t s : sizes) {
    out.push_back(xd.narrow(d, at, s));
    at += s;
  }
  record_op_outputs("split", out, {x}, [x_shape = x.shape(), dt = x.dtype(), dev = x.device(), sizes,
                                        d](const std::vector<Tensor>& gs) {
    Tensor whole = joined_gradient(gs, x_shape, d, sizes);
    if (whole.defined()) return std::vector<Tensor>{whole};
    // every element is written when every piece has a gradient; zeros stand for the others
    const bool all = std::all_of(gs.begin(), gs.end(), [](const Tensor& g) { return g.defined(); });
    whole = all ? Tensor::empty(x_shape, dt, dev) : zeros(x_shape, dt, dev);
    int64_t at = 0;
    for (size_t i = 0; i < gs.size(); ++i) {
      if (gs[i].defined()) copy_(whole.narrow(d, at, sizes[i]), gs[i]);
      at += sizes[i];
    }
    return std::vector<Tensor>{whole};
  });
  return out;
}

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  COPPER_CHECK(split_size > 0, "split", "split size must be positive, got {}", split_size);
  const int64_t d = wrap_dim(dim, x.dim(), "split");
  std::vector<int64_t> sizes;
  for (int64_t at = 0; at < x.size(d); at += split_size) sizes.push_back(std::min(split_size, x.size(d) - at));
  return split(x, sizes, d);
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  COPPER_CHECK(chunks > 0, "chunk", "number of chunks must be positive, got {}", chunks);
  const int64_t d = wrap_dim(dim, x.dim(), "chunk");
  const int64_t n = x.size(d);
  return split(x, std::max<int64_t>(1, (n + chunks - 1) / chunks), d);
}

}  // namespace copper
