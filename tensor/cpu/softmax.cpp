// softmax.cpp — softmax, log-softmax, causal softmax and fused cross-entropy over contiguous rows.
// All subtract the row maximum first, so exp never overflows.
#include <algorithm>
#include <cmath>
#include <limits>

#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/fast_math.h"
#include "tensor/cpu/loops.h"

namespace copper {

using namespace cpu;

namespace {

// The generic row loops below are the reference (and the f64 path). For f32 these
// versions do the same passes in a form the compiler vectorises: row_max and row_sum
// (tensor/cpu/loops.h) for the max and the sum, and exp_fast (tensor/cpu/fast_math.h)
// instead of one libm call per element. tests/test_ops.cpp checks f32 against its double
// reference.
// y[i] = exp(x[i] - mx) over a row, and their sum: the exps a softmax keeps as it sums them,
// and then only scales.
double exps_and_sum(const float* x, float* y, int64_t n, float mx) {  // y may be x
  return row_sum<float>(n, [=](int64_t i) {
    const float e = exp_fast(x[i] - mx);
    y[i] = e;
    return e;
  });
}

void softmax_row_f32(const float* __restrict x, float* __restrict y, int64_t n, bool log) {
  float mx = row_max(x, n);
  if (std::isinf(mx) && mx < 0) mx = 0;  // a fully masked row: avoid inf - inf
  const double s = exps_and_sum(x, y, n, mx);
  if (log) {
    const float lse = float(double(mx) + std::log(s));
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] - lse;
  } else {
    const float inv = float(1.0 / s);
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) y[i] *= inv;
  }
}

void softmax_backward_row_f32(const float* __restrict y, const float* __restrict g, float* __restrict d, int64_t n,
                              bool log) {
  double s = 0;  // in double, as in the forward
  if (log) {
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; ++i) s += double(g[i]);
    const float sf = float(s);
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) d[i] = g[i] - exp_fast(y[i]) * sf;
  } else {
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; ++i) s += double(g[i]) * double(y[i]);
    const float sf = float(s);
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) d[i] = y[i] * (g[i] - sf);
  }
}

template <class T>
double row_logsumexp(const T* x, int64_t n) {
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, double(x[i]));
  if (std::isinf(mx)) return mx;
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::exp(double(x[i]) - mx);
  return mx + std::log(s);
}

// f32 form of row_logsumexp, picked by overload resolution: row_max, and row_sum over exp_fast.
double row_logsumexp(const float* __restrict x, int64_t n) {
  const float mx = row_max(x, n);
  if (std::isinf(mx)) return double(mx);
  return double(mx) + std::log(row_sum<float>(n, [=](int64_t i) { return exp_fast(x[i] - mx); }));
}

// d = exp(x - lse) * scale: the softmax of a cross-entropy row, scaled. The reference, and
// the f32 overload with exp_fast.
template <class T>
void scaled_softmax_from_lse(const T* x, T lse, T scale, T* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = std::exp(x[i] - lse) * scale;
}
void scaled_softmax_from_lse(const float* x, float lse, float scale, float* d, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) d[i] = exp_fast(x[i] - lse) * scale;
}

// The reference row loops (and the f64 path). The float overloads softmax_row_f32 /
// softmax_backward_row_f32 above are picked for f32 by overload resolution.
template <class T>
void softmax_row(const T* xr, T* yr, int64_t n, bool log) {
  T mx = -std::numeric_limits<T>::infinity();
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, xr[i]);
  if (std::isinf(mx) && mx < 0) mx = 0;  // a fully masked row: avoid inf - inf
  T s = 0;
  for (int64_t i = 0; i < n; ++i) {
    T e = std::exp(xr[i] - mx);
    yr[i] = e;
    s += e;
  }
  if (log) {
    T lse = mx + std::log(s);
    for (int64_t i = 0; i < n; ++i) yr[i] = xr[i] - lse;
  } else {
    T inv = T(1) / s;
    for (int64_t i = 0; i < n; ++i) yr[i] *= inv;
  }
}
inline void softmax_row(const float* xr, float* yr, int64_t n, bool log) { softmax_row_f32(xr, yr, n, log); }

