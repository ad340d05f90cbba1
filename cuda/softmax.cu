// softmax.cu — softmax, log-softmax, causal softmax and fused cross-entropy over contiguous
// rows (Backend::softmax, causal_softmax, cross_entropy and their backwards).
// One block per row: a block-wide max, a block-wide sum of exp(x - max) in double (as the CPU
// sums), then one pass that writes the row. A causal row r covers its first r % t + (n - t) + 1
// keys and is zero after them.
#include <cmath>

#include "cuda/common.cuh"

namespace copper::cuda {

namespace {

// y[0, len) = softmax (or log-softmax) of x[0, len); y[len, n) = 0.
template <class T>
__device__ void softmax_row(const T* x, T* y, int64_t len, int64_t n, bool log) {
  T mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) mx = x[i] > mx ? x[i] : mx;
  mx = block_max(mx);
  if (isinf(mx) && mx < 0) mx = 0;  // a fully masked row: avoid inf - inf
  double s = 0;
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) s += double(exp(x[i] - mx));
  s = block_sum(s);
  if (log) {
    const T lse = T(double(mx) + ::log(s));
    for (int64_t i = threadIdx.x; i < len; i += blockDim.x) y[i] = x[i] - lse;
  } else {
    const T inv = T(1.0 / s);
    for (int64_t i = threadIdx.x; i < len; i += blockDim.x) y[i] = exp(x[i] - mx) * inv;
  }
  for (int64_t i = len + threadIdx.x; i < n; i += blockDim.x) y[i] = T(0);
}

// dx = y * (dy - sum(dy*y))  or, for log, dx = dy - exp(y) * sum(dy); zero after len.
template <class T>
__device__ void softmax_backward_row(const T* y, const T* g, T* d, int64_t len, int64_t n, bool log) {
  double s = 0;
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) s += log ? double(g[i]) : double(g[i]) * double(y[i]);
  const T sf = T(block_sum(s));
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) d[i] = log ? g[i] - exp(y[i]) * sf : y[i] * (g[i] - sf);
  for (int64_t i = len + threadIdx.x; i < n; i += blockDim.x) d[i] = T(0);
}

// t == 0 means "not causal": every row covers all n keys.
template <class T>
__global__ void softmax_kernel(const T* x, T* y, int64_t rows, int64_t t, int64_t n, bool log) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t len = t == 0 ? n : r % t + (n - t) + 1;
    softmax_row(x + r * n, y + r * n, len, n, log);
  }
}

template <class T>
__global__ void softmax_backward_kernel(const T* y, const T* g, T* d, int64_t rows, int64_t t, int64_t n, bool log) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t len = t == 0 ? n : r % t + (n - t) + 1;
    softmax_backward_row(y + r * n, g + r * n, d + r * n, len, n, log);
  }
}

// loss_r = logsumexp(x_r) - x_r[t_r] (0 where t_r == ignore); lse_r kept for the backward.
template <class T>
__global__ void cross_entropy_kernel(const T* x, const int64_t* targets, T* loss, T* lse, int64_t rows, int64_t n,
                                     int64_t ignore_index) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * n;
    T mx = -INFINITY;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) mx = xr[i] > mx ? xr[i] : mx;
    mx = block_max(mx);
    double l = double(mx);
    if (!isinf(mx)) {
      double s = 0;
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += double(exp(xr[i] - mx));
      l = double(mx) + ::log(block_sum(s));
    }
    if (threadIdx.x == 0) {
      const int64_t tr = targets[r];
      lse[r] = T(l);
      loss[r] = tr == ignore_index ? T(0) : (tr >= 0 && tr < n ? T(l - double(xr[tr])) : T(NAN));
    }
  }
}

// dlogits_r = (softmax(x_r) - onehot(t_r)) * scale[0], zero rows where t_r == ignore, NaN rows
// where t_r is out of range.
template <class T>
__global__ void cross_entropy_backward_kernel(const T* x, const int64_t* targets, const T* lse, T* d, int64_t rows,
                                              int64_t n, const T* scale_ptr, int64_t ignore_index) {
  const T scale = *scale_ptr;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * n;
    T* dr = d + r * n;
    const int64_t tr = targets[r];
    if (tr == ignore_index || tr < 0 || tr >= n) {
      const T fill = tr == ignore_index ? T(0) : T(NAN);
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x) dr[i] = fill;
      continue;
    }
    const T l = lse[r];
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const T p = exp(xr[i] - l) * scale;
      dr[i] = i == tr ? p - scale : p;
    }
  }
}

}  // namespace

