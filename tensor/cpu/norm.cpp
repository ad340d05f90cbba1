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
template <class T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? static_cast<const T*>(t.raw_data()) : nullptr;
}

// The backward's one pass over the rows: rows go in chunks of kRowChunk, and `row(r, w, b)`
// writes row r's dx and adds its terms of the weight and bias gradients into w and b, the
// chunk's partial column sums (double, n each; null when that gradient is not wanted).
// The chunks' sums are then added in chunk order into dweight and dbias, so the result does
// not depend on the thread count, and x and dy are read once, not once per gradient.
constexpr int64_t kRowChunk = 32;

template <class T, class Row>
void rows_and_column_sums(int64_t rows, int64_t n, const Tensor& dweight, const Tensor& dbias, Row row) {
  const int64_t chunks = (rows + kRowChunk - 1) / kRowChunk;
  std::vector<double> wsum(dweight.defined() ? size_t(chunks * n) : 0), bsum(dbias.defined() ? size_t(chunks * n) : 0);
  parallel_for(chunks, kRowChunk * n * 8, [&](int64_t ch) {
    double* w = wsum.empty() ? nullptr : wsum.data() + ch * n;
    double* b = bsum.empty() ? nullptr : bsum.data() + ch * n;
    for (int64_t r = ch * kRowChunk; r < std::min(rows, (ch + 1) * kRowChunk); ++r) row(r, w, b);
  });
  auto total = [&](const std::vector<double>& part, const Tensor& out) {
    if (!out.defined()) return;
    T* o = static_cast<T*>(out.raw_data());
    parallel_for(n, chunks, [&](int64_t c) {
      double acc = 0;
      for (int64_t ch = 0; ch < chunks; ++ch) acc += part[size_t(ch * n + c)];
      o[c] = T(acc);
    });
  };
  total(wsum, dweight);
  total(bsum, dbias);
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
    T* dp = dx.defined() ? static_cast<T*>(dx.raw_data()) : nullptr;
    rows_and_column_sums<T>(rows, n, dweight, dbias, [&](int64_t r, double* dw, double* db) {
      const T* xr = xp + r * n;
      const T* gr = gp + r * n;
      const T m = mp[r], rs = rp[r];
      if (dp) {
        T* dr = dp + r * n;
        double s1 = 0, s2 = 0;  // sum dxhat, sum dxhat * xhat
        _Pragma("omp simd reduction(+ : s1, s2)")
        for (int64_t i = 0; i < n; ++i) {
          T dh = wp ? gr[i] * wp[i] : gr[i];
          s1 += dh;
          s2 += dh * (xr[i] - m) * rs;
        }
        const T a = T(s1 / double(n)), b = T(s2 / double(n));
        _Pragma("omp simd")
        for (int64_t i = 0; i < n; ++i) {
          T dh = wp ? gr[i] * wp[i] : gr[i];
          dr[i] = rs * (dh - a - (xr[i] - m) * rs * b);
        }
      }
      if (dw) {
        _Pragma("omp simd")
        for (int64_t i = 0; i < n; ++i) dw[i] += double(gr[i] * (xr[i] - m) * rs);
      }
      if (db) {
        _Pragma("omp simd")
        for (int64_t i = 0; i < n; ++i) db[i] += double(gr[i]);
      }
    });
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
      _Pragma("omp simd reduction(+ : ss)")
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
    T* dp = dx.defined() ? static_cast<T*>(dx.raw_data()) : nullptr;
    rows_and_column_sums<T>(rows, n, dweight, Tensor(), [&](int64_t r, double* dw, double*) {
      const T* xr = xp + r * n;
      const T* gr = gp + r * n;
      const T rs = rp[r];
      if (dp) {
        T* dr = dp + r * n;
        double s = 0;
        _Pragma("omp simd reduction(+ : s)")
        for (int64_t i = 0; i < n; ++i) s += double(wp ? gr[i] * wp[i] : gr[i]) * xr[i];
        const T c = T(s / double(n)) * rs * rs * rs;
        _Pragma("omp simd")
        for (int64_t i = 0; i < n; ++i) dr[i] = rs * (wp ? gr[i] * wp[i] : gr[i]) - xr[i] * c;
      }
      if (dw) {
        _Pragma("omp simd")
        for (int64_t i = 0; i < n; ++i) dw[i] += double(gr[i] * xr[i] * rs);
      }
    });
  });
}

}  // namespace copper
