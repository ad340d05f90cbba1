// common.h — argument checks shared by the op files.
#pragma once
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "tensor/backend.h"
#include "tensor/ops.h"

namespace copper::detail {

inline void check_defined(const char* op, const Tensor& t, const char* what = "input") {
  if (!t.defined()) COPPER_THROW(op, "{} is an undefined tensor", what);
}

// Every tensor an op reads or writes lives on one device; `t` must be on `ref`'s:
//   [add] tensors on cpu and cuda:0: f32[2,3] vs f32[2,3]. HINT: ...
inline void check_device(const char* op, const Tensor& ref, const Tensor& t) {
  COPPER_CHECK(ref.device() == t.device(), op,
               "tensors on {} and {}: {} vs {}. HINT: move one with .to(Device) (e.g. .to(device_from_name(\"{}\"))) first",
               ref.device().str(), t.device().str(), ref.repr_shape(), t.repr_shape(), ref.device().str());
}

// Two operands must share dtype and device; the message names both.
inline void check_same(const char* op, const Tensor& a, const Tensor& b) {
  check_defined(op, a);
  check_defined(op, b);
  check_device(op, a, b);
  COPPER_CHECK(a.dtype() == b.dtype(), op, "dtypes differ: {} vs {}. HINT: convert one with .to(DType::...)",
               a.repr_shape(), b.repr_shape());
}

// Float compute types only (f32/f64); half types are storage and must be converted.
inline void check_float(const char* op, const Tensor& t) {
  check_defined(op, t);
  COPPER_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::f64, op,
               "needs an f32 or f64 tensor, got {}. HINT: convert with .to(DType::f32)", t.repr_shape());
}

// Index tensors as contiguous i64 (i32 is accepted and widened), on the device of `like`
// (the tensor they index).
inline Tensor as_index(const char* op, const Tensor& idx, const Tensor& like) {
  check_defined(op, idx, "index");
  check_device(op, like, idx);
  COPPER_CHECK(is_integer(idx.dtype()), op, "index must be i32 or i64, got {}", idx.repr_shape());
  NoGradGuard ng;
  return idx.to(DType::i64).contiguous();
}

// Check every index lies in [0, n), for indices on the CPU. A device's indices are not read on
// the host, which would wait for the device; its kernels guard themselves instead (an
// out-of-range index reads as NaN and adds nothing: tensor/backend.h).
inline void check_index_range(const char* op, const Tensor& idx64, int64_t n, const Shape& of) {
  if (!idx64.device().is_cpu()) return;
  const int64_t* p = idx64.data<int64_t>();
  for (int64_t i = 0, e = idx64.numel(); i < e; ++i)
    COPPER_CHECK(p[i] >= 0 && p[i] < n, op, "index {} out of range [0, {}) for a dim of {}", p[i], n, shape_str(of));
}

// A cross-entropy's targets: contiguous i64 [rows] on the logits' device, each in [0, classes)
// or ignore_index. CPU targets are checked here, naming the first bad one. A device's are not
// read on the host (that would wait for the device every step); there a bad target makes the
// loss NaN.
inline Tensor cross_entropy_targets(const char* op, const Tensor& targets, const Tensor& logits, int64_t rows,
                                    int64_t classes, int64_t ignore_index) {
  Tensor t = as_index(op, targets, logits).reshape({-1});
  COPPER_CHECK(t.numel() == rows, op,
               "{} targets for {} rows of logits {}. HINT: targets have the logits' shape without the class dim",
               t.numel(), rows, shape_str(logits.shape()));
  if (t.device().is_cpu()) {
    const int64_t* tp = t.data<int64_t>();
    for (int64_t i = 0; i < t.numel(); ++i)
      COPPER_CHECK(tp[i] == ignore_index || (tp[i] >= 0 && tp[i] < classes), op,
                   "target {} at position {} is out of range [0, {})", tp[i], i, classes);
  }
  return t;
}

// The number of targets a cross-entropy counts (those != ignore_index), at least 1, as a 0-d
// tensor of `dtype` on the targets' device. With none counted every row's loss is 0, so the
// mean is 0 (not NaN), and its gradient 0 too.
inline Tensor counted_targets(const Tensor& t, int64_t ignore_index, DType dtype) {
  NoGradGuard ng;
  const Tensor ignore = full({}, double(ignore_index), DType::i64, t.device());
  return clamp(sum(ne(t, ignore).to(dtype)), 1.0, std::nullopt);
}

// d(loss)/d(row loss) for a mean over `count` rows: 1 / count, 0-d and contiguous, the scale a
// backend's cross_entropy_with_grad reads on the device.
inline Tensor mean_scale(const Tensor& count) {
  NoGradGuard ng;
  return div(ones({}, count.dtype(), count.device()), count).contiguous();
}

// A loss's gradient d, computed for d(loss) = 1, times the d(loss) g that backward() brings:
// d itself when g is 1 on the CPU (backward() started at this loss), else d · g.
inline Tensor times_loss_gradient(const Tensor& d, const Tensor& g) {
  if (g.device().is_cpu() && g.item() == 1.0) return d;
  return mul(d, g.to(d.dtype()));
}

// The product a·b for operands of rank >= 2, broadcasting their batch dims, without autograd
// (matmul.cpp): bf16 operands (mixed precision's rounded copies) give an f32 product, which
// the public matmul, taking f32 and f64 only, does not. A bias, if given, is added to every
// row by the backend's gemm_bias. For backward functions that multiply rounded operands.
Tensor matmul_raw(const Tensor& a, const Tensor& b, const Tensor& bias = Tensor());

// x (contiguous) viewed as [outer, n, inner] around dimension d.
struct Split3 {
  int64_t outer = 1, n = 1, inner = 1;
};
inline Split3 split_at(const Shape& s, int64_t d) {
  Split3 r;
  for (int64_t i = 0; i < d; ++i) r.outer *= s[i];
  r.n = s.empty() ? 1 : s[d];
  for (size_t i = size_t(d) + 1; i < s.size(); ++i) r.inner *= s[i];
  return r;
}

}  // namespace copper::detail
