// scan.cpp — cumsum in both directions.
// The gradient of a prefix sum is a suffix sum of the gradient, and vice versa:
// out[i] = sum_{j<=i} x[j]  =>  dx[j] = sum_{i>=j} g[i].
// CoPE's positions are a reverse cumsum of gates along the keys.
#include "tensor/ops/common.h"

namespace copper {

using namespace detail;

Tensor cumsum(const Tensor& x, int64_t dim, bool reverse) {
  check_float("cumsum", x);
  const int64_t d = wrap_dim(dim, x.dim(), "cumsum");
  Tensor xc = x.contiguous();
  Split3 s = split_at(xc.shape(), d);
  Tensor out = Tensor::empty(xc.shape(), xc.dtype(), xc.device());
  backend_of(xc).cumsum(xc, out, s.outer, s.n, s.inner, reverse);
  record_op(reverse ? "cumsum_reverse" : "cumsum", out, {x},
            [d, reverse](const Tensor& g) { return std::vector<Tensor>{cumsum(g, d, !reverse)}; });
  return out;
}

}  // namespace copper
