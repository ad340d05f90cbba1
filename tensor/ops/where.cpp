// where.cpp — where(cond, a, b) and masked_fill.
#include "tensor/ops/common.h"

namespace copper {

using namespace detail;

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_defined("where", cond, "cond");
  check_same("where", a, b);
  check_device("where", a, cond);
  check_float("where", a);
  Shape s = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  Tensor out = Tensor::empty(s, a.dtype(), a.device());
  backend_of(a).where(cond.detach().expand(s), a.detach().expand(s), b.detach().expand(s), out);
  record_op("where", out, {a, b}, [c = cond.detach(), sa = a.shape(), sb = b.shape()](const Tensor& g) {
    Tensor zero = zeros({}, g.dtype(), g.device());
    return std::vector<Tensor>{sum_to(where(c, g, zero), sa), sum_to(where(c, zero, g), sb)};
  });
  return out;
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  check_float("masked_fill", x);
  COPPER_CHECK(broadcast_shapes(mask.shape(), x.shape(), "masked_fill") == x.shape(), "masked_fill",
               "mask {} must broadcast to the input {}", shape_str(mask.shape()), shape_str(x.shape()));
  return where(mask, scalar_tensor(value, x.dtype(), x.device()).expand(x.shape()), x);
}

}  // namespace copper
