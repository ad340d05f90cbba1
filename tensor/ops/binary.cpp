// binary.cpp — add, sub, mul, div, maximum, minimum and comparisons, with broadcasting.
//
// Forward: broadcast both shapes, expand both operands as stride-0 views (no copy),
// one kernel call. Backward: the elementwise derivative, then sum_to() folds the
// gradient back onto each operand's own (smaller) shape.
#include "tensor/ops/common.h"

namespace copper {

using namespace detail;

namespace {

Tensor binary_forward(BinaryOp op, const char* name, const Tensor& a, const Tensor& b) {
  check_same(name, a, b);
  // integers take part too (argmax == targets, index arithmetic); they never need gradients
  if (!(is_integer(a.dtype()) && op != BinaryOp::div)) check_float(name, a);
  Shape s = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = Tensor::empty(s, a.dtype(), a.device());
  backend_of(a).binary(op, a.detach().expand(s), b.detach().expand(s), out);
  return out;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(BinaryOp::add, "add", a, b);
  Shape sa = a.shape(), sb = b.shape();
  record_op("add", out, {a, b}, [sa, sb](const Tensor& g) { return std::vector<Tensor>{sum_to(g, sa), sum_to(g, sb)}; });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(BinaryOp::sub, "sub", a, b);
  Shape sa = a.shape(), sb = b.shape();
  record_op("sub", out, {a, b},
            [sa, sb](const Tensor& g) { return std::vector<Tensor>{sum_to(g, sa), sum_to(neg(g), sb)}; });
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(BinaryOp::mul, "mul", a, b);
  const bool ga = a.requires_grad(), gb = b.requires_grad();
  record_op("mul", out, {a, b}, [ad = a.detach(), bd = b.detach(), ga, gb](const Tensor& g) {
    return std::vector<Tensor>{ga ? sum_to(mul(g, bd), ad.shape()) : Tensor(),
                               gb ? sum_to(mul(g, ad), bd.shape()) : Tensor()};
  });
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(BinaryOp::div, "div", a, b);
  const bool ga = a.requires_grad(), gb = b.requires_grad();
  record_op("div", out, {a, b}, [ad = a.detach(), bd = b.detach(), ga, gb](const Tensor& g) {
    Tensor gq = div(g, bd);
    // d(a/b)/db = -a/b^2 = -(g/b) * a / b
    return std::vector<Tensor>{ga ? sum_to(gq, ad.shape()) : Tensor(),
                               gb ? sum_to(neg(div(mul(gq, ad), bd)), bd.shape()) : Tensor()};
  });
  return out;
}

namespace {
// maximum/minimum: the gradient goes to a where a wins (ties included), else to b.
Tensor extremum(BinaryOp op, const char* name, const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(op, name, a, b);
  record_op(name, out, {a, b}, [ad = a.detach(), bd = b.detach(), op](const Tensor& g) {
    Tensor a_wins = op == BinaryOp::maximum ? ge(ad, bd) : le(ad, bd);
    Tensor zero = zeros_like(g);
    return std::vector<Tensor>{sum_to(where(a_wins, g, zero), ad.shape()), sum_to(where(a_wins, zero, g), bd.shape())};
  });
  return out;
}
}  // namespace

Tensor maximum(const Tensor& a, const Tensor& b) { return extremum(BinaryOp::maximum, "maximum", a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return extremum(BinaryOp::minimum, "minimum", a, b); }

Tensor eq(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::eq, "eq", a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::ne, "ne", a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::lt, "lt", a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::le, "le", a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::gt, "gt", a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::ge, "ge", a, b); }

// A scalar operand becomes a 0-d tensor of the other operand's dtype; it needs no gradient.
Tensor add(const Tensor& a, double b) { return add(a, scalar_tensor(b, a.dtype(), a.device())); }
Tensor sub(const Tensor& a, double b) { return sub(a, scalar_tensor(b, a.dtype(), a.device())); }
Tensor mul(const Tensor& a, double b) { return mul(a, scalar_tensor(b, a.dtype(), a.device())); }
Tensor div(const Tensor& a, double b) { return div(a, scalar_tensor(b, a.dtype(), a.device())); }
Tensor rsub(double a, const Tensor& b) { return sub(scalar_tensor(a, b.dtype(), b.device()), b); }
Tensor rdiv(double a, const Tensor& b) { return div(scalar_tensor(a, b.dtype(), b.device()), b); }

}  // namespace copper
