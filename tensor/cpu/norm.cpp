// norm.cpp — LayerNorm and RMSNorm over contiguous rows, forward and backward.
//
// LayerNorm:  xhat = (x - mean) * rstd,  y = xhat * w + b
//   dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),  dxhat = dy * w
// RMSNorm:    y = x * rstd * w,  rstd = 1/sqrt(mean(x^2) + eps)
//   dx = rstd * dxhat - x * rstd^3 * mean(dxhat * x)
// Weight gradients sum over rows: each chunk of rows keeps its own partial sums, added in
// chunk order at the end (rows_and_column_sums), so threads never write the same element.
#include <algorithm>
#include <cmath>
#include <vector>

#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/loops.h"

namespace copper {

using namespace cpu;

namespace {
// A missing weight is a row of ones and a missing bias a row of zeros, so the row loops
// below have no branch inside: a conditional there keeps the compiler from vectorizing them
// well (it masks every load). Multiplying by one and adding zero change no value. Returns
// t's data, or `fill` made n copies of `value`.
template <class T>
const T* row_or(const Tensor& t, std::vector<T>& fill, int64_t n, T value) {
  if (t.defined()) return static_cast<const T*>(t.raw_data());
  fill.assign(size_t(n), value);
  return fill.data();
}

}  // namespace

void CpuBackend::layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& y,
                            const Tensor& mean, const Tensor& rstd, int64_t rows, int64_t n, double eps) {
  COPPER_DISPATCH_FLOAT(x.dtype(), "layer_norm", [&] {
    const T* xp = static_cast<const T*>(x.raw_data());
    std::vector<T> ones, zeros;
    const T* wp = row_or(weight, ones, n, T(1));
    const T* bp = row_or(bias, zeros, n, T(0));
    T* yp = static_cast<T*>(y.raw_data());
    T* mp = static_cast<T*>(mean.raw_data());
    T* rp = static_cast<T*>(rstd.raw_data());
    parallel_for(rows, n * 4, [&](int64_t r) {
      const T* xr = xp + r * n;
      T* yr = yp + r * n;
      const double mu = row_sum<T>(n, [=](int64_t i) { return xr[i]; }) / double(n);
      const T m = T(mu);
      const double v = row_sum<T>(n, [=](int64_t i) { return (xr[i] - m) * (xr[i] - m); });
      const double rs = 1.0 / std::sqrt(v / double(n) + eps);
      mp[r] = m;
      rp[r] = T(rs);
      const T rst = T(rs);
      _Pragma("omp simd")
      for (int64_t i = 0; i < n; ++i) yr[i] = (xr[i] - m) * rst * wp[i] + bp[i];
    });
  });
}

void CpuBackend::layer_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                                     const Tensor& dy, const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                                     int64_t rows, int64_t n) {
  COPPER_DISPATCH_FLOAT(x.dtype(), "layer_norm_backward", [&] {
    const T* xp = static_cast<const T*>(x.raw_data());
    std::vector<T> ones;
    const T* wp = row_or(weight, ones, n, T(1));
    const T* mp = static_cast<const T*>(mean.raw_data());
    const T* rp = static_cast<const T*>(rstd.raw_data());
    const T* gp = static_cast<const T*>(dy.raw_data());
    T* dp = dx.defined() ? static_cast<T*>(dx.raw_data()) : nullptr;
    rows_and_column_sums<T>(rows, n, dweight, dbias, [&](int64_t r, T* dw, T* db) {
      const T* xr = xp + r * n;
      const T* gr = gp + r * n;
      const T m = mp[r], rs = rp[r];
      if (dp) {
        T* dr = dp + r * n;
        const double s1 = row_sum<T>(n, [=](int64_t i) { return gr[i] * wp[i]; });  // sum dxhat
        const double s2 = row_sum<T>(n, [=](int64_t i) { return gr[i] * wp[i] * (xr[i] - m) * rs; });  // sum dxhat xhat
        const T a = T(s1 / double(n)), b = T(s2 / double(n));
        _Pragma("omp simd")
        for (int64_t i = 0; i < n; ++i) dr[i] = rs * (gr[i] * wp[i] - a - (xr[i] - m) * rs * b);
      }
      if (dw) {
        _Pragma("omp simd")
        for (int64_t i = 0; i < n; ++i) dw[i] += gr[i] * (xr[i] - m) * rs;
      }
      if (db) {
        _Pragma("omp simd")
        for (int64_t i = 0; i < n; ++i) db[i] += gr[i];
      }
    });
  });
}

void CpuBackend::rms_norm(const Tensor& x, const Tensor& weight, const Tensor& y, const Tensor& rstd, int64_t rows,
                          int64_t n, double eps) {
  COPPER_DISPATCH_FLOAT(x.dtype(), "rms_norm", [&] {
    const T* xp = static_cast<const T*>(x.raw_data());
    std::vector<T> ones;
    const T* wp = row_or(weight, ones, n, T(1));
    T* yp = static_cast<T*>(y.raw_data());
    T* rp = static_cast<T*>(rstd.raw_data());
    parallel_for(rows, n * 3, [&](int64_t r) {
      const T* xr = xp + r * n;
      T* yr = yp + r * n;
      const double ss = row_sum<T>(n, [=](int64_t i) { return xr[i] * xr[i]; });
      const T rs = T(1.0 / std::sqrt(ss / double(n) + eps));
      rp[r] = rs;
      _Pragma("omp simd")
      for (int64_t i = 0; i < n; ++i) yr[i] = xr[i] * rs * wp[i];
    });
  });
}

void CpuBackend::rms_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& rstd, const Tensor& dy,
                                   const Tensor& dx, const Tensor& dweight, int64_t rows, int64_t n) {
  COPPER_DISPATCH_FLOAT(x.dtype(), "rms_norm_backward", [&] {
    const T* xp = static_cast<const T*>(x.raw_data());
    std::vector<T> ones;
    const T* wp = row_or(weight, ones, n, T(1));
    const T* rp = static_cast<const T*>(rstd.raw_data());
    const T* gp = static_cast<const T*>(dy.raw_data());
    T* dp = dx.defined() ? static_cast<T*>(dx.raw_data()) : nullptr;
    rows_and_column_sums<T>(rows, n, dweight, Tensor(), [&](int64_t r, T* dw, T*) {
      const T* xr = xp + r * n;
      const T* gr = gp + r * n;
      const T rs = rp[r];
      if (dp) {
        T* dr = dp + r * n;
        const double s = row_sum<T>(n, [=](int64_t i) { return gr[i] * wp[i] * xr[i]; });
        const T c = T(s / double(n)) * rs * rs * rs;
        _Pragma("omp simd")
        for (int64_t i = 0; i < n; ++i) dr[i] = rs * (gr[i] * wp[i]) - xr[i] * c;
      }
      if (dw) {
        _Pragma("omp simd")
        for (int64_t i = 0; i < n; ++i) dw[i] += gr[i] * xr[i] * rs;
      }
    });
  });
}

}  // namespace copper
