// norm.cu — LayerNorm and RMSNorm over contiguous rows, forward and backward (Backend::layer_norm,
// layer_norm_backward, rms_norm, rms_norm_backward). The formulas of tensor/cpu/norm.cpp:
//   LayerNorm: xhat = (x - mean) * rstd, y = xhat * w + b;
//              dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * w
//   RMSNorm:   y = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps);  dx = rstd * dxhat - x * rstd^3 * mean(dxhat * x)
// Rows: one block each, block-wide sums in double. Weight and bias gradients: column sums in
// two passes (kernels.h): runs of rows into f64 partials, then each column's runs in order.
#include <cmath>

#include "cuda/common.cuh"

namespace copper::cuda {

namespace {

template <class T>
__global__ void layer_norm_kernel(const T* x, const T* w, const T* b, T* y, T* mean, T* rstd, int64_t rows, int64_t n,
                                  double eps) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    double s = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += double(xr[i]);
    const double mu = block_sum(s) / double(n);
    double v = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) v += (double(xr[i]) - mu) * (double(xr[i]) - mu);
    const double rs = 1.0 / ::sqrt(block_sum(v) / double(n) + eps);
    if (threadIdx.x == 0) {
      mean[r] = T(mu);
      rstd[r] = T(rs);
    }
    const T m = T(mu), rst = T(rs);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const T h = (xr[i] - m) * rst;
      yr[i] = (w ? h * w[i] : h) + (b ? b[i] : T(0));
    }
  }
}

template <class T>
__global__ void layer_norm_backward_kernel(const T* x, const T* w, const T* mean, const T* rstd, const T* dy, T* dx,
                                           int64_t rows, int64_t n) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * n;
    const T* gr = dy + r * n;
    T* dr = dx + r * n;
    const T m = mean[r], rs = rstd[r];
    double s1 = 0, s2 = 0;  // sum dxhat, sum dxhat * xhat
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const T dh = w ? gr[i] * w[i] : gr[i];
      s1 += double(dh);
      s2 += double(dh * (xr[i] - m) * rs);
    }
    const T a = T(block_sum(s1) / double(n)), b = T(block_sum(s2) / double(n));
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const T dh = w ? gr[i] * w[i] : gr[i];
      dr[i] = rs * (dh - a - (xr[i] - m) * rs * b);
    }
  }
}

// Pass 1 of dweight[c] = sum_r dy[r, c] * xhat[r, c] and dbias[c] = sum_r dy[r, c]: the sums
// over chunk k's rows into pw[k * n + c] and pb[k * n + c].
template <class T>
__global__ void layer_norm_params_kernel(const T* x, const T* mean, const T* rstd, const T* dy, int64_t rows,
                                         int64_t n, int64_t chunks, double* pw, double* pb) {
  COPPER_CUDA_GRID_STRIDE(u, chunks * n) {
    const int64_t c = u % n;
    const ChunkRows run(u / n, chunks, rows);
    double sw = 0, sb = 0;
    for (int64_t r = run.first; r < run.end; ++r) {
      const T g = dy[r * n + c];
      sw += double(g * (x[r * n + c] - mean[r]) * rstd[r]);
      sb += double(g);
    }
    pw[u] = sw;
    pb[u] = sb;
  }
}

template <class T>
__global__ void rms_norm_kernel(const T* x, const T* w, T* y, T* rstd, int64_t rows, int64_t n, double eps) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    double ss = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) ss += double(xr[i]) * double(xr[i]);
    const T rs = T(1.0 / ::sqrt(block_sum(ss) / double(n) + eps));
    if (threadIdx.x == 0) rstd[r] = rs;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) yr[i] = w ? xr[i] * rs * w[i] : xr[i] * rs;
  }
}

template <class T>
__global__ void rms_norm_backward_kernel(const T* x, const T* w, const T* rstd, const T* dy, T* dx, int64_t rows,
                                         int64_t n) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * n;
    const T* gr = dy + r * n;
    T* dr = dx + r * n;
    const T rs = rstd[r];
    double s = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += double(w ? gr[i] * w[i] : gr[i]) * double(xr[i]);
    const T c = T(block_sum(s) / double(n)) * rs * rs * rs;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) dr[i] = rs * (w ? gr[i] * w[i] : gr[i]) - xr[i] * c;
  }
}

// Pass 1 of dweight[c] = sum_r dy[r, c] * x[r, c] * rstd[r], chunk k's rows into pw[k * n + c].
template <class T>
__global__ void rms_norm_weight_kernel(const T* x, const T* rstd, const T* dy, int64_t rows, int64_t n,
                                       int64_t chunks, double* pw) {
  COPPER_CUDA_GRID_STRIDE(u, chunks * n) {
    const int64_t c = u % n;
    const ChunkRows run(u / n, chunks, rows);
    double s = 0;
    for (int64_t r = run.first; r < run.end; ++r) s += double(dy[r * n + c] * x[r * n + c] * rstd[r]);
    pw[u] = s;
  }
}

}  // namespace