void launch_softmax(DType dtype, const void* x, void* y, int64_t rows, int64_t n, bool log, cudaStream_t stream) {
  if (rows == 0 || n == 0) return;
  COPPER_CUDA_DISPATCH_FLOAT(dtype, "softmax", [&] {
    softmax_kernel<T><<<grid_rows(rows), kBlock, 0, stream>>>(static_cast<const T*>(x), static_cast<T*>(y), rows,
                                                               0, n, log);
    COPPER_CUDA_LAUNCH_CHECK("softmax_kernel");
  });
}

void launch_softmax_backward(DType dtype, const void* y, const void* dy, void* dx, int64_t rows, int64_t n, bool log,
                             cudaStream_t stream) {
  if (rows == 0 || n == 0) return;
  COPPER_CUDA_DISPATCH_FLOAT(dtype, "softmax_backward", [&] {
    softmax_backward_kernel<T><<<grid_rows(rows), kBlock, 0, stream>>>(
        static_cast<const T*>(y), static_cast<const T*>(dy), static_cast<T*>(dx), rows, 0, n, log);
    COPPER_CUDA_LAUNCH_CHECK("softmax_backward_kernel");
  });
}

void launch_causal_softmax(DType dtype, const void* x, void* y, int64_t rows, int64_t t, int64_t n,
                           cudaStream_t stream) {
  if (rows == 0 || n == 0) return;
  COPPER_CUDA_DISPATCH_FLOAT(dtype, "causal_softmax", [&] {
    softmax_kernel<T><<<grid_rows(rows), kBlock, 0, stream>>>(static_cast<const T*>(x), static_cast<T*>(y), rows,
                                                               t, n, false);
    COPPER_CUDA_LAUNCH_CHECK("softmax_kernel (causal)");
  });
}

void launch_causal_softmax_backward(DType dtype, const void* y, const void* dy, void* dx, int64_t rows, int64_t t,
                                    int64_t n, cudaStream_t stream) {
  if (rows == 0 || n == 0) return;
  COPPER_CUDA_DISPATCH_FLOAT(dtype, "causal_softmax_backward", [&] {
    softmax_backward_kernel<T><<<grid_rows(rows), kBlock, 0, stream>>>(
        static_cast<const T*>(y), static_cast<const T*>(dy), static_cast<T*>(dx), rows, t, n, false);
    COPPER_CUDA_LAUNCH_CHECK("softmax_backward_kernel (causal)");
  });
}

void launch_cross_entropy(DType dtype, const void* logits, const int64_t* targets, void* loss, void* lse, int64_t rows,
                          int64_t n, int64_t ignore_index, cudaStream_t stream) {
  if (rows == 0) return;
  COPPER_CUDA_DISPATCH_FLOAT(dtype, "cross_entropy", [&] {
    cross_entropy_kernel<T><<<grid_rows(rows), kBlock, 0, stream>>>(
        static_cast<const T*>(logits), targets, static_cast<T*>(loss), static_cast<T*>(lse), rows, n, ignore_index);
    COPPER_CUDA_LAUNCH_CHECK("cross_entropy_kernel");
  });
}

void launch_cross_entropy_backward(DType dtype, const void* logits, const int64_t* targets, const void* lse,
                                   void* dlogits, int64_t rows, int64_t n, const void* scale,
                                   int64_t ignore_index, cudaStream_t stream) {
  if (rows == 0) return;
  COPPER_CUDA_DISPATCH_FLOAT(dtype, "cross_entropy_backward", [&] {
    cross_entropy_backward_kernel<T><<<grid_rows(rows), kBlock, 0, stream>>>(
        static_cast<const T*>(logits), targets, static_cast<const T*>(lse), static_cast<T*>(dlogits), rows, n,
        static_cast<const T*>(scale), ignore_index);
    COPPER_CUDA_LAUNCH_CHECK("cross_entropy_backward_kernel");
  });
}

}  // namespace copper::cuda
