// softmax.cpp — softmax and log_softmax along a dimension, causal_softmax for attention,
// and fused cross-entropy.
// The kernels work on the last dim; another dim is moved there and back by transposes.
#include "tensor/ops/common.h"

namespace copper {

using namespace detail;

namespace {

// The shape softmax, log_softmax and causal_softmax share: a row kernel over the last dim of
// a contiguous copy, and a backward kernel that needs only the output y and the incoming grad.
//   forward(xc, y, rows, n)        backward(y, g, dx, rows, n)
template <class Forward, class Backward>
Tensor row_softmax(const char* name, const Tensor& x, Forward forward, Backward backward) {
  Tensor xc = x.contiguous();
  const int64_t n = x.dim() == 0 ? 1 : x.size(-1), rows = n == 0 ? 0 : x.numel() / n;
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  forward(xc, y, rows, n);
  record_op(name, y, {x}, [yd = y.detach(), rows, n, backward](const Tensor& g) {
    Tensor dx = Tensor::empty(yd.shape(), yd.dtype(), yd.device());
    backward(yd, g.contiguous(), dx, rows, n);
    return std::vector<Tensor>{dx};
  });
  return y;
}

Tensor softmax_last(const Tensor& x, bool log) {
  return row_softmax(
      log ? "log_softmax" : "softmax", x,
      [log](const Tensor& xc, Tensor& y, int64_t rows, int64_t n) { backend_of(xc).softmax(xc, y, rows, n, log); },
      [log](const Tensor& y, const Tensor& g, Tensor& dx, int64_t rows, int64_t n) {
        backend_of(y).softmax_backward(y, g, dx, rows, n, log);
      });
}

Tensor softmax_dim(const Tensor& x, int64_t dim, bool log) {
  check_float(log ? "log_softmax" : "softmax", x);
  const int64_t d = wrap_dim(dim, x.dim(), log ? "log_softmax" : "softmax");
  if (x.dim() == 0 || d == x.dim() - 1) return softmax_last(x, log);
  return softmax_last(x.transpose(d, -1), log).transpose(d, -1);
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_dim(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_dim(x, dim, true); }

Tensor causal_softmax(const Tensor& x) {
  check_float("causal_softmax", x);
  COPPER_CHECK(x.dim() >= 2 && x.size(-1) >= x.size(-2), "causal_softmax",
               "logits {} must be [..., T, S] with S >= T (queries, keys). HINT: for attention, transpose keys last",
               shape_str(x.shape()));
  const int64_t t = x.size(-2);  // queries; row r is query r % t
  return row_softmax(
      "causal_softmax", x,
      [t](const Tensor& xc, Tensor& y, int64_t rows, int64_t n) { backend_of(xc).causal_softmax(xc, y, rows, t, n); },
      [t](const Tensor& y, const Tensor& g, Tensor& dx, int64_t rows, int64_t n) {
        backend_of(y).causal_softmax_backward(y, g, dx, rows, t, n);
      });
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  check_float("cross_entropy", logits);
  COPPER_CHECK(logits.dim() >= 1, "cross_entropy", "logits must be [..., classes], got {}", shape_str(logits.shape()));
  const int64_t c = logits.size(-1);
  Tensor x = logits.reshape({-1, c}).contiguous();
  const Tensor t = cross_entropy_targets("cross_entropy", targets, logits, x.size(0), c, ignore_index);
  Tensor rows = Tensor::empty({x.size(0)}, x.dtype(), x.device());
  Tensor lse = Tensor::empty({x.size(0)}, x.dtype(), x.device());
  const Tensor count = counted_targets(t, ignore_index, x.dtype());  // the mean's divisor, on the device
  if (!any_requires_grad({logits})) {
    backend_of(x).cross_entropy(x, t, rows, lse, ignore_index);
    NoGradGuard ng;
    return div(sum(rows), count);
  }
  // A gradient will be wanted: it is computed now, with the loss, for d(loss) = 1, so that
  // each row of logits is read once (Backend::cross_entropy_with_grad). The backward then only
  // scales it, when backward() did not start at this loss.
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor loss;
  {
    NoGradGuard ng;
    backend_of(x).cross_entropy_with_grad(x, t, rows, lse, dx, mean_scale(count), ignore_index);
    loss = div(sum(rows), count);
  }
  record_op("cross_entropy", loss, {logits}, [dx, shape = logits.shape()](const Tensor& g) {
    return std::vector<Tensor>{times_loss_gradient(dx, g).view(shape)};
  });
  return loss;
}

}  // namespace copper
