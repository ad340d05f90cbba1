// norm.cpp — layer_norm and rms_norm over the last dimension (fused kernels).
#include "tensor/ops/common.h"

namespace copper {

using namespace detail;

namespace {
void check_param(const char* op, const Tensor& p, const Tensor& x, const char* what) {
  if (!p.defined()) return;
  check_same(op, x, p);
  COPPER_CHECK(p.dim() == 1 && p.size(0) == x.size(-1), op, "{} {} must be [{}] for input {}", what,
               shape_str(p.shape()), x.size(-1), shape_str(x.shape()));
}
}  // namespace

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  check_float("layer_norm", x);
  COPPER_CHECK(x.dim() >= 1 && x.size(-1) > 0, "layer_norm", "needs a non-empty last dim, got {}", shape_str(x.shape()));
  check_param("layer_norm", weight, x, "weight");
  check_param("layer_norm", bias, x, "bias");
  Tensor xc = x.contiguous();
  const int64_t n = x.size(-1), rows = x.numel() / n;
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mu = Tensor::empty({rows}, x.dtype(), x.device()), rstd = Tensor::empty({rows}, x.dtype(), x.device());
  Tensor w = weight.defined() ? weight.contiguous() : Tensor(), b = bias.defined() ? bias.contiguous() : Tensor();
  backend_of(x).layer_norm(xc, w, b, y, mu, rstd, rows, n, eps);
  record_op("layer_norm", y, {x, weight, bias},
            [xd = xc.detach(), wd = w.defined() ? w.detach() : Tensor(), mu, rstd, rows, n,
             gw = weight.defined() && weight.requires_grad(), gb = bias.defined() && bias.requires_grad()](const Tensor& g) {
              Tensor gc = g.contiguous();
              Tensor dx = Tensor::empty(xd.shape(), xd.dtype(), xd.device());
              Tensor dw = gw ? Tensor::empty({n}, xd.dtype(), xd.device()) : Tensor();
              Tensor db = gb ? Tensor::empty({n}, xd.dtype(), xd.device()) : Tensor();
              backend_of(xd).layer_norm_backward(xd, wd, mu, rstd, gc, dx, dw, db, rows, n);
              return std::vector<Tensor>{dx, dw, db};
            });
  return y;
}

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  check_float("rms_norm", x);
  COPPER_CHECK(x.dim() >= 1 && x.size(-1) > 0, "rms_norm", "needs a non-empty last dim, got {}", shape_str(x.shape()));
  check_param("rms_norm", weight, x, "weight");
  Tensor xc = x.contiguous();
  const int64_t n = x.size(-1), rows = x.numel() / n;
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor rstd = Tensor::empty({rows}, x.dtype(), x.device());
  Tensor w = weight.defined() ? weight.contiguous() : Tensor();
  backend_of(x).rms_norm(xc, w, y, rstd, rows, n, eps);
  record_op("rms_norm", y, {x, weight},
            [xd = xc.detach(), wd = w.defined() ? w.detach() : Tensor(), rstd, rows, n,
             gw = weight.defined() && weight.requires_grad()](const Tensor& g) {
              Tensor dx = Tensor::empty(xd.shape(), xd.dtype(), xd.device());
              Tensor dw = gw ? Tensor::empty({n}, xd.dtype(), xd.device()) : Tensor();
              backend_of(xd).rms_norm_backward(xd, wd, rstd, g.contiguous(), dx, dw, rows, n);
              return std::vector<Tensor>{dx, dw};
            });
  return y;
}

}  // namespace copper
