// index.cu — index_select / index_add (whole slices) and gather / scatter_add (elements)
// (Backend::index_select, index_add, gather, scatter_add). One thread per element moved.
// The adds use atomicAdd, because repeated indices add into the same element; the order of
// those additions is not fixed, so sums over repeated indices may differ from the CPU's in the
// last bits. The ops do not check device indices on the host (it would wait for the GPU), so
// every kernel checks its own: an index outside [0, n) reads as all bits set (NaN for floats,
// as a warning that travels with the data) and adds nothing.
#include "cuda/common.cuh"

namespace copper::cuda {

namespace {

// out [outer, k, inner] = x [outer, n, inner] at rows index[j]
template <class U>
__global__ void index_select_kernel(const U* x, const int64_t* index, int64_t k, U* out, int64_t outer, int64_t n,
                                    int64_t inner) {
  COPPER_CUDA_GRID_STRIDE(e, outer * k * inner) {
    const int64_t i = e % inner, j = (e / inner) % k, o = e / (inner * k), ix = index[j];
    out[e] = ix >= 0 && ix < n ? x[(o * n + ix) * inner + i] : U(~U(0));
  }
}

template <class T>
__global__ void index_add_kernel(T* out, const int64_t* index, int64_t k, const T* src, int64_t outer, int64_t n,
                                 int64_t inner) {
  COPPER_CUDA_GRID_STRIDE(e, outer * k * inner) {
    const int64_t i = e % inner, j = (e / inner) % k, o = e / (inner * k), ix = index[j];
    if (ix >= 0 && ix < n) atomicAdd(out + (o * n + ix) * inner + i, src[e]);
  }
}

// out[o, j, i] = x[o, index[o, j, i], i]
template <class U>
__global__ void gather_kernel(const U* x, const int64_t* index, U* out, int64_t outer, int64_t n, int64_t k,
                              int64_t inner) {
  COPPER_CUDA_GRID_STRIDE(e, outer * k * inner) {
    const int64_t i = e % inner, o = e / (inner * k), ix = index[e];
    out[e] = ix >= 0 && ix < n ? x[(o * n + ix) * inner + i] : U(~U(0));
  }
}

template <class T>
__global__ void scatter_add_kernel(T* out, const int64_t* index, const T* src, int64_t outer, int64_t n, int64_t k,
                                   int64_t inner) {
  COPPER_CUDA_GRID_STRIDE(e, outer * k * inner) {
    const int64_t i = e % inner, o = e / (inner * k), ix = index[e];
    if (ix >= 0 && ix < n) atomicAdd(out + (o * n + ix) * inner + i, src[e]);
  }
}

}  // namespace

void launch_index_select(DType dtype, const void* x, const int64_t* index, int64_t k, void* out, int64_t outer,
                         int64_t n, int64_t inner, cudaStream_t stream) {
  const int64_t total = outer * k * inner;
  if (total == 0) return;
  COPPER_CUDA_DISPATCH_BYTES(dtype, "index_select", [&] {
    index_select_kernel<U><<<grid_for(total), kBlock, 0, stream>>>(static_cast<const U*>(x), index, k,
                                                                    static_cast<U*>(out), outer, n, inner);
    COPPER_CUDA_LAUNCH_CHECK("index_select_kernel");
  });
}

void launch_index_add(DType dtype, void* out, const int64_t* index, int64_t k, const void* src, int64_t outer,
                      int64_t n, int64_t inner, cudaStream_t stream) {
  const int64_t total = outer * k * inner;
  if (total == 0) return;
  COPPER_CUDA_DISPATCH_FLOAT(dtype, "index_add", [&] {
    index_add_kernel<T><<<grid_for(total), kBlock, 0, stream>>>(static_cast<T*>(out), index, k,
                                                                 static_cast<const T*>(src), outer, n, inner);
    COPPER_CUDA_LAUNCH_CHECK("index_add_kernel");
  });
}

void launch_gather(DType dtype, const void* x, const int64_t* index, void* out, int64_t outer, int64_t n, int64_t k,
                   int64_t inner, cudaStream_t stream) {
  const int64_t total = outer * k * inner;
  if (total == 0) return;
  COPPER_CUDA_DISPATCH_BYTES(dtype, "gather", [&] {
    gather_kernel<U><<<grid_for(total), kBlock, 0, stream>>>(static_cast<const U*>(x), index, static_cast<U*>(out),
                                                              outer, n, k, inner);
    COPPER_CUDA_LAUNCH_CHECK("gather_kernel");
  });
}

void launch_scatter_add(DType dtype, void* out, const int64_t* index, const void* src, int64_t outer, int64_t n,
                        int64_t k, int64_t inner, cudaStream_t stream) {
  const int64_t total = outer * k * inner;
  if (total == 0) return;
  COPPER_CUDA_DISPATCH_FLOAT(dtype, "scatter_add", [&] {
    scatter_add_kernel<T><<<grid_for(total), kBlock, 0, stream>>>(static_cast<T*>(out), index,
                                                                   static_cast<const T*>(src), outer, n, k, inner);
    COPPER_CUDA_LAUNCH_CHECK("scatter_add_kernel");
  });
}

}  // namespace copper::cuda
