// elementwise.cpp — unary and binary maps, their derivatives, and where().
//
// Each op is a small lambda; `map_rows` runs it over rows from for_each_row with a
// unit-stride fast path the compiler vectorizes.
#include <cmath>
#include <type_traits>

#include "tensor/cpu/cpu_backend.h"
#include "tensor/cpu/fast_math.h"
#include "tensor/cpu/loops.h"

namespace copper {

using namespace cpu;

namespace {

// f32 takes the vectorisable forms of tensor/cpu/fast_math.h for exp, erf and their uses
// (sigmoid, SiLU, GELU); f64 keeps libm and is the reference tests/test_kernels.cpp holds
// them to.
template <class T>
constexpr bool kFast = std::is_same_v<T, float>;

constexpr double kSqrt1_2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kSqrt2OverPi = 0.79788456080286535588;

// The exact GELU u·Φ(u) and its derivative Φ(u) + u·φ(u): f32 from gelu_parts_fast, f64 from
// libm (the reference the f32 forms are tested against).
template <class T>
T gelu_of(T u) {
  if constexpr (kFast<T>) return u * gelu_parts_fast(u).cdf;
  else return T(0.5) * u * (T(1) + std::erf(u * T(kSqrt1_2)));
}
template <class T>
T gelu_slope(T u) {
  if constexpr (kFast<T>) {
    const GeluParts p = gelu_parts_fast(u);
    return p.cdf + u * p.pdf;
  } else {
    const T cdf = T(0.5) * (T(1) + std::erf(u * T(kSqrt1_2)));
    const T pdf = T(kInvSqrt2Pi) * std::exp(T(-0.5) * u * u);
    return cdf + u * pdf;
  }
}

// Both at one point, sharing Φ and φ (f32) between them.
template <class T>
void gelu_and_slope(T u, T& y, T& slope) {
  if constexpr (kFast<T>) {
    const GeluParts p = gelu_parts_fast(u);
    y = u * p.cdf;
    slope = p.cdf + u * p.pdf;
  } else {
    y = gelu_of(u);
    slope = gelu_slope(u);
  }
}

template <class T, class F>
void map1(const Tensor& x, const Tensor& out, F f) {
  const T* xp = static_cast<const T*>(x.raw_data());
  T* op = static_cast<T*>(out.raw_data());
  for_each_row<2>(out.shape(), {&x.strides(), &out.strides()}, [&](const int64_t* off, const int64_t* st, int64_t n) {
    // no __restrict: in-place updates (add_, mul_) pass the output as an input too; the
    // simd pragma is still valid because element i only reads and writes index i
    const T* a = xp + off[0];
    T* o = op + off[1];
    if (st[0] == 1 && st[1] == 1) {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) o[i] = f(a[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * st[1]] = f(a[i * st[0]]);
    }
  });
}

template <class T, class F>
void map2(const Tensor& a, const Tensor& b, const Tensor& out, F f) {
  const T* ap = static_cast<const T*>(a.raw_data());
  const T* bp = static_cast<const T*>(b.raw_data());
  T* op = static_cast<T*>(out.raw_data());
  for_each_row<3>(out.shape(), {&a.strides(), &b.strides(), &out.strides()},
                  [&](const int64_t* off, const int64_t* st, int64_t n) {
                    const T* x = ap + off[0];  // may alias o (in-place): see map1
                    const T* y = bp + off[1];
                    T* o = op + off[2];
                    if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
#pragma omp simd
                      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], y[i]);
                    } else if (st[0] == 1 && st[1] == 0 && st[2] == 1) {  // tensor (op) broadcast scalar row
                      const T yv = y[0];
#pragma omp simd
                      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], yv);
                    } else {
                      for (int64_t i = 0; i < n; ++i) o[i * st[2]] = f(x[i * st[0]], y[i * st[1]]);
                    }
                  });
}

// Three contiguous inputs of one shape: out = f(x, y, g).
template <class T, class F>
void map3c(const Tensor& x, const Tensor& y, const Tensor& g, const Tensor& out, F f) {
  const T* __restrict xp = static_cast<const T*>(x.raw_data());
  const T* __restrict yp = static_cast<const T*>(y.raw_data());
  const T* __restrict gp = static_cast<const T*>(g.raw_data());
  T* __restrict op = static_cast<T*>(out.raw_data());
  int64_t n = out.numel();
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) op[i] = f(xp[i], yp[i], gp[i]);
}

}  // namespace

void CpuBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out, double a, double b) {
  COPPER_DISPATCH_FLOAT(x.dtype(), "unary", [&] {
    const T ta = T(a), tb = T(b);
    switch (op) {
      case UnaryOp::neg: return map1<T>(x, out, [](T v) { return -v; });
      case UnaryOp::exp: return map1<T>(x, out, [](T v) { return std::exp(v); });
      case UnaryOp::log: return map1<T>(x, out, [](T v) { return std::log(v); });
      case UnaryOp::sqrt: return map1<T>(x, out, [](T v) { return std::sqrt(v); });
      case UnaryOp::rsqrt: return map1<T>(x, out, [](T v) { return T(1) / std::sqrt(v); });
      case UnaryOp::pow: return map1<T>(x, out, [ta](T v) { return std::pow(v, ta); });
      case UnaryOp::square: return map1<T>(x, out, [](T v) { return v * v; });
      case UnaryOp::sin: return map1<T>(x, out, [](T v) { return std::sin(v); });
      case UnaryOp::cos: return map1<T>(x, out, [](T v) { return std::cos(v); });
      case UnaryOp::tanh: return map1<T>(x, out, [](T v) { return std::tanh(v); });
      case UnaryOp::sigmoid:
        if constexpr (kFast<T>) return map1<T>(x, out, [](T v) { return 1.0f / (1.0f + exp_fast(-v)); });
        else return map1<T>(x, out, [](T v) { return T(1) / (T(1) + std::exp(-v)); });
      case UnaryOp::relu: return map1<T>(x, out, [](T v) { return v > T(0) ? v : T(0); });
      case UnaryOp::gelu_erf: return map1<T>(x, out, [](T v) { return gelu_of(v); });
      case UnaryOp::gelu_tanh:
        return map1<T>(x, out, [](T v) {
          return T(0.5) * v * (T(1) + std::tanh(T(kSqrt2OverPi) * (v + T(0.044715) * v * v * v)));
        });
      case UnaryOp::silu:
        if constexpr (kFast<T>) return map1<T>(x, out, [](T v) { return v / (1.0f + exp_fast(-v)); });
        else return map1<T>(x, out, [](T v) { return v / (T(1) + std::exp(-v)); });
      case UnaryOp::abs: return map1<T>(x, out, [](T v) { return std::abs(v); });
      case UnaryOp::clamp: return map1<T>(x, out, [ta, tb](T v) { return v < ta ? ta : (v > tb ? tb : v); });
      case UnaryOp::floor: return map1<T>(x, out, [](T v) { return std::floor(v); });
      case UnaryOp::ceil: return map1<T>(x, out, [](T v) { return std::ceil(v); });
    }
  });
}

void CpuBackend::unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& grad, const Tensor& out,
                                double a, double b) {
  COPPER_DISPATCH_FLOAT(x.dtype(), "unary_backward", [&] {
    const T ta = T(a), tb = T(b);
    auto run = [&](auto f) { map3c<T>(x, y, grad, out, f); };
    switch (op) {
      case UnaryOp::neg: return run([](T, T, T g) { return -g; });
      case UnaryOp::exp: return run([](T, T y, T g) { return g * y; });
      case UnaryOp::log: return run([](T x, T, T g) { return g / x; });
      case UnaryOp::sqrt: return run([](T, T y, T g) { return g * T(0.5) / y; });
      case UnaryOp::rsqrt: return run([](T, T y, T g) { return g * T(-0.5) * y * y * y; });
      case UnaryOp::pow: return run([ta](T x, T, T g) { return g * ta * std::pow(x, ta - T(1)); });
      case UnaryOp::square: return run([](T x, T, T g) { return g * T(2) * x; });
      case UnaryOp::sin: return run([](T x, T, T g) { return g * std::cos(x); });
      case UnaryOp::cos: return run([](T x, T, T g) { return -g * std::sin(x); });
      case UnaryOp::tanh: return run([](T, T y, T g) { return g * (T(1) - y * y); });
      case UnaryOp::sigmoid: return run([](T, T y, T g) { return g * y * (T(1) - y); });
      case UnaryOp::relu: return run([](T x, T, T g) { return x > T(0) ? g : T(0); });
      case UnaryOp::gelu_erf: return run([](T x, T, T g) { return g * gelu_slope(x); });
      case UnaryOp::gelu_tanh:
        return run([](T x, T, T g) {
          T inner = T(kSqrt2OverPi) * (x + T(0.044715) * x * x * x);
          T t = std::tanh(inner);
          T dinner = T(kSqrt2OverPi) * (T(1) + T(3 * 0.044715) * x * x);
          return g * (T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * dinner);
        });
      case UnaryOp::silu:
        if constexpr (kFast<T>)
          return run([](T x, T, T g) {
            const float s = 1.0f / (1.0f + exp_fast(-x));
            return g * s * (1.0f + x * (1.0f - s));
          });
        else return run([](T x, T, T g) {
          T s = T(1) / (T(1) + std::exp(-x));
          return g * s * (T(1) + x * (T(1) - s));
        });
      case UnaryOp::abs: return run([](T x, T, T g) { return x > T(0) ? g : (x < T(0) ? -g : T(0)); });
      case UnaryOp::clamp: return run([ta, tb](T x, T, T g) { return (x >= ta && x <= tb) ? g : T(0); });
      case UnaryOp::floor:
      case UnaryOp::ceil: return run([](T, T, T) { return T(0); });
    }
  });
}

