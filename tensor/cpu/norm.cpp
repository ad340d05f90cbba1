// norm.cpp — LayerNorm and RMSNorm over contiguous rows, forward and backward.
//
// LayerNorm:  xhat = (x - mean) * rstd,  y = xhat * w + b
//   dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),  dxhat = dy * w
// RMSNorm:    y = x * rstd * w,  rstd = 1/sqrt(mean(x^2) + eps)
//   dx = rstd * dxhat - x * rstd^3 * mean(dxhat * x)
// Weight gradients sum over rows; they run per column block so that threads never
// write the same element.
#include <cmath>

#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/loops.h"

namespace copper {

using namespace cpu;

namespace {
template <class T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? static_cast<const T*>(t.raw_data()) : nullptr;
}

// out[c] = sum_r f(r, c) for the columns of a [rows, n] problem.
template <class T, class F>
void column_sums(T* out, int64_t rows, int64_t n, F f) {
  const int64_t block = 64;
  parallel_for((n + block - 1) / block, rows * block, [&](int64_t b) {
    int64_t c0 = b * block, c1 = std::min(n, c0 + block);
    double acc[64] = {0};
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = c0; c < c1; ++c) acc[c - c0] += double(f(r, c));
    for (int64_t c = c0; c < c1; ++c) out[c] = T(acc[c - c0]);
  });
}
}  // namespace

void CpuBackend::layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& y,
                            const Tensor& mean, const Tensor& rstd, int64_t rows, int64_t n, double eps) {
  COPPER_DISPATCH_FLOAT(x.dtype(), "layer_norm", [&] {
    const T* xp = static_cast<const T*>(x.raw_data());
    const T* wp = ptr_or_null<T>(weight);
    const T* bp = ptr_or_null<T>(bias);
    T* yp = static_cast<T*>(y.raw_data());
    T* mp = static_cast<T*>(mean.raw_data());
    T* rp = static_cast<T*>(rstd.raw_data());
    parallel_for(rows, n * 4, [&](int64_t r) {
      const T* xr = xp + r * n;
      T* yr = yp + r * n;
      // `omp simd reduction` lets the compiler reorder the sums into vector lanes, which
      // plain C++ forbids for floating point; the accumulators stay double.
      double s = 0;
      _Pragma("omp simd reduction(+ : s)")  // (a #pragma cannot sit inside the dispatch macro)
      for (int64_t i = 0; i < n; ++i) s += xr[i];
      const double mu = s / double(n);
      double v = 0;
      _Pragma("omp simd reduction(+ : v)")
      for (int64_t i = 0; i < n; ++i) v += (xr[i] - mu) * (xr[i] - mu);
      const double rs = 1.0 / std::sqrt(v / double(n) + eps);
      mp[r] = T(mu);
      rp[r] = T(rs);
      const T m = T(mu), rst = T(rs);
      for (int64_t i = 0; i < n; ++i) {
        T h = (xr[i] - m) * rst;
        yr[i] = (wp ? h * wp[i] : h) + (bp ? bp[i] : T(0));
      }
    });
  });
}

void CpuBackend::layer_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                                     const Tensor& dy, const Tensor& dx, const Tensor& dweight, const Tensor& dbias,
                                     int64_t rows, int64_t n) {
  COPPER_DISPATCH_FLOAT(x.dtype(), "layer_norm_backward", [&] {
    const T* xp = static_cast<const T*>(x.raw_data());
    const T* wp = ptr_or_null<T>(weight);
    const T* mp = static_cast<const T*>(mean.raw_data());
    const T* rp = static_cast<const T*>(rstd.raw_data());
    const T* gp = static_cast<const T*>(dy.raw_data());
    if (dx.defined()) {
      T* dp = static_cast<T*>(dx.raw_data());
      parallel_for(rows, n * 6, [&](int64_t r) {
        const T* xr = xp + r * n;
        const T* gr = gp + r * n;
        T* dr = dp + r * n;
        const T m = mp[r], rs = rp[r];
        double s1 = 0, s2 = 0;  // sum dxhat, sum dxhat * xhat
        for (int64_t i = 0; i < n; ++i) {
          T dh = wp ? gr[i] * wp[i] : gr[i];
          s1 += dh;
          s2 += dh * (xr[i] - m) * rs;
        }
        const T a = T(s1 / double(n)), b = T(s2 / double(n));
        for (int64_t i = 0; i < n; ++i) {
          T dh = wp ? gr[i] * wp[i] : gr[i];
          dr[i] = rs * (dh - a - (xr[i] - m) * rs * b);
        }
      });
    }
    if (dweight.defined())
      column_sums(static_cast<T*>(dweight.raw_data()), rows, n,
                  [&](int64_t r, int64_t c) { return gp[r * n + c] * (xp[r * n + c] - mp[r]) * rp[r]; });
    if (dbias.defined())
      column_sums(static_cast<T*>(dbias.raw_data()), rows, n, [&](int64_t r, int64_t c) { return gp[r * n + c]; });
  });
}

void CpuBackend::rms_norm(const Tensor& x, const Tensor& weight, const Tensor& y, const Tensor& rstd, int64_t rows,
                          int64_t n, double eps) {
  COPPER_DISPATCH_FLOAT(x.dtype(), "rms_norm", [&] {
    const T* xp = static_cast<const T*>(x.raw_data());
    const T* wp = ptr_or_null<T>(weight);
    T* yp = static_cast<T*>(y.raw_data());
    T* rp = static_cast<T*>(rstd.raw_data());
    parallel_for(rows, n * 3, [&](int64_t r) {
      const T* xr = xp + r * n;
      T* yr = yp + r * n;
      double ss = 0;
      for (int64_t i = 0; i < n; ++i) ss += double(xr[i]) * xr[i];
      const T rs = T(1.0 / std::sqrt(ss / double(n) + eps));
      rp[r] = rs;
      for (int64_t i = 0; i < n; ++i) yr[i] = wp ? xr[i] * rs * wp[i] : xr[i] * rs;
    });
  });
}

void CpuBackend::rms_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& rstd, const Tensor& dy,
                                   const Tensor& dx, const Tensor& dweight, int64_t rows, int64_t n) {
  COPPER_DISPATCH_FLOAT(x.dtype(), "rms_norm_backward", [&] {
    const T* xp = static_cast<const T*>(x.raw_data());
    const T* wp = ptr_or_null<T>(weight);
    const T* rp = static_cast<const T*>(rstd.raw_data());
    const T* gp = static_cast<const T*>(dy.raw_data());
    if (dx.defined()) {
      T* dp = static_cast<T*>(dx.raw_data());
      parallel_for(rows, n * 4, [&](int64_t r) {
        const T* xr = xp + r * n;
        const T* gr = gp + r * n;
        T* dr = dp + r * n;
        const T rs = rp[r];
        double s = 0;
        for (int64_t i = 0; i < n; ++i) s += double(wp ? gr[i] * wp[i] : gr[i]) * xr[i];
        const T c = T(s / double(n)) * rs * rs * rs;
        for (int64_t i = 0; i < n; ++i) dr[i] = rs * (wp ? gr[i] * wp[i] : gr[i]) - xr[i] * c;
      });
    }
    if (dweight.defined())
      column_sums(static_cast<T*>(dweight.raw_data()), rows, n,
                  [&](int64_t r, int64_t c) { return gp[r * n + c] * xp[r * n + c] * rp[r]; });
  });
}

}  // namespace copper
