// elementwise.cu — unary and binary maps, their derivatives, where, and gelu(x + bias)
// (Backend::unary, unary_backward, binary, where, bias_gelu). One thread per element, inputs of
// any strides (the backward's inputs are contiguous); bias_gelu takes contiguous rows, a block each. The formulas are those of tensor/cpu/elementwise.cpp,
// with CUDA's libm (expf, erff, ...) where the CPU's f32 path uses its own vectorisable exp.
#include "cuda/common.cuh"

namespace copper::cuda {

namespace {

constexpr double kSqrt1_2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kGeluTanhCubic = 0.044715;

template <class T>
__device__ __forceinline__ T unary_value(UnaryOp op, T v, T a, T b) {
  switch (op) {
    case UnaryOp::neg: return -v;
    case UnaryOp::exp: return exp(v);
    case UnaryOp::log: return log(v);
    case UnaryOp::sqrt: return sqrt(v);
    case UnaryOp::rsqrt: return T(1) / sqrt(v);
    case UnaryOp::pow: return pow(v, a);
    case UnaryOp::square: return v * v;
    case UnaryOp::sin: return sin(v);
    case UnaryOp::cos: return cos(v);
    case UnaryOp::tanh: return tanh(v);
    case UnaryOp::sigmoid: return T(1) / (T(1) + exp(-v));
    case UnaryOp::relu: return v > T(0) ? v : T(0);
    case UnaryOp::gelu_erf: return T(0.5) * v * (T(1) + erf(v * T(kSqrt1_2)));
    case UnaryOp::gelu_tanh:
      return T(0.5) * v * (T(1) + tanh(T(kSqrt2OverPi) * (v + T(kGeluTanhCubic) * v * v * v)));
    case UnaryOp::silu: return v / (T(1) + exp(-v));
    case UnaryOp::abs: return fabs(v);
    case UnaryOp::clamp: return v < a ? a : (v > b ? b : v);
    case UnaryOp::floor: return floor(v);
    case UnaryOp::ceil: return ceil(v);
  }
  return v;
}

// grad * f'(x), with y = f(x)
template <class T>
__device__ __forceinline__ T unary_derivative(UnaryOp op, T x, T y, T g, T a, T b) {
  switch (op) {
    case UnaryOp::neg: return -g;
    case UnaryOp::exp: return g * y;
    case UnaryOp::log: return g / x;
    case UnaryOp::sqrt: return g * T(0.5) / y;
    case UnaryOp::rsqrt: return g * T(-0.5) * y * y * y;
    case UnaryOp::pow: return g * a * pow(x, a - T(1));
    case UnaryOp::square: return g * T(2) * x;
    case UnaryOp::sin: return g * cos(x);
    case UnaryOp::cos: return -g * sin(x);
    case UnaryOp::tanh: return g * (T(1) - y * y);
    case UnaryOp::sigmoid: return g * y * (T(1) - y);
    case UnaryOp::relu: return x > T(0) ? g : T(0);
    case UnaryOp::gelu_erf: {
      const T cdf = T(0.5) * (T(1) + erf(x * T(kSqrt1_2)));
      const T pdf = T(kInvSqrt2Pi) * exp(T(-0.5) * x * x);
      return g * (cdf + x * pdf);
    }
    case UnaryOp::gelu_tanh: {
      const T inner = T(kSqrt2OverPi) * (x + T(kGeluTanhCubic) * x * x * x);
      const T t = tanh(inner);
      const T dinner = T(kSqrt2OverPi) * (T(1) + T(3 * kGeluTanhCubic) * x * x);
      return g * (T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * dinner);
    }
    case UnaryOp::silu: {
      const T s = T(1) / (T(1) + exp(-x));
      return g * s * (T(1) + x * (T(1) - s));
    }
    case UnaryOp::abs: return x > T(0) ? g : (x < T(0) ? -g : T(0));
    case UnaryOp::clamp: return (x >= a && x <= b) ? g : T(0);
    case UnaryOp::floor:
    case UnaryOp::ceil: return T(0);
  }
  return g;
}

template <class T>
__device__ __forceinline__ T binary_value(BinaryOp op, T x, T y) {
  switch (op) {
    case BinaryOp::add: return x + y;
    case BinaryOp::sub: return x - y;
    case BinaryOp::mul: return x * y;
    case BinaryOp::div: return x / y;
    case BinaryOp::maximum: return x >= y ? x : y;
    case BinaryOp::minimum: return x <= y ? x : y;
    case BinaryOp::eq: return T(x == y);
    case BinaryOp::ne: return T(x != y);
    case BinaryOp::lt: return T(x < y);
    case BinaryOp::le: return T(x <= y);
    case BinaryOp::gt: return T(x > y);
    case BinaryOp::ge: return T(x >= y);
  }
  return x;
}

// The op is a kernel argument, not a template parameter: one kernel per dtype keeps the
// build small, and the switch is uniform across a warp, so it costs little next to memory.
template <class T>
__global__ void unary_kernel(UnaryOp op, Layout l, Operands<2> ops, T a, T b) {
  const T* x = static_cast<const T*>(ops.op[0].data);
  T* out = static_cast<T*>(ops.op[1].data);
  COPPER_CUDA_GRID_STRIDE(i, l.numel) {
    int64_t off[2];
    offsets_of<2>(i, l, ops, off);
    out[off[1]] = unary_value<T>(op, x[off[0]], a, b);
  }
}

// y may be null for ops whose derivative needs only x
template <class T>
__global__ void unary_backward_kernel(UnaryOp op, int64_t n, const T* x, const T* y, const T* g, T* out, T a, T b) {
  COPPER_CUDA_GRID_STRIDE(i, n) out[i] = unary_derivative<T>(op, x[i], y ? y[i] : T(0), g[i], a, b);
}

template <class T>
__global__ void binary_kernel(BinaryOp op, Layout l, Operands<3> ops) {
  const T* a = static_cast<const T*>(ops.op[0].data);
  const T* b = static_cast<const T*>(ops.op[1].data);
  T* out = static_cast<T*>(ops.op[2].data);
  COPPER_CUDA_GRID_STRIDE(i, l.numel) {
    int64_t off[3];
    offsets_of<3>(i, l, ops, off);
    out[off[2]] = binary_value<T>(op, a[off[0]], b[off[1]]);
  }
}

// y = gelu(x + bias) over contiguous rows, and its slope there when slope is not null: one
// block per row, as the unary GELU and its derivative (with g = 1) compute them.
template <class T>
__global__ void bias_gelu_kernel(const T* x, const T* bias, T* y, T* slope, int64_t rows, int64_t n) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const T v = xr[i] + bias[i];
      yr[i] = unary_value<T>(UnaryOp::gelu_erf, v, T(0), T(0));
      if (slope) slope[r * n + i] = unary_derivative<T>(UnaryOp::gelu_erf, v, T(0), T(1), T(0), T(0));
    }
  }
}