// gelu(x + bias) row by row: the bias add, the GELU and (for the backward) its slope in one
// pass, which shares Φ and φ between the two; the backward's product with the slope and the
// bias's column sums in one pass (rows_and_column_sums).
void CpuBackend::bias_gelu(const Tensor& x, const Tensor& bias, const Tensor& y, const Tensor& slope, int64_t rows,
                           int64_t n) {
  COPPER_DISPATCH_FLOAT(x.dtype(), "bias_gelu", [&] {
    const T* xp = static_cast<const T*>(x.raw_data());
    const T* bp = static_cast<const T*>(bias.raw_data());
    T* yp = static_cast<T*>(y.raw_data());
    T* sp = slope.defined() ? static_cast<T*>(slope.raw_data()) : nullptr;
    parallel_for(rows, n * 8, [=](int64_t r) {
      const T* xr = xp + r * n;
      T* yr = yp + r * n;
      if (!sp) {
        _Pragma("omp simd")
        for (int64_t i = 0; i < n; ++i) yr[i] = gelu_of(T(xr[i] + bp[i]));
        return;
      }
      T* sr = sp + r * n;
      _Pragma("omp simd")
      for (int64_t i = 0; i < n; ++i) gelu_and_slope(T(xr[i] + bp[i]), yr[i], sr[i]);
    });
  });
}

void CpuBackend::bias_gelu_backward(const Tensor& slope, const Tensor& g, const Tensor& dx, const Tensor& dbias,
                                    int64_t rows, int64_t n) {
  COPPER_DISPATCH_FLOAT(slope.dtype(), "bias_gelu_backward", [&] {
    const T* sp = static_cast<const T*>(slope.raw_data());
    const T* gp = static_cast<const T*>(g.raw_data());
    T* dp = static_cast<T*>(dx.raw_data());
    rows_and_column_sums<T>(rows, n, Tensor(), dbias, [=](int64_t r, T*, T* db) {
      const T* sr = sp + r * n;
      const T* gr = gp + r * n;
      T* dr = dp + r * n;
      _Pragma("omp simd")
      for (int64_t i = 0; i < n; ++i) dr[i] = gr[i] * sr[i];
      if (db) {
        _Pragma("omp simd")
        for (int64_t i = 0; i < n; ++i) db[i] += dr[i];
      }
    });
  });
}

void CpuBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  COPPER_DISPATCH_NUMERIC(a.dtype(), "binary", [&] {
    switch (op) {
      case BinaryOp::add: return map2<T>(a, b, out, [](T x, T y) { return x + y; });
      case BinaryOp::sub: return map2<T>(a, b, out, [](T x, T y) { return x - y; });
      case BinaryOp::mul: return map2<T>(a, b, out, [](T x, T y) { return x * y; });
      case BinaryOp::div: return map2<T>(a, b, out, [](T x, T y) { return x / y; });
      case BinaryOp::maximum: return map2<T>(a, b, out, [](T x, T y) { return x >= y ? x : y; });
      case BinaryOp::minimum: return map2<T>(a, b, out, [](T x, T y) { return x <= y ? x : y; });
      case BinaryOp::eq: return map2<T>(a, b, out, [](T x, T y) { return T(x == y); });
      case BinaryOp::ne: return map2<T>(a, b, out, [](T x, T y) { return T(x != y); });
      case BinaryOp::lt: return map2<T>(a, b, out, [](T x, T y) { return T(x < y); });
      case BinaryOp::le: return map2<T>(a, b, out, [](T x, T y) { return T(x <= y); });
      case BinaryOp::gt: return map2<T>(a, b, out, [](T x, T y) { return T(x > y); });
      case BinaryOp::ge: return map2<T>(a, b, out, [](T x, T y) { return T(x >= y); });
    }
  });
}

void CpuBackend::where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  COPPER_DISPATCH_ALL(cond.dtype(), "where", [&] {
    using C = T;
    const C* cp = static_cast<const C*>(cond.raw_data());
    COPPER_DISPATCH_FLOAT(a.dtype(), "where", [&] {
      const T* ap = static_cast<const T*>(a.raw_data());
      const T* bp = static_cast<const T*>(b.raw_data());
      T* op = static_cast<T*>(out.raw_data());
      for_each_row<4>(out.shape(), {&cond.strides(), &a.strides(), &b.strides(), &out.strides()},
                      [&](const int64_t* off, const int64_t* st, int64_t n) {
                        for (int64_t i = 0; i < n; ++i)
                          op[off[3] + i * st[3]] = to_double(cp[off[0] + i * st[0]]) != 0 ? ap[off[1] + i * st[1]]
                                                                                          : bp[off[2] + i * st[2]];
                      });
    });
  });
}

}  // namespace copper