template <class T>
void softmax_backward_row(const T* yr, const T* gr, T* dr, int64_t n, bool log) {
  T s = 0;
  if (log) {
    for (int64_t i = 0; i < n; ++i) s += gr[i];
    for (int64_t i = 0; i < n; ++i) dr[i] = gr[i] - std::exp(yr[i]) * s;
  } else {
    for (int64_t i = 0; i < n; ++i) s += gr[i] * yr[i];
    for (int64_t i = 0; i < n; ++i) dr[i] = yr[i] * (gr[i] - s);
  }
}
inline void softmax_backward_row(const float* yr, const float* gr, float* dr, int64_t n, bool log) {
  softmax_backward_row_f32(yr, gr, dr, n, log);
}

}  // namespace

void CpuBackend::softmax(const Tensor& x, const Tensor& y, int64_t rows, int64_t n, bool log) {
  COPPER_DISPATCH_FLOAT(x.dtype(), "softmax", [&] {
    const T* xp = static_cast<const T*>(x.raw_data());
    T* yp = static_cast<T*>(y.raw_data());
    parallel_for(rows, n * 8, [&](int64_t r) { softmax_row(xp + r * n, yp + r * n, n, log); });
  });
}

void CpuBackend::softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx, int64_t rows, int64_t n,
                                  bool log) {
  COPPER_DISPATCH_FLOAT(y.dtype(), "softmax_backward", [&] {
    const T* yp = static_cast<const T*>(y.raw_data());
    const T* gp = static_cast<const T*>(dy.raw_data());
    T* dp = static_cast<T*>(dx.raw_data());
    parallel_for(rows, n * 4, [&](int64_t r) { softmax_backward_row(yp + r * n, gp + r * n, dp + r * n, n, log); });
  });
}

// Causal attention: row r is query i = r % t and sees the first i + (n - t) + 1 keys. The
// row kernels above run over that prefix only and the rest is zero, so a row costs its
// visible length, not n (half the work of a square block), and no mask is read.
void CpuBackend::causal_softmax(const Tensor& x, const Tensor& y, int64_t rows, int64_t t, int64_t n) {
  COPPER_DISPATCH_FLOAT(x.dtype(), "causal_softmax", [&] {
    const T* xp = static_cast<const T*>(x.raw_data());
    T* yp = static_cast<T*>(y.raw_data());
    parallel_for(rows, n * 4, [&](int64_t r) {
      const int64_t len = r % t + (n - t) + 1;
      T* yr = yp + r * n;
      softmax_row(xp + r * n, yr, len, false);
      std::fill(yr + len, yr + n, T(0));
    });
  });
}

void CpuBackend::causal_softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx, int64_t rows,
                                         int64_t t, int64_t n) {
  COPPER_DISPATCH_FLOAT(y.dtype(), "causal_softmax_backward", [&] {
    const T* yp = static_cast<const T*>(y.raw_data());
    const T* gp = static_cast<const T*>(dy.raw_data());
    T* dp = static_cast<T*>(dx.raw_data());
    parallel_for(rows, n * 2, [&](int64_t r) {
      const int64_t len = r % t + (n - t) + 1;
      T* dr = dp + r * n;
      softmax_backward_row(yp + r * n, gp + r * n, dr, len, false);
      std::fill(dr + len, dr + n, T(0));
    });
  });
}

