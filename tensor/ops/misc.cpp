// misc.cpp — dropout, causal masks, and the in-place helpers used by optimizers.
#include "tensor/ops/common.h"
#include "tensor/random.h"

namespace copper {

using namespace detail;

Tensor dropout(const Tensor& x, double p, bool train, Generator* gen) {
  COPPER_CHECK(p >= 0 && p < 1, "dropout", "probability must be in [0, 1), got {}", p);
  if (!train || p == 0) return x;
  check_float("dropout", x);
  // The keep-mask scaled by 1/(1-p), made on x's device from a Philox stream keyed by one draw
  // of the generator (tensor/philox.h): the same mask on every device, whatever x's size, and
  // the generator moves by one draw per call. out = x * mask; the gradient is g * mask.
  Generator& g = gen ? *gen : default_generator();
  const uint64_t key = g.next_u64();
  const DType dt = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  Tensor mask = Tensor::empty(x.shape(), dt, x.device());
  backend_of(mask).dropout_mask(mask, p, key);
  if (dt != x.dtype()) {
    NoGradGuard ng;
    mask = mask.to(x.dtype());
  }
  return mul(x, mask);
}

Tensor causal_mask(int64_t T, int64_t S, DType dtype) {
  if (S < 0) S = T;
  COPPER_CHECK(T >= 0 && S >= T, "causal_mask", "need 0 <= T <= S, got T={} S={}", T, S);
  NoGradGuard ng;
  // key j is in the future of query i when j > i + (S - T). Compared in f64 (exact for any
  // realistic T, S; the comparison ops take float types only), then cast to the asked dtype.
  Tensor i = arange(0, double(T), 1, DType::f64).view({T, 1});
  Tensor j = arange(0, double(S), 1, DType::f64).view({1, S});
  return gt(j, add(i, double(S - T))).to(dtype);
}

namespace {
void check_inplace(const char* op, const Tensor& x) {
  check_defined(op, x);
  COPPER_CHECK(!(grad_enabled() && x.requires_grad()), op,
               "in-place update of a tensor that requires grad while grad mode is on. HINT: wrap it in NoGradGuard");
}
}  // namespace

void fill_(const Tensor& x, double value) {
  check_inplace("fill_", x);
  backend_of(x).fill(x, value);
}

void copy_(const Tensor& dst, const Tensor& src) {
  check_inplace("copy_", dst);
  check_defined("copy_", src);
  COPPER_CHECK(broadcast_shapes(src.shape(), dst.shape(), "copy_") == dst.shape(), "copy_",
               "source {} does not broadcast to destination {}", shape_str(src.shape()), shape_str(dst.shape()));
  NoGradGuard ng;
  Tensor s = src.detach();
  if (s.device() != dst.device()) s = s.to(dst.device());  // across devices: transfer first, then copy in place
  backend_of(dst).copy(s.expand(dst.shape()), dst);
}

void add_(const Tensor& x, const Tensor& y, double alpha) {
  check_inplace("add_", x);
  check_same("add_", x, y);
  NoGradGuard ng;
  Tensor ys = alpha == 1 ? y.detach() : mul(y.detach(), alpha);
  backend_of(x).binary(BinaryOp::add, x, ys.expand(x.shape()), x);
}

void mul_(const Tensor& x, double s) {
  check_inplace("mul_", x);
  check_float("mul_", x);
  backend_of(x).binary(BinaryOp::mul, x, scalar_tensor(s, x.dtype(), x.device()).expand(x.shape()), x);
}

}  // namespace copper