void launch_layer_norm(DType dtype, const void* x, const void* weight, const void* bias, void* y, void* mean,
                       void* rstd, int64_t rows, int64_t n, double eps, cudaStream_t stream) {
  if (rows == 0) return;
  COPPER_CUDA_DISPATCH_FLOAT(dtype, "layer_norm", [&] {
    layer_norm_kernel<T><<<grid_rows(rows), kBlock, 0, stream>>>(
        static_cast<const T*>(x), static_cast<const T*>(weight), static_cast<const T*>(bias), static_cast<T*>(y),
        static_cast<T*>(mean), static_cast<T*>(rstd), rows, n, eps);
    COPPER_CUDA_LAUNCH_CHECK("layer_norm_kernel");
  });
}

void launch_layer_norm_backward(DType dtype, const void* x, const void* weight, const void* mean, const void* rstd,
                                const void* dy, void* dx, void* dweight, void* dbias, int64_t rows, int64_t n,
                                double* partials, cudaStream_t stream) {
  COPPER_CUDA_DISPATCH_FLOAT(dtype, "layer_norm_backward", [&] {
    const T* xp = static_cast<const T*>(x);
    const T* mp = static_cast<const T*>(mean);
    const T* rp = static_cast<const T*>(rstd);
    const T* gp = static_cast<const T*>(dy);
    if (dx && rows > 0) {
      layer_norm_backward_kernel<T><<<grid_rows(rows), kBlock, 0, stream>>>(
          xp, static_cast<const T*>(weight), mp, rp, gp, static_cast<T*>(dx), rows, n);
      COPPER_CUDA_LAUNCH_CHECK("layer_norm_backward_kernel");
    }
    if ((dweight || dbias) && n > 0) {
      const int64_t chunks = column_chunks(rows, n);
      double *pw = partials, *pb = partials + chunks * n;
      layer_norm_params_kernel<T><<<grid_for(chunks * n), kBlock, 0, stream>>>(xp, mp, rp, gp, rows, n, chunks, pw, pb);
      COPPER_CUDA_LAUNCH_CHECK("layer_norm_params_kernel");
      if (dweight) {
        sum_chunks_kernel<T><<<grid_for(n), kBlock, 0, stream>>>(pw, chunks, n, static_cast<T*>(dweight));
        COPPER_CUDA_LAUNCH_CHECK("sum_chunks_kernel");
      }
      if (dbias) {
        sum_chunks_kernel<T><<<grid_for(n), kBlock, 0, stream>>>(pb, chunks, n, static_cast<T*>(dbias));
        COPPER_CUDA_LAUNCH_CHECK("sum_chunks_kernel");
      }
    }
  });
}

void launch_rms_norm(DType dtype, const void* x, const void* weight, void* y, void* rstd, int64_t rows, int64_t n,
                     double eps, cudaStream_t stream) {
  if (rows == 0) return;
  COPPER_CUDA_DISPATCH_FLOAT(dtype, "rms_norm", [&] {
    rms_norm_kernel<T><<<grid_rows(rows), kBlock, 0, stream>>>(static_cast<const T*>(x),
                                                                static_cast<const T*>(weight), static_cast<T*>(y),
                                                                static_cast<T*>(rstd), rows, n, eps);
    COPPER_CUDA_LAUNCH_CHECK("rms_norm_kernel");
  });
}

void launch_rms_norm_backward(DType dtype, const void* x, const void* weight, const void* rstd, const void* dy,
                              void* dx, void* dweight, int64_t rows, int64_t n, double* partials,
                              cudaStream_t stream) {
  COPPER_CUDA_DISPATCH_FLOAT(dtype, "rms_norm_backward", [&] {
    const T* xp = static_cast<const T*>(x);
    const T* rp = static_cast<const T*>(rstd);
    const T* gp = static_cast<const T*>(dy);
    if (dx && rows > 0) {
      rms_norm_backward_kernel<T><<<grid_rows(rows), kBlock, 0, stream>>>(xp, static_cast<const T*>(weight), rp, gp,
                                                                           static_cast<T*>(dx), rows, n);
      COPPER_CUDA_LAUNCH_CHECK("rms_norm_backward_kernel");
    }
    if (dweight && n > 0) {
      const int64_t chunks = column_chunks(rows, n);
      rms_norm_weight_kernel<T><<<grid_for(chunks * n), kBlock, 0, stream>>>(xp, rp, gp, rows, n, chunks, partials);
      COPPER_CUDA_LAUNCH_CHECK("rms_norm_weight_kernel");
      sum_chunks_kernel<T><<<grid_for(n), kBlock, 0, stream>>>(partials, chunks, n, static_cast<T*>(dweight));
      COPPER_CUDA_LAUNCH_CHECK("sum_chunks_kernel");
    }
  });
}

}  // namespace copper::cuda
