// unary.cpp — elementwise functions of one tensor and their derivatives.
//
// Every op here is the same three steps, so one helper does them: run the forward
// kernel, save x and y, and on the way back run the fused derivative kernel
// (out = grad * f'(x)) in one pass over memory.
#include <limits>

#include "tensor/ops/common.h"

namespace copper {

using namespace detail;

namespace {

Tensor unary_op(UnaryOp op, const char* name, const Tensor& x, double a = 0, double b = 0,
                bool differentiable = true) {
  check_float(name, x);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_of(x).unary(op, x, y, a, b);
  if (differentiable) {
    record_op(name, y, {x}, [op, a, b, xd = x.detach(), yd = y.detach()](const Tensor& g) {
      Tensor xc = xd.contiguous(), gc = g.contiguous();
      Tensor out = Tensor::empty(xc.shape(), xc.dtype(), xc.device());
      backend_of(xc).unary_backward(op, xc, yd, gc, out, a, b);
      return std::vector<Tensor>{out};
    });
  }
  return y;
}

}  // namespace

Tensor neg(const Tensor& x) { return unary_op(UnaryOp::neg, "neg", x); }
Tensor exp(const Tensor& x) { return unary_op(UnaryOp::exp, "exp", x); }
Tensor log(const Tensor& x) { return unary_op(UnaryOp::log, "log", x); }
Tensor sqrt(const Tensor& x) { return unary_op(UnaryOp::sqrt, "sqrt", x); }
Tensor rsqrt(const Tensor& x) { return unary_op(UnaryOp::rsqrt, "rsqrt", x); }
Tensor pow(const Tensor& x, double exponent) { return unary_op(UnaryOp::pow, "pow", x, exponent); }
Tensor square(const Tensor& x) { return unary_op(UnaryOp::square, "square", x); }
Tensor sin(const Tensor& x) { return unary_op(UnaryOp::sin, "sin", x); }
Tensor cos(const Tensor& x) { return unary_op(UnaryOp::cos, "cos", x); }
Tensor tanh(const Tensor& x) { return unary_op(UnaryOp::tanh, "tanh", x); }
Tensor sigmoid(const Tensor& x) { return unary_op(UnaryOp::sigmoid, "sigmoid", x); }
Tensor relu(const Tensor& x) { return unary_op(UnaryOp::relu, "relu", x); }
Tensor gelu(const Tensor& x, bool tanh_approx) {
  return tanh_approx ? unary_op(UnaryOp::gelu_tanh, "gelu_tanh", x) : unary_op(UnaryOp::gelu_erf, "gelu", x);
}
Tensor bias_gelu(const Tensor& x, const Tensor& bias) {
  const char* op = "bias_gelu";
  check_float(op, x);
  check_same(op, x, bias);
  COPPER_CHECK(x.dim() >= 1 && bias.dim() == 1 && bias.size(0) == x.size(-1), op,
               "bias {} must be [n] for x {} of shape [..., n]", bias.repr_shape(), x.repr_shape());
  const int64_t n = x.size(-1), rows = n > 0 ? x.numel() / n : 0;
  const Tensor xc = x.contiguous(), bc = bias.contiguous();
  Tensor y = Tensor::empty(xc.shape(), xc.dtype(), xc.device());
  // The backward keeps gelu'(x + bias), computed here alongside y, instead of x: the same
  // memory, and no second evaluation of Φ and φ.
  const bool grad = any_requires_grad({x, bias});
  const Tensor slope = grad ? Tensor::empty(xc.shape(), xc.dtype(), xc.device()) : Tensor();
  backend_of(xc).bias_gelu(xc, bc, y, slope, rows, n);
  if (!grad) return y;
  record_op(op, y, {x, bias}, [slope, rows, n, want_db = bias.requires_grad()](const Tensor& g) {
    Tensor gc = g.contiguous();
    Tensor dx = Tensor::empty(slope.shape(), slope.dtype(), slope.device());
    Tensor db = want_db ? Tensor::empty({n}, slope.dtype(), slope.device()) : Tensor();
    backend_of(slope).bias_gelu_backward(slope, gc, dx, db, rows, n);
    return std::vector<Tensor>{dx, db};
  });
  return y;
}
Tensor silu(const Tensor& x) { return unary_op(UnaryOp::silu, "silu", x); }
Tensor abs(const Tensor& x) { return unary_op(UnaryOp::abs, "abs", x); }

Tensor clamp(const Tensor& x, std::optional<double> lo, std::optional<double> hi) {
  const double l = lo.value_or(-std::numeric_limits<double>::infinity());
  const double h = hi.value_or(std::numeric_limits<double>::infinity());
  COPPER_CHECK(l <= h, "clamp", "lower bound {} above upper bound {}", l, h);
  return unary_op(UnaryOp::clamp, "clamp", x, l, h);
}

// floor and ceil are piecewise constant: their gradient is zero wherever it exists, so
// they record no node (as in PyTorch, where it is zero rather than absent; the
// difference is only whether a zero tensor is materialised).
Tensor floor(const Tensor& x) { return unary_op(UnaryOp::floor, "floor", x, 0, 0, false); }
Tensor ceil(const Tensor& x) { return unary_op(UnaryOp::ceil, "ceil", x, 0, 0, false); }

}  // namespace copper
