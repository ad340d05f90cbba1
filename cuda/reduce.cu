// reduce.cu — sum / max / min / argmax over the middle axis of [outer, n, inner] (Backend::reduce).
// Sums accumulate in double, as on the CPU. Ties and NaN follow tensor/cpu/reduce.cpp: the
// first maximum (minimum) wins, and the first NaN wins over any number.
//   inner == 1 (a reduction over the last dim): one block per row, a shared-memory tree.
//   inner > 1: one thread per output element, walking n with stride inner (coalesced).
#include <cmath>

#include "cuda/common.cuh"

namespace copper::cuda {

namespace {

// A running max/min with its index: does (v, j) replace (acc, arg)?  Same rule as the CPU's
// sequential loop when j comes after arg; `better` handles partial results in any order.
__device__ __forceinline__ bool better(ReduceOp op, double v, int64_t j, double acc, int64_t arg) {
  const bool vn = isnan(v), an = isnan(acc);
  if (vn || an) return vn && (!an || j < arg);
  if (v == acc) return j < arg;
  return op == ReduceOp::min ? v < acc : v > acc;
}

template <class T>
__global__ void reduce_inner_kernel(ReduceOp op, const T* x, int64_t outer, int64_t n, int64_t inner, void* out) {
  const int64_t total = outer * inner;
  COPPER_CUDA_GRID_STRIDE(u, total) {
    const int64_t o = u / inner, i = u % inner;
    const T* base = x + o * n * inner + i;
    double acc = op == ReduceOp::sum ? 0.0 : double(base[0]);
    int64_t arg = 0;
    for (int64_t j = (op == ReduceOp::sum ? 0 : 1); j < n; ++j) {
      const double v = double(base[j * inner]);
      if (op == ReduceOp::sum) acc += v;
      else if (better(op, v, j, acc, arg)) {
        acc = v;
        arg = j;
      }
    }
    if (op == ReduceOp::argmax) static_cast<int64_t*>(out)[u] = arg;
    else static_cast<T*>(out)[u] = T(acc);
  }
}

template <class T>
__global__ void reduce_rows_kernel(ReduceOp op, const T* x, int64_t rows, int64_t n, void* out) {
  __shared__ double vals[kBlock];
  __shared__ int64_t args[kBlock];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* row = x + r * n;
    double acc = op == ReduceOp::sum ? 0.0 : (threadIdx.x < n ? double(row[threadIdx.x]) : double(NAN));
    int64_t arg = threadIdx.x < n ? int64_t(threadIdx.x) : n;  // n: "no element" (loses every comparison below)
    for (int64_t j = threadIdx.x + (op == ReduceOp::sum ? 0 : blockDim.x); j < n; j += blockDim.x) {
      const double v = double(row[j]);
      if (op == ReduceOp::sum) acc += v;
      else if (better(op, v, j, acc, arg)) {
        acc = v;
        arg = j;
      }
    }
    vals[threadIdx.x] = acc;
    args[threadIdx.x] = arg;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
      if (threadIdx.x < s) {
        const double v = vals[threadIdx.x + s];
        const int64_t j = args[threadIdx.x + s];
        if (op == ReduceOp::sum) vals[threadIdx.x] += v;
        else if (j < n && (args[threadIdx.x] >= n || better(op, v, j, vals[threadIdx.x], args[threadIdx.x]))) {
          vals[threadIdx.x] = v;
          args[threadIdx.x] = j;
        }
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) {
      if (op == ReduceOp::argmax) static_cast<int64_t*>(out)[r] = args[0];
      else static_cast<T*>(out)[r] = T(vals[0]);
    }
    __syncthreads();  // vals and args are reused by the next row
  }
}

}  // namespace

void launch_reduce(ReduceOp op, DType dtype, const void* x, int64_t outer, int64_t n, int64_t inner, void* out,
                   cudaStream_t stream) {
  if (outer * inner == 0) return;
  COPPER_CUDA_DISPATCH_FLOAT(dtype, "reduce", [&] {
    const T* xp = static_cast<const T*>(x);
    if (inner == 1) {
      reduce_rows_kernel<T><<<grid_rows(outer), kBlock, 0, stream>>>(op, xp, outer, n, out);
      COPPER_CUDA_LAUNCH_CHECK("reduce_rows_kernel");
    } else {
      reduce_inner_kernel<T><<<grid_for(outer * inner), kBlock, 0, stream>>>(op, xp, outer, n, inner, out);
      COPPER_CUDA_LAUNCH_CHECK("reduce_inner_kernel");
    }
  });
}

}  // namespace copper::cuda