namespace {

// One row of the cross-entropy: its loss from the row's log-sum-exp l, and its gradient
// (softmax - onehot) · s. A target that is `ignore` gives 0s, one out of [0, n) NaNs.
template <class T>
T cross_entropy_row_loss(const T* xr, double l, int64_t t, int64_t ignore, int64_t n) {
  if (t == ignore) return T(0);
  return t >= 0 && t < n ? T(l - double(xr[t])) : T(NAN);
}
template <class T>
void cross_entropy_row_grad(const T* xr, T lse, T s, T* dr, int64_t t, int64_t ignore, int64_t n) {
  if (t == ignore || t < 0 || t >= n) {
    std::fill(dr, dr + n, t == ignore ? T(0) : T(NAN));
    return;
  }
  scaled_softmax_from_lse(xr, lse, s, dr, n);
  dr[t] -= s;
}

// A row's loss term and gradient together; returns the row's log-sum-exp. The reference
// composes the two helpers above; the f32 overload makes two passes over the row: its max,
// then each exp kept in dr as it is summed, which the gradient then only scales (no exp is
// computed twice). Both take the loss before writing the gradient, so dr may be xr.
template <class T>
double cross_entropy_row_with_grad(const T* xr, T s, T* loss, T* dr, int64_t t, int64_t ignore, int64_t n) {
  const double l = row_logsumexp(xr, n);
  *loss = cross_entropy_row_loss(xr, l, t, ignore, n);
  cross_entropy_row_grad(xr, T(l), s, dr, t, ignore, n);
  return l;
}
double cross_entropy_row_with_grad(const float* xr, float s, float* loss, float* dr, int64_t t, int64_t ignore,
                                   int64_t n) {
  const float mx = row_max(xr, n);
  if (std::isinf(mx) || t == ignore || t < 0 || t >= n)  // the edge cases, as the reference has them
    return cross_entropy_row_with_grad<float>(xr, s, loss, dr, t, ignore, n);
  const float target_logit = xr[t];  // read before dr is written: dr may be xr
  const double sum = exps_and_sum(xr, dr, n, mx);
  const double l = double(mx) + std::log(sum);
  const float k = float(double(s) / sum);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dr[i] *= k;
  dr[t] -= s;
  *loss = float(l - double(target_logit));
  return l;
}

}  // namespace

void CpuBackend::cross_entropy(const Tensor& logits, const Tensor& targets, const Tensor& loss, const Tensor& lse,
                               int64_t ignore_index) {
  const int64_t rows = logits.size(0), n = logits.size(1);
  const int64_t* tp = targets.data<int64_t>();
  COPPER_DISPATCH_FLOAT(logits.dtype(), "cross_entropy", [&] {
    const T* xp = static_cast<const T*>(logits.raw_data());
    T* lp = static_cast<T*>(loss.raw_data());
    T* sp = static_cast<T*>(lse.raw_data());
    parallel_for(rows, n * 8, [&](int64_t r) {
      const double l = row_logsumexp(xp + r * n, n);
      sp[r] = T(l);
      lp[r] = cross_entropy_row_loss(xp + r * n, l, tp[r], ignore_index, n);
    });
  });
}

void CpuBackend::cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& lse,
                                        const Tensor& dlogits, const Tensor& scale, int64_t ignore_index) {
  const int64_t rows = logits.size(0), n = logits.size(1);
  const int64_t* tp = targets.data<int64_t>();
  COPPER_DISPATCH_FLOAT(logits.dtype(), "cross_entropy_backward", [&] {
    const T* xp = static_cast<const T*>(logits.raw_data());
    const T* sp = static_cast<const T*>(lse.raw_data());
    T* dp = static_cast<T*>(dlogits.raw_data());
    const T s = *static_cast<const T*>(scale.raw_data());
    parallel_for(rows, n * 8, [&](int64_t r) {
      cross_entropy_row_grad(xp + r * n, sp[r], s, dp + r * n, tp[r], ignore_index, n);
    });
  });
}

void CpuBackend::cross_entropy_with_grad(const Tensor& logits, const Tensor& targets, const Tensor& loss,
                                         const Tensor& lse, const Tensor& dlogits, const Tensor& scale,
                                         int64_t ignore_index) {
  // One row at a time, so that the row (the vocabulary: tens of KB) is read from memory once
  // and the gradient's pass over it finds it in cache.
  const int64_t rows = logits.size(0), n = logits.size(1);
  const int64_t* tp = targets.data<int64_t>();
  COPPER_DISPATCH_FLOAT(logits.dtype(), "cross_entropy_with_grad", [&] {
    const T* xp = static_cast<const T*>(logits.raw_data());
    T* lp = static_cast<T*>(loss.raw_data());
    T* sp = static_cast<T*>(lse.raw_data());
    T* dp = static_cast<T*>(dlogits.raw_data());
    const T s = *static_cast<const T*>(scale.raw_data());
    parallel_for(rows, n * 8, [&](int64_t r) {
      sp[r] = T(cross_entropy_row_with_grad(xp + r * n, s, lp + r, dp + r * n, tp[r], ignore_index, n));
    });
  });
}

}  // namespace copper