template <class C, class T>
__global__ void where_kernel(Layout l, Operands<4> ops) {
  const C* cond = static_cast<const C*>(ops.op[0].data);
  const T* a = static_cast<const T*>(ops.op[1].data);
  const T* b = static_cast<const T*>(ops.op[2].data);
  T* out = static_cast<T*>(ops.op[3].data);
  COPPER_CUDA_GRID_STRIDE(i, l.numel) {
    int64_t off[4];
    offsets_of<4>(i, l, ops, off);
    out[off[3]] = to_double(cond[off[0]]) != 0 ? a[off[1]] : b[off[2]];
  }
}

}  // namespace

void launch_unary(UnaryOp op, const Layout& l, const Operand& x, const Operand& out, double a, double b,
                  cudaStream_t stream) {
  if (l.numel == 0) return;
  const Operands<2> ops{{x, out}};
  COPPER_CUDA_DISPATCH_FLOAT(x.dtype, "unary", [&] {
    unary_kernel<T><<<grid_for(l.numel), kBlock, 0, stream>>>(op, l, ops, T(a), T(b));
    COPPER_CUDA_LAUNCH_CHECK("unary_kernel");
  });
}

void launch_unary_backward(UnaryOp op, DType dtype, int64_t n, const void* x, const void* y, const void* grad,
                           void* out, double a, double b, cudaStream_t stream) {
  if (n == 0) return;
  COPPER_CUDA_DISPATCH_FLOAT(dtype, "unary_backward", [&] {
    unary_backward_kernel<T><<<grid_for(n), kBlock, 0, stream>>>(op, n, static_cast<const T*>(x),
                                                                 static_cast<const T*>(y),
                                                                 static_cast<const T*>(grad), static_cast<T*>(out),
                                                                 T(a), T(b));
    COPPER_CUDA_LAUNCH_CHECK("unary_backward_kernel");
  });
}

void launch_binary(BinaryOp op, const Layout& l, const Operand& a, const Operand& b, const Operand& out,
                   cudaStream_t stream) {
  if (l.numel == 0) return;
  const Operands<3> ops{{a, b, out}};
  COPPER_CUDA_DISPATCH_NUMERIC(a.dtype, "binary", [&] {
    binary_kernel<T><<<grid_for(l.numel), kBlock, 0, stream>>>(op, l, ops);
    COPPER_CUDA_LAUNCH_CHECK("binary_kernel");
  });
}

void launch_bias_gelu(DType dtype, const void* x, const void* bias, void* y, void* slope, int64_t rows, int64_t n,
                      cudaStream_t stream) {
  if (rows * n == 0) return;
  COPPER_CUDA_DISPATCH_FLOAT(dtype, "bias_gelu", [&] {
    bias_gelu_kernel<T><<<grid_rows(rows), kBlock, 0, stream>>>(static_cast<const T*>(x),
                                                                 static_cast<const T*>(bias), static_cast<T*>(y),
                                                                 static_cast<T*>(slope), rows, n);
    COPPER_CUDA_LAUNCH_CHECK("bias_gelu_kernel");
  });
}

void launch_where(const Layout& l, const Operand& cond, const Operand& a, const Operand& b, const Operand& out,
                  cudaStream_t stream) {
  if (l.numel == 0) return;
  const Operands<4> ops{{cond, a, b, out}};
  COPPER_CUDA_DISPATCH_ALL(cond.dtype, "where", [&] {
    using C = T;
    COPPER_CUDA_DISPATCH_FLOAT(a.dtype, "where", [&] {
      where_kernel<C, T><<<grid_for(l.numel), kBlock, 0, stream>>>(l, ops);
      COPPER_CUDA_LAUNCH_CHECK("where_kernel");
    });
  });
}

}  // namespace copper::cuda
