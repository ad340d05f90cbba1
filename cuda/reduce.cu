// reduce.cu — sum / max / min / argmax over the middle axis of [outer, n, inner] (Backend::reduce).
// Sums accumulate in double, as on the CPU. Ties and NaN follow tensor/cpu/reduce.cpp: the
// first maximum (minimum) wins, and the first NaN wins over any number.
//   inner == 1 (a reduction over the last dim): one block per row, a shared-memory tree.
//   inner > 1, a sum: the two passes of kernels.h's column sums, each thread a run of n
//     (coalesced: neighbouring threads read neighbouring elements).
//   inner > 1, max/min/argmax: one thread per output element, walking n with stride inner.
#include <algorithm>
#include <cmath>

#include "cuda/common.cuh"

namespace copper::cuda {

namespace {

// Column sums: enough threads to fill an H100/H200 (132 multiprocessors x 2048 threads), each
// adding at least kMinChunkRows rows.
constexpr int64_t kColumnSumThreads = int64_t(1) << 18;
constexpr int64_t kMinChunkRows = 32;

// Pass 1 of a sum over the middle axis: partials[(c * outer + o) * inner + i] = the sum of
// x[o, j, i] over the rows j of chunk c.
template <class T>
__global__ void column_partials_kernel(const T* x, int64_t outer, int64_t n, int64_t inner, int64_t chunks,
                                       double* partials) {
  const int64_t total = chunks * outer * inner;
  COPPER_CUDA_GRID_STRIDE(u, total) {
    const int64_t i = u % inner, t = u / inner, o = t % outer, c = t / outer;
    const ChunkRows run(c, chunks, n);
    const T* base = x + o * n * inner + i;
    double acc = 0;
    for (int64_t j = run.first; j < run.end; ++j) acc += double(base[j * inner]);
    partials[u] = acc;
  }
}

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

int64_t column_chunks(int64_t rows, int64_t columns) {
  if (columns <= 0 || rows < 2 * kMinChunkRows) return 1;
  const int64_t want = (kColumnSumThreads + columns - 1) / columns;
  return std::max<int64_t>(1, std::min(want, rows / kMinChunkRows));
}

void launch_reduce(ReduceOp op, DType dtype, const void* x, int64_t outer, int64_t n, int64_t inner, void* out,
                   double* partials, cudaStream_t stream) {
  if (outer * inner == 0) return;
  COPPER_CUDA_DISPATCH_FLOAT(dtype, "reduce", [&] {
    const T* xp = static_cast<const T*>(x);
    if (op == ReduceOp::sum && inner > 1) {
      const int64_t m = outer * inner, chunks = column_chunks(n, m);
      column_partials_kernel<T><<<grid_for(chunks * m), kBlock, 0, stream>>>(xp, outer, n, inner, chunks, partials);
      COPPER_CUDA_LAUNCH_CHECK("column_partials_kernel");
      sum_chunks_kernel<T><<<grid_for(m), kBlock, 0, stream>>>(partials, chunks, m, static_cast<T*>(out));
      COPPER_CUDA_LAUNCH_CHECK("sum_chunks_kernel");
    } else if (inner == 1) {
      reduce_rows_kernel<T><<<grid_rows(outer), kBlock, 0, stream>>>(op, xp, outer, n, out);
      COPPER_CUDA_LAUNCH_CHECK("reduce_rows_kernel");
    } else {
      reduce_inner_kernel<T><<<grid_for(outer * inner), kBlock, 0, stream>>>(op, xp, outer, n, inner, out);
      COPPER_CUDA_LAUNCH_CHECK("reduce_inner_kernel");
    }
  });
}

}  // namespace copper::cuda
